"""EPUB: spine order, table-of-contents titles (EPUB 2 and 3), DRM, damaged archives, and the
limits that refuse decompression bombs."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import pytest

from ingest.archive import ArchiveLimits, ZipArchive
from ingest.epub import read_epub
from ingest.errors import (
    DamagedFileError,
    EmptyFileError,
    IngestError,
    TooLargeError,
    UnsupportedFormatError,
)
from ingest.readers import reader_for
from ingest.sniff import sniff_format
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind
from tests.epub_factory import bomb_zip, build_epub, zip_members

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
    book = build_epub(CHAPTERS, cover=True, obfuscated_font=True)
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def recording(
        self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: Any, **kwargs: Any
    ) -> IO[bytes]:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording)
    read(book)
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


def test_a_document_listed_twice_in_the_spine_is_read_once() -> None:
    data = build_epub(CHAPTERS, spine_order=[0, 1, 0, 2, 1])
    assert labels(read(data)) == ["The Beginning", "The Middle", "The End"]


# --------------------------------------------------------------------------------------------
# The archive's limits, made small so that small archives pass them

SMALL = ArchiveLimits(
    member_bytes=1_000_000, total_bytes=1_500_000, ratio=50, ratio_free_bytes=100_000
)


def read_member(data: bytes, path: str, limits: ArchiveLimits = SMALL) -> bytes:
    with ZipArchive(data, "book.epub", limits) as archive:
        info = archive.member(path)
        assert info is not None
        return archive.read(info)


def test_a_member_inflating_past_the_member_limit_is_a_bomb() -> None:
    data = bomb_zip("OEBPS/chapter.xhtml", 5_000_000)
    loose = ArchiveLimits(member_bytes=1_000_000, total_bytes=10**9, ratio=10**6)
    with pytest.raises(
        TooLargeError,
        match=r"^book\.epub looks like a decompression bomb: its member OEBPS/chapter\.xhtml"
        r" inflates past 976 KB; longread refuses it$",
    ):
        read_member(data, "OEBPS/chapter.xhtml", loose)


def test_a_member_inflating_far_past_its_compressed_size_is_a_bomb() -> None:
    data = bomb_zip("OEBPS/chapter.xhtml", 500_000)
    with pytest.raises(TooLargeError, match=r"over 50 times its compressed size"):
        read_member(data, "OEBPS/chapter.xhtml")
    # Below ratio_free_bytes any ratio is allowed: small members of repeated markup are real.
    assert len(read_member(bomb_zip("small.xhtml", 50_000), "small.xhtml")) >= 50_000


def test_members_inflating_past_the_total_limit_together_are_a_bomb() -> None:
    text = random.Random(0).randbytes(768_000)  # does not deflate: no ratio to object to
    data = zip_members({"a.xhtml": text, "b.xhtml": text}, mimetype=False)
    with ZipArchive(data, "book.epub", SMALL) as archive:
        first, second = archive.member("a.xhtml"), archive.member("b.xhtml")
        assert first is not None and second is not None
        assert archive.read(first) == text
        with pytest.raises(TooLargeError, match=r"its members inflate past 1 MB in all"):
            archive.read(second)


def test_a_stored_member_past_the_member_limit_is_too_large() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("big.xhtml", bytes(1_200_000), compress_type=zipfile.ZIP_STORED)
    with pytest.raises(TooLargeError, match=r"^book\.epub is too large to read: its member big"):
        read_member(buffer.getvalue(), "big.xhtml")


def test_the_declared_size_is_not_trusted() -> None:
    # Declared far larger than it is: the limits count what actually inflates.
    data = bomb_zip("chapter.xhtml", 5_000_000, declared_size=2_000_000_000)
    with pytest.raises(TooLargeError, match="decompression bomb"):
        read_member(data, "chapter.xhtml")
    # Declared smaller: zipfile stops there, and the checksum gives the lie away.
    data = bomb_zip("chapter.xhtml", 5_000_000, declared_size=1000)
    with pytest.raises(DamagedFileError, match=r"^book\.epub is damaged: chapter\.xhtml"):
        read_member(data, "chapter.xhtml")


def test_a_member_compressed_with_a_method_epub_forbids_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chapter.xhtml", b"<p>text</p>", compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(UnsupportedFormatError, match=r"compressed with bzip2.*Re-save the book"):
        read_member(buffer.getvalue(), "chapter.xhtml")


@pytest.mark.corpus
def test_the_default_limits_read_a_long_real_book(corpus: Path) -> None:
    path = corpus / "books" / "epub" / "The Time Machine.epub"
    assert len(read(path.read_bytes(), path.name).sections) >= 16
