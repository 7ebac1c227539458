"""Normalization: hyphenation, whitespace, paragraphs, and section spans."""

from __future__ import annotations

from ingest.normalize import TextBuilder, normalize
from ingest.types import Format, SectionKind


def test_joins_words_hyphenated_across_lines_but_keeps_real_hyphens() -> None:
    assert normalize("the extrac-\ntion of text") == "the extraction of text"
    assert normalize("Jean-\nPaul Sartre") == "Jean-Paul Sartre"


def test_collapses_whitespace_and_keeps_paragraph_breaks() -> None:
    raw = "  One  line\r\nand\tanother.\r\n\r\n\r\n  Second   paragraph. "
    assert normalize(raw) == "One line and another.\n\nSecond paragraph."


def test_drops_soft_hyphens_and_control_characters() -> None:
    assert normalize("co\u00adoper\x00ation\x07") == "cooperation"


def test_builder_records_exact_spans_and_keeps_blank_pages() -> None:
    builder = TextBuilder()
    builder.add("i", SectionKind.PAGE, "Front  matter.")
    builder.add("ii", SectionKind.PAGE, "   ")
    builder.add("1", SectionKind.PAGE, "Body\ntext.")
    extracted = builder.build(Format.PDF, title="  A Title ", page_count=3)
    assert extracted.title == "A Title"
    assert [extracted.text[s.start : s.end] for s in extracted.sections] == [
        "Front matter.",
        "",
        "Body text.",
    ]
    assert [s.label for s in extracted.sections] == ["i", "ii", "1"]
    assert extracted.sections[2].citation() == "p. 1"
