"""Errors raised by retrieval, written for the person at the keyboard.

Each message says what is wrong and, where there is one, the fix. `StaleIndexError` is also
a signal for the caller: it carries the reason an index cannot be used, so the engine can
report it and rebuild (retrieval never silently searches a stale index).
"""

from __future__ import annotations


class RetrievalError(Exception):
    """Search or indexing cannot go on; the message is meant to be shown as it is."""


class EmbedderError(RetrievalError):
    """The embedding model cannot be loaded or used (missing or invalid model folder)."""


class StaleIndexError(RetrievalError):
    """A document's index is missing, damaged, or built with other settings than today's."""

    def __init__(self, document_id: str, reason: str) -> None:
        super().__init__(
            f"the search index of document {document_id[:12]} cannot be used: {reason};"
            " it needs rebuilding (longread rebuilds it when you search or re-index)"
        )
        self.document_id = document_id
        self.reason = reason
