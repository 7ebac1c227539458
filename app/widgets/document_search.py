"""Search over the open document: a query box, a status line and a `SourcesPanel` of hits.

A submitted query runs the facade's hybrid search (`Assistant.search`) in a thread worker,
since it may build the document's index first and always embeds the query. The worker only
posts messages: index progress, the results, or an error written for the person, which
becomes a notification. A newer query supersedes an older one: the worker group is
exclusive, and results carry a generation number so that a superseded search that still
finishes (a thread cannot be killed) never replaces newer results. Opening a hit posts the
panel's `SourcesPanel.Opened`, which bubbles to the host like the chat's sources do.

It holds no search logic and reads no document text.
"""

from __future__ import annotations

import threading
from typing import Self

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from app.cancel import cancel_event
from app.widgets.sources import SourceRef, SourcesPanel
from engine.assistant import Assistant
from engine.errors import USER_ERRORS

SEARCH_RESULTS = 10
PLACEHOLDER = "Search this document…"
HINT = "Words or a phrase; Enter searches"


def results_status(count: int) -> str:
    if count == 0:
        return "no matches"
    return "1 passage" if count == 1 else f"{count} passages"


class DocumentSearch(Vertical):
    """A search box over one document, listing its best passages."""

    DEFAULT_CSS = """
    DocumentSearch { height: 1fr; width: 1fr; }
    DocumentSearch > Input { margin: 0; }
    DocumentSearch > .status { height: 1; padding: 0 1; color: $text-muted; }
    DocumentSearch > SourcesPanel { height: 1fr; }
    """

    class Indexing(Message):
        """The document's index is being built before the search can run."""

        def __init__(self, generation: int, done: int, total: int) -> None:
            super().__init__()
            self.generation = generation
            self.done = done
            self.total = total

    class Results(Message):
        """The passages one query found, best first."""

        def __init__(self, generation: int, query: str, refs: tuple[SourceRef, ...]) -> None:
            super().__init__()
            self.generation = generation
            self.query = query
            self.refs = refs

    class Failed(Message):
        """The search could not run; `error` says why and what to do."""

        def __init__(self, generation: int, query: str, error: str) -> None:
            super().__init__()
            self.generation = generation
            self.query = query
            self.error = error

    def __init__(
        self,
        assistant: Assistant,
        document_id: str,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.assistant = assistant
        self.document_id = document_id
        self.last_query = ""
        self.searching = False
        self._generation = 0
        # A superseded search keeps running in its thread; one at a time keeps two threads
        # from building the same index or using the embedder at once.
        self._one_at_a_time = threading.Lock()
        self._quitting = threading.Event()  # replaced on mount by one the app sets on quit

    @property
    def status(self) -> str:
        return str(self.query_one(".status", Static).content)

    @property
    def results(self) -> SourcesPanel:
        return self.query_one(SourcesPanel)

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focus the query box (the widget itself is a container and takes no focus)."""
        self.query_one(Input).focus(scroll_visible)
        return self

    def compose(self) -> ComposeResult:
        yield Input(placeholder=PLACEHOLDER)
        yield Static(HINT, classes="status", markup=False)
        yield SourcesPanel(empty_text="")

    def on_mount(self) -> None:
        self._quitting = cancel_event(self.app)

    def _set_status(self, text: str) -> None:
        self.query_one(".status", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the host's own inputs (the chat's question box) must not see it
        self.search(event.value)

    def search(self, query: str) -> None:
        """Start searching for `query`, superseding any search still running."""
        query = query.strip()
        self._generation += 1
        self.last_query = query
        if not query:
            self.workers.cancel_group(self, "document-search")
            self.searching = False
            self.results.show(())
            self._set_status(HINT)
            return
        self.searching = True
        self._set_status("searching…")
        self._search(self._generation, query)

    @work(thread=True, exclusive=True, group="document-search")
    def _search(self, generation: int, query: str) -> None:
        worker = get_current_worker()
        cancel = self._quitting
        with self._one_at_a_time:
            if worker.is_cancelled or cancel.is_set():
                return
            try:
                for progress in self.assistant.prepare_indexes([self.document_id]):
                    if cancel.is_set():  # the app is quitting: stop building the index
                        return
                    self.post_message(self.Indexing(generation, progress.done, progress.total))
                hits = self.assistant.search(query, [self.document_id], k=SEARCH_RESULTS)
            except USER_ERRORS as error:
                self.post_message(self.Failed(generation, query, str(error)))
                return
        if not worker.is_cancelled:
            refs = tuple(SourceRef.from_hit(hit) for hit in hits)
            self.post_message(self.Results(generation, query, refs))

    def on_document_search_indexing(self, message: Indexing) -> None:
        message.stop()
        if message.generation == self._generation:
            self._set_status(f"indexing the document: {message.done:,} of {message.total:,}…")

    def on_document_search_results(self, message: Results) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        self.searching = False
        self._set_status(results_status(len(message.refs)))
        self.results.show(message.refs)

    def on_document_search_failed(self, message: Failed) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        self.searching = False
        self._set_status("search failed")
        self.notify(message.error, title="Search", severity="error")
