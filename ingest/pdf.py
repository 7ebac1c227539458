"""Reading PDFs into page-located text.

What it does: opens a PDF's bytes with pypdf in its forgiving mode, so files with a broken
cross-reference table or other repairable damage are read where pypdf can recover them;
opens encrypted files with the empty password first (many "protected" PDFs only restrict
printing or copying) and otherwise with the password the person gave; extracts each page's
text with pypdf's `extract_text`, yielding progress after every page; and makes one PAGE
section per page, labelled with the PDF's own page label ("xii", "17"), not its index. On the
way it spells out typographic ligatures ("ﬁ" -> "fi") and drops the running headers, footers
and page numbers that repeat at the top or bottom of most pages, so they do not break
sentences apart. The title comes from the document information when it is a real title
rather than a file name.

What it does not do: OCR (a scan gets a NoTextLayerError that says so), layout analysis
(columns and tables come out in the order pypdf reads them), forms, annotations, outlines
or images. pypdf is imported here and nowhere else, and only once a PDF is read, so that
`longread --help` starts fast.

pypdf reports each repair it makes to its logger. Those records, and any Python warning,
are kept off the terminal while pypdf runs, and serve as the stated cause when a file
cannot be read.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import shlex
import threading
import warnings
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ingest.errors import (
    DamagedFileError,
    EmptyFileError,
    IngestError,
    NoTextLayerError,
    PasswordError,
    UnsupportedFormatError,
)
from ingest.normalize import TextBuilder
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

# What pypdf raises on broken files besides its own PyPdfError family. Each was seen while
# reading damaged or byte-mangled PDFs with pypdf 7 (ValueError and UnicodeDecodeError from
# bad numbers and cmaps, TypeError, KeyError, AttributeError and AssertionError from objects
# of the wrong kind, NotImplementedError from unknown filters or security handlers), or is a
# known pypdf robustness bug (IndexError, ZeroDivisionError, RecursionError). They are
# caught only around calls into pypdf, never around this module's own code.
_PYPDF_CRASHES: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    ArithmeticError,
    RecursionError,
)

# A running header or footer is looked for among this many lines at each edge of a page:
# enough for a folio plus a running title plus a printer's slug, few enough that body text
# is rarely in reach.
_EDGE_LINES = 3
# ... and counts as running when it stands at an edge of at least this share of the pages
# with a body. Books alternate two running heads (title on the left, chapter on the right),
# so each is at about half the pages; a rule that holds at 40% catches both.
_RUNNING_SHARE = 0.4
# Fewer pages than this and "repeats on most pages" means little.
_RUNNING_MIN_PAGES = 3
_RUNNING_MIN_LETTERS = 3
# Lines a page needs (both edges and something between them) to count as evidence.
_RUNNING_MIN_LINES = 2 * _EDGE_LINES + 1
# A page number standing alone: "17", "- 17 -", "Page 17", "17 of 48", "17/48".
_FOLIO = re.compile(r"[\W_]*(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?[\W_]*", re.IGNORECASE)
_DIGITS_AND_SPACE = re.compile(r"[\d\s]+")
_LETTERS = re.compile(r"[^\W\d_]")

# Below this many characters per page on average a document is "sparse", and its picture
# pages are checked for text that lies outside the page: ImageMagick, for one, writes the
# layer name "Background" above the visible page of every image PDF it makes. The check
# parses those pages again, so it is kept to documents where there is little to parse.
_SPARSE_CHARS_PER_PAGE = 100
# Text whose origin lies this far (in points) outside the media box still counts as on it.
_PAGE_SLACK = 2.0

# pypdf names the repairs it makes; a few dozen of its messages say all there is to say.
_MAX_NOTES = 40
_NOTE_CHARS = 300
_DETAIL_CHARS = 200
# The PDF specification asks for "%%EOF" within the last 1024 bytes; some writers leave
# a little more behind it.
_EOF_WINDOW = 2048
_HEADER_WINDOW = 1024

_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)

# How pypdf's words for a failure read in plain ones, most specific first.
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"startxref|xref|cross.?reference|trailer", re.IGNORECASE),
        "its cross-reference table (the index of where each part of the file lies)"
        " is missing or broken",
    ),
    (
        re.compile(
            r"decompress|flatedecode|zlib|incorrect header check|stored block|unsupported filter",
            re.IGNORECASE,
        ),
        "a compressed stream inside it is corrupt",
    ),
    (
        re.compile(r"/Pages|/Kids|page tree", re.IGNORECASE),
        "its list of pages is broken",
    ),
    (
        re.compile(r"ended unexpectedly|unexpected end", re.IGNORECASE),
        "its data stops in the middle of an object",
    ),
    (
        re.compile(r"object \d+ \d+ not defined|not found", re.IGNORECASE),
        "parts of the file it refers to are missing",
    ),
    (
        re.compile(r"limit", re.IGNORECASE),
        "it is built in a way that goes past pypdf's safety limits",
    ),
)

_TITLE_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ufeff]")
# Word processors that print to PDF put the document's file name in /Title.
_WORD_PROCESSOR_PREFIX = re.compile(r"^microsoft (word|powerpoint|excel) - ", re.IGNORECASE)
_FILE_NAME_TITLE = re.compile(
    r"\.(pdf|docx?|dvi|tex|txt|rtf|odt|wpd|ps|eps|indd|qxd|pub|html?|xml|pptx?|xlsx?|md)$",
    re.IGNORECASE,
)
_PLACEHOLDER_TITLES = frozenset(
    {"untitled", "untitled document", "no title", "title", "document", "unknown", "none"}
)


def read_pdf(
    data: bytes, name: str, options: ReadOptions
) -> Generator[ReadProgress, None, ExtractedText]:
    """Read a PDF's text page by page, yielding progress after each page.

    Returns the text with one PAGE section per page (`extracted = yield from read_pdf(...)`).
    `name` is the file's name, used in every error message. Raises PasswordError,
    NoTextLayerError, DamagedFileError or EmptyFileError, each saying what to do.
    """
    if not data:
        raise EmptyFileError(f"{name} is empty (0 bytes): there is nothing to read.")
    failures = _pypdf_failures()
    notes: list[str] = []
    reader = _open(data, name, options, notes)
    with _SILENCER.quiet(notes):
        try:
            total = len(reader.pages)
        except failures as exc:
            raise DamagedFileError(_damage_message(name, data, exc, notes)) from exc
        labels = _page_labels(reader, total)
        title = _title(reader, name)
    if total == 0:
        raise EmptyFileError(f"{name} has no pages: there is nothing to read.")

    texts: list[str] = []
    page_errors: list[Exception] = []
    for index in range(total):
        with _SILENCER.quiet(notes):
            try:
                text = reader.pages[index].extract_text()
            except failures as exc:
                # One bad page should not cost the rest of the book; it stays, empty.
                text = ""
                page_errors.append(exc)
        texts.append(text)
        yield ReadProgress(done=index + 1, total=total)

    if sum(len(text.strip()) for text in texts) < _SPARSE_CHARS_PER_PAGE * total:
        with _SILENCER.quiet(notes):
            texts = [_without_off_page_text(reader.pages[i], text) for i, text in enumerate(texts)]
    texts = drop_running_lines([text.translate(_LIGATURES) for text in texts])

    builder = TextBuilder()
    for label, text in zip(labels, texts, strict=True):
        builder.add(label, SectionKind.PAGE, text)
    if not builder.has_text:
        with _SILENCER.quiet(notes):
            raise _no_text_error(name, data, reader, page_errors, notes)
    return builder.build(Format.PDF, title=title, page_count=total)


def drop_running_lines(pages: Sequence[str]) -> list[str]:
    """Remove running headers, footers and page numbers from the pages' text.

    A line is running when, with its digits and spaces ignored ("Page 7 of 48" and
    "Page 8 of 48" are the same line), it stands among the first or last three lines of at
    least 40% of the pages that have a body between those (and of three pages at least).
    Only those edge lines are dropped, so a matching line in the middle of a page stays.
    """
    lines = [page.splitlines() for page in pages]
    edges = [_edge_indexes(page_lines) for page_lines in lines]
    counts: Counter[str] = Counter()
    full_pages = 0
    for page_lines, (top, bottom) in zip(lines, edges, strict=True):
        # Only pages with a body between their edges are evidence: on a page of one or two
        # lines every line is at an edge, and a document of such pages would lose them all.
        if sum(1 for line in page_lines if line.strip()) < _RUNNING_MIN_LINES:
            continue
        full_pages += 1
        keys = Counter(_running_key(page_lines[i]) for i in {*top, *bottom})
        # A running head stands once at a page's edge; a key found on several edge lines
        # of the same page belongs to lines that differ only in their numbers (a list,
        # a table), which are content.
        counts.update(key for key, count in keys.items() if count == 1)
    needed = max(_RUNNING_MIN_PAGES, _RUNNING_SHARE * full_pages)
    running = {key for key, count in counts.items() if key and count >= needed}
    if not running:
        return list(pages)
    result = []
    for page, page_lines, (top, bottom) in zip(pages, lines, edges, strict=True):
        # Not only from the edge inward: a figure's caption or a footnote can come out of
        # pypdf between a running line and the page's edge.
        dropped = {i for i in {*top, *bottom} if _running_key(page_lines[i]) in running}
        if dropped:
            page = "\n".join(line for i, line in enumerate(page_lines) if i not in dropped)
        result.append(page)
    return result


def _edge_indexes(lines: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indexes of the first few and the last few non-blank lines, each from the edge in."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return filled[:_EDGE_LINES], filled[::-1][:_EDGE_LINES]


def _running_key(line: str) -> str:
    """What a line is compared by: "" for a line that can never be a running one."""
    if _FOLIO.fullmatch(line.strip()):
        return "#"
    # Digits go, so that a header carrying the page number matches itself on every page.
    # Case stays: a running head is set alike on every page, and the same words in
    # capitals on a title page are the title, not the running head.
    key = _DIGITS_AND_SPACE.sub("", line)
    # Letters are required: a row of figures at the foot of many pages is a table, not a
    # footer.
    return key if len(_LETTERS.findall(key)) >= _RUNNING_MIN_LETTERS else ""


def _open(data: bytes, name: str, options: ReadOptions, notes: list[str]) -> PdfReader:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError
    from pypdf.errors import EmptyFileError as PypdfEmptyFileError

    failures = _pypdf_failures()
    with _SILENCER.quiet(notes):
        try:
            # strict=False: pypdf repairs what it can (a wrong startxref, a broken xref
            # table) instead of refusing the file.
            reader = PdfReader(io.BytesIO(data), strict=False)
            encrypted = reader.is_encrypted
        except PypdfEmptyFileError as exc:
            raise EmptyFileError(f"{name} is empty: there is nothing to read.") from exc
        except NotImplementedError as exc:
            raise _unsupported(name, data, exc, notes) from exc
        except failures as exc:
            raise DamagedFileError(_damage_message(name, data, exc, notes)) from exc
        if not encrypted:
            return reader
        try:
            # Many encrypted PDFs have an empty user password: they open for anyone and only
            # restrict printing or copying. Try that before asking for a password.
            if reader.decrypt(""):
                return reader
            if options.password is None:
                raise PasswordError(
                    f"{name} is password-protected. Add it again with --password PASSWORD"
                    " (the password that opens it)."
                )
            if reader.decrypt(options.password):
                return reader
        except DependencyError as exc:
            raise IngestError(
                f"{name} is encrypted with AES, and reading it needs the `cryptography`"
                f" package, which is missing: install longread with its dependencies ({exc})."
            ) from exc
        except NotImplementedError as exc:
            raise _unsupported(name, data, exc, notes) from exc
        except failures as exc:
            raise DamagedFileError(_damage_message(name, data, exc, notes)) from exc
    raise PasswordError(
        f"The password given for {name} is wrong: it is neither the password that opens"
        " the file nor its owner password. Check it and try again with --password."
    )


def _unsupported(
    name: str, data: bytes, error: NotImplementedError, notes: Sequence[str]
) -> IngestError:
    """pypdf met something it does not implement: a foreign security handler (certificate
    encryption, say), which the person can remove, or else a broken file."""
    if "encrypt" not in str(error).lower():
        return DamagedFileError(_damage_message(name, data, error, notes))
    return UnsupportedFormatError(
        f"{name} is encrypted in a way longread cannot open ({error}). Save an unencrypted"
        " copy with the program that made it (or with `qpdf --decrypt`) and add that."
    )


def _page_labels(reader: PdfReader, total: int) -> list[str]:
    """The PDF's own page labels ("i", "ii", "1"), or page numbers where they are broken."""
    try:
        labels = list(reader.page_labels)
    except _pypdf_failures():
        labels = []
    if len(labels) != total:
        return [str(index + 1) for index in range(total)]
    return labels


def _title(reader: PdfReader, name: str) -> str | None:
    try:
        info = reader.metadata
        raw: object = info.title if info is not None else None
    except _pypdf_failures():
        # A title is a nicety; a broken information dictionary must not cost the text.
        return None
    return meaningful_title(raw, name)


def meaningful_title(raw: object, name: str) -> str | None:
    """`raw` as a title, or None where it is no title: empty, a placeholder ("Untitled"),
    a file name ("pandp.dvi", "Microsoft Word - report.doc") or the file's own name."""
    if not isinstance(raw, str):
        return None
    title = " ".join(_TITLE_CONTROLS.sub("", raw).split())
    title = _WORD_PROCESSOR_PREFIX.sub("", title)
    if (
        not title
        or title.casefold() in _PLACEHOLDER_TITLES
        or _FILE_NAME_TITLE.search(title)
        or title.casefold() == PurePath(name).stem.casefold()
    ):
        return None
    return title


def _without_off_page_text(page: PageObject, text: str) -> str:
    """`text`, or "" where the page is a picture whose only text lies outside the page."""
    if not text.strip() or not _has_images(page):
        return text
    try:
        return text if _has_text_on_page(page) else ""
    except _pypdf_failures():
        return text


def _has_text_on_page(page: PageObject) -> bool:
    box = page.mediabox
    left, right = sorted((float(box.left), float(box.right)))
    bottom, top = sorted((float(box.bottom), float(box.top)))
    found = False

    def visit(text: Any, cm: Any, tm: Any, font: Any, size: Any) -> None:
        nonlocal found
        if found or not str(text).strip():
            return
        # The text origin in page space: the text matrix's translation through the CTM.
        x = cm[0] * tm[4] + cm[2] * tm[5] + cm[4]
        y = cm[1] * tm[4] + cm[3] * tm[5] + cm[5]
        found = (left - _PAGE_SLACK <= x <= right + _PAGE_SLACK) and (
            bottom - _PAGE_SLACK <= y <= top + _PAGE_SLACK
        )

    page.extract_text(visitor_text=visit)
    return found


def _has_images(page: PageObject) -> bool:
    try:
        return len(page.images) > 0
    except _pypdf_failures():
        return False


def _no_text_error(
    name: str,
    data: bytes,
    reader: PdfReader,
    page_errors: Sequence[Exception],
    notes: Sequence[str],
) -> IngestError:
    """Why a PDF that opened gave no text: broken pages, a scan, damage, or blank pages."""
    pages = reader.pages
    its_pages = "its page is" if len(pages) == 1 else f"its {len(pages)} pages are"
    if len(page_errors) == len(pages):
        return DamagedFileError(_damage_message(name, data, page_errors[0], notes))
    if any(_has_images(page) for page in pages):
        return NoTextLayerError(
            f"{name} has no text layer: {its_pages} images only, so it looks scanned."
            f" Run OCR on it first (for example `ocrmypdf {shlex.quote(name)}"
            f" {shlex.quote('ocr-' + name)}`) and add the OCR'd copy."
        )
    if page_errors or any(_plain_cause(note) for note in notes):
        error = page_errors[0] if page_errors else None
        return DamagedFileError(_damage_message(name, data, error, notes))
    return EmptyFileError(
        f"{name} has no text: {its_pages} blank, or the text on them is drawn as shapes,"
        " which only OCR (for example `ocrmypdf`) can read back."
    )


def _damage_message(
    name: str, data: bytes, error: BaseException | None, notes: Sequence[str]
) -> str:
    """A DamagedFileError message: the file, what is broken in plain words, pypdf's words."""
    evidence = [f"{type(error).__name__}: {error}"] if error is not None else []
    evidence += [note for note in notes if _plain_cause(note)]
    causes = []
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        causes.append("it does not start with a PDF header, so it may not be a PDF at all")
    elif b"%%EOF" not in data[-_EOF_WINDOW:]:
        causes.append("it seems cut short (it has no end-of-file marker)")
    for item in evidence:
        plain = _plain_cause(item)
        if plain and plain not in causes:
            causes.append(plain)
    # The first two causes say enough; pypdf's own words follow for whoever digs further.
    reason = "; ".join(causes[:2]) if causes else "pypdf could not make sense of its structure"
    detail = f" (pypdf: {evidence[0][:_DETAIL_CHARS]})" if evidence else ""
    return (
        f"{name} is damaged and could not be read: {reason}{detail}. If there is another"
        " copy, add that one; a repair tool such as `qpdf` may also be able to fix it."
    )


def _plain_cause(message: str) -> str | None:
    for pattern, plain in _CAUSES:
        if pattern.search(message):
            return plain
    return None


@functools.cache
def _pypdf_failures() -> tuple[type[Exception], ...]:
    """Everything a call into pypdf raises for a broken file (imports pypdf, hence lazy)."""
    from pypdf.errors import PyPdfError

    return (PyPdfError, *_PYPDF_CRASHES)


class _NoteHandler(logging.Handler):
    """Keeps pypdf's log messages for the thread that is reading, and shows none of them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        notes: list[str] | None = getattr(self.local, "notes", None)
        if notes is None or len(notes) >= _MAX_NOTES:
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed log call inside pypdf must neither break the read nor print.
            message = str(record.msg)
        message = " ".join(message.split())[:_NOTE_CHARS]
        if message not in notes:
            notes.append(message)


class _PypdfSilencer:
    """Keeps pypdf's log records and Python warnings off the terminal while pypdf runs.

    With no logging configured, Python prints pypdf's records to stderr ("incorrect
    startxref pointer(1)"), over a progress bar or the TUI. Inside `quiet()`, the "pypdf"
    logger hands its records to a handler that keeps them for the reading thread and
    passes nothing on, and Python warnings are ignored. Python 3.11's warning filters are
    process-wide, so for those moments warnings from other threads are ignored too; that
    is why `read_pdf` enters `quiet()` around each call into pypdf, never across a
    `yield`, where the caller's code runs. The first reader in saves the logger's settings
    and the warning filters and the last one out restores them, so concurrent reads in
    worker threads leave nothing changed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._handler = _NoteHandler()
        self._saved_level = logging.NOTSET
        self._saved_propagate = True
        self._saved_warnings: warnings.catch_warnings[None] | None = None

    @contextmanager
    def quiet(self, notes: list[str]) -> Iterator[None]:
        """Silence pypdf for the block; its messages on this thread are added to `notes`."""
        self._enter()
        previous = getattr(self._handler.local, "notes", None)
        self._handler.local.notes = notes
        try:
            yield
        finally:
            self._handler.local.notes = previous
            self._exit()

    def _enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                logger = logging.getLogger("pypdf")
                self._saved_level, self._saved_propagate = logger.level, logger.propagate
                # WARNING, not higher: the records are the evidence for a damaged file.
                logger.setLevel(logging.WARNING)
                logger.propagate = False
                logger.addHandler(self._handler)
                self._saved_warnings = warnings.catch_warnings()
                self._saved_warnings.__enter__()
                warnings.simplefilter("ignore")
            self._depth += 1

    def _exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                logger = logging.getLogger("pypdf")
                logger.removeHandler(self._handler)
                logger.setLevel(self._saved_level)
                logger.propagate = self._saved_propagate
                if self._saved_warnings is not None:
                    self._saved_warnings.__exit__(None, None, None)
                    self._saved_warnings = None


_SILENCER = _PypdfSilencer()
