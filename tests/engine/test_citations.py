"""The one citation matcher: page ranges, the case rule for headings, short labels, passage
numbers, front matter, spans and order, over a document's sections and over retrieved chunks.
"""

from __future__ import annotations

import pytest

from engine.citations import (
    SNIPPET_CHARS,
    CitationCandidate,
    citation_of,
    cite,
    cited_locations,
    front_section_ordinals,
    hit_candidates,
    section_candidates,
)
from engine.prompts import render_document
from ingest.normalize import TextBuilder
from ingest.types import Chunk, ExtractedText, Format, Section, SectionKind
from retrieval.types import Hit

DOC = "d" * 64


def candidate(
    location: str, number: int | None = None, *, front: bool = False
) -> CitationCandidate:
    return CitationCandidate(DOC, location, 0, 1, "x", number=number, front=front)


def named(answer: str, *locations: str) -> list[str]:
    """The locations, of those given, that the answer cites, in the order `cite` returns."""
    return [c.location for c in cite(answer, [candidate(location) for location in locations])]


def book(*sections: tuple[str, SectionKind, str]) -> ExtractedText:
    builder = TextBuilder()
    for label, kind, body in sections:
        builder.add(label, kind, body)
    return builder.build(Format.TEXT, title="A Book")


def make_hit(rank: int, location: str, section_ordinal: int = 0) -> Hit:
    body = f"passage text number {rank}"
    chunk = Chunk(
        ordinal=rank - 1,
        text=body,
        start=rank * 100,
        end=rank * 100 + len(body),
        location=location,
        token_count=4,
        section_ordinal=section_ordinal,
    )
    return Hit(DOC, rank - 1, 1.0 / rank, rank, chunk)


# -- pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["See p. 17.", "p.17", "on page 17", "(P. 17)", "pp. 17-18"])
def test_a_page_is_named_in_the_usual_ways(answer: str) -> None:
    assert named(answer, "p. 17") == ["p. 17"]


@pytest.mark.parametrize("answer", ["p. 170", "p. 17.5", "p. 117", "chapter 17", "17 pages"])
def test_a_longer_or_decimal_number_is_another_page(answer: str) -> None:
    assert named(answer, "p. 17") == []


def test_a_chunk_spanning_pages_is_named_by_any_of_them() -> None:
    assert named("on page 41", "pp. 40–42") == ["pp. 40–42"]
    assert named("on p. 42", "pp. 40–42") == ["pp. 40–42"]
    assert named("on p. 43", "pp. 40–42") == []
    assert named("on p. xiii", "pp. xii–xiv") == []  # roman ranges: only their ends
    assert named("on p. xiv", "pp. xii–xiv") == ["pp. xii–xiv"]


def test_a_range_in_the_answer_names_every_page_inside_it() -> None:
    assert named("pp. 16–18 say so", "p. 15", "p. 16", "p. 17", "p. 18", "p. 19") == [
        "p. 16",
        "p. 17",
        "p. 18",
    ]
    assert named("pages 17-18", "pp. 18–19") == ["pp. 18–19"]
    assert named("pp. 1–900", "p. 450") == []  # too wide to name a page


# -- headings --------------------------------------------------------------------------------


def test_a_numbered_label_matches_in_any_case_a_worded_one_only_as_written() -> None:
    assert named("as chapter 12 says", "Chapter 12") == ["Chapter 12"]
    assert named("as chapter 120 says", "Chapter 12") == []
    assert named("the keeper's raven was Captain Pickle", "The Keeper") == []
    assert named("Captain Pickle (The Keeper)", "The Keeper") == ["The Keeper"]
    assert named("in The Keepers", "The Keeper") == []


def test_a_label_is_also_named_by_its_part_before_a_colon() -> None:
    stave = "Stave Two: The First of the Three Spirits"
    assert named("It happens in Stave Two.", stave) == [stave]
    assert named("It happens in stave two.", stave) == []  # worded: as written
    assert named("See Chapter 3.", "Chapter 3: The Storm") == ["Chapter 3: The Storm"]
    assert named("see chapter 3", "Chapter 3: The Storm") == ["Chapter 3: The Storm"]


def test_an_empty_location_is_never_named() -> None:
    assert named("anything at all, p. 1, Chapter 1", "", "  ") == []


# -- passage numbers -------------------------------------------------------------------------


def test_passages_are_named_by_number() -> None:
    candidates = [candidate("", 1), candidate("", 2), candidate("", 3)]
    assert cite("As [3] says, and passage 1 too", candidates) == [candidates[2], candidates[0]]
    assert cite("Passage 2 agrees", candidates) == [candidates[1]]
    assert cite("[4] and passage 9", candidates) == []
    # a document's sections have no number, so "[1]" names none of them
    assert cite("[1]", [candidate("p. 1")]) == []


# -- front matter ----------------------------------------------------------------------------


def test_front_matter_is_never_cited_by_its_label() -> None:
    extracted = book(
        ("A Christmas Carol", SectionKind.FRONT, "A ghost story of Christmas."),
        ("Start", SectionKind.FRONT, "More preface."),
        ("Stave One", SectionKind.CHAPTER, "Marley was dead."),
    )
    answer = "In A Christmas Carol, Marley is dead from the Start (Stave One)."
    cited = cited_locations(answer, DOC, extracted.text, extracted.sections)
    assert [c.location for c in cited] == ["Stave One"]


def test_front_matter_chunks_are_cited_by_number_only() -> None:
    extracted = book(
        ("A Christmas Carol", SectionKind.FRONT, "A ghost story."),
        ("Stave One", SectionKind.CHAPTER, "Marley was dead."),
    )
    front = {DOC: front_section_ordinals(extracted.sections)}
    shown = [make_hit(1, "A Christmas Carol", 0), make_hit(2, "Stave One", 1)]
    candidates = hit_candidates(shown, front)
    assert [c.front for c in candidates] == [True, False]
    assert cite("A Christmas Carol, Stave One", candidates) == [candidates[1]]
    assert cite("as [1] says", candidates) == [candidates[0]]
    # without knowing the sections, a chunk's label is all there is
    assert cite("A Christmas Carol", hit_candidates(shown)) == [hit_candidates(shown)[0]]


def test_front_matter_has_no_location_mark_in_a_rendered_document() -> None:
    extracted = book(
        ("A Book", SectionKind.FRONT, "A preface."),
        ("Chapter 1", SectionKind.CHAPTER, "It begins."),
    )
    rendered = render_document(extracted.text, extracted.sections)
    assert rendered.startswith("A preface.")
    assert "[A Book]" not in rendered
    assert "[Chapter 1]\nIt begins." in rendered


# -- spans, snippets and order ---------------------------------------------------------------


def test_citations_carry_the_span_of_their_passage() -> None:
    extracted = book(
        ("Chapter 1", SectionKind.CHAPTER, "First things."),
        ("Chapter 2", SectionKind.CHAPTER, "Second things\n\ncome later. " * 20),
    )
    (cited,) = cited_locations("see Chapter 2", DOC, extracted.text, extracted.sections)
    second = extracted.sections[1]
    assert (cited.start, cited.end) == (second.start, second.end)
    assert extracted.text[cited.start : cited.end].startswith("Second things\n\ncome later.")
    assert cited.snippet.startswith("Second things come later.")
    assert len(cited.snippet) == SNIPPET_CHARS and cited.snippet.endswith("…")
    assert cited.chunk_ordinal is None and cited.document_id == DOC

    hit = make_hit(3, "p. 9")
    (chunk_citation,) = [citation_of(c) for c in cite("p. 9", hit_candidates([hit]))]
    assert (chunk_citation.start, chunk_citation.end) == (hit.chunk.start, hit.chunk.end)
    assert chunk_citation.chunk_ordinal == hit.chunk.ordinal
    assert chunk_citation.snippet == hit.chunk.text


def test_citations_come_in_the_order_the_answer_first_names_them() -> None:
    assert named(
        "Chapter 3, then p. 2, then Chapter 1 and Chapter 3", "p. 2", "Chapter 1", "Chapter 3"
    ) == [
        "Chapter 3",
        "p. 2",
        "Chapter 1",
    ]
    # named at the same place: the candidates' own order
    assert named("pp. 4–5", "p. 5", "p. 4") == ["p. 5", "p. 4"]
    candidates = [candidate("p. 8", 1), candidate("Chapter 2", 2)]
    assert cite("Chapter 2, then [1]", candidates) == [candidates[1], candidates[0]]


def test_only_the_documents_own_sections_are_cited() -> None:
    extracted = book(
        ("Chapter 1", SectionKind.CHAPTER, "One."),
        ("Chapter 2", SectionKind.CHAPTER, "Two."),
    )
    cited = cited_locations(
        "Chapter 9 and p. 999 and Chapter 2", DOC, extracted.text, extracted.sections
    )
    assert [c.location for c in cited] == ["Chapter 2"]


def test_empty_sections_are_not_candidates() -> None:
    extracted = book(("Chapter 1", SectionKind.CHAPTER, "One."))
    end = extracted.sections[0].end
    hollow = Section(1, "Chapter 2", SectionKind.CHAPTER, end, end)
    candidates = section_candidates(DOC, extracted.text, [*extracted.sections, hollow])
    assert [c.location for c in candidates] == ["Chapter 1"]
