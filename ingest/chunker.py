"""Token-sized chunking that breaks at paragraph, then sentence, then word boundaries.

A chunk holds at most `max_tokens` cl100k tokens and repeats the last `overlap` tokens
(whole sentences) of the chunk before it, so a fact cut by a boundary is whole in one of
the two. Chunks never cross a chapter or heading section, but do run across PDF pages,
whose breaks are an accident of layout; such a chunk is cited as a page range.

Time stays linear and memory small whatever the punctuation: sentences are counted one at
a time as they are found and packed as they come, and a sentence longer than a chunk (a text
with no sentence ends is one) is cut by encoding bounded windows of it, never whole. A
chunk's token count is exact, never over `max_tokens`.

It does not normalize text (ingest/normalize.py does) and does not store anything.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ingest.tokens import count_tokens, token_prefix
from ingest.types import Chunk, ChunkSettings, Section, SectionKind

# A sentence ends at . ! ? or … with any closing quotes or brackets, before whitespace.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_PARAGRAPH_BREAK = "\n\n"
# The last whitespace character before the end of the searched span.
_LAST_SPACE = re.compile(r"\s\S*\Z")
# Past this share of a chunk, a paragraph end is worth ending the chunk early for.
_PARAGRAPH_BREAK_MIN_FILL = 0.5
# Characters encoded to find where an overlong sentence's piece ends, per token it may hold:
# English runs ~4.5 characters a token, so this window nearly always holds the piece.
_WINDOW_CHARS_PER_TOKEN = 6


@dataclass(frozen=True, slots=True)
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
        for start, end, tokens in _pack(text, units, settings):
            chunk_text = text[start:end]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    text=chunk_text,
                    start=start,
                    end=end,
                    location=locator.label(start, end),
                    token_count=tokens,
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


def _units(text: str, start: int, end: int, max_tokens: int) -> Iterator[_Unit]:
    """Split text[start:end] into sentences, and sentences longer than a chunk into words."""
    # Each sentence is counted with the whitespace before it, as it stands inside a chunk,
    # so that a chunk's token count is the sum of its units'.
    lead = start
    window = max_tokens * _WINDOW_CHARS_PER_TOKEN
    for sentence_start, sentence_end, ends_paragraph in _sentence_spans(text, start, end):
        # Nearly every sentence is short: count it whole, and cut only one that is too long.
        tokens = count_tokens(text[lead:sentence_end]) if sentence_end - lead <= window else None
        if tokens is not None and tokens <= max_tokens:
            yield _Unit(sentence_start, sentence_end, tokens, ends_paragraph)
        else:
            yield from _sentence_units(
                text, lead, sentence_start, sentence_end, max_tokens, ends_paragraph
            )
        lead = sentence_end


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, ends_paragraph) for each sentence in text[start:end], whitespace excluded."""
    paragraph_start = start
    while paragraph_start < end:
        paragraph_end = text.find(_PARAGRAPH_BREAK, paragraph_start, end)
        if paragraph_end == -1:
            paragraph_end = end
        # One sentence of lookahead tells the paragraph's last, without holding a paragraph
        # of a million sentences in a list.
        previous: tuple[int, int] | None = None
        for span in _paragraph_sentences(text, paragraph_start, paragraph_end):
            if previous is not None:
                yield previous[0], previous[1], False
            previous = span
        if previous is not None:
            yield previous[0], previous[1], True
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


def _sentence_units(
    text: str, lead: int, start: int, end: int, max_tokens: int, ends_paragraph: bool
) -> Iterator[_Unit]:
    """The sentence text[start:end] as one unit, or if it is longer than a chunk, as pieces
    of whole words, each at most `max_tokens` (a word longer than a chunk is cut at a token).

    Each piece is found by encoding a bounded window after it, never the whole sentence, so a
    text with no sentence ends at all costs a few encodings of itself and little memory.
    """
    while True:
        piece_end, tokens = _piece_end(text, lead, start, end, max_tokens)
        next_start = piece_end
        while next_start < end and text[next_start].isspace():
            next_start += 1
        if next_start >= end:
            yield _Unit(start, piece_end, tokens, ends_paragraph)
            return
        yield _Unit(start, piece_end, tokens, False)
        lead, start = piece_end, next_start


def _piece_end(text: str, lead: int, start: int, end: int, max_tokens: int) -> tuple[int, int]:
    """(end, tokens) of the longest run of whole words from `start` (counted from `lead`, the
    whitespace before it included) that fits in `max_tokens`: `end` itself if the rest does.
    """
    window = max_tokens * _WINDOW_CHARS_PER_TOKEN
    while True:
        window_end = min(end, start + window)
        tokens, covered = token_prefix(text[lead:window_end], max_tokens)
        if tokens > max_tokens:
            break
        if window_end == end:
            return end, tokens
        window *= 2  # tokens longer than the guess (runs of symbols or spaces): look further
    limit = lead + covered  # text[lead:limit] is the first max_tokens tokens of the window
    if limit <= start:
        # The whitespace before the piece fills a chunk by itself. Fit the piece without it;
        # a chunk never starts with whitespace, so the piece will stand alone in one.
        piece_end, _ = _piece_end(text, start, start, end, max_tokens)
        return piece_end, count_tokens(text[lead:piece_end])
    word_end = _last_word_end(text, start, limit)
    piece_end = limit if word_end is None else word_end  # no word ends in time: cut inside it
    tokens = count_tokens(text[lead:piece_end])
    # Encoding a prefix alone can differ from the window's encoding at the cut; shrink
    # until it fits (a whole word at a time, or within a word longer than a chunk).
    while tokens > max_tokens and piece_end - start > 1:
        shorter = _last_word_end(text, start, piece_end - 1)
        if shorter is None:
            shorter = start + max((piece_end - start) * max_tokens // tokens, 1)
        piece_end = shorter
        tokens = count_tokens(text[lead:piece_end])
    return piece_end, tokens


def _last_word_end(text: str, start: int, limit: int) -> int | None:
    """The last end of a word in text[start:limit+1] after the first, if any: the offset
    of the whitespace that follows it, at most `limit`."""
    match = _LAST_SPACE.search(text, start + 1, limit + 1)
    if match is None:
        return None
    word_end = match.start()
    while text[word_end - 1].isspace():  # text[start] is not whitespace, so this stops
        word_end -= 1
    return word_end


def _pack(
    text: str, units: Iterable[_Unit], settings: ChunkSettings
) -> Iterator[tuple[int, int, int]]:
    """Greedy packing of units into (start, end, tokens) chunks with sentence-level overlap.

    Units are taken as they come; only those of the chunk being built (and the one that did
    not fit in it) are held, so memory does not grow with the length of the text.
    """
    source = iter(units)
    window: list[_Unit] = []  # window[0] is the first unit of the chunk being built

    def loaded(index: int) -> bool:
        while len(window) <= index:
            unit = next(source, None)
            if unit is None:
                return False
            window.append(unit)
        return True

    while loaded(0):
        last, tokens = 0, 0
        while loaded(last) and tokens + window[last].tokens <= settings.max_tokens:
            tokens += window[last].tokens
            last += 1
        last = max(last, 1)  # a single unit over the limit still makes progress
        if loaded(last):
            last = _prefer_paragraph_end(window, 0, last, settings.max_tokens)
        tokens = count_tokens(text[window[0].start : window[last - 1].end])
        # Units are counted apart, and BPE is not quite additive: the rare chunk whose sum
        # fits but whose text does not gives up its last unit.
        while tokens > settings.max_tokens and last > 1:
            last -= 1
            tokens = count_tokens(text[window[0].start : window[last - 1].end])
        if tokens > settings.max_tokens:
            # One unit that fits only with the whitespace before it, which a chunk leaves
            # out (" Gardiner" is two tokens, "Gardiner" three): cut it again as a chunk's
            # start, counted without that whitespace.
            first = window[0]
            window[:1] = _sentence_units(
                text, first.start, first.start, first.end, settings.max_tokens, first.ends_paragraph
            )
            continue
        yield window[0].start, window[last - 1].end, tokens
        if not loaded(last):
            return
        del window[: _overlap_start(window, 0, last, settings.overlap)]


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
