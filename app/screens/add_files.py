"""The add-files dialog: pick files, then watch them being read, chunked, saved and embedded.

A person types or pastes paths (with completion; a paste may hold several, one per line or
shell-quoted) or browses a directory tree, and the files gather in a pending list. "Add"
hands the list to `Assistant.add` in a thread worker; every progress record and outcome it
yields comes back to the UI as a message and becomes a row: file, stage, bar, count, then
the outcome. Escape stops the run between two progress records (files already added stay);
an encrypted PDF is asked for its password once the batch is over, and is re-run with it.

It holds no engine logic: it never reads a file, opens the library or builds an index
itself. Even resolving what was typed (a stat, a folder listing) runs in a thread, since a
network mount can stall it. The screen dismisses with the ids of the documents it added.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    DirectoryTree,
    Footer,
    Input,
)
from textual.worker import get_current_worker

from app.cancel import cancel_event
from app.screens.password import PasswordScreen
from app.widgets.file_row import FileRow, RowState, outcome_text
from app.widgets.path_picking import (
    FileTree,
    PathInput,
    PendingList,
    resolve_paths,
    split_paths,
)
from app.widgets.path_suggester import PathSuggester
from engine.assistant import Assistant
from engine.errors import USER_ERRORS
from ingest.pipeline import AddStatus, FileOutcome, FileProgress

ERROR_SECONDS = 12.0
"""Failures stay on screen long enough to read a two-line message."""


class AddFilesScreen(ModalScreen[list[str]]):
    """Add files to the library; dismisses with the ids of the documents added (maybe none).

    Messages (posted by its thread workers to itself): `PathsFound`, `Progressed`,
    `FileFinished`, `RunEnded`.
    """

    DEFAULT_CSS = """
    AddFilesScreen { align: center middle; }
    AddFilesScreen > #dialog {
        width: 100%; max-width: 120; height: 100%; max-height: 44;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    AddFilesScreen #path { margin-bottom: 0; }
    AddFilesScreen #browse { height: 1fr; min-height: 6; }
    AddFilesScreen FileTree { width: 1fr; border: round $primary-darken-2; }
    AddFilesScreen #pending-side { width: 1fr; }
    AddFilesScreen PendingList { height: 1fr; border: round $primary-darken-2; }
    AddFilesScreen #start { width: 100%; min-width: 10; }
    AddFilesScreen #progress { height: auto; max-height: 9; display: none; }
    AddFilesScreen #progress.-active { display: block; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("ctrl+s", "start", "Add"),
        Binding("escape", "stop", "Stop"),
        Binding("escape", "close", "Close"),
    ]

    class PathsFound(Message):
        """Typed or pasted paths, resolved to files off the UI thread."""

        def __init__(self, paths: list[Path], problems: list[str]) -> None:
            super().__init__()
            self.paths = paths
            self.problems = problems

    class Progressed(Message):
        def __init__(self, progress: FileProgress) -> None:
            super().__init__()
            self.progress = progress

    class FileFinished(Message):
        def __init__(self, outcome: FileOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    class RunEnded(Message):
        """The worker is done: `stopped` when Escape ended it, `error` when the library did."""

        def __init__(self, stopped: bool, error: str | None = None) -> None:
            super().__init__()
            self.stopped = stopped
            self.error = error

    def __init__(self, assistant: Assistant, start: Path | None = None) -> None:
        """`start` roots the directory tree (the home folder by default)."""
        super().__init__()
        self.assistant = assistant
        self._start = start or Path.home()
        self._cwd = Path.cwd()
        self._pending: list[Path] = []
        self._rows: dict[Path, FileRow] = {}
        self._added: list[str] = []
        self._present: list[str] = []
        self._failures = 0
        # Encrypted PDFs of this run, asked for their password once it ends; True when a
        # password was already tried and was wrong.
        self._locked: list[tuple[FileOutcome, bool]] = []
        self._password: str | None = None  # the password of the run under way
        self._cancel: threading.Event | None = None  # set only while a worker runs

    @property
    def running(self) -> bool:
        return self._cancel is not None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Add files"
            yield PathInput(
                placeholder="path to a file or folder (Tab completes, Enter adds)",
                suggester=PathSuggester(self._cwd),
                id="path",
            )
            with Horizontal(id="browse"):
                tree = FileTree(self._start)
                tree.border_title = "browse (Enter: file, a: folder)"
                yield tree
                with Vertical(id="pending-side"):
                    pending = PendingList(id="pending")
                    pending.border_title = "to add"
                    yield pending
                    yield Button("Add (ctrl+s)", id="start", variant="primary")
            yield VerticalScroll(id="progress")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PathInput).focus()
        self._show_pending()

    def on_unmount(self) -> None:
        # The worker's thread outlives the screen; tell it to stop rather than run on.
        if self._cancel is not None:
            self._cancel.set()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action == "close":
            return not self.running
        if action == "start":
            # Shown but greyed out when there is nothing to start, or a run is on.
            return None if self.running or not self._pending else True
        return True

    # -- choosing files ------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        typed = split_paths(event.value)
        event.input.clear()
        if typed:
            self._resolve(typed)

    def on_path_input_paths_pasted(self, message: PathInput.PathsPasted) -> None:
        self._resolve(message.paths)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self._queue([event.path])

    def action_add_highlighted(self) -> None:
        node = self.query_one(FileTree).cursor_node
        if node is not None and node.data is not None:
            self._resolve([str(node.data.path)])

    def action_remove_pending(self) -> None:
        index = self.query_one(PendingList).highlighted
        if index is not None and index < len(self._pending):
            del self._pending[index]
            self._show_pending()

    @work(thread=True, group="add-files-resolve")
    def _resolve(self, typed: list[str]) -> None:
        # Not exclusive: two pastes in quick succession must both land.
        paths, problems = resolve_paths(typed, self._cwd)
        self.post_message(self.PathsFound(paths, problems))

    def on_add_files_screen_paths_found(self, message: PathsFound) -> None:
        for problem in message.problems:
            self.notify(problem, severity="warning", markup=False)
        self._queue(message.paths)

    def _queue(self, paths: Iterable[Path]) -> None:
        known = set(self._pending)
        self._pending.extend(p for p in dict.fromkeys(paths) if p not in known)
        self._show_pending()

    def _show_pending(self) -> None:
        pending = self.query_one(PendingList)
        highlighted = pending.highlighted
        pending.set_options(Content(str(path)) for path in self._pending)
        if self._pending:
            pending.highlighted = min(highlighted or 0, len(self._pending) - 1)
        pending.border_subtitle = f"{len(self._pending)} files" if self._pending else "none yet"
        self.query_one("#start", Button).disabled = self.running or not self._pending
        self.refresh_bindings()

    # -- running -------------------------------------------------------------------------

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            event.stop()
            await self.action_start()

    async def action_start(self) -> None:
        if self.running or not self._pending:
            return
        batch, self._pending = self._pending, []
        self._show_pending()
        self._failures = 0
        self._present = []
        self._locked = []
        progress = self.query_one("#progress", VerticalScroll)
        await progress.remove_children()
        self._rows = {path: FileRow(path) for path in batch}
        await progress.mount_all(self._rows.values())
        progress.add_class("-active")
        self._start_run(batch, None)

    def _start_run(self, paths: list[Path], password: str | None) -> None:
        self._password = password
        self._cancel = cancel_event(self.app)
        self._show_pending()
        self._add(paths, password, self._cancel)

    @work(thread=True, exclusive=True, group="add-files")
    def _add(self, paths: list[Path], password: str | None, cancel: threading.Event) -> None:
        """Drive `Assistant.add`, posting what it yields; never touches a widget."""
        worker = get_current_worker()
        events = self.assistant.add(paths, password=password)
        stopped = False
        error: str | None = None
        try:
            for event in events:
                if isinstance(event, FileOutcome):
                    self.post_message(self.FileFinished(event))
                else:
                    self.post_message(self.Progressed(event))
                if cancel.is_set() or worker.is_cancelled:
                    stopped = True
                    break
        except USER_ERRORS as failure:  # the library itself failed (disk full, locked)
            error = str(failure)
        finally:
            # Close now, in this thread: the pipeline stops at the yield it reached (between
            # two steps, never inside a library transaction) instead of whenever the
            # garbage collector finalizes it, in whatever thread that happens to be.
            if isinstance(events, Generator):
                events.close()
            self.post_message(self.RunEnded(stopped, error))

    def on_add_files_screen_progressed(self, message: Progressed) -> None:
        row = self._rows.get(message.progress.path)
        if row is not None:
            if row.stage is None:
                # A new file started: bring it into view, once the rows above it have been
                # laid out with their outcome lines.
                self.call_after_refresh(row.scroll_visible, animate=False)
            row.show_progress(message.progress)

    def on_add_files_screen_file_finished(self, message: FileFinished) -> None:
        outcome = message.outcome
        row = self._rows.get(outcome.path)
        document = outcome.document
        if outcome.password_required:
            self._locked.append((outcome, self._password is not None))
            if row is not None:
                row.show_outcome(
                    "needs a password (asked when the others are done)", RowState.LOCKED
                )
            return
        if row is not None:
            failed = outcome.status is AddStatus.FAILED
            row.show_outcome(outcome_text(outcome), RowState.FAILED if failed else RowState.DONE)
        if outcome.status is AddStatus.FAILED or document is None:
            self._fail(outcome)
        elif outcome.status is AddStatus.ADDED:
            self._added.append(document.id)
        else:
            self._present.append(document.title)
        if outcome.warning:
            self.notify(
                f"{outcome.path.name}: {outcome.warning}",
                severity="warning",
                timeout=ERROR_SECONDS,
                markup=False,
            )

    def _fail(self, outcome: FileOutcome) -> None:
        self._failures += 1
        # The same message the CLI prints: the pipeline writes it for the person.
        self.notify(
            outcome.error or f"{outcome.path.name} could not be added.",
            title=f"Could not add {outcome.path.name}",
            severity="error",
            timeout=ERROR_SECONDS,
            markup=False,
        )

    def on_add_files_screen_run_ended(self, message: RunEnded) -> None:
        self._cancel = None
        self._show_pending()
        if message.error is not None:
            self._failures += 1
            self.notify(message.error, severity="error", timeout=ERROR_SECONDS, markup=False)
        if message.stopped:
            self._stopped()
        else:
            self._next_password()

    def _stopped(self) -> None:
        saved: list[str] = []
        for row in self._rows.values():
            if row.state in (RowState.DONE, RowState.FAILED):
                continue
            saved += [row.path.name] if row.saved else []
            note = "saved; search index not built yet" if row.saved else "not added"
            row.show_outcome(f"stopped: {note}", RowState.FAILED)
        self._locked = []
        added = len(self._added)
        text = "Adding cancelled."
        if added:
            text += f" The {added} file{'' if added == 1 else 's'} added before it stay"
            text += " in the library."
        if saved:
            # Its index is built the first time it is searched or asked about.
            text += f" {', '.join(saved)}: saved to the library, not yet indexed for search."
        if not added and not saved:
            text += " Nothing was added."
        self.notify(text, severity="warning", timeout=ERROR_SECONDS, markup=False)

    def _next_password(self) -> None:
        if not self._locked:
            self._settle()
            return
        outcome, wrong = self._locked.pop(0)

        def answered(password: str | None) -> None:
            if password is None:
                row = self._rows.get(outcome.path)
                if row is not None:
                    row.show_outcome(outcome_text(outcome), RowState.FAILED)
                self._fail(outcome)
                self._next_password()
            else:
                self._start_run([outcome.path], password)

        self.app.push_screen(PasswordScreen(outcome.path.name, wrong=wrong), answered)

    def _settle(self) -> None:
        """Every file has an outcome: close when all went well, else stay to show why (or
        to add the files queued while this run went on)."""
        if self._failures or self._pending:
            self.query_one(PathInput).focus()
            return
        added = len(self._added)
        if added:
            self.notify(f"Added {added} document{'' if added == 1 else 's'} to the library.")
        for title in self._present:
            self.notify(f"{title!r} is already in the library.", markup=False)
        self.dismiss(self._added)

    def action_stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.notify("Stopping after the current step…")

    def action_close(self) -> None:
        self.dismiss(self._added)
