"""The assistant: the one facade the CLI and the TUI use, and the composition root.

It owns the library and (later) the model and the indexes, builds them lazily so a command
only pays for what it touches, and exposes the product's verbs: add, list, show, remove.
It prints nothing; it returns data and yields progress events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.config import Settings
from ingest.library import Library
from ingest.pipeline import FileOutcome, FileProgress, add_file
from ingest.types import Document, ReadOptions, Section


class Assistant:
    """longread's verbs over one data dir. Create one per process; close it when done."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._library: Library | None = None

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = Library(self.settings.home)
        return self._library

    def close(self) -> None:
        if self._library is not None:
            self._library.close()
            self._library = None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self, paths: Iterable[Path], password: str | None = None
    ) -> Iterator[FileProgress | FileOutcome]:
        """Add files one after another, yielding each one's progress and then its outcome.

        A failed file does not stop the others; its outcome carries the reason.
        """
        options = ReadOptions(password=password)
        for path in paths:
            outcome = yield from add_file(self.library, path, self.settings.chunking, options)
            yield outcome

    def documents(self) -> list[Document]:
        return self.library.documents()

    def resolve(self, ref: str) -> Document:
        """The document an id prefix or title fragment names (errors list near matches)."""
        return self.library.resolve(ref)

    def outline(self, ref: str) -> tuple[Document, list[Section]]:
        document = self.resolve(ref)
        return document, self.library.sections(document.id)

    def remove(self, ref: str) -> Document:
        document = self.resolve(ref)
        self.library.remove(document.id)
        return document
