"""Which reader reads which format.

Every reader is a generator: `extracted = yield from reader(data, name, options)` relays its
`ReadProgress` and returns its `ExtractedText`. The PDF reader is imported only when a PDF is
read, because it brings in pypdf; the others use the standard library only.

It does not recognize formats (`ingest.sniff` does) or handle their errors.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeAlias

from ingest.epub import read_epub
from ingest.html import read_html
from ingest.text import read_markdown, read_text
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress

Reader: TypeAlias = Callable[
    [bytes, str, ReadOptions], Generator[ReadProgress, None, ExtractedText]
]

_STANDARD_LIBRARY_READERS: dict[Format, Reader] = {
    Format.EPUB: read_epub,
    Format.HTML: read_html,
    Format.MARKDOWN: read_markdown,
    Format.TEXT: read_text,
}


def reader_for(format: Format) -> Reader:
    """The reader for files of `format`."""
    if format is Format.PDF:
        from ingest.pdf import read_pdf  # lazy: pypdf is slow to import

        return read_pdf
    return _STANDARD_LIBRARY_READERS[format]
