"""Format recognition from bytes: each format, extension mismatches, binaries, empty files."""

from __future__ import annotations

import codecs
import gzip
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.errors import EmptyFileError, IngestError, UnsupportedFormatError
from ingest.readers import reader_for
from ingest.sniff import sniff_format
from ingest.types import Format
from tests.epub_factory import build_epub, zip_members

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
EPUB = build_epub([("One", ["Text."])])


def docx() -> bytes:
    return zip_members(
        {"[Content_Types].xml": "<Types/>", "word/document.xml": "<w:document/>"},
        mimetype=False,
    )


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (PDF, "paper.pdf", Format.PDF),
        (PDF, "paper", Format.PDF),
        (b"junk before the header\n" + PDF, "paper.pdf", Format.PDF),
        (EPUB, "book.epub", Format.EPUB),
        (EPUB, "book.zip", Format.EPUB),
        (b"Just words.\n", "notes.txt", Format.TEXT),
        (b"Just words.\n", "notes", Format.TEXT),
        (b"Just words.\n", "notes.rst", Format.TEXT),
        (b"# Title\n\nWords.\n", "notes.md", Format.MARKDOWN),
        (b"Words, no headings.\n", "notes.markdown", Format.MARKDOWN),
        (b"# Title\n\nWords.\n\n## More\n", "README", Format.MARKDOWN),
        (b"# Title\n\nWords.\n\n## More\n", "notes.txt", Format.TEXT),
        (b"# a comment\nkey = 1\n# another\n", "settings.conf", Format.TEXT),
        (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "page.html", Format.HTML),
        (b"<!doctype html><p>Hi</p>", "page.txt", Format.HTML),
        (b"\xef\xbb\xbf  <!-- saved --> <HTML><body>Hi</body></HTML>", "page", Format.HTML),
        (
            b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"/>',
            "c.xhtml",
            Format.HTML,
        ),
        (b"<div>fragment</div>", "fragment", Format.HTML),
        (b"<custom-tag>x</custom-tag>", "page.htm", Format.HTML),
        (
            b'<p align="center"><img src="logo.png"></p>\n\n# Project\n',
            "README.md",
            Format.MARKDOWN,
        ),
        (b"1 < 2 and 3 > 2\n", "maths.txt", Format.TEXT),
    ],
)
def test_formats_from_bytes(data: bytes, name: str, expected: Format) -> None:
    assert sniff_format(data, name) is expected


def test_utf16_text_is_text_despite_its_nul_bytes() -> None:
    assert sniff_format("Hello, world.\n".encode("utf-16"), "hello.txt") is Format.TEXT
    assert sniff_format("Hello, world.\n".encode("utf-16-le"), "hello.txt") is Format.TEXT
    html = "<!DOCTYPE html><title>t</title>".encode("utf-16")
    assert sniff_format(html, "page.html") is Format.HTML


def test_legacy_encoded_text_is_text() -> None:
    assert sniff_format(b"caf\xe9 na\xefve \x93quoted\x94", "notes.txt") is Format.TEXT


def test_empty_file() -> None:
    with pytest.raises(EmptyFileError, match=r"^notes\.txt is empty$"):
        sniff_format(b"", "notes.txt")


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (gzip.compress(b"hello"), "a gzip-compressed file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "an old Microsoft Office document"),
        (b"{\\rtf1\\ansi Hello}", "an RTF document"),
        (b"\x7fELF\x02\x01\x01" + bytes(20), "a program"),
        (bytes(range(256)) * 4, "binary data"),
        (b"BM\x00\x00\x00\x00\x36\x00", "a BMP image"),
    ],
)
def test_binaries_are_refused_saying_what_they_look_like(data: bytes, looks_like: str) -> None:
    with pytest.raises(UnsupportedFormatError) as refused:
        sniff_format(data, "mystery.bin")
    message = str(refused.value)
    assert message.startswith("mystery.bin cannot be read")
    assert looks_like in message
    assert "longread reads PDF, EPUB, plain text, Markdown and HTML files" in message


def test_short_magic_numbers_do_not_refuse_text() -> None:
    assert sniff_format(b"BMW and MZ are letters too.\n", "cars.txt") is Format.TEXT
    assert sniff_format(b"ID3 tags explained.\n", "tags.txt") is Format.TEXT


def test_office_documents_and_plain_zips_are_named() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"a Word document \(DOCX\)"):
        sniff_format(docx(), "report.docx")
    plain_zip = zip_members({"a.txt": "hello"}, mimetype=False)
    with pytest.raises(UnsupportedFormatError, match="a ZIP archive that is not an EPUB"):
        sniff_format(plain_zip, "bundle.zip")


def test_a_truncated_zip() -> None:
    cut = zip_members({"a.txt": "hello " * 100}, mimetype=False)[:40]
    # Named .epub, it goes to the EPUB reader, which explains the damage...
    assert sniff_format(cut, "book.epub") is Format.EPUB
    # ...otherwise it is refused for what it is.
    with pytest.raises(UnsupportedFormatError, match="a damaged ZIP archive"):
        sniff_format(cut, "bundle.zip")


def test_epub_recognized_by_container_without_mimetype() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/container.xml", "<container/>")
    assert sniff_format(buffer.getvalue(), "book") is Format.EPUB


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (
            b"Just my notes.\n",
            "notes.pdf",
            "notes.pdf is not a PDF: its bytes look like plain text",
        ),
        (
            b"<html><body>x</body></html>",
            "page.pdf",
            "page.pdf is not a PDF: its bytes look like HTML",
        ),
        (EPUB, "book.pdf", "book.pdf is not a PDF: its bytes look like an EPUB book"),
        (PDF, "book.epub", "book.epub is not an EPUB: its bytes look like a PDF"),
        (b"# Notes\n", "book.epub", "book.epub is not an EPUB: its bytes look like plain text"),
    ],
)
def test_binary_extension_contradicted_by_bytes(data: bytes, name: str, message: str) -> None:
    with pytest.raises(UnsupportedFormatError) as refused:
        sniff_format(data, name)
    assert str(refused.value).startswith(message)
    assert "rename it to end in" in str(refused.value)


@given(st.binary(min_size=1, max_size=3000), st.sampled_from(["f", "f.txt", "f.md", "f.html"]))
def test_sniffing_arbitrary_bytes_gives_a_format_or_an_ingest_error(data: bytes, name: str) -> None:
    try:
        assert isinstance(sniff_format(data, name), Format)
    except IngestError as error:
        assert str(error).startswith(name)


def test_every_format_has_a_reader() -> None:
    for format in (Format.TEXT, Format.MARKDOWN, Format.HTML, Format.EPUB):
        assert callable(reader_for(format))


def test_pdf_reader_is_imported_only_when_asked_for() -> None:
    # pypdf is slow to import; `longread --help` must not pay for it.
    script = (
        "import sys, ingest.readers, ingest.sniff, ingest.text, ingest.html, ingest.epub;"
        " sys.exit('pypdf' in sys.modules or 'ingest.pdf' in sys.modules)"
    )
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", script], cwd=repo, check=False).returncode == 0


def test_bom_only_file_is_text() -> None:
    assert sniff_format(codecs.BOM_UTF8, "blank.txt") is Format.TEXT
