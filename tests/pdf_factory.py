"""Real PDFs with known text, built with pypdf alone, for the reader, pipeline and CLI tests.

`make_pdf(["page one", "page two"])` gives the bytes of a two-page PDF whose pages carry
exactly that text (one line of Helvetica per line of the string), optionally with book page
labels (roman front matter, then arabic), a /Title and encryption. `make_image_pdf` gives
pages that hold only a picture, like a scan; `truncated` cuts a PDF short like an
interrupted download. `write_pdf` puts any of them on disk.

It does not render or measure text: lines are placed at fixed offsets, which is all a text
extractor needs. Characters outside Windows-1252 (the font's encoding) cannot be written.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pypdf import PageObject, PdfWriter
from pypdf.constants import PageLabelStyle
from pypdf.generic import (
    ContentStream,
    DecodedStreamObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
)

Algorithm = Literal["AES-256", "AES-256-R5", "AES-128", "RC4-128", "RC4-40"]

PAGE_WIDTH = 612
PAGE_HEIGHT = 792
_FONT_SIZE = 12
_LEADING = 14
_TOP = 720
_MARGIN = 72


def make_pdf(
    pages: Sequence[str],
    *,
    front_matter: int = 0,
    title: str | None = None,
    password: str | None = None,
    owner_password: str | None = None,
    algorithm: Algorithm = "AES-256",
    with_image: bool = False,
) -> bytes:
    """A PDF with one page per string in `pages`; each "\\n" in a string starts a new line.

    `front_matter`: that many leading pages are labelled i, ii, iii..., and the rest 1, 2, 3...
    as in a printed book (see `book_labels`). `password` encrypts the file with that user
    password ("" gives an encrypted file that opens without one); `owner_password` defaults
    to a different, fixed one so the two are never confused. `with_image` puts a picture
    behind each page's text, like a scan that has been through OCR.
    """
    writer = PdfWriter()
    for number, text in enumerate(pages):
        page = writer.add_blank_page(PAGE_WIDTH, PAGE_HEIGHT)
        image = _grey_image(writer, number) if with_image else None
        _set_resources(page, fonts=True, image=image)
        ops = _image_ops() if with_image else ""
        _set_content(writer, page, ops + _text_ops(text.split("\n"), _MARGIN, _TOP))
    if front_matter:
        writer.set_page_label(0, front_matter - 1, PageLabelStyle.LOWERCASE_ROMAN, start=1)
    if front_matter < len(pages):
        writer.set_page_label(front_matter, len(pages) - 1, PageLabelStyle.DECIMAL, start=1)
    if title is not None:
        writer.add_metadata({"/Title": title})
    if password is not None:
        writer.encrypt(password, owner_password or "owner-secret", algorithm=algorithm)
    return _to_bytes(writer)


def make_image_pdf(page_count: int = 1, *, off_page_text: str | None = None) -> bytes:
    """A PDF whose pages each hold one grey picture and no text, like a scanned document.

    `off_page_text` also writes that text outside the visible page on every page, the way
    ImageMagick leaves a layer name ("Background") in the PDFs it makes from images.
    """
    writer = PdfWriter()
    for number in range(page_count):
        page = writer.add_blank_page(PAGE_WIDTH, PAGE_HEIGHT)
        _set_resources(page, fonts=off_page_text is not None, image=_grey_image(writer, number))
        ops = _image_ops()
        if off_page_text is not None:
            ops = _text_ops([off_page_text], _MARGIN, PAGE_HEIGHT + 40) + ops
        _set_content(writer, page, ops)
    return _to_bytes(writer)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` fraction of `data` (at least one byte), like a download cut short."""
    return data[: max(1, int(len(data) * keep))]


def write_pdf(path: Path, data: bytes) -> Path:
    """Write `data` to `path` (creating its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def book_labels(page_count: int, front_matter: int = 0) -> list[str]:
    """The labels `make_pdf(..., front_matter=n)` gives its pages: i, ii, ..., then 1, 2, ..."""
    return [_roman(n + 1) for n in range(front_matter)] + [
        str(n + 1) for n in range(page_count - front_matter)
    ]


def _roman(number: int) -> str:
    numerals = [(1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc")]
    numerals += [(50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")]
    out = ""
    for value, letters in numerals:
        count, number = divmod(number, value)
        out += letters * count
    return out


def _text_ops(lines: Sequence[str], x: float, top: float) -> str:
    ops = []
    for index, line in enumerate(lines):
        y = top - index * _LEADING
        ops.append(f"BT /F1 {_FONT_SIZE} Tf {x} {y} Td ({_pdf_string(line)}) Tj ET\n")
    return "".join(ops)


def _image_ops() -> str:
    # The picture fills the page inside the margins.
    width, height = PAGE_WIDTH - 2 * _MARGIN, PAGE_HEIGHT - 2 * _MARGIN
    return f"q {width} 0 0 {height} {_MARGIN} {_MARGIN} cm /Im1 Do Q\n"


def _pdf_string(line: str) -> str:
    # A literal string's delimiters and escape character must themselves be escaped.
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _set_resources(page: PageObject, *, fonts: bool, image: IndirectObject | None = None) -> None:
    resources = DictionaryObject()
    if fonts:
        helvetica = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                # WinAnsi, so that curly quotes, dashes and accented letters can be written.
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
        resources[NameObject("/Font")] = DictionaryObject({NameObject("/F1"): helvetica})
    if image is not None:
        resources[NameObject("/XObject")] = DictionaryObject({NameObject("/Im1"): image})
    page[NameObject("/Resources")] = resources


def _set_content(writer: PdfWriter, page: PageObject, ops: str) -> None:
    stream = ContentStream(None, writer)
    stream.set_data(ops.encode("cp1252"))
    page.replace_contents(stream)


def _grey_image(writer: PdfWriter, seed: int) -> IndirectObject:
    side = 16
    image = DecodedStreamObject()
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(side),
            NameObject("/Height"): NumberObject(side),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    image.set_data(bytes((seed * 31 + i * 7) % 256 for i in range(side * side)))
    # A stream must be an indirect object; pypdf has no public call for adding one.
    return writer._add_object(image)


def _to_bytes(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
