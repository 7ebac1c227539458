"""One file of an add-files run: its name, stage, progress bar and count, then its outcome.

It only shows the pipeline's progress records and outcome; it reads nothing itself.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from ingest.pipeline import AddStatus, FileOutcome, FileProgress, Stage


def outcome_text(outcome: FileOutcome) -> str:
    """The outcome line of a row: what the CLI prints, without its colours."""
    document = outcome.document
    if outcome.status is AddStatus.FAILED or document is None:
        return f"✗ {outcome.error}"
    if outcome.status is AddStatus.ALREADY_PRESENT:
        return f"= already in the library as {document.title!r} ({document.id[:12]})"
    pages = f"{document.page_count} pages, " if document.page_count else ""
    return (
        f"✓ {document.title}: {pages}{document.token_count:,} tokens,"
        f" {document.chunk_count} chunks, {outcome.seconds:.1f} s"
    )


class RowState(StrEnum):
    """How a row's file ended; the value names the row's CSS class and its stage label."""

    DONE = "done"
    FAILED = "failed"
    LOCKED = "locked"  # waits for its password


class FileRow(Vertical):
    """One file of a run: name, stage, bar and count, then the outcome underneath."""

    DEFAULT_CSS = """
    FileRow { height: auto; }
    FileRow > Horizontal { height: 1; }
    FileRow .name {
        width: 1fr; min-width: 12; padding-right: 1; text-wrap: nowrap; text-overflow: ellipsis;
    }
    FileRow .stage { width: 10; color: $secondary; }
    FileRow ProgressBar { width: 22; }
    FileRow ProgressBar Bar { width: 20; }
    FileRow .count { width: 18; color: $text-muted; }
    FileRow .outcome { display: none; width: 100%; padding-left: 2; }
    FileRow.-done .outcome { display: block; color: $success; }
    FileRow.-failed .outcome { display: block; color: $error; }
    FileRow.-locked .outcome { display: block; color: $warning; }
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.stage: Stage | None = None
        self.state: RowState | None = None
        self.saved = False  # past the save: the document is in the library even if stopped

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.path.name, classes="name", markup=False)
            yield Label("waiting", classes="stage")
            yield ProgressBar(show_eta=False, show_percentage=False)
            yield Label("", classes="count")
        yield Label("", classes="outcome", markup=False)

    def show_progress(self, progress: FileProgress) -> None:
        self.stage = progress.stage
        self.saved = (
            self.saved
            or progress.stage is Stage.EMBEDDING
            or (progress.stage is Stage.SAVING and progress.done >= progress.total)
        )
        self.state = None  # a file re-run with its password starts over
        self.set_classes("")
        self.query_one(".stage", Label).update(progress.stage.value)
        self.query_one(ProgressBar).update(total=max(progress.total, 1), progress=progress.done)
        count = f"{progress.done:,}/{progress.total:,} {progress.unit}"
        self.query_one(".count", Label).update(count)

    def show_outcome(self, text: str, state: RowState) -> None:
        self.state = state
        self.set_classes(f"-{state.value}")
        self.query_one(".stage", Label).update(state.value)
        bar = self.query_one(ProgressBar)
        # A file already in the library ends before any progress: its bar would otherwise
        # keep its "waiting" animation; a finished file's bar ends full, a failed one's not.
        total = bar.total or 1
        bar.update(total=total, progress=total if state is RowState.DONE else bar.progress)
        self.query_one(".outcome", Label).update(text)
