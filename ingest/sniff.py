"""Recognizing a file's format from its bytes, with its name's extension as a hint.

PDF and EPUB are recognized by their bytes alone ("%PDF-" near the start; a ZIP whose
`mimetype` says application/epub+zip or that holds META-INF/container.xml). Of a ZIP only
the central directory and the first 40 bytes of `mimetype` are read, through
`ingest.archive`, so a decompression bomb costs nothing to recognize. Other binaries
(images, archives, office documents, executables; NUL or control bytes that are not
UTF-16/32 text) are refused, saying what they look like. Text is HTML when it starts (past a
byte-order mark, whitespace, comments and an XML declaration) like an HTML page, Markdown when
its extension says so or, with no extension claiming otherwise, when it has ATX headings, and
plain text otherwise. A ".pdf" or ".epub" name on bytes that are something else is an error
that says so; text-like extensions (.txt, .md, .html, none...) defer to the bytes.

It does not validate a format beyond its first bytes: the readers report damaged files.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from ingest.archive import ZipArchive
from ingest.errors import EmptyFileError, IngestError, UnsupportedFormatError
from ingest.text import decode_text, markdown_headings, text_codec
from ingest.types import Format

READABLE = "PDF, EPUB, plain text, Markdown and HTML files"

_PDF_MARK = b"%PDF-"
_PDF_WINDOW = 1024
_TEXT_WINDOW = 64 * 1024
_ZIP_MARKS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_EPUB_MIMETYPE = b"application/epub+zip"
# All of `mimetype` that is read: its value, with room for the whitespace some tools add.
_MIMETYPE_HEAD = 2 * len(_EPUB_MIMETYPE)

# What other files look like, by the bytes they start with; the first match wins.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"AT&TFORM", "a DjVu document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"(\xb5/\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf'\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office document (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"OggS", "an Ogg audio or video file"),
    (b"fLaC", "a FLAC audio file"),
    (b"GGUF", "a GGUF model file"),
)
# Magic numbers short enough to begin a line of text ("BMW", "MZ-80", "ID3 tags"): trusted
# only when the bytes after them are not text.
_WEAK_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BM", "a BMP image"),
    (b"BZh", "a bzip2-compressed file"),
    (b"MZ", "a Windows program"),
    (b"ID3", "an MP3 audio file"),
)
# Control bytes text does not use (all but tab, newline, form feed, carriage return, escape).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0c\r\x1b")
_BINARY_CONTROL_SHARE = 0.05
_EXTENSION_CLAIMS = {".pdf": Format.PDF, ".epub": Format.EPUB}
_DESCRIPTIONS = {
    Format.PDF: "a PDF",
    Format.EPUB: "an EPUB book",
    Format.HTML: "HTML",
    Format.MARKDOWN: "Markdown text",
    Format.TEXT: "plain text",
}
_MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
_HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml", ".xht", ".shtml"})
# No extension at all: only then may ATX headings alone make text Markdown (a ".py" or
# ".conf" file's "# comments" must not).
_UNCLAIMED_EXTENSIONS = frozenset({""})

_LEADING_NOISE = re.compile(r"\A(?:\s+|<!--.*?-->|<\?xml.*?\?>)*", re.DOTALL)
_HTML_START = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"<(?:head|body|title|meta|link|p|div|span|h[1-6]|table|ul|ol|section|article|header"
    r"|nav|main|br|a|b|i|em|strong|img|script|style)[\s>/]",
    re.IGNORECASE,
)


def sniff_format(data: bytes, name: str) -> Format:
    """The format of a file with bytes `data` and file name `name` (used in messages).

    Raises EmptyFileError for no bytes, UnsupportedFormatError for bytes longread does not
    read or that contradict a ".pdf"/".epub" extension.
    """
    if not data:
        raise EmptyFileError(f"{name} is empty")
    extension = PurePath(name).suffix.lower()
    found = _binary_format(data, name, extension)
    if found is None:
        found = _text_format(data, extension)
    claimed = _EXTENSION_CLAIMS.get(extension)
    if claimed is not None and claimed is not found:
        raise _mismatch(name, claimed, found)
    return found


def _binary_format(data: bytes, name: str, extension: str) -> Format | None:
    """PDF or EPUB; None for text; raises for other binaries."""
    if _PDF_MARK in data[:_PDF_WINDOW]:
        return Format.PDF
    if data.startswith(_ZIP_MARKS):
        archive = _open_zip(data, name)
        is_epub = _is_epub(data, archive)
        names = None if archive is None else archive.names()
        if archive is not None:
            archive.close()
        # A broken ZIP named .epub goes to the EPUB reader, which says what is broken.
        if is_epub or (archive is None and extension == ".epub"):
            return Format.EPUB
        raise _unsupported(name, _zip_description(names))
    for magic, description in _MAGIC:
        if data.startswith(magic):
            raise _unsupported(name, description)
    if text_codec(data) is not None:
        return None  # UTF-16/32 text: its NULs are half its characters
    binary = _looks_binary(data)
    for magic, description in _WEAK_MAGIC:
        if data.startswith(magic) and binary:
            raise _unsupported(name, description)
    if binary:
        raise _unsupported(name, "binary data, not text")
    return None


def _looks_binary(data: bytes) -> bool:
    """NUL bytes, or more control bytes than any text has."""
    sample = data[:_TEXT_WINDOW]
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > _BINARY_CONTROL_SHARE * len(sample)


def _is_epub(data: bytes, archive: ZipArchive | None) -> bool:
    # The mimetype member is stored first and uncompressed, so its bytes sit at offset 30.
    if data[30:38] == b"mimetype" and data[38:58] == _EPUB_MIMETYPE:
        return True
    if archive is None:
        return False
    if archive.member("META-INF/container.xml") is not None:
        return True
    info = archive.member("mimetype")
    if info is None or info.filename != "mimetype":
        return False
    try:
        # Only its first bytes: a `mimetype` that inflates to gigabytes is no EPUB.
        return archive.head(info, _MIMETYPE_HEAD).strip() == _EPUB_MIMETYPE
    except IngestError:
        return False


def _open_zip(data: bytes, name: str) -> ZipArchive | None:
    """The ZIP archive in `data`; None when it cannot be read."""
    try:
        return ZipArchive(data, name)
    except IngestError:
        return None


def _zip_description(names: set[str] | None) -> str:
    if names is None:
        return "a damaged ZIP archive"
    if "word/document.xml" in names:
        return "a Word document (DOCX)"
    if any(n.startswith("xl/") for n in names):
        return "an Excel workbook (XLSX)"
    if any(n.startswith("ppt/") for n in names):
        return "a PowerPoint presentation (PPTX)"
    if "content.xml" in names:
        return "an OpenDocument file (ODT/ODS/ODP)"
    return "a ZIP archive that is not an EPUB"


def _text_format(data: bytes, extension: str) -> Format:
    text = decode_text(data[:_TEXT_WINDOW])
    start = _LEADING_NOISE.sub("", text.lstrip("\ufeff"), count=1)
    if _HTML_START.match(start):
        return Format.HTML
    if extension in _MARKDOWN_EXTENSIONS:
        # Markdown may open with raw HTML (a centred logo): only a whole page outranks it.
        return Format.MARKDOWN
    if _HTML_TAG.match(start) or (extension in _HTML_EXTENSIONS and start.startswith("<")):
        return Format.HTML
    if extension in _UNCLAIMED_EXTENSIONS and _has_atx_headings(text):
        return Format.MARKDOWN
    return Format.TEXT


def _has_atx_headings(text: str) -> bool:
    """Markdown without saying so: two ATX headings, or one opening the text."""
    lines = text.splitlines()
    atx = [h for h in markdown_headings(lines) if lines[h.line].lstrip().startswith("#")]
    first = next((index for index, line in enumerate(lines) if line.strip()), None)
    return len(atx) >= 2 or (bool(atx) and atx[0].line == first)


def _unsupported(name: str, description: str) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        f"{name} cannot be read: its bytes look like {description}. longread reads {READABLE}."
    )


_SUFFIXES = {
    Format.PDF: ".pdf",
    Format.EPUB: ".epub",
    Format.HTML: ".html",
    Format.MARKDOWN: ".md",
    Format.TEXT: ".txt",
}


def _mismatch(name: str, claimed: Format, found: Format) -> UnsupportedFormatError:
    article = "an" if claimed is Format.EPUB else "a"
    return UnsupportedFormatError(
        f"{name} is not {article} {claimed.value.upper()}: its bytes look like"
        f" {_DESCRIPTIONS[found]}. If that is what it is, rename it to end in"
        f" {_SUFFIXES[found]}; if not, the file is damaged or was saved wrongly."
    )
