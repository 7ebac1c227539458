"""The chat screen: questions about one document, answers streamed as they are written.

A thread worker runs `Assistant.ask` and turns its events into messages (tokens batched,
so the UI thread handles a few updates a second, not one per token); the screen turns those
into an `AnswerBlock`, a progress bar for slow steps (index, model load, prefill, with the
time left), and the sources panel. The log follows new text only while the reader is at the
bottom, and says when new text is below. Escape stops an answer; the partial answer stays on
screen marked cancelled and is not saved. Finished answers are saved to the document's
conversation in the library, which is shown again when the document is reopened.
"""

from __future__ import annotations

import re
import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
)

from app.cancel import cancel_event
from app.screens.confirm import ConfirmScreen
from app.screens.passage import PassageScreen
from app.widgets.answer import AnswerBlock
from app.widgets.chat_log import ChatLog
from app.widgets.document_search import DocumentSearch
from app.widgets.sources import SourceRef, SourcesPanel
from engine.assistant import Assistant
from engine.errors import USER_ERRORS
from engine.types import (
    AnswerDone,
    AnswerEvent,
    AnswerToken,
    Citation,
    Escalated,
    Preparing,
    PrepStage,
    RouteChosen,
    SourcesFound,
)
from ingest.types import Document

TOKEN_BATCH_SECONDS = 0.05
"""Tokens are sent to the UI at most this often: ~20 updates a second reads as live."""

STAGE_LABELS = {
    PrepStage.INDEX: "Building the search index",
    PrepStage.MODEL: "Loading the model",
    PrepStage.PREFILL: "Reading the document",
    PrepStage.BEACONS: "Summarizing the book (once)",
}


def export_file_name(title: str) -> str:
    """A file name for a conversation export: the title, made safe for any file system."""
    slug = re.sub(r"[^\w]+", "-", title.lower()).strip("-")[:60]
    return f"{slug or 'conversation'}-conversation.md"


class PrepClock:
    """Progress of one slow step, with the time left estimated from its rate so far."""

    def __init__(self) -> None:
        self._stage: PrepStage | None = None
        self._started = 0.0
        self._first_done = 0

    def describe(self, event: Preparing, now: float) -> str:
        if event.stage is not self._stage:
            self._stage, self._started, self._first_done = event.stage, now, event.done
        label = STAGE_LABELS[event.stage]
        if event.stage is PrepStage.MODEL:
            return f"{label} {event.detail}…"
        text = f"{label}: {event.done:,} / {event.total:,} {event.detail}"
        elapsed = now - self._started
        progressed = event.done - self._first_done
        if progressed > 0 and elapsed > 0.5 and event.total > event.done:
            left = (event.total - event.done) * elapsed / progressed
            text += f" · about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    """ "40 s", "12 min": a beacon build of a whole book takes minutes, a prefill seconds."""
    return f"{seconds:,.0f} s" if seconds < 90 else f"{seconds / 60:,.0f} min"


class ChatScreen(Screen[None]):
    """A conversation with one document, with its sources and a search over it."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("escape", "stop_or_back", "Stop / back"),
        Binding("ctrl+r", "route_reason", "Why this route"),
        Binding("ctrl+y", "copy_answer", "Copy answer", show=False),
        Binding("ctrl+s", "export", "Export", show=False),
        Binding("ctrl+l", "clear", "Clear", show=False),
        Binding("ctrl+b", "toggle_side", "Sources"),
        Binding("ctrl+f", "search", "Search", show=False),
        Binding("ctrl+down", "follow", "Newest", show=False),
    ]

    class Tokens(Message):
        """A batch of answer text."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class EngineEvent(Message):
        """Any other event of the answering pipeline, passed on as it is."""

        def __init__(self, event: AnswerEvent) -> None:
            super().__init__()
            self.event = event

    class Failed(Message):
        """The question could not be answered; the message says why and what to do."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, assistant: Assistant, document: Document) -> None:
        super().__init__()
        self.assistant = assistant
        self.document = document
        self.sub_title = document.title
        self._current: AnswerBlock | None = None
        self._cancel: threading.Event | None = None
        self._clock = PrepClock()

    @property
    def busy(self) -> bool:
        return self._cancel is not None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="conversation"):
                yield ChatLog(id="log")
                yield Static("↓ new text below (ctrl+↓)", id="new-below")
                # The label above the bar: at 80 columns, side by side, a label had ~18.
                with Vertical(id="progress"):
                    yield Label("", id="progress-label")
                    yield ProgressBar(id="progress-bar", show_eta=False)
                yield Input(placeholder="Ask about this document…", id="question")
            with TabbedContent(id="side"):
                with TabPane("Sources", id="sources-tab"):
                    yield SourcesPanel(id="sources")
                with TabPane("Search", id="search-tab"):
                    yield DocumentSearch(self.assistant, self.document.id)
        yield Footer()

    async def on_mount(self) -> None:
        self.title = "longread"
        self.query_one("#new-below").display = False
        self.query_one("#progress").display = False
        log = self.query_one("#log", ChatLog)
        try:
            turns = self.assistant.conversations.turns(self.document.id)
        except USER_ERRORS as error:  # a conversation saved by a newer longread, say
            self.notify(str(error), severity="error", timeout=20)
            turns = []
        await log.mount_all(AnswerBlock(turn.question, turn) for turn in turns)
        if turns:
            self._show_sources(turns[-1].citations)
        self.query_one("#question", Input).focus()

    # -- asking --------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "question":
            return
        question = event.value.strip()
        if not question:
            return
        if self.busy:
            self.notify("An answer is being written; press Escape to stop it first.")
            return
        event.input.clear()
        block = AnswerBlock(question)
        await self.query_one("#log", ChatLog).mount(block)
        block.show_status("thinking…")
        self._current = block
        self._follow()
        self._cancel = cancel_event(self.app)
        self._ask(question, self._cancel)

    @work(thread=True, exclusive=True, group="ask")
    def _ask(self, question: str, cancel: threading.Event) -> None:
        """Answer in this thread; only messages reach the screen."""
        pending: list[str] = []
        last_sent = 0.0
        try:
            events = self.assistant.ask(
                self.document.id,
                question,
                strategy=self.assistant.settings.router.forced_strategy,
                cancel=cancel,
            )
            for event in events:
                if isinstance(event, AnswerToken):
                    pending.append(event.text)
                    now = time.monotonic()
                    if now - last_sent >= TOKEN_BATCH_SECONDS:
                        self.post_message(self.Tokens("".join(pending)))
                        pending.clear()
                        last_sent = now
                    continue
                if pending:
                    self.post_message(self.Tokens("".join(pending)))
                    pending.clear()
                if isinstance(event, AnswerDone):
                    self.assistant.conversations.remember(self.document.id, event.answer)
                self.post_message(self.EngineEvent(event))
        except USER_ERRORS as error:
            self.post_message(self.Failed(str(error)))

    async def on_chat_screen_tokens(self, message: Tokens) -> None:
        if self._current is None:
            return
        self._current.show_status("")
        self._hide_progress()
        await self._current.append(message.text)
        if not self.query_one("#log", ChatLog).following:
            self.query_one("#new-below").display = True

    async def on_chat_screen_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        block = self._current
        if block is None:
            return
        if isinstance(event, RouteChosen):
            block.show_route(event.route)
        elif isinstance(event, Preparing):
            self._show_progress(event)
        elif isinstance(event, SourcesFound):
            self._show_sources(event.citations)
        elif isinstance(event, Escalated):
            await block.set_aside(event.attempt, event.reason)
            second = AnswerBlock(block.question)
            await self.query_one("#log", ChatLog).mount(second)
            second.show_route(event.route, escalated=True)
            second.show_status("asking again…")
            self._current = second
        elif isinstance(event, AnswerDone):
            await block.finish(event.answer)
            self._show_sources(event.answer.citations)
            self._done()

    def on_chat_screen_failed(self, message: Failed) -> None:
        if self._current is not None:
            self._current.show_status("could not answer")
        self.notify(message.error, severity="error", timeout=10)
        self._done()

    def _done(self) -> None:
        self._cancel = None
        self._current = None
        self._hide_progress()

    # -- progress, following, sources ----------------------------------------------------

    def _show_progress(self, event: Preparing) -> None:
        self.query_one("#progress").display = True
        self.query_one("#progress-label", Label).update(
            self._clock.describe(event, time.monotonic())
        )
        bar = self.query_one("#progress-bar", ProgressBar)
        bar.update(total=max(event.total, 1), progress=event.done)

    def _hide_progress(self) -> None:
        self.query_one("#progress").display = False

    def on_chat_log_following_changed(self, message: ChatLog.FollowingChanged) -> None:
        if message.following:
            self.query_one("#new-below").display = False

    def _follow(self) -> None:
        self.query_one("#log", ChatLog).follow()
        self.query_one("#new-below").display = False

    def _show_sources(self, citations: tuple[Citation, ...]) -> None:
        panel = self.query_one("#sources", SourcesPanel)
        panel.show([SourceRef.from_citation(citation) for citation in citations])

    def on_sources_panel_opened(self, message: SourcesPanel.Opened) -> None:
        text = self.assistant.library.text(self.document.id)
        others = message.panel.refs  # n and p step through the answer's (or search's) others
        self.app.push_screen(PassageScreen(self.document.title, text, message.ref, refs=others))

    # -- actions -------------------------------------------------------------------------

    def action_stop_or_back(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            if self._current is not None:
                self._current.show_status("stopping…")
        else:
            self.dismiss(None)

    def _last_block(self) -> AnswerBlock | None:
        blocks = [b for b in self.query(AnswerBlock) if b.text]
        return blocks[-1] if blocks else None

    def action_route_reason(self) -> None:
        block = self._last_block()
        badge = block.query_one(".badge", Label) if block is not None else None
        if badge is None or not badge.tooltip:
            self.notify("Ask a question first: each answer says why it took its route.")
            return
        self.notify(str(badge.tooltip), title="Why this route", timeout=15)

    def action_copy_answer(self) -> None:
        block = self._last_block()
        if block is None:
            self.notify("There is no answer to copy yet.")
            return
        self.app.copy_to_clipboard(block.text)
        self.notify("Copied the last answer to the clipboard.")

    def action_export(self) -> None:
        from app.app import default_export_dir

        markdown = self.assistant.conversations.export(self.document.id)
        path = default_export_dir() / export_file_name(self.document.title)
        try:
            path.write_text(markdown, encoding="utf-8")
        except OSError as error:
            self.notify(f"Could not write {path}: {error.strerror}", severity="error")
            return
        self.notify(f"Exported the conversation to {path}")

    def action_clear(self) -> None:
        if self.busy:
            self.notify("Stop the answer being written first (Escape).")
            return

        async def confirmed(yes: bool | None) -> None:
            if yes:
                self.assistant.conversations.clear(self.document.id)
                await self.query_one("#log", ChatLog).remove_children()
                self._show_sources(())
                self.notify("Cleared the conversation.")

        self.app.push_screen(
            ConfirmScreen("Clear this document's conversation? It cannot be undone.", "Clear"),
            confirmed,
        )

    def action_toggle_side(self) -> None:
        side = self.query_one("#side", TabbedContent)
        side.display = not side.display

    def action_search(self) -> None:
        side = self.query_one("#side", TabbedContent)
        side.display = True
        side.active = "search-tab"
        self.query_one(DocumentSearch).query_one(Input).focus()

    def action_follow(self) -> None:
        self._follow()
