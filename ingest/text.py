"""Reading plain text and Markdown files: decoding, Gutenberg boilerplate, chapters, headings.

Decoding takes a byte-order mark at its word (UTF-8, UTF-16, UTF-32), recognizes UTF-16
without one by its NUL bytes, and otherwise reads UTF-8, decoding any byte that is not valid
UTF-8 as cp1252 (latin-1 for the five bytes cp1252 leaves undefined), so a legacy file or a
stray legacy byte is read, never dropped. Project Gutenberg's header and footer (license,
"*** START OF ..." / "*** END OF ..." lines) are left out; the header's "Title:" line gives
the title.

Plain text is split into chapters where a line on its own says so ("CHAPTER I", "Chapter 12.",
"STAVE ONE", "BOOK II", "Letter 4", a bare roman numeral in sequence), optionally followed by a
title line; failing that, into ALL-CAPS headings on their own lines; failing that, it is one
front-matter section. Markdown is split at ATX ("# Title") and setext headings outside fenced
code. The text before the first chapter or heading is a FRONT section, labelled with the title
(else "Start") for display only.

It does not render Markdown (emphasis, links and tables stay as written), does not guess
encodings beyond the above, and does not try to find a title in text that has no header or
heading.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ingest.errors import EmptyFileError
from ingest.normalize import TextBuilder
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind

# --------------------------------------------------------------------------------------------
# Decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian mark begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_LEGACY_ERRORS = "longread-legacy"


def _legacy_char(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252, so take them as latin-1.
        return chr(byte)


_LEGACY_TABLE = "".join(_legacy_char(byte) for byte in range(256))


def _decode_legacy_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode the bytes UTF-8 rejected as cp1252 and carry on."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(_LEGACY_TABLE[byte] for byte in bad), error.end


codecs.register_error(_LEGACY_ERRORS, _decode_legacy_bytes)


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """The codec a byte-order mark at the start of `data` names, and the mark's length."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    return None


def utf16_without_bom(data: bytes) -> str | None:
    """The UTF-16 codec ("utf-16-le"/"-be") of unmarked UTF-16 `data`, else None.

    Mostly-Latin UTF-16 has a NUL in every other byte and almost none in the others.
    """
    sample = data[:4096]
    if len(sample) < 8:
        return None  # too few characters to tell
    even, odd = sample[0::2], sample[1::2]
    nul_even = even.count(0) / len(even)
    nul_odd = odd.count(0) / len(odd)
    if nul_odd > 0.4 and nul_even < 0.05:
        return "utf-16-le"
    if nul_even > 0.4 and nul_odd < 0.05:
        return "utf-16-be"
    return None


def text_codec(data: bytes) -> str | None:
    """The codec that the bytes themselves name (mark or UTF-16 shape), else None."""
    marked = bom_encoding(data)
    if marked:
        return marked[0]
    return utf16_without_bom(data)


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode `data` to text without ever raising and without dropping text.

    `declared` is an encoding the file states about itself (an HTML meta charset, an XML
    declaration); a byte-order mark outranks it, and a declaration that does not decode
    the bytes is ignored.
    """
    marked = bom_encoding(data)
    if marked:
        codec, skip = marked
        return _decode_as(data[skip:], codec)
    unmarked_utf16 = utf16_without_bom(data)
    if unmarked_utf16:
        return _decode_as(data, unmarked_utf16)
    if declared:
        from_declaration = _decode_declared(data, declared)
        if from_declaration is not None:
            return from_declaration
    return data.decode("utf-8", errors=_LEGACY_ERRORS)


def _decode_as(data: bytes, codec: str) -> str:
    if codec == "utf-8":
        return data.decode("utf-8", errors=_LEGACY_ERRORS)
    # A UTF-16/32 file cut short or holding a lone surrogate: mark the spot, visibly.
    return data.decode(codec, errors="replace")


# Labels that browsers (WHATWG) read as cp1252; our UTF-8-then-cp1252 path does the same.
_CP1252_LABELS = frozenset({"ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1", "cp1252"})


def _decode_declared(data: bytes, declared: str) -> str | None:
    label = declared.strip().lower().replace("_", "-")
    # A declaration readable as ASCII cannot be in UTF-16/32, whatever it says (WHATWG).
    if label in _CP1252_LABELS or label.startswith(("utf-8", "utf8", "utf-16", "utf-32")):
        return None
    try:
        codecs.lookup(label)
        return data.decode(label)
    except (LookupError, ValueError):
        # ValueError: UnicodeDecodeError, and the bare UnicodeError of codecs that are no
        # real encodings ("undefined", "idna" past its label length).
        return None


# --------------------------------------------------------------------------------------------
# Project Gutenberg boilerplate

_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE |THIS )?PROJECT GUTENBERG\b", re.IGNORECASE
)
# The license header of texts from the 1990s ends with this line instead.
_OLD_HEADER_END = re.compile(r"^\s*\*END\*\s*THE SMALL PRINT", re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r"^\s*(?:\*{3}\s*)?END OF (?:THE |THIS )?PROJECT GUTENBERG", re.IGNORECASE
)
_PRODUCER_CREDIT = re.compile(
    r"^\s*(?:Produced by|E-?text prepared by|This e-?text was produced by|Transcribed from)\b",
    re.IGNORECASE,
)
_TITLE_FIELD = re.compile(r"^Title:\s*(?P<title>\S.*?)\s*$")


def strip_gutenberg_boilerplate(text: str) -> str:
    """Return `text` without Project Gutenberg's header and footer, if it has them.

    The header is everything up to and including the "*** START OF THE/THIS PROJECT
    GUTENBERG EBOOK ... ***" line (or the old "*END*THE SMALL PRINT" line) and the producer
    credit that follows it; the footer starts at the first "*** END OF ..." or "End of (the)
    Project Gutenberg ..." line after that. Text with neither comes back as it was.
    """
    lines = text.splitlines(keepends=True)
    start = _header_end(lines)
    end = _footer_start(lines, start)
    if start == 0 and end == len(lines):
        return text
    return "".join(lines[start:end])


def gutenberg_title(text: str) -> str | None:
    """The "Title:" field of a Project Gutenberg header, with its continuation lines."""
    lines = text.splitlines()
    header = lines[: _header_end(lines)]
    for index, line in enumerate(header):
        found = _TITLE_FIELD.match(line.lstrip("\ufeff"))
        if found:
            parts = [found["title"]]
            # Long titles go on over indented lines: "Title: The Life\n       and Times".
            for more in header[index + 1 :]:
                if not more.strip() or not more[:1].isspace():
                    break
                parts.append(more.strip())
            return " ".join(parts)
    return None


def _header_end(lines: Sequence[str]) -> int:
    """Index of the first line after the Gutenberg header; 0 when there is none."""
    for index, line in enumerate(lines):
        if _GUTENBERG_START.match(line):
            after = _past_marker_continuation(lines, index)
            return _past_producer_credit(lines, after)
        if _OLD_HEADER_END.match(line):
            return _past_producer_credit(lines, index + 1)
    return 0


def _past_marker_continuation(lines: Sequence[str], index: int) -> int:
    """A start marker with a long title can wrap; it ends at the line closing with ***."""
    for offset in range(3):
        at = index + offset
        if at >= len(lines) or lines[at].rstrip().endswith("***") or not lines[at].strip():
            return min(at + 1, len(lines))
    return index + 1


def _past_producer_credit(lines: Sequence[str], index: int) -> int:
    """Skip a "Produced by ..." paragraph right after the header: it is not the book."""
    at = index
    while at < len(lines) and not lines[at].strip():
        at += 1
    if at >= len(lines) or not _PRODUCER_CREDIT.match(lines[at]):
        return index
    while at < len(lines) and lines[at].strip():
        at += 1
    return at


def _footer_start(lines: Sequence[str], start: int) -> int:
    for index in range(start, len(lines)):
        if _GUTENBERG_END.match(lines[index]):
            return index
    return len(lines)


# --------------------------------------------------------------------------------------------
# Parts: what the splitters below hand the readers


@dataclass(frozen=True)
class TextPart:
    """A stretch of a document's raw text and how it is cited, before normalization."""

    label: str
    kind: SectionKind
    text: str
    level: int = 1


# For display only: front matter is told apart by its kind (SectionKind.FRONT), never by this.
START_LABEL = "Start"


def lead_label(title: str | None) -> str:
    """The label of the FRONT part (the text before the first heading): the title, else "Start"."""
    return title.strip() if title and title.strip() else START_LABEL


_T = TypeVar("_T")


def _with_next(items: Sequence[_T]) -> list[tuple[_T, _T | None]]:
    """Each item with the one after it (None after the last)."""
    following: list[_T | None] = [*items[1:], None]
    return list(zip(items, following[: len(items)], strict=True))


def add_parts(builder: TextBuilder, parts: Sequence[TextPart]) -> None:
    """Append `parts` to `builder` as sections, in order."""
    for part in parts:
        builder.add(part.label, part.kind, part.text, part.level)


# --------------------------------------------------------------------------------------------
# Plain text chapters

_ONES = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_ORDINALS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
    "|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth"
    "|last"
)
_ROMAN_UPPER = r"(?=[MDCLXVI])M{0,4}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_ROMAN_LOWER = _ROMAN_UPPER.lower()
_NUMBER = (
    rf"(?:\d{{1,4}}|{_ROMAN_UPPER}|{_ROMAN_LOWER}"
    rf"|(?i:(?:{_TENS})(?:[- ](?:{_ONES}))?|{_TEENS}|{_ONES}|the (?:{_ORDINALS})))"
)
# Containers (volumes, books, parts) group chapters; their label prefixes the chapters'.
_CONTAINER_WORDS = "VOLUME|Volume|VOL\\.|Vol\\.|BOOK|Book|PART|Part"
_CHAPTER_WORDS = "CHAPTER|Chapter|STAVE|Stave|LETTER|Letter"
# The keyword must be capitalized: a line reading "chapter 3" is a wrapped sentence.
_KEYWORD_HEADING = re.compile(
    rf"^(?P<keyword>{_CONTAINER_WORDS}|{_CHAPTER_WORDS})\s+(?P<number>{_NUMBER})"
    r"(?:[.:]?\s*$|\s*(?:[.:]|[—–-]+)\s*(?P<title>\S.*?)\s*$)"
)
_BARE_NUMERAL = re.compile(rf"^(?P<number>{_ROMAN_UPPER})\.?\s*$")
_NAMED_HEADING = re.compile(
    r"^(?P<name>(?i:prologue|preface|foreword|introduction|epilogue|afterword))\.?\s*$"
)
_MAX_HEADING_LENGTH = 80
_MAX_TITLE_LENGTH = 60
_SENTENCE_END = tuple(".!?:;\"”’')]—")
_SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "but", "by", "for", "in", "of", "on", "or", "the", "to"}
)


@dataclass(frozen=True)
class _Heading:
    line: int
    label: str
    heading_lines: int
    container: bool = False


def split_chapters(text: str, lead: str = START_LABEL) -> list[TextPart]:
    """Split plain text at its chapter headings (see the module docstring).

    Text before the first chapter is a FRONT part labelled `lead`; with no chapters found,
    the whole text is that one part. Heading lines stay in their chapter's text.
    """
    lines = text.splitlines()
    headings = _drop_empty_headings(lines, _find_headings(lines))
    if not headings:
        return [TextPart(lead, SectionKind.FRONT, text)] if text.strip() else []
    parts: list[TextPart] = []
    preamble = "\n".join(lines[: headings[0].line])
    if preamble.strip():
        parts.append(TextPart(lead, SectionKind.FRONT, preamble))
    for heading, following in _with_next(headings):
        end = following.line if following else len(lines)
        parts.append(_chapter_part(lines, heading, end))
    return parts


def _chapter_part(lines: Sequence[str], heading: _Heading, end: int) -> TextPart:
    head_end = heading.line + heading.heading_lines
    # The heading is a paragraph of its own, not the start of the first paragraph.
    head = "\n".join(line for line in lines[heading.line : head_end] if line.strip())
    body = "\n".join(lines[head_end:end])
    return TextPart(heading.label, SectionKind.CHAPTER, f"{head}\n\n{body}")


def _find_headings(lines: Sequence[str]) -> list[_Heading]:
    numbered = _keyword_headings(lines) + _bare_numeral_headings(lines)
    if numbered:
        named = _named_headings(lines, numbered)
        return _with_container_prefixes(sorted(numbered + named, key=lambda h: h.line))
    return _capital_headings(lines)


def _keyword_headings(lines: Sequence[str]) -> list[_Heading]:
    found: list[_Heading] = []
    for index in range(len(lines)):
        match = _heading_match(lines, index, _KEYWORD_HEADING)
        if match is None:
            continue
        keyword = _keyword_label(match["keyword"])
        label = f"{keyword} {_number_label(match['number'])}"
        container = re.fullmatch(_CONTAINER_WORDS, match["keyword"]) is not None
        if match["title"]:
            if not _plausible_title(match["title"], _next_line(lines, index)):
                continue
            found.append(_Heading(index, f"{label}: {_title_label(match['title'])}", 1, container))
        else:
            found.append(_titled(lines, index, label, ": ", container))
    return found


def _bare_numeral_headings(lines: Sequence[str]) -> list[_Heading]:
    """Lines holding only "I.", "II.", ...: chapters when they count up from one."""
    found: list[_Heading] = []
    expected = 1
    for index in range(len(lines)):
        match = _heading_match(lines, index, _BARE_NUMERAL)
        if match and _roman_value(match["number"]) == expected:
            found.append(_titled(lines, index, match["number"], ". "))
            expected += 1
    # One "I." on its own line proves nothing; a run of them is a table of chapters.
    return found if len(found) >= 2 else []


def _named_headings(lines: Sequence[str], numbered: Sequence[_Heading]) -> list[_Heading]:
    """Named headings ("Preface", "Epilogue"...): trusted only where chapters are numbered."""
    # A line already taken as a numbered heading's title ("I." then "Introduction") is not
    # a heading of its own.
    claimed = {line for h in numbered for line in range(h.line, h.line + h.heading_lines)}
    found: list[_Heading] = []
    for index in range(len(lines)):
        match = _heading_match(lines, index, _NAMED_HEADING)
        if match and index not in claimed:
            found.append(_Heading(index, match["name"].capitalize(), 1))
    return found


def _capital_headings(lines: Sequence[str]) -> list[_Heading]:
    """Fallback for books whose chapters are titled, not numbered: "THE LAST NIGHT".

    Trusted only with at least three of them, each after a blank line, none ending like a
    sentence or a signature ("HASTIE LANYON.").
    """
    found: list[_Heading] = []
    for index, line in enumerate(lines):
        candidate = line.strip()
        if _is_capital_heading(candidate) and (index == 0 or not lines[index - 1].strip()):
            found.append(_Heading(index, _title_label(candidate), 1))
    return found if len(found) >= 3 else []


def _is_capital_heading(candidate: str) -> bool:
    words = candidate.split()
    return (
        2 <= len(words) <= 10
        and len(candidate) <= _MAX_TITLE_LENGTH
        and candidate.isupper()
        and candidate[0].isalnum()
        and not candidate.endswith(tuple(".,;:!?\"”’'"))
    )


def _heading_match(
    lines: Sequence[str], index: int, pattern: re.Pattern[str]
) -> re.Match[str] | None:
    """Match a heading on line `index`, unless the line is a piece of a wrapped sentence."""
    candidate = lines[index].strip()
    if not candidate or len(candidate) > _MAX_HEADING_LENGTH:
        return None
    match = pattern.match(candidate)
    if match is None:
        return None
    if _continues_previous(lines[index - 1].strip() if index else ""):
        return None
    if _next_line(lines, index)[:1].islower():
        return None
    return match


def _continues_previous(previous: str) -> bool:
    """A long line that stops mid-sentence goes on in the next ("...described in\nChapter 3.").

    A heading in a table of contents is long and unpunctuated too, but it is no sentence.
    """
    return (
        len(previous) > 50
        and not previous.endswith(_SENTENCE_END)
        and not _KEYWORD_HEADING.match(previous)
    )


def _next_line(lines: Sequence[str], index: int) -> str:
    return lines[index + 1].strip() if index + 1 < len(lines) else ""


def _titled(
    lines: Sequence[str], index: int, label: str, joiner: str, container: bool = False
) -> _Heading:
    """The heading on line `index`, with the title on the line after it if it has one."""
    at = _title_line(lines, index)
    if at is None:
        return _Heading(index, label, 1, container)
    title = _title_label(lines[at])
    return _Heading(index, f"{label}{joiner}{title}", at - index + 1, container)


def _title_line(lines: Sequence[str], index: int) -> int | None:
    """The line, right after the heading or one blank line on, that titles it, if any."""
    at = index + 1
    across_blank = at < len(lines) and not lines[at].strip()
    if across_blank:
        at += 1
    if at >= len(lines) or not lines[at].strip():
        return None
    title = lines[at].strip()
    after = _next_line(lines, at)
    if not _plausible_title(title, after) or not _title_cased(title):
        return None
    if _KEYWORD_HEADING.match(title):
        return None
    if _BARE_NUMERAL.match(title):
        return None
    # Across a blank line only a line standing alone is a title, not a paragraph's start.
    if across_blank and after:
        return None
    return at


def _plausible_title(title: str, next_line: str) -> bool:
    return (
        len(title) <= _MAX_TITLE_LENGTH
        and len(title.split()) <= 12
        and (title[0].isupper() or title[0].isdigit())
        and not title.endswith((",", ";", "-", "—"))
        and not next_line[:1].islower()
    )


def _title_cased(line: str) -> bool:
    """Whether a line reads like a title ("The Council with the Munchkins", "THE LAST NIGHT")
    rather than prose ("It went on, and on.").

    Half the words capitalized at least, and every long word: a first line of prose fails.
    """
    words = [word for word in line.split() if any(char.isalpha() for char in word)]
    if not words:
        return False
    capitalized = [word for word in words if not word[0].isalpha() or word[0].isupper()]
    long_lower = [w for w in words if w not in capitalized and sum(c.isalpha() for c in w) > 4]
    return 2 * len(capitalized) >= len(words) and not long_lower


def _drop_empty_headings(lines: Sequence[str], headings: list[_Heading]) -> list[_Heading]:
    """Leave out headings with no text under them: a table of contents, a volume's title
    page right before its first chapter. Their lines stay with the section before."""
    kept: list[_Heading] = []
    for heading, following in _with_next(headings):
        end = following.line if following else len(lines)
        if any(line.strip() for line in lines[heading.line + heading.heading_lines : end]):
            kept.append(heading)
    return kept


def _with_container_prefixes(headings: list[_Heading]) -> list[_Heading]:
    """Prefix chapters with their volume ("Vol. II, Chapter I"): numbers restart per volume."""
    container: str | None = None
    labelled: list[_Heading] = []
    for heading in headings:
        if heading.container:
            container = heading.label.split(":")[0]
            labelled.append(heading)
        elif container:
            labelled.append(
                _Heading(heading.line, f"{container}, {heading.label}", heading.heading_lines)
            )
        else:
            labelled.append(heading)
    return labelled


def _keyword_label(keyword: str) -> str:
    return keyword[0] + keyword[1:].lower()


def _number_label(number: str) -> str:
    if number.isdigit() or re.fullmatch(_ROMAN_UPPER, number):
        return number
    if re.fullmatch(_ROMAN_LOWER, number):
        return number.upper()
    return re.sub(r"[^\W\d_]+", lambda word: _capitalized(word[0]), number)


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:].lower()


def _title_label(title: str) -> str:
    """A heading's title as a label: without its final period, ALL CAPS made Title Case."""
    title = title.strip().rstrip(".").strip()
    if not title.isupper():
        return title
    words = title.split()
    return " ".join(
        word.lower() if index and word.lower() in _SMALL_WORDS else _capitalized(word)
        for index, word in enumerate(words)
    )


def _roman_value(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for char, following in zip(numeral, [*numeral[1:], ""], strict=True):
        value = values[char]
        total += -value if following and values[following] > value else value
    return total


# --------------------------------------------------------------------------------------------
# Markdown headings

_ATX_HEADING = re.compile(r"^ {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?P<char>=+|-+)[ \t]*$")
_NOT_A_SETEXT_TEXT = re.compile(r"^\s*(?:[-*+>|]|\d+[.)]\s|#|`{3}|~{3})")


@dataclass(frozen=True)
class MarkdownHeading:
    """A Markdown heading found on line `line` of the text."""

    line: int
    label: str
    level: int
    lines: int  # 1 for ATX, 2 for setext (text and underline)


def split_markdown(text: str, lead: str = START_LABEL) -> list[TextPart]:
    """Split Markdown at its headings; each is a HEADING part with its level.

    Text before the first heading is a FRONT part labelled `lead`. The heading's own text,
    without its "#" marks or underline, opens its part.
    """
    lines = text.splitlines()
    headings = markdown_headings(lines)
    parts: list[TextPart] = []
    first = headings[0].line if headings else len(lines)
    preamble = "\n".join(lines[:first])
    if preamble.strip():
        parts.append(TextPart(lead, SectionKind.FRONT, preamble))
    for heading, following in _with_next(headings):
        end = following.line if following else len(lines)
        body = "\n".join(lines[heading.line + heading.lines : end])
        parts.append(
            TextPart(
                heading.label, SectionKind.HEADING, f"{heading.label}\n\n{body}", heading.level
            )
        )
    return parts


def markdown_headings(lines: Sequence[str]) -> list[MarkdownHeading]:
    """The ATX and setext headings of Markdown `lines`, outside fences and front matter."""
    headings: list[MarkdownHeading] = []
    fence: str | None = None
    index = _front_matter_end(lines)
    while index < len(lines):
        line = lines[index]
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and _closes(fence, fence_match["fence"], line):
                fence = None
        elif fence_match:
            fence = fence_match["fence"]
        else:
            heading = _atx(line, index) or _setext(lines, index)
            if heading:
                headings.append(heading)
                index += heading.lines
                continue
        index += 1
    return headings


def _closes(opening: str, candidate: str, line: str) -> bool:
    # A closing fence uses the same character, is at least as long, and has no info string.
    return (
        candidate[0] == opening[0]
        and len(candidate) >= len(opening)
        and not line.strip().lstrip(candidate[0])
    )


def _atx(line: str, index: int) -> MarkdownHeading | None:
    match = _ATX_HEADING.match(line)
    if not match or not (match["text"] or "").strip():
        return None
    return MarkdownHeading(index, match["text"].strip(), len(match["marks"]), 1)


def _setext(lines: Sequence[str], index: int) -> MarkdownHeading | None:
    """A setext heading: "Title" over "=====" (level 1) or "---" (level 2), one line only:
    that keeps a horizontal rule under a longer paragraph from becoming a heading."""
    if index + 1 >= len(lines):
        return None
    text = lines[index].strip()
    underline = _SETEXT_UNDERLINE.match(lines[index + 1])
    if not text or not underline or _NOT_A_SETEXT_TEXT.match(lines[index]):
        return None
    if index and lines[index - 1].strip():
        return None
    return MarkdownHeading(index, text, 1 if underline["char"][0] == "=" else 2, 2)


def _front_matter_end(lines: Sequence[str]) -> int:
    """YAML front matter ("---" ... "---") at the top is metadata, not headings."""
    if not lines or lines[0].strip() != "---":
        return 0
    for index in range(1, min(len(lines), 200)):
        if lines[index].strip() in {"---", "..."}:
            return index + 1
    return 0


def markdown_title(parts: Sequence[TextPart]) -> str | None:
    """The first level-1 heading, else the first heading."""
    headings = [part for part in parts if part.kind is SectionKind.HEADING]
    for part in headings:
        if part.level == 1:
            return part.label
    return headings[0].label if headings else None


# --------------------------------------------------------------------------------------------
# Readers


def read_text(
    data: bytes, name: str, options: ReadOptions
) -> Generator[ReadProgress, None, ExtractedText]:
    """Read a plain text file: one section per chapter, or one front-matter section."""
    text = decode_text(data)
    title = gutenberg_title(text)
    parts = split_chapters(strip_gutenberg_boilerplate(text), lead_label(title))
    extracted = _build(parts, Format.TEXT, title, name)
    yield ReadProgress(1, 1)
    return extracted


def read_markdown(
    data: bytes, name: str, options: ReadOptions
) -> Generator[ReadProgress, None, ExtractedText]:
    """Read a Markdown file: one section per heading, levels kept."""
    text = decode_text(data)
    headed = split_markdown(strip_gutenberg_boilerplate(text))
    title = gutenberg_title(text) or markdown_title(headed)
    parts = [
        TextPart(lead_label(title), part.kind, part.text)
        if part.kind is SectionKind.FRONT
        else part
        for part in headed
    ]
    extracted = _build(parts, Format.MARKDOWN, title, name)
    yield ReadProgress(1, 1)
    return extracted


def _build(
    parts: Sequence[TextPart], format: Format, title: str | None, name: str
) -> ExtractedText:
    builder = TextBuilder()
    add_parts(builder, parts)
    if not builder.has_text:
        raise EmptyFileError(f"{name} has no text to read")
    return builder.build(format, title)
