"""Domain types of ingestion: what a reader extracts, what the chunker cuts, what the library keeps.

All are frozen dataclasses; modes are StrEnums. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Format(StrEnum):
    """The kinds of file longread reads, as recognized from their bytes."""

    PDF = "pdf"
    EPUB = "epub"
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


class SectionKind(StrEnum):
    """What a section of a document stands for, which decides how it is cited."""

    PAGE = "page"
    CHAPTER = "chapter"
    HEADING = "heading"
    # Text under no heading of its own. No reader makes it now; libraries written before
    # FRONT existed hold their front matter as BODY, and still load as such.
    BODY = "body"
    # The text before the first heading or chapter. Its label (the title, else "Start") is
    # for display only: it is not a place in the document, so nothing cites it by label.
    FRONT = "front"


@dataclass(frozen=True)
class Section:
    """A located part of a document's text: a PDF page, an EPUB chapter, a Markdown heading.

    `start` and `end` are character offsets into the document's normalized text.
    """

    ordinal: int
    label: str
    kind: SectionKind
    start: int
    end: int
    level: int = 1

    def citation(self) -> str:
        """How an answer refers to this section: "p. xii", "Chapter 3"."""
        return f"p. {self.label}" if self.kind is SectionKind.PAGE else self.label


@dataclass(frozen=True)
class ExtractedText:
    """What a reader returns: normalized text, its sections in order, and the file's own title."""

    text: str
    sections: tuple[Section, ...]
    format: Format
    title: str | None = None
    page_count: int | None = None


@dataclass(frozen=True)
class ReadProgress:
    """A reader's progress: `done` of `total` units (pages for PDFs, sections otherwise)."""

    done: int
    total: int


@dataclass(frozen=True)
class ReadOptions:
    """What a person can tell a reader about a file, and how large a file may be read."""

    password: str | None = None
    # A larger file is refused before it is read (config `[ingest] max_file_mb`). 512 MiB
    # is far past any book and well short of what reading it whole would exhaust.
    max_file_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class ChunkSettings:
    """Token-sized chunking: chunks of at most `max_tokens`, overlapping the last by `overlap`."""

    max_tokens: int = 600
    overlap: int = 100

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError(f"chunk size must be at least 16 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap < self.max_tokens // 2:
            raise ValueError(
                f"chunk overlap must be between 0 and half the chunk size ({self.max_tokens // 2}),"
                f" got {self.overlap}"
            )


@dataclass(frozen=True)
class Chunk:
    """A token-sized span of a document, the unit of retrieval and citation.

    `start`/`end` are character offsets into the document's normalized text, so
    `text == document_text[start:end]`; `location` is the citation label ("p. 17-18").
    """

    ordinal: int
    text: str
    start: int
    end: int
    location: str
    token_count: int
    section_ordinal: int


@dataclass(frozen=True)
class Document:
    """A document in the library. Its id is the sha256 of the file's bytes."""

    id: str
    title: str
    source_path: str
    format: Format
    page_count: int | None
    section_count: int
    token_count: int
    chunk_count: int
    byte_size: int
    added_at: datetime


@dataclass(frozen=True)
class StoredTurn:
    """One turn of a document's conversation as the library keeps it.

    `payload` is JSON the engine wrote and reads back (engine/history.py); the library does
    not look inside. `ordinal` counts from 0 in the order turns were added; `created_at` is
    in UTC.
    """

    ordinal: int
    created_at: datetime
    payload: str


@dataclass(frozen=True)
class StoredBeacon:
    """One beacon summary as the library keeps it: the window of the document's text it
    covers (`start`, `end`, character offsets), that window's location label, the summary
    and its length in the model's tokens. `ordinal` is the window's place, from 0."""

    ordinal: int
    start: int
    end: int
    location: str
    text: str
    tokens: int


@dataclass(frozen=True)
class BeaconSetKey:
    """What one set of beacons was built for: a document, a model file (its sha256) and the
    settings that shaped them (`settings_key`, a fingerprint the engine makes)."""

    document_id: str
    model_sha256: str
    settings_key: str


@dataclass(frozen=True)
class BeaconSetRecord:
    """A set of beacons as the library keeps it: its key, the windows it needs, how many
    beacons are stored so far, and the settings it was built with (JSON the engine wrote)."""

    key: BeaconSetKey
    window_count: int
    stored: int
    settings: str

    @property
    def complete(self) -> bool:
        return self.stored >= self.window_count
