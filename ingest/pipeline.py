"""Adding one file to the library: read, chunk, save, yielding progress along the way.

`add_file` is a generator of `FileProgress` whose return value is the `FileOutcome`; the
CLI and the TUI turn the first into progress bars and the second into a summary. Every
failure becomes an outcome with the reason (the library is left as it was); nothing raises
past it but programming errors. Indexing for search is not done here (retrieval/ does it,
driven by the engine, after the document is saved).
"""

from __future__ import annotations

import time
from collections.abc import Generator
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
    try:
        started = time.perf_counter()
        data = _read_bytes(path)
        doc_id = document_id(data)
        if library.has(doc_id):
            return FileOutcome(path, AddStatus.ALREADY_PRESENT, library.get(doc_id))
        extracted = yield from _extract(path, data, options or ReadOptions())
        timings[Stage.READING] = time.perf_counter() - started

        started = time.perf_counter()
        yield FileProgress(path, Stage.CHUNKING, 0, 1, "chunks")
        chunks = chunk_document(extracted.text, extracted.sections, chunking)
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
        library.save(document, extracted, chunks, chunking)
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


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except IsADirectoryError as error:
        raise IngestError(f"{path} is a folder; give the files in it instead") from error
    except FileNotFoundError as error:
        raise IngestError(f"{path} does not exist") from error
    except OSError as error:
        raise IngestError(f"{path} cannot be read: {error.strerror or error}") from error
    if not data:
        raise EmptyFileError(f"{path.name} is empty")
    return data


def _extract(
    path: Path, data: bytes, options: ReadOptions
) -> Generator[FileProgress, None, ExtractedText]:
    """Run the reader the file's bytes call for, relaying its progress."""
    file_format = sniff_format(data, path.name)
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
