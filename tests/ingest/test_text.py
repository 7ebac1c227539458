"""Plain text and Markdown: decoding, Gutenberg boilerplate, chapters, headings, real books."""

from __future__ import annotations

import codecs
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import EmptyFileError
from ingest.text import (
    decode_text,
    gutenberg_title,
    read_markdown,
    read_text,
    split_chapters,
    split_markdown,
    strip_gutenberg_boilerplate,
)
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind


def run(reader: Generator[ReadProgress, None, ExtractedText]) -> ExtractedText:
    progress: list[ReadProgress] = []
    try:
        while True:
            progress.append(next(reader))
    except StopIteration as finished:
        assert progress, "a reader reports progress at least once"
        assert progress[-1].done == progress[-1].total
        result: ExtractedText = finished.value
        return result


def read_plain(data: bytes, name: str = "book.txt") -> ExtractedText:
    return run(read_text(data, name, ReadOptions()))


def read_md(data: bytes, name: str = "notes.md") -> ExtractedText:
    return run(read_markdown(data, name, ReadOptions()))


def labels(extracted: ExtractedText) -> list[str]:
    return [section.label for section in extracted.sections]


# --- decoding ------------------------------------------------------------------------------


def test_utf8_with_bom_and_crlf() -> None:
    data = codecs.BOM_UTF8 + "Café au lait.\r\nSecond line.\r\n\r\nNew paragraph.".encode()
    assert decode_text(data) == "Café au lait.\r\nSecond line.\r\n\r\nNew paragraph."
    assert read_plain(data).text == "Café au lait. Second line.\n\nNew paragraph."


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32(codec: str) -> None:
    text = "Ünïcödé text — with “quotes”.\nAnd a second line."
    data = text.encode(codec)
    if codec != "utf-16" and codec != "utf-32":
        # No byte-order mark: recognized by the NUL in every other byte.
        assert data[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    assert decode_text(data) == text


def test_utf16_with_bom_reads_as_text() -> None:
    data = "Hello from UTF-16".encode("utf-16")
    assert read_plain(data).text == "Hello from UTF-16"


def test_cp1252_fallback() -> None:
    assert decode_text(b"caf\xe9 na\xefve \x93quoted\x94") == "café naïve “quoted”"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1() -> None:
    assert decode_text(b"a\x81b\x9dc") == "a\x81b\x9dc"


def test_a_stray_legacy_byte_keeps_the_utf8_around_it() -> None:
    data = "naïve “quoted” ".encode() + b"caf\xe9"
    assert decode_text(data) == "naïve “quoted” café"


def test_declared_encoding_is_used_when_it_decodes() -> None:
    assert decode_text("Приве́т".encode("koi8-r", "ignore"), declared="koi8-r") == "Привет"
    assert decode_text(b"caf\xe9", declared="no-such-codec") == "café"


@given(st.binary(max_size=2000))
def test_decoding_never_raises(data: bytes) -> None:
    assert isinstance(decode_text(data), str)


# Control characters excluded: text with a NUL in every other character is UTF-16 by shape.
@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=300))
def test_utf8_round_trips(text: str) -> None:
    if not text.startswith("\ufeff"):
        assert decode_text(text.encode("utf-8")) == text


@given(st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), min_size=1))
def test_printable_text_never_reads_as_empty(text: str) -> None:
    if text.strip():
        assert read_plain(text.encode("utf-8")).text


def test_empty_and_blank_text_are_refused() -> None:
    with pytest.raises(EmptyFileError, match=r"blank\.txt has no text"):
        read_plain(b" \r\n\t\n", "blank.txt")


# --- Project Gutenberg ---------------------------------------------------------------------

GUTENBERG = """\ufeffThe Project Gutenberg EBook of A Tale, by Some One

This eBook is for the use of anyone anywhere at no cost.

Title: A Tale of
       Two Towns

Author: Some One

*** START OF THIS PROJECT GUTENBERG EBOOK A TALE OF TWO TOWNS ***




Produced by Volunteers
at Distributed Proofreaders



A TALE

It was the best of times.

End of the Project Gutenberg EBook of A Tale, by Some One

*** END OF THIS PROJECT GUTENBERG EBOOK A TALE OF TWO TOWNS ***

1.A. By reading or using any part of this Project Gutenberg-tm electronic work...
"""


def test_gutenberg_header_and_footer_are_stripped() -> None:
    body = strip_gutenberg_boilerplate(GUTENBERG)
    assert body.strip() == "A TALE\n\nIt was the best of times."


def test_gutenberg_title_with_continuation_line() -> None:
    assert gutenberg_title(GUTENBERG) == "A Tale of Two Towns"


def test_text_without_boilerplate_is_unchanged() -> None:
    text = "Title: Not a header\n\nEnd of the story. Project Gutenberg is mentioned here.\n"
    assert strip_gutenberg_boilerplate(text) == text
    assert gutenberg_title(text) is None


def test_old_gutenberg_forms() -> None:
    text = (
        "**The Project Gutenberg Etext of Old Book**\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        "The story itself.\n\n"
        "End of Project Gutenberg's Old Book, by Anon\n"
        "More license text.\n"
    )
    assert strip_gutenberg_boilerplate(text).strip() == "The story itself."


def test_start_marker_wrapped_over_two_lines() -> None:
    text = (
        "Header\n*** START OF THE PROJECT GUTENBERG EBOOK A VERY LONG TITLE THAT\n"
        "GOES ON ***\nBody text.\n*** END OF THE PROJECT GUTENBERG EBOOK ***\nfooter\n"
    )
    assert strip_gutenberg_boilerplate(text) == "Body text.\n"


def test_gutenberg_title_becomes_the_document_title() -> None:
    extracted = read_plain(GUTENBERG.encode())
    assert extracted.title == "A Tale of Two Towns"
    assert "Gutenberg" not in extracted.text
    assert "Produced by" not in extracted.text


@pytest.mark.corpus
def test_pride_and_prejudice_utf8_bom_crlf(corpus: Path) -> None:
    data = (corpus / "books" / "pride-and-prejudice" / "1342-0.txt").read_bytes()
    assert data.startswith(codecs.BOM_UTF8) and b"\r\n" in data[:200]
    extracted = read_plain(data, "1342-0.txt")
    assert extracted.title == "Pride and Prejudice"
    assert "gutenberg" not in extracted.text.lower()
    assert "\r" not in extracted.text and "\ufeff" not in extracted.text
    assert extracted.text.startswith("PRIDE AND PREJUDICE")
    assert extracted.text.endswith("the means of uniting them.")
    chapters = [s for s in extracted.sections if s.kind is SectionKind.CHAPTER]
    assert [c.label for c in chapters] == [f"Chapter {n}" for n in range(1, 62)]
    assert chapters[0].citation() == "Chapter 1"
    assert extracted.text[chapters[0].start :].startswith(
        "Chapter 1\n\nIt is a truth universally acknowledged"
    )


@pytest.mark.corpus
def test_pride_and_prejudice_ascii_edition_reads_alike(corpus: Path) -> None:
    folder = corpus / "books" / "pride-and-prejudice"
    utf8 = read_plain((folder / "1342-0.txt").read_bytes())
    ascii_ = read_plain((folder / "1342.txt").read_bytes())
    assert labels(ascii_) == labels(utf8)
    assert abs(len(ascii_.text) - len(utf8.text)) < 0.01 * len(utf8.text)


# --- plain text chapters -------------------------------------------------------------------


def test_chapter_headings_with_and_without_titles() -> None:
    text = (
        "Front matter.\n\nCHAPTER I.\nTHE FIRST DAY.\nIt began.\n\n"
        "Chapter 2\n\nIt went on, and on.\n\n"
        "Chapter III. A Title Inline\nMore text.\n"
    )
    parts = split_chapters(text, "My Book")
    assert [(p.label, p.kind) for p in parts] == [
        ("My Book", SectionKind.FRONT),
        ("Chapter I: The First Day", SectionKind.CHAPTER),
        ("Chapter 2", SectionKind.CHAPTER),
        ("Chapter III: A Title Inline", SectionKind.CHAPTER),
    ]
    assert parts[1].text.startswith("CHAPTER I.\nTHE FIRST DAY.\n\n")


@pytest.mark.parametrize(
    ("heading", "label"),
    [
        ("STAVE ONE.", "Stave One"),
        ("STAVE  TWO.", "Stave Two"),
        ("Chapter 12.", "Chapter 12"),
        ("Letter 4", "Letter 4"),
        ("LETTER IV.", "Letter IV"),
        ("Chapter Twenty-One", "Chapter Twenty-One"),
        ("BOOK THE FIRST", "Book The First"),
        ("Chapter xiv", "Chapter XIV"),
    ],
)
def test_heading_forms(heading: str, label: str) -> None:
    text = f"Opening words.\n\n{heading}\n\nThe body of it, at some length.\n"
    assert [p.label for p in split_chapters(text)] == ["Start", label]


def test_volumes_prefix_chapter_labels() -> None:
    text = (
        "CHAPTER I.\nIt began slowly.\n\nCHAPTER II.\nIt went on slowly.\n\nVOL. II.\n\n"
        "CHAPTER I.\nIt began again.\n\nBOOK III\nCHAPTER I.\nIt began once more.\n"
    )
    # "VOL. II." and "BOOK III" have no text of their own, so they are no sections, but
    # they say which volume the chapters that follow belong to.
    assert [p.label for p in split_chapters(text)] == [
        "Chapter I",
        "Chapter II",
        "Vol. II, Chapter I",
        "Book III, Chapter I",
    ]


def test_prose_mentioning_chapters_does_not_split() -> None:
    text = (
        "He opened the book at the last chapter of the second volume and\n"
        "Chapter 3 of the report explained the rest of it, line by line.\n"
        "She said that Chapter after chapter, the story grew.\n"
        "The reader turned to the appendix, which the author called\n"
        "Chapter 9.\n"
        "in the first draft.\n"
        "I.\nA single numeral means little.\n"
    )
    parts = split_chapters(text)
    assert [(p.label, p.kind) for p in parts] == [("Start", SectionKind.FRONT)]
    assert parts[0].text == text


def test_a_table_of_contents_is_not_a_run_of_empty_chapters() -> None:
    text = (
        "Contents\nChapter I. The Cyclone\nChapter II. The Council\n\n"
        "Chapter I\nThe Cyclone\nA long first chapter.\n\n"
        "Chapter II\nThe Council\nA long second chapter.\n"
    )
    parts = split_chapters(text)
    assert [p.label for p in parts] == [
        "Start",
        "Chapter I: The Cyclone",
        "Chapter II: The Council",
    ]
    assert "Chapter II. The Council" in parts[0].text


def test_bare_roman_numerals_in_sequence_are_chapters() -> None:
    text = "I.\nThe Start\nSome text.\n\nII.\nThe Middle\nMore.\n\nIV.\nNot next in line.\n"
    assert [p.label for p in split_chapters(text)] == ["I. The Start", "II. The Middle"]


def test_capital_headings_need_company() -> None:
    one = "Text.\n\nA LONE SHOUT\nMore text.\n"
    assert len(split_chapters(one)) == 1
    three = "Intro.\n\nTHE DOOR\nA.\n\nTHE MAN HIMSELF\nB.\n\nTHE LAST NIGHT\nC.\n\nHENRY JEKYLL.\n"
    assert [p.label for p in split_chapters(three)] == [
        "Start",
        "The Door",
        "The Man Himself",
        "The Last Night",
    ]


def test_without_chapters_the_text_is_one_front_section() -> None:
    extracted = read_plain(b"Just some notes.\n\nAnd more notes.")
    assert [(s.label, s.kind) for s in extracted.sections] == [("Start", SectionKind.FRONT)]
    assert extracted.format is Format.TEXT
    assert extracted.title is None


BOOKS = {
    # file: (expected chapter sections, a label that must be among them)
    "A Christmas Carol.txt": (4, "Stave Two: The First of the Three Spirits"),
    "Frankenstein; Or, The Modern Prometheus.txt": (29, "Vol. II, Chapter IX"),
    "The Strange Case Of Dr. Jekyll And Mr. Hyde.txt": (9, "The Last Night"),
    "The Time Machine.txt": (17, "IV. Time Travelling"),
    "The Wonderful Wizard.txt": (25, "Chapter I: The Cyclone"),
}


@pytest.mark.corpus
@pytest.mark.parametrize("book", sorted(BOOKS))
def test_chapters_of_the_corpus_books(corpus: Path, book: str) -> None:
    expected, label = BOOKS[book]
    extracted = read_plain((corpus / "books" / book).read_bytes(), book)
    chapters = [s for s in extracted.sections if s.kind is SectionKind.CHAPTER]
    # Loosely: a heuristic may gain or lose one, but not wander off.
    assert abs(len(chapters) - expected) <= 1, labels(extracted)
    assert label in labels(extracted)
    # No chapter is a sliver: empty table-of-contents entries were folded away.
    assert min(s.end - s.start for s in chapters) > 100


@pytest.mark.corpus
def test_a_christmas_carol_reads_as_five_staves(corpus: Path) -> None:
    # The LaRA edition starts with Stave One's text without its heading: it is the body
    # section before "STAVE TWO.", so the book still has five parts.
    data = (corpus / "books" / "A Christmas Carol.txt").read_bytes()
    extracted = read_plain(data)
    assert len(extracted.sections) == 5
    assert [s.label.split(":")[0] for s in extracted.sections[1:]] == [
        "Stave Two",
        "Stave Three",
        "Stave Four",
        "Stave Five",
    ]


# --- Markdown ------------------------------------------------------------------------------

MARKDOWN = """Some words before any heading.

# The Title

Intro paragraph.

## Install ##

```bash
# not a heading: a shell comment
pip install thing
```

~~~
## nor this
~~~

### Use

Body.

Setext Heading
--------------

Under it.
"""


def test_markdown_headings_and_fences() -> None:
    parts = split_markdown(MARKDOWN, "Lead")
    assert [(p.label, p.kind, p.level) for p in parts] == [
        ("Lead", SectionKind.FRONT, 1),
        ("The Title", SectionKind.HEADING, 1),
        ("Install", SectionKind.HEADING, 2),
        ("Use", SectionKind.HEADING, 3),
        ("Setext Heading", SectionKind.HEADING, 2),
    ]
    assert "# not a heading" in parts[2].text


def test_read_markdown_title_and_sections() -> None:
    extracted = read_md(MARKDOWN.encode())
    assert extracted.format is Format.MARKDOWN
    assert extracted.title == "The Title"
    assert labels(extracted)[0] == "The Title"  # the text before the first heading
    install = extracted.sections[2]
    assert extracted.text[install.start : install.end].startswith("Install\n\n```bash")
    assert "##" not in extracted.text.split("```")[0]


def test_markdown_front_matter_and_rules_are_not_headings() -> None:
    text = "---\ntitle: x\n---\n\nA paragraph\nthat goes on.\n---\n\n#hashtag is no heading\n"
    assert [p.kind for p in split_markdown(text)] == [SectionKind.FRONT]


def test_markdown_without_headings() -> None:
    extracted = read_md(b"Plain words only.")
    assert extracted.title is None
    assert labels(extracted) == ["Start"]
