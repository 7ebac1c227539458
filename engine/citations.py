"""Finding the places an answer cites: "[p. 17]", "pp. 17–18", "Chapter 3", "Stave Two", "[2]".

One matcher serves both strategies. Its input is a list of `CitationCandidate`s, the places
the answer could cite: a document's sections (`section_candidates`, whole-document answers)
or the passages a model was shown (`hit_candidates`, retrieval answers). `cite` returns the
candidates the answer names, by location label or by passage number; `citation_of` turns
one into the `Citation` an answer carries, with the passage's character span.

The rules, each there because of a false citation seen without it:
- a page is named as "p. 17", "p.17", "page 17" or inside a range "pp. 16–18"; "p. 170"
  and "p. 17.5" do not name page 17, and a candidate spanning pages ("pp. 17–18") is named
  by any of its pages;
- a label with a digit in it ("Chapter 3") is matched in any case, but a heading made of
  words ("The Keeper") only as written, or every "the keeper" in the prose would cite it;
- a label with a colon is also named by the part before it ("Stave Two" for "Stave Two: The
  First of the Three Spirits");
- front matter (`SectionKind.FRONT`) is never named by its label, which is the document's
  title or "Start", words an answer uses without meaning a place.
Only candidates are ever returned, so a model that invents "p. 999" cites nothing.

It does not judge whether a cited passage supports the answer, and does not choose what to
cite when the answer names nothing (the strategies decide that).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from engine.types import Citation
from ingest.types import Section, SectionKind
from retrieval.types import Hit

SNIPPET_CHARS = 160

_PASSAGE_NUMBER = re.compile(r"\[(\d+)\]|\bpassages?\s+(\d+)", re.IGNORECASE)
_PAGE_LOCATION = re.compile(r"^pp?\.\s*(?P<first>\S+?)(?:\s*[–-]\s*(?P<last>\S+))?$")
# A page range an answer writes: "pp. 16–18", "pages 16-18".
_ANSWER_PAGE_RANGE = re.compile(
    r"\b(?:pp?\.|pages?)\s*(?P<first>\d+)\s*[–-]\s*(?P<last>\d+)(?!\w)(?!\.\d)", re.IGNORECASE
)
# Ranges wider than this are not expanded page by page: a chunk spans a few pages at most,
# and "pp. 1–900" in an answer names no page in particular.
_MAX_EXPANDED_PAGES = 20


@dataclass(frozen=True)
class CitationCandidate:
    """A place an answer may cite.

    `location` is its label as shown ("p. 17", "pp. 17–18", "Chapter 3"); `start`/`end` its
    character span in the document's text, and `text` that passage. `number` is the
    passage's number in the prompt (retrieval answers; None for a document's sections),
    `chunk_ordinal` the chunk it is (None for a section). `front` marks front matter, which
    is cited by number only, never by its label.
    """

    document_id: str
    location: str
    start: int
    end: int
    text: str
    number: int | None = None
    chunk_ordinal: int | None = None
    front: bool = False


def section_candidates(
    document_id: str, text: str, sections: Sequence[Section]
) -> list[CitationCandidate]:
    """A document's non-empty sections as candidates, in document order."""
    return [
        CitationCandidate(
            document_id=document_id,
            location=section.citation(),
            start=section.start,
            end=section.end,
            text=text[section.start : section.end],
            front=section.kind is SectionKind.FRONT,
        )
        for section in sections
        if section.end > section.start
    ]


def hit_candidate(hit: Hit, number: int | None = None, *, front: bool = False) -> CitationCandidate:
    """A retrieved chunk as a candidate; `number` is its passage number in the prompt."""
    chunk = hit.chunk
    return CitationCandidate(
        document_id=hit.document_id,
        location=chunk.location,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
        number=number,
        chunk_ordinal=chunk.ordinal,
        front=front,
    )


def hit_candidates(
    shown: Sequence[Hit], front_sections: Mapping[str, Collection[int]] | None = None
) -> list[CitationCandidate]:
    """The passages of a prompt as candidates, numbered from 1 in the order shown.

    A chunk's location is only a string, so which chunks are front matter is told by
    `front_sections`: document id -> the ordinals of its FRONT sections (chunks never cross
    a non-page section, so a chunk's `section_ordinal` says whether it is front matter).
    Without it, no chunk is taken for front matter.
    """
    front = front_sections or {}
    return [
        hit_candidate(
            hit,
            number,
            front=hit.chunk.section_ordinal in front.get(hit.document_id, ()),
        )
        for number, hit in enumerate(shown, start=1)
    ]


def front_section_ordinals(sections: Sequence[Section]) -> frozenset[int]:
    """The ordinals of a document's FRONT sections, for `hit_candidates`."""
    return frozenset(s.ordinal for s in sections if s.kind is SectionKind.FRONT)


def cite(answer: str, candidates: Sequence[CitationCandidate]) -> list[CitationCandidate]:
    """The candidates the answer names, by location or by passage number, in the order it
    first names them; candidates first named at the same place keep their given order."""
    numbers = _passage_numbers(answer)
    ranges = _answer_page_ranges(answer)
    found: list[tuple[int, int, CitationCandidate]] = []
    for index, candidate in enumerate(candidates):
        positions = [] if candidate.front else _label_positions(answer, candidate.location, ranges)
        if candidate.number is not None and candidate.number in numbers:
            positions.append(numbers[candidate.number])
        if positions:
            found.append((min(positions), index, candidate))
    found.sort(key=lambda item: item[:2])
    return [candidate for _, _, candidate in found]


def snippet(text: str) -> str:
    """The start of a passage, whitespace collapsed, at most SNIPPET_CHARS long."""
    body = " ".join(text.split())
    return body if len(body) <= SNIPPET_CHARS else body[: SNIPPET_CHARS - 1].rstrip() + "…"


def citation_of(candidate: CitationCandidate) -> Citation:
    """The citation of a candidate: its label, the start of its text, and its span."""
    return Citation(
        document_id=candidate.document_id,
        location=candidate.location,
        snippet=snippet(candidate.text),
        start=candidate.start,
        end=candidate.end,
        chunk_ordinal=candidate.chunk_ordinal,
    )


def cited_locations(
    answer: str, document_id: str, text: str, sections: Sequence[Section]
) -> tuple[Citation, ...]:
    """The document's sections the answer names, in the order it first names them."""
    cited = cite(answer, section_candidates(document_id, text, sections))
    return tuple(citation_of(candidate) for candidate in cited)


# -- the matching rules ----------------------------------------------------------------------


def _passage_numbers(answer: str) -> dict[int, int]:
    """Passage number -> where the answer first names it ("[2]", "passage 2")."""
    first: dict[int, int] = {}
    for match in _PASSAGE_NUMBER.finditer(answer):
        first.setdefault(int(match[1] or match[2]), match.start())
    return first


def _answer_page_ranges(answer: str) -> list[tuple[int, int, int]]:
    """(where, first page, last page) of each numeric page range the answer writes."""
    ranges: list[tuple[int, int, int]] = []
    for match in _ANSWER_PAGE_RANGE.finditer(answer):
        low, high = int(match["first"]), int(match["last"])
        if 0 <= high - low <= _MAX_EXPANDED_PAGES:
            ranges.append((match.start(), low, high))
    return ranges


def _label_positions(
    answer: str, location: str, ranges: Sequence[tuple[int, int, int]]
) -> list[int]:
    """Where the answer names `location` (see the module docstring for the rules)."""
    location = location.strip()
    if not location:
        return []
    page = _PAGE_LOCATION.match(location)
    if page:
        labels = _page_labels(page["first"], page["last"])
        positions = [m.start() for p in _page_patterns(labels) for m in p.finditer(answer)]
        numbered = {int(label) for label in labels if label.isdigit()}
        positions += [where for where, low, high in ranges if numbered & set(range(low, high + 1))]
        return positions
    names = [location]
    short = location.split(":", 1)[0].strip()
    if short and short != location:
        names.append(short)
    flags = re.IGNORECASE if any(char.isdigit() for char in location) else 0
    patterns = [re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", flags) for name in names]
    return [m.start() for p in patterns for m in p.finditer(answer)]


def _page_labels(first: str, last: str | None) -> list[str]:
    """The page labels a location spans: "17" and "18" for "pp. 17–18" (ends only for
    labels that are not numbers, like "xii–xiv", or for implausibly wide ranges)."""
    if last is None:
        return [first]
    if first.isdigit() and last.isdigit():
        low, high = int(first), int(last)
        if 0 <= high - low <= _MAX_EXPANDED_PAGES:
            return [str(number) for number in range(low, high + 1)]
    return [first, last]


def _page_patterns(labels: Sequence[str]) -> list[re.Pattern[str]]:
    # "p. 17", "p.17", "page 17", "pp. 17-18"; not "p. 170", not "p. 17.5"
    return [
        re.compile(rf"\b(?:pp?\.|pages?)\s*{re.escape(label)}(?!\w)(?!\.\d)", re.IGNORECASE)
        for label in labels
    ]
