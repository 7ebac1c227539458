"""Text normalization, and assembling a document's text from located sections.

Normalization joins words hyphenated across line breaks, drops soft hyphens and control
characters, collapses whitespace inside paragraphs and keeps paragraph breaks as one blank
line. `TextBuilder` concatenates normalized sections and records each one's character span,
which is the map from any chunk back to its page, chapter or heading.

It does not decide what a section is (readers do) and does not detect encodings.
"""

from __future__ import annotations

import re

from ingest.types import ExtractedText, Format, Section, SectionKind

SECTION_SEPARATOR = "\n\n"

# A word broken at a line end: "extrac-\ntion". Only joined when the next line goes on in
# lower case, so that "Jean-\nPaul" and list dashes keep their hyphen.
_HYPHENATED_BREAK = re.compile(r"(\w)[-\u2010]\n[ \t]*(?=[a-z])")
# A compound broken at its hyphen ("Jean-\nPaul"): the hyphen stays, the break goes.
_COMPOUND_BREAK = re.compile(r"(\w[-\u2010])\n[ \t]*(?=\w)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*\n\s*")
_WHITESPACE_RUN = re.compile(r"\s+")
# C0/C1 controls other than tab and newline, and the soft hyphen, which only hints a break.
_INVISIBLES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\ufeff]")


def normalize(raw: str) -> str:
    """Return `raw` with hyphenated line breaks joined and whitespace collapsed.

    Paragraphs (separated by blank lines) stay separated by exactly one blank line.
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLES.sub("", text)
    text = _HYPHENATED_BREAK.sub(r"\1", text)
    text = _COMPOUND_BREAK.sub(r"\1", text)
    paragraphs = (_WHITESPACE_RUN.sub(" ", p).strip() for p in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


class TextBuilder:
    """Collects sections in reading order and builds an `ExtractedText` with exact spans."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._sections: list[Section] = []
        self._length = 0

    def add(self, label: str, kind: SectionKind, raw_text: str, level: int = 1) -> Section:
        """Normalize `raw_text` and append it as a section. Empty sections are kept, with
        an empty span, so that a blank page still has its place in the outline."""
        body = normalize(raw_text)
        if body and self._length:
            self._parts.append(SECTION_SEPARATOR)
            self._length += len(SECTION_SEPARATOR)
        start = self._length
        self._parts.append(body)
        self._length += len(body)
        section = Section(
            ordinal=len(self._sections),
            label=label.strip() or str(len(self._sections) + 1),
            kind=kind,
            start=start,
            end=self._length,
            level=level,
        )
        self._sections.append(section)
        return section

    @property
    def has_text(self) -> bool:
        return self._length > 0

    def build(
        self, format: Format, title: str | None = None, page_count: int | None = None
    ) -> ExtractedText:
        return ExtractedText(
            text="".join(self._parts),
            sections=tuple(self._sections),
            format=format,
            title=title.strip() if title and title.strip() else None,
            page_count=page_count,
        )
