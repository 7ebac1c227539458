"""Token-sized chunking that breaks at paragraph, then sentence, then word boundaries.

A chunk holds at most `max_tokens` cl100k tokens and repeats the last `overlap` tokens
(whole sentences) of the chunk before it, so a fact cut by a boundary is whole in one of
the two. Chunks never cross a chapter or heading section, but do run across PDF pages,
whose breaks are an accident of layout; such a chunk is cited as a page range.

It does not normalize text (ingest/normalize.py does) and does not store anything.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ingest.tokens import count_tokens, count_tokens_batch
from ingest.types import Chunk, ChunkSettings, Section, SectionKind

# A sentence ends at . ! ? or … with any closing quotes or brackets, before whitespace.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_PARAGRAPH_BREAK = "\n\n"
_WORD = re.compile(r"\S+")
# Past this share of a chunk, a paragraph end is worth ending the chunk early for.
_PARAGRAPH_BREAK_MIN_FILL = 0.5
# A "word" longer than a chunk (a URL, a base64 blob) is cut every this many characters.
_CHARS_PER_TOKEN_CEILING = 2


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an overlong one): the smallest thing a chunk is built of."""

    start: int
    end: int
    tokens: int
    ends_paragraph: bool


def chunk_document(text: str, sections: Sequence[Section], settings: ChunkSettings) -> list[Chunk]:
    """Cut a document's normalized text into chunks, each located by its sections."""
    locator = _Locator(sections)
    chunks: list[Chunk] = []
    for flow_start, flow_end in _flows(text, sections):
        units = _units(text, flow_start, flow_end, settings.max_tokens)
        for start, end in _pack(units, settings):
            chunk_text = text[start:end]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    text=chunk_text,
                    start=start,
                    end=end,
                    location=locator.label(start, end),
                    token_count=count_tokens(chunk_text),
                    section_ordinal=locator.first_section(start),
                )
            )
    return chunks


def _flows(text: str, sections: Sequence[Section]) -> Iterator[tuple[int, int]]:
    """Spans chunked apart: each chapter or heading section alone, runs of pages together."""
    if not sections:
        if text:
            yield 0, len(text)
        return
    run_start: int | None = None
    run_end = 0
    for section in sections:
        if section.start == section.end:
            continue
        if section.kind is SectionKind.PAGE:
            run_start = section.start if run_start is None else run_start
            run_end = section.end
            continue
        if run_start is not None:
            yield run_start, run_end
            run_start = None
        yield section.start, section.end
    if run_start is not None:
        yield run_start, run_end


def _units(text: str, start: int, end: int, max_tokens: int) -> list[_Unit]:
    """Split text[start:end] into sentences, and sentences longer than a chunk into words."""
    spans = list(_sentence_spans(text, start, end))
    # Each sentence is counted with the whitespace before it, as it stands inside a chunk,
    # so that a chunk's token count is the sum of its units'.
    leading_starts = [start] + [e for _, e, _ in spans[:-1]]
    token_counts = count_tokens_batch(
        [text[lead:e] for lead, (_, e, _) in zip(leading_starts, spans, strict=True)]
    )
    units: list[_Unit] = []
    for (s, e, ends_paragraph), tokens in zip(spans, token_counts, strict=True):
        if tokens <= max_tokens:
            units.append(_Unit(s, e, tokens, ends_paragraph))
        else:
            units.extend(_split_long_sentence(text, s, e, max_tokens, ends_paragraph))
    return units


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, ends_paragraph) for each sentence in text[start:end], whitespace excluded."""
    paragraph_start = start
    while paragraph_start < end:
        paragraph_end = text.find(_PARAGRAPH_BREAK, paragraph_start, end)
        if paragraph_end == -1:
            paragraph_end = end
        sentences = list(_paragraph_sentences(text, paragraph_start, paragraph_end))
        for index, (s, e) in enumerate(sentences):
            yield s, e, index == len(sentences) - 1
        paragraph_start = paragraph_end + len(_PARAGRAPH_BREAK)


def _paragraph_sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    sentence_start = start
    for match in _SENTENCE_END.finditer(text, start, end):
        yield sentence_start, match.end()
        sentence_start = match.end()
        while sentence_start < end and text[sentence_start].isspace():
            sentence_start += 1
    if sentence_start < end:
        yield sentence_start, end


def _split_long_sentence(
    text: str, start: int, end: int, max_tokens: int, ends_paragraph: bool
) -> list[_Unit]:
    """Pieces of an overlong sentence, each at most `max_tokens`, cut between words."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    words = [piece for s, e in words for piece in _split_overlong_word(s, e, max_tokens)]
    word_tokens = count_tokens_batch([" " + text[s:e] for s, e in words])
    pieces: list[_Unit] = []
    piece_start, piece_end, piece_tokens = words[0][0], words[0][1], 0
    for (word_start, word_end), tokens in zip(words, word_tokens, strict=True):
        if piece_tokens and piece_tokens + tokens > max_tokens:
            pieces.append(_Unit(piece_start, piece_end, piece_tokens, False))
            piece_start, piece_tokens = word_start, 0
        piece_tokens += tokens
        piece_end = word_end
    pieces.append(_Unit(piece_start, end, piece_tokens, ends_paragraph))
    return pieces


def _split_overlong_word(start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    step = max_tokens * _CHARS_PER_TOKEN_CEILING
    for piece_start in range(start, end, step):
        yield piece_start, min(piece_start + step, end)


def _pack(units: list[_Unit], settings: ChunkSettings) -> Iterator[tuple[int, int]]:
    """Greedy packing of units into (start, end) chunk spans with sentence-level overlap."""
    first = 0
    while first < len(units):
        last, tokens = first, 0
        while last < len(units) and tokens + units[last].tokens <= settings.max_tokens:
            tokens += units[last].tokens
            last += 1
        last = max(last, first + 1)  # a single unit over the limit still makes progress
        if last < len(units):
            last = _prefer_paragraph_end(units, first, last, settings.max_tokens)
        yield units[first].start, units[last - 1].end
        if last >= len(units):
            return
        first = _overlap_start(units, first, last, settings.overlap)


def _prefer_paragraph_end(units: list[_Unit], first: int, last: int, max_tokens: int) -> int:
    """Move a chunk's end back to its last paragraph end, if that keeps it well filled."""
    tokens = sum(u.tokens for u in units[first:last])
    for candidate in range(last, first, -1):
        if units[candidate - 1].ends_paragraph:
            return candidate if tokens >= max_tokens * _PARAGRAPH_BREAK_MIN_FILL else last
        tokens -= units[candidate - 1].tokens
    return last


def _overlap_start(units: list[_Unit], first: int, last: int, overlap: int) -> int:
    """The first unit of the next chunk: back up whole units worth at most `overlap` tokens."""
    start, tokens = last, 0
    while start - 1 > first and tokens + units[start - 1].tokens <= overlap:
        start -= 1
        tokens += units[start].tokens
    return start


class _Locator:
    """Finds the sections a character span falls in, to label chunks."""

    def __init__(self, sections: Sequence[Section]) -> None:
        located = [s for s in sections if s.end > s.start]
        self._sections = located
        self._starts = [s.start for s in located]

    def _index(self, offset: int) -> int:
        return max(bisect.bisect_right(self._starts, offset) - 1, 0)

    def first_section(self, start: int) -> int:
        return self._sections[self._index(start)].ordinal if self._sections else 0

    def label(self, start: int, end: int) -> str:
        if not self._sections:
            return ""
        first = self._sections[self._index(start)]
        last = self._sections[self._index(max(end - 1, start))]
        if first.ordinal == last.ordinal:
            return first.citation()
        if first.kind is SectionKind.PAGE and last.kind is SectionKind.PAGE:
            return f"pp. {first.label}–{last.label}"
        return first.citation()
