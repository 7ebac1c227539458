"""Adding one file to the library: read, chunk, save, yielding progress along the way.

`add_file` is a generator of `FileProgress` whose return value is the `FileOutcome`; the
CLI and the TUI turn the first into progress bars and the second into a summary. Every
failure becomes an outcome with the reason (the library is left as it was), so one bad file
never stops the others: a path that is not a regular file (a folder, a named pipe, a device)
or is larger than `ReadOptions.max_file_bytes` is refused before it is opened, and a reader
or the chunker failing on a bug becomes a FAILED outcome that says so. Saving is not covered
by that net: an unexpected failure of the library raises, as it should. Indexing for search
is not done here (retrieval/ does it, driven by the engine, after the document is saved).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from ingest.chunker import chunk_document
from ingest.errors import EmptyFileError, IngestError, PasswordError
from ingest.library import Library, document_id
from ingest.readers import reader_for
from ingest.sniff import sniff_format
from ingest.tokens import count_tokens
from ingest.types import (
    ChunkSettings,
    Document,
    ExtractedText,
    Format,
    ReadOptions,
    SectionKind,
)


class Stage(StrEnum):
    READING = "reading"
    CHUNKING = "chunking"
    SAVING = "saving"
    EMBEDDING = "embedding"


class AddStatus(StrEnum):
    ADDED = "added"
    ALREADY_PRESENT = "already in the library"
    FAILED = "failed"


@dataclass(frozen=True)
class FileProgress:
    """`done` of `total` units (pages, sections, chunks) of one stage for one file."""

    path: Path
    stage: Stage
    done: int
    total: int
    unit: str


@dataclass(frozen=True)
class FileOutcome:
    """How adding one file ended, with per-stage seconds for the summary and benchmarks."""

    path: Path
    status: AddStatus
    document: Document | None = None
    error: str | None = None
    stage_seconds: dict[Stage, float] = field(default_factory=dict)
    warning: str | None = None  # added, but something after saving did not work out
    # The file is an encrypted PDF and the password was missing or wrong: a UI can ask for
    # one and try again without parsing `error`.
    password_required: bool = False

    @property
    def seconds(self) -> float:
        return sum(self.stage_seconds.values())


def add_file(
    library: Library,
    path: Path,
    chunking: ChunkSettings,
    options: ReadOptions | None = None,
) -> Generator[FileProgress, None, FileOutcome]:
    """Add `path` to `library`; see the module docstring for the protocol."""
    timings: dict[Stage, float] = {}
    options = options or ReadOptions()
    try:
        started = time.perf_counter()
        data = _read_bytes(path, options.max_file_bytes)
        doc_id = document_id(data)
        if library.has(doc_id):
            return FileOutcome(path, AddStatus.ALREADY_PRESENT, library.get(doc_id))
        file_format: Format | None = None
        try:
            file_format = sniff_format(data, path.name)
            extracted = yield from _extract(path, data, file_format, options)
        except IngestError:
            raise
        except Exception as error:  # deliberate: see _bug, a reader's bug fails one file
            part = f"{file_format.value} reader" if file_format else "format sniffer"
            raise _bug(path, part, error) from error
        timings[Stage.READING] = time.perf_counter() - started

        started = time.perf_counter()
        yield FileProgress(path, Stage.CHUNKING, 0, 1, "chunks")
        try:
            chunks = chunk_document(extracted.text, extracted.sections, chunking)
        except Exception as error:  # deliberate: as above, for the chunker
            raise _bug(path, "chunker", error) from error
        yield FileProgress(path, Stage.CHUNKING, len(chunks), len(chunks), "chunks")
        timings[Stage.CHUNKING] = time.perf_counter() - started

        started = time.perf_counter()
        yield FileProgress(path, Stage.SAVING, 0, 1, "documents")
        document = Document(
            id=doc_id,
            title=_title(extracted, path),
            source_path=str(path.resolve()),
            format=extracted.format,
            page_count=extracted.page_count,
            section_count=len(extracted.sections),
            token_count=count_tokens(extracted.text),
            chunk_count=len(chunks),
            byte_size=len(data),
            added_at=datetime.now(UTC),
        )
        # False: another process saved the same bytes since `has` above (Library.save's
        # contract: it keeps the first and says so), which is the same as finding it there.
        if not library.save(document, extracted, chunks, chunking):
            return FileOutcome(path, AddStatus.ALREADY_PRESENT, library.get(doc_id))
        yield FileProgress(path, Stage.SAVING, 1, 1, "documents")
        timings[Stage.SAVING] = time.perf_counter() - started
        return FileOutcome(path, AddStatus.ADDED, document, stage_seconds=timings)
    except IngestError as error:
        return FileOutcome(
            path,
            AddStatus.FAILED,
            error=str(error),
            stage_seconds=timings,
            password_required=isinstance(error, PasswordError),
        )


def _bug(path: Path, part: str, error: Exception) -> IngestError:
    """A reader or the chunker raising anything but an IngestError is a bug in longread, not
    a fault of the file. Caught, it fails this one file with a message to report, rather
    than a traceback that stops the files after it; the library is not touched yet then, so
    nothing is left half-done. The library's own errors are never caught this way."""
    return IngestError(
        f"{path.name} could not be read: longread's {part} failed"
        f" ({type(error).__name__}: {error}); this is a bug, please report it"
    )


# What `stat` calls the things that are not regular files, for the refusal message.
_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing what is not a regular file or is over `max_bytes`.

    The kind and size are checked before the file is opened: opening a named pipe waits
    for a writer forever, and /dev/zero never ends. The open itself does not wait either
    (O_NONBLOCK), and the opened file is checked again, in case the path was swapped for
    something else in between; at most `max_bytes + 1` bytes are read, so a file that grows
    while it is read is still refused.
    """
    try:
        _check_regular(path, path.stat(), max_bytes)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as file:
            _check_regular(path, os.fstat(file.fileno()), max_bytes)
            data = file.read(max_bytes + 1)
    except FileNotFoundError as error:
        raise IngestError(f"{path} does not exist") from error
    except PermissionError as error:
        raise IngestError(
            f"{path} cannot be read: permission denied; check its permissions"
        ) from error
    except OSError as error:
        raise IngestError(f"{path} cannot be read: {error.strerror or error}") from error
    if len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes, grew=True)
    if not data:
        raise EmptyFileError(f"{path.name} is empty")
    return data


def _check_regular(path: Path, info: os.stat_result, max_bytes: int) -> None:
    """Refuse a folder, anything else that is not a regular file, or one over `max_bytes`."""
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise IngestError(f"{path} is a folder; give the files in it instead")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
        raise IngestError(f"{path} is not a regular file ({kind}); longread reads files only")
    if info.st_size > max_bytes:
        raise _too_large(path, info.st_size, max_bytes, grew=False)


def _too_large(path: Path, size: int, max_bytes: int, *, grew: bool) -> IngestError:
    """The refusal of a file over the limit, saying how to raise the limit."""
    what = (
        f"{path} grew past {_size(max_bytes)} while it was read"
        if grew
        else f"{path} is {_size(size)}, over the limit of {_size(max_bytes)} for one file"
    )
    return IngestError(
        f"{what}; to add it, raise `max_file_mb` in the `[ingest]` table of config.toml"
        " (or set LONGREAD_INGEST_MAX_FILE_MB)"
    )


def _size(byte_count: int) -> str:
    if byte_count < 1024 * 1024:
        return f"{byte_count:,} bytes"
    return f"{byte_count / (1024 * 1024):,.1f}".removesuffix(".0") + " MB"


def _extract(
    path: Path, data: bytes, file_format: Format, options: ReadOptions
) -> Generator[FileProgress, None, ExtractedText]:
    """Run the reader the file's bytes call for, relaying its progress."""
    reader = reader_for(file_format)
    run = reader(data, path.name, options)
    unit = "pages" if file_format is Format.PDF else "sections"
    try:
        while True:
            step = next(run)
            yield FileProgress(path, Stage.READING, step.done, step.total, unit)
    except StopIteration as finished:
        extracted: ExtractedText = finished.value
    if not extracted.text.strip():
        raise EmptyFileError(f"{path.name} has no text to read")
    return extracted


def _title(extracted: ExtractedText, path: Path) -> str:
    """The file's own title, else its first top-level heading, else the file name.

    Chapter sections are not titles: "Stave Two" says nothing of which book it is.
    """
    if extracted.title:
        return extracted.title
    for section in extracted.sections:
        if section.kind is SectionKind.HEADING and section.level == 1:
            return section.label
    return path.stem
