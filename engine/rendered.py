"""Documents as the long-context prompt carries them, read, rendered and counted once.

A question on a book needs its text, its sections, its rendering with location marks and
its length in the model's tokens. Reading a novel from SQLite, rendering it and tokenizing
it costs seconds; a follow-up question must not pay that again. `RenderedDocuments` keeps
the last few, keyed by (model file, document), since token counts differ between models.

It does not plan, prompt or talk to a model: counting goes through the function it is given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from engine.prompts import document_prompt, render_document
from ingest.library import Library
from ingest.types import Document, Section
from models.types import ModelProfile

DOCUMENTS_KEPT = 4
"""Documents kept in memory (a book's text is a few MB)."""


@dataclass(frozen=True, eq=False)
class RenderedDocument:
    """A document's text and sections, its rendering, and its prompt's length on a model."""

    text: str
    sections: tuple[Section, ...]
    rendered: str
    tokens: int


class RenderedDocuments:
    """The last few rendered documents, least recently used dropped first. Thread-safe."""

    def __init__(self, kept: int = DOCUMENTS_KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._documents: OrderedDict[tuple[str, str], RenderedDocument] = OrderedDict()

    def get(
        self,
        library: Library,
        document: Document,
        profile: ModelProfile,
        count_tokens: Callable[[ModelProfile, str], int],
    ) -> RenderedDocument:
        """The document on this model: from memory, else read, rendered and counted now."""
        key = (profile.sha256 or str(profile.path), document.id)
        with self._lock:
            kept = self._documents.get(key)
            if kept is not None:
                self._documents.move_to_end(key)
                return kept
        text = library.text(document.id)
        sections = tuple(library.sections(document.id))
        rendered = render_document(text, sections)
        tokens = count_tokens(profile, document_prompt(document.title, rendered))
        made = RenderedDocument(text, sections, rendered, tokens)
        with self._lock:
            self._documents[key] = made
            while len(self._documents) > self._kept:
                self._documents.popitem(last=False)
        return made

    def forget(self, document_id: str) -> None:
        """Drop a document (removed from the library) on every model."""
        with self._lock:
            for key in [key for key in self._documents if key[1] == document_id]:
                del self._documents[key]

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()
