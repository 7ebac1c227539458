"""EPUB: spine order, table-of-contents titles (EPUB 2 and 3), DRM, damaged archives."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Generator

import pytest

from ingest.epub import read_epub
from ingest.errors import DamagedFileError, EmptyFileError, IngestError
from ingest.readers import reader_for
from ingest.sniff import sniff_format
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind
from tests.epub_factory import build_epub, zip_members

CHAPTERS = [
    ("The Beginning", ["It was a dark night.", "Rain & wind."]),
    ("The Middle", ["Things happened."]),
    ("The End", ["It was over."]),
]


def run(
    reader: Generator[ReadProgress, None, ExtractedText],
) -> tuple[ExtractedText, list[ReadProgress]]:
    progress: list[ReadProgress] = []
    try:
        while True:
            progress.append(next(reader))
    except StopIteration as finished:
        return finished.value, progress


def read(data: bytes, name: str = "book.epub") -> ExtractedText:
    return run(read_epub(data, name, ReadOptions()))[0]


def labels(extracted: ExtractedText) -> list[str]:
    return [section.label for section in extracted.sections]


@pytest.mark.parametrize("version", [2, 3])
def test_chapters_in_spine_order_with_toc_titles(version: int) -> None:
    data = build_epub(
        CHAPTERS,
        version=version,
        title="My Book",
        spine_order=[1, 0, 2],
        toc_titles=["1. Beginning", "2. Middle", "3. End"],
    )
    extracted, progress = run(read_epub(data, "book.epub", ReadOptions()))
    assert extracted.format is Format.EPUB
    assert extracted.title == "My Book"
    assert labels(extracted) == ["2. Middle", "1. Beginning", "3. End"]
    assert {s.kind for s in extracted.sections} == {SectionKind.CHAPTER}
    assert extracted.text.startswith("The Middle\n\nThings happened.\n\nThe Beginning")
    beginning = extracted.sections[1]
    assert extracted.text[beginning.start : beginning.end] == (
        "The Beginning\n\nIt was a dark night.\n\nRain & wind."
    )
    assert progress == [ReadProgress(n, 3) for n in (1, 2, 3)]


@pytest.mark.parametrize("version", [2, 3])
def test_a_chapter_missing_from_the_toc_takes_its_heading(version: int) -> None:
    data = build_epub(CHAPTERS, version=version, untitled={1})
    assert labels(read(data)) == ["The Beginning", "The Middle", "The End"]


def test_a_chapter_without_toc_entry_or_heading_is_numbered() -> None:
    data = build_epub(CHAPTERS, untitled={0, 2}, headings=False, cover=True)
    extracted = read(data)
    # Untitled documents before the first titled one are front matter, under the book's title.
    assert labels(extracted) == ["A Test Book", "The Middle", "Section 3"]
    assert [s.kind for s in extracted.sections] == [
        SectionKind.FRONT,
        SectionKind.CHAPTER,
        SectionKind.CHAPTER,
    ]


def test_untitled_front_matter_without_a_book_title_is_start() -> None:
    data = build_epub(CHAPTERS, title="", untitled={0}, headings=False)
    first = read(data).sections[0]
    assert (first.label, first.kind) == ("Start", SectionKind.FRONT)


def test_cover_page_without_text_is_skipped() -> None:
    extracted, progress = run(read_epub(build_epub(CHAPTERS, cover=True), "b.epub", ReadOptions()))
    assert labels(extracted) == ["The Beginning", "The Middle", "The End"]
    assert "Cover" not in extracted.text
    assert progress[-1] == ReadProgress(4, 4)


@pytest.mark.parametrize("version", [2, 3])
def test_url_encoded_hrefs_and_fragments(version: int) -> None:
    data = build_epub(CHAPTERS, version=version, file_stem="my chapter", toc_titles=["A", "B", "C"])
    assert labels(read(data)) == ["A", "B", "C"]


def test_reads_only_the_members_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    original = zipfile.ZipFile.read

    def recording(
        self: zipfile.ZipFile, name: str | zipfile.ZipInfo, pwd: bytes | None = None
    ) -> bytes:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", recording)
    read(build_epub(CHAPTERS, cover=True, obfuscated_font=True))
    assert not [name for name in opened if name.endswith((".jpg", ".css", ".otf"))]
    assert "OEBPS/nav.xhtml" in opened


def test_drm_is_refused() -> None:
    with pytest.raises(IngestError, match=r"^locked\.epub is DRM-protected"):
        read(build_epub(CHAPTERS, drm=True), "locked.epub")


def test_font_obfuscation_is_not_drm() -> None:
    assert labels(read(build_epub(CHAPTERS, obfuscated_font=True))) == [t for t, _ in CHAPTERS]


def test_broken_zip_is_damaged() -> None:
    data = build_epub(CHAPTERS)
    with pytest.raises(DamagedFileError, match=r"^cut\.epub is damaged: it is not a readable ZIP"):
        read(data[: len(data) // 2], "cut.epub")


def test_missing_container_is_damaged() -> None:
    data = zip_members({"OEBPS/content.opf": "<package/>"})
    with pytest.raises(DamagedFileError, match=r"META-INF/container\.xml is missing"):
        read(data)


def test_missing_spine_document_is_damaged() -> None:
    data = build_epub(CHAPTERS)
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members: dict[str, str | bytes] = {
            info.filename: source.read(info)
            for info in source.infolist()
            if info.filename not in ("mimetype", "OEBPS/text/chapter-02.xhtml")
        }
    with pytest.raises(DamagedFileError, match=r"text/chapter-02\.xhtml.*is missing"):
        read(zip_members(members))


def test_invalid_package_xml_is_damaged() -> None:
    data = zip_members(
        {
            "META-INF/container.xml": (
                '<container><rootfiles><rootfile full-path="content.opf"/></rootfiles></container>'
            ),
            "content.opf": "<package><manifest>",
        }
    )
    with pytest.raises(DamagedFileError, match=r"content\.opf is not valid XML"):
        read(data)


def test_a_book_of_images_has_no_text() -> None:
    data = build_epub([("Plate", [])], headings=False, untitled={0})
    with pytest.raises(EmptyFileError, match="has no text"):
        read(data)


def test_sniffed_and_dispatched_like_the_pipeline_does() -> None:
    data = build_epub(CHAPTERS, version=2)
    reader = reader_for(sniff_format(data, "book.epub"))
    extracted, _ = run(reader(data, "book.epub", ReadOptions()))
    assert len(extracted.sections) == 3
