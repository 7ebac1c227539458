"""Reading HTML files, and the HTML-to-text extraction the EPUB reader shares.

`parse_html` walks markup with the standard library's `html.parser`: the text of the page
without scripts, styles, templates, noscript and the head (bar its <title>); block elements
(paragraphs, list items, table rows, line breaks, sections...) become paragraph breaks; each
h1-h6 starts a part labelled with the heading's text and level. Entities are decoded.
`decode_markup` decodes a page's bytes using its byte-order mark, its XML declaration or
<meta charset>, else UTF-8 with the cp1252 fallback of `ingest.text`. `TolerantHtmlParser`,
which the EPUB reader's table-of-contents parser shares, never raises on hostile markup and
parses in linear time; CDATA sections are text, other marked sections are skipped.

It does not apply CSS (text hidden by a stylesheet is read), run scripts, keep links or
images (alt text included), or lay out tables: cells are separated by spaces, rows by breaks.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

from ingest.errors import EmptyFileError
from ingest.normalize import TextBuilder
from ingest.text import TextPart, add_parts, decode_text, lead_label
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind

# Content nobody reads as the document: code, styling, fallbacks, metadata.
_SKIPPED = frozenset({"script", "style", "template", "noscript", "head"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "center",
        "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure",
        "footer", "form", "header", "hr", "html", "legend", "li", "main", "nav", "ol",
        "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_PARAGRAPH_BREAK = "\n\n"
_WHITESPACE = re.compile(r"\s+")
_MAX_LABEL_LENGTH = 120

_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


@dataclass(frozen=True)
class ParsedHtml:
    """A page's title and its text in parts: the text before the first heading (a FRONT
    part with an empty label, when there is any) and one HEADING part per heading."""

    title: str | None
    parts: tuple[TextPart, ...]

    @property
    def first_heading(self) -> str | None:
        return next((p.label for p in self.parts if p.kind is SectionKind.HEADING), None)

    @property
    def text(self) -> str:
        """All the parts' text, in order, as one raw text."""
        return _PARAGRAPH_BREAK.join(part.text for part in self.parts)


def decode_markup(data: bytes) -> str:
    """Decode HTML or XHTML bytes, honouring the encoding the page declares."""
    head = data[:2048]
    declared = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    return decode_text(data, declared[1].decode("ascii") if declared else None)


def parse_html(markup: str) -> ParsedHtml:
    """Extract the title and the text, split at headings, of an HTML or XHTML page."""
    extractor = _Extractor()
    extractor.feed(markup)
    extractor.close()
    parts = tuple(part.frozen() for part in extractor.parts if part.has_text())
    title = _collapse(extractor.title_text) or next(
        (p.label for p in parts if p.kind is SectionKind.HEADING and p.level == 1), None
    )
    return ParsedHtml(title=title or None, parts=parts)


def read_html(
    data: bytes, name: str, options: ReadOptions
) -> Generator[ReadProgress, None, ExtractedText]:
    """Read an HTML file: one section per heading, the text before them as front matter."""
    parsed = parse_html(decode_markup(data))
    builder = TextBuilder()
    add_parts(builder, [_labelled_lead(part, parsed.title) for part in parsed.parts])
    if not builder.has_text:
        raise EmptyFileError(f"{name} has no text to read")
    yield ReadProgress(1, 1)
    return builder.build(Format.HTML, parsed.title)


class TolerantHtmlParser(HTMLParser):
    """html.parser's HTMLParser made safe for hostile pages: no exceptions, linear time.

    The standard library's parser (as of Python 3.11) asserts on a marked section it does
    not know (`<![foo[ x ]]>`); this one reads marked sections as HTML5 does. Its
    end-of-input pass retries each "<" that never closes with a search to the end of the
    input, which takes minutes on some 100 KB pages; this one keeps that pass linear.
    Entities are always converted (convert_charrefs).
    """

    def __init__(self) -> None:
        # Where a search for a comment's or CDATA section's end is known to fail, and in
        # which input: a failed search fails from any later start too.
        self._searched: str | None = None
        self._unclosed: dict[str, int] = {}
        super().__init__(convert_charrefs=True)

    def parse_html_declaration(self, i: int) -> int:
        # Marked sections are taken here, before the standard library sees them, so that
        # every Python version reads them alike.
        if self.rawdata.startswith("<![", i):
            return self._marked_section(i)
        return super().parse_html_declaration(i)

    def _marked_section(self, i: int) -> int:
        """`<![CDATA[text]]>` is text (XHTML); any other `<![` is a comment up to ">"."""
        rawdata = self.rawdata
        cdata = rawdata.startswith("<![CDATA[", i)
        kind, start, close = ("cdata", i + 9, "]]>") if cdata else (">", i + 3, ">")
        end = -1 if self._known_unclosed(kind, i) else rawdata.find(close, start)
        if end < 0:
            self._note_unclosed(kind, i)
            return -1
        if cdata:
            self.handle_data(rawdata[start:end])
        return end + len(close)

    def parse_comment(self, i: int, report: bool = True) -> int:
        if self._known_unclosed("comment", i):
            return -1
        end = super().parse_comment(i, report)
        if end < 0:
            self._note_unclosed("comment", i)
        return end

    def close(self) -> None:
        # At the end of input the standard library handles each construct that never
        # closes as text up to the next ">" or "<", searching to the end of the input each
        # time. Past the last ">" nothing can close (every tag, comment or declaration
        # ends in one), so that tail is text, read at once; before it, the searches that
        # can still fail (comments, CDATA) are remembered above.
        rawdata = self.rawdata
        head_end = rawdata.rfind(">") + 1
        self.rawdata, tail = rawdata[:head_end], rawdata[head_end:]
        super().close()
        if tail and not self.cdata_elem:
            # Inside an unclosed <script> or <style> the standard library drops the rest.
            self.handle_data(unescape(tail))

    def _known_unclosed(self, kind: str, i: int) -> bool:
        if self._searched is not self.rawdata:
            self._searched, self._unclosed = self.rawdata, {}
        return i >= self._unclosed.get(kind, len(self.rawdata) + 1)

    def _note_unclosed(self, kind: str, i: int) -> None:
        self._unclosed[kind] = min(i, self._unclosed.get(kind, i))


def _labelled_lead(part: TextPart, title: str | None) -> TextPart:
    if part.kind is SectionKind.HEADING:
        return part
    return TextPart(lead_label(title), part.kind, part.text, part.level)


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


@dataclass
class _OpenPart:
    """A part being collected: heading text goes both into its label and its text."""

    level: int = 0  # 0: the text before any heading
    label: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def has_text(self) -> bool:
        return any(chunk.strip() for chunk in self.text)

    def frozen(self) -> TextPart:
        label = _collapse("".join(self.label))[:_MAX_LABEL_LENGTH].strip()
        if self.level == 0:
            return TextPart("", SectionKind.FRONT, "".join(self.text))
        return TextPart(label, SectionKind.HEADING, "".join(self.text), self.level)


class _Extractor(TolerantHtmlParser):
    """Collects parts as the parser walks the page; see `parse_html`."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[_OpenPart] = [_OpenPart()]
        self.title_text = ""
        self._skipping: list[str] = []
        self._in_title = False
        self._in_heading: str | None = None
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            # The head's end tag is optional; the body starting closes it.
            self._close_skipped("head")
        if tag == "title" and not self.title_text:
            # Only the first: an SVG's <title> further on is not the page's.
            self._in_title = True
        elif tag in _SKIPPED:
            self._skipping.append(tag)
        elif self._skipping:
            return
        elif tag in _HEADINGS and self._in_heading is None:
            self._start_heading(tag)
        elif tag in _BLOCKS:
            self._append(_PARAGRAPH_BREAK)
            self._pre_depth += tag == "pre"
        elif tag in _CELLS:
            self._append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <hr/>, <p/>: a break, never an element left open.
        if not self._skipping and tag in _BLOCKS:
            self._append(_PARAGRAPH_BREAK)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED:
            self._close_skipped(tag)
        elif self._skipping:
            return
        elif tag == self._in_heading:
            self._end_heading()
        elif tag in _BLOCKS:
            self._append(_PARAGRAPH_BREAK)
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_text += data
        elif not self._skipping:
            # Source line breaks are not the page's; only <pre> keeps them.
            self._append(data if self._pre_depth else _WHITESPACE.sub(" ", data))

    def close(self) -> None:
        super().close()
        if self._in_heading is not None:
            self._end_heading()

    def _close_skipped(self, tag: str) -> None:
        if tag in self._skipping:
            index = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
            del self._skipping[index:]

    def _start_heading(self, tag: str) -> None:
        self._in_heading = tag
        self.parts.append(_OpenPart(level=_HEADINGS[tag]))

    def _end_heading(self) -> None:
        self._in_heading = None
        heading = self.parts[-1]
        if not _collapse("".join(heading.label)):
            # An empty heading (an image, an anchor) starts nothing: fold it back.
            self.parts.pop()
            self.parts[-1].text.extend(heading.text)
            return
        heading.text.append(_PARAGRAPH_BREAK)

    def _append(self, text: str) -> None:
        part = self.parts[-1]
        part.text.append(text)
        if self._in_heading is not None:
            part.label.append(text)
