"""The add-files dialog through Textual's Pilot, over a real Assistant with fakes behind its
seams (FakeRuntime, FakeEmbedder); library, readers and pipeline are real. Also the pure
parts: path completion, splitting pasted paths, resolving folders.

pytest-asyncio is not installed here, so each Pilot test is a sync function that runs its
scenario with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, DirectoryTree, Footer, Input, Label

from app.screens.add_files import AddFilesScreen
from app.screens.password import PasswordScreen
from app.widgets.file_row import FileRow
from app.widgets.path_picking import PathInput, PendingList, resolve_paths, split_paths
from app.widgets.path_suggester import PathSuggester, complete_path
from engine.assistant import Assistant
from engine.config import load_settings
from ingest.pipeline import AddStatus, FileOutcome
from tests.app.harness import NoteTakingApp, wait_for
from tests.fake_llm import FakeRuntime
from tests.fakes import FakeEmbedder
from tests.pdf_factory import make_pdf, write_pdf

STORY = (
    "Chapter One\n\nThe keeper of the northern light was a patient woman named Ida Varga."
    " Every evening she climbed the ninety steps of the tower and trimmed the wick.\n"
)
# A word only the long file holds, so the gated embedder can tell its batches apart.
LONG_MARK = "tideway"
LONG_TEXT = (
    f"The {LONG_MARK} rose over the rocks and fell again, and the gulls cried over the"
    " harbour while the fishing boats rocked at their moorings. "
) * 500  # about 14k tokens: 25 or more chunks, so two or more embedding batches of 16
PASSWORD = "opensesame"


# -- the host app and helpers ---------------------------------------------------------------


class Host(NoteTakingApp):
    """Pushes the dialog and records what it dismisses with and every notification."""

    def __init__(self, dialog: AddFilesScreen) -> None:
        super().__init__()
        self.dialog = dialog
        self.results: list[list[str] | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.dialog, self.results.append)


class RecordingScreen(AddFilesScreen):
    """Notes what each row showed when its file finished (Textual calls this handler before
    the base class's, so the row still shows its last progress)."""

    def __init__(self, assistant: Assistant, start: Path) -> None:
        super().__init__(assistant, start=start)
        self.last_shown: dict[str, tuple[str, str, float | None, float]] = {}

    def on_add_files_screen_file_finished(self, message: AddFilesScreen.FileFinished) -> None:
        for row in self.query(FileRow):
            if row.path == message.outcome.path:
                self.last_shown[row.path.name] = (
                    str(row.query_one(".stage", Label).content),
                    str(row.query_one(".count", Label).content),
                    row.query_one("ProgressBar").total,  # type: ignore[attr-defined]
                    row.query_one("ProgressBar").progress,  # type: ignore[attr-defined]
                )


class GatedEmbedder(FakeEmbedder):
    """Blocks on any batch holding LONG_MARK until `gate` is set, so a test can press Escape
    while the long file is being embedded; counts those batches."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.long_batches = 0

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if any(LONG_MARK in text for text in texts):
            self.long_batches += 1
            self.gate.wait(timeout=10)
        return super().embed(texts)


def make_assistant(home: Path, embedder: FakeEmbedder | None = None) -> Assistant:
    settings = load_settings(environ={"LONGREAD_HOME": str(home)})
    return Assistant(settings, runtime=FakeRuntime(), embedder=embedder or FakeEmbedder())


def run(dialog: AddFilesScreen, scenario: Callable[[Host, Pilot[None]], Awaitable[None]]) -> Host:
    """Run `scenario` against the dialog hosted in a 100x30 terminal; returns the host."""
    host = Host(dialog)

    async def main() -> None:
        async with host.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: host.screen is dialog)
            await scenario(host, pilot)

    asyncio.run(main())
    return host


async def queue_paths(pilot: Pilot[None], dialog: AddFilesScreen, *paths: Path) -> None:
    """Type each path into the path field and press Enter, as a person would paste it."""
    field = dialog.query_one(PathInput)
    for path in paths:
        field.focus()
        field.value = str(path)
        await pilot.press("enter")
    await wait_for(pilot, lambda: len(dialog._pending) == len(paths))


def stage_of(dialog: AddFilesScreen, name: str) -> str:
    for row in dialog.query(FileRow):
        if row.path.name == name:
            return str(row.query_one(".stage", Label).content)
    return ""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- adding ---------------------------------------------------------------------------------


def test_adding_a_text_file_shows_progress_and_dismisses_with_its_id(tmp_path: Path) -> None:
    assistant = make_assistant(tmp_path / "home")
    story = write(tmp_path / "story.txt", STORY)
    dialog = RecordingScreen(assistant, start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, story)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(host.results))

    host = run(dialog, scenario)
    [document] = assistant.documents()
    assert host.results == [[document.id]]
    stage, count, total, done = dialog.last_shown["story.txt"]
    # The last stage is the search index; the bar and the count end full.
    assert stage == "embedding"
    assert total is not None and done == total
    assert count.endswith("chunks")
    assert not host.errors()
    assert any("Added 1 document" in note.message for note in host.notes)


def test_a_broken_file_notifies_the_cli_message_and_leaves_the_library_alone(
    tmp_path: Path,
) -> None:
    assistant = make_assistant(tmp_path / "home")
    fake_pdf = write(tmp_path / "report.pdf", "this is plain text, not a PDF at all\n")
    empty = write(tmp_path / "empty.txt", "")
    # What the CLI would print after the file name, from a library of its own.
    expected = []
    with make_assistant(tmp_path / "other") as other:
        for path in (fake_pdf, empty):
            *_, outcome = other.add([path])
            assert isinstance(outcome, FileOutcome) and outcome.status is AddStatus.FAILED
            expected.append(outcome.error)
    dialog = AddFilesScreen(assistant, start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, fake_pdf, empty)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(host.errors()) == 2)
        await wait_for(pilot, lambda: not dialog.running)
        # Failures keep the dialog open, showing why; Escape then closes it.
        assert host.screen is dialog and not host.results
        assert "✗" in str(dialog.query(FileRow).first().query_one(".outcome", Label).content)
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(host.results))

    host = run(dialog, scenario)
    assert [note.message for note in host.errors()] == expected
    assert "report.pdf" in host.errors()[0].title
    assert host.results == [[]]
    assert assistant.documents() == []


def test_a_failure_does_not_stop_the_other_files(tmp_path: Path) -> None:
    assistant = make_assistant(tmp_path / "home")
    empty = write(tmp_path / "empty.txt", "")
    story = write(tmp_path / "story.txt", STORY)
    dialog = AddFilesScreen(assistant, start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, empty, story)
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: not dialog.running and stage_of(dialog, "story.txt") == "done"
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(host.results))

    host = run(dialog, scenario)
    [document] = assistant.documents()
    assert host.results == [[document.id]]
    assert len(host.errors()) == 1


# -- encrypted PDFs -------------------------------------------------------------------------


def test_pipeline_marks_password_failures_only(tmp_path: Path) -> None:
    locked = write_pdf(tmp_path / "locked.pdf", make_pdf(["Secret page"], password=PASSWORD))
    empty = write(tmp_path / "empty.txt", "")
    with make_assistant(tmp_path / "home") as assistant:
        outcomes = [e for e in assistant.add([locked, empty]) if isinstance(e, FileOutcome)]
        wrong = [e for e in assistant.add([locked], password="nope") if isinstance(e, FileOutcome)]
    assert [o.password_required for o in outcomes] == [True, False]
    assert wrong[0].password_required and wrong[0].status is AddStatus.FAILED


def test_an_encrypted_pdf_asks_for_its_password_again_when_wrong(tmp_path: Path) -> None:
    assistant = make_assistant(tmp_path / "home")
    locked = write_pdf(
        tmp_path / "locked.pdf",
        make_pdf(["The lamp room key hangs by the door."], password=PASSWORD),
    )
    story = write(tmp_path / "story.txt", STORY)
    dialog = AddFilesScreen(assistant, start=tmp_path)
    asked: list[PasswordScreen] = []

    async def answer(host: Host, pilot: Pilot[None], password: str) -> PasswordScreen:
        await wait_for(
            pilot, lambda: isinstance(host.screen, PasswordScreen) and host.screen not in asked
        )
        prompt = host.screen
        assert isinstance(prompt, PasswordScreen)
        asked.append(prompt)
        prompt.query_one(Input).value = password
        await pilot.press("enter")
        return prompt

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, locked, story)
        await pilot.press("ctrl+s")
        first = await answer(host, pilot, "not-it")
        # The other file did not wait for the password.
        assert stage_of(dialog, "story.txt") == "done"
        second = await answer(host, pilot, PASSWORD)
        assert (first.file_name, first.wrong) == ("locked.pdf", False)
        assert (second.file_name, second.wrong) == ("locked.pdf", True)
        await wait_for(pilot, lambda: bool(host.results))

    host = run(dialog, scenario)
    documents = {d.title: d.id for d in assistant.documents()}
    assert len(documents) == 2
    [added] = host.results
    assert added is not None and sorted(added) == sorted(documents.values())
    assert not host.errors()


def test_cancelling_the_password_leaves_the_file_failed(tmp_path: Path) -> None:
    assistant = make_assistant(tmp_path / "home")
    locked = write_pdf(tmp_path / "locked.pdf", make_pdf(["Secret page"], password=PASSWORD))
    dialog = AddFilesScreen(assistant, start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, locked)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(host.screen, PasswordScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(host.errors()))
        assert host.screen is dialog and not host.results
        assert stage_of(dialog, "locked.pdf") == "failed"

    host = run(dialog, scenario)
    [error] = host.errors()
    assert "password-protected" in error.message
    assert assistant.documents() == []


# -- cancelling -----------------------------------------------------------------------------


def test_escape_stops_the_run_and_keeps_what_was_added(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    assistant = make_assistant(tmp_path / "home", embedder)
    story = write(tmp_path / "story.txt", STORY)
    long = write(tmp_path / "long.txt", LONG_TEXT)
    third = write(tmp_path / "third.txt", "A third file that is never reached.\n")
    dialog = AddFilesScreen(assistant, start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        await queue_paths(pilot, dialog, story, long, third)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: embedder.long_batches == 1)
        assert stage_of(dialog, "long.txt") == "embedding"
        await pilot.press("escape")  # while the first batch of long.txt is held
        embedder.gate.set()
        await wait_for(pilot, lambda: not dialog.running)
        assert host.screen is dialog and not host.results
        await pilot.press("escape")  # now idle: closes
        await wait_for(pilot, lambda: bool(host.results))

    host = run(dialog, scenario)
    # The run stopped after the batch under way, long before long.txt's last batch.
    assert embedder.long_batches == 1
    titles = {d.source_path.rsplit("/", 1)[-1]: d.id for d in assistant.documents()}
    assert "third.txt" not in titles
    assert "long.txt" in titles  # saved before the stop; the notice says it is not indexed
    assert host.results == [[titles["story.txt"]]]
    [notice] = [n for n in host.notes if "cancelled" in n.message]
    assert "1 file added before it" in notice.message
    assert "long.txt" in notice.message


# -- choosing files -------------------------------------------------------------------------


def test_a_paste_of_several_paths_queues_them_all(tmp_path: Path) -> None:
    one = write(tmp_path / "one.txt", STORY)
    two = write(tmp_path / "two words.md", STORY)
    dialog = AddFilesScreen(make_assistant(tmp_path / "home"), start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        field = dialog.query_one(PathInput)
        field.post_message(events.Paste(f"{one}\n{two}\n"))
        await wait_for(pilot, lambda: len(dialog._pending) == 2)
        assert field.value == ""
        assert dialog._pending == [one, two]

    run(dialog, scenario)


def test_tab_accepts_the_path_completion_then_moves_on(tmp_path: Path) -> None:
    write(tmp_path / "lighthouse.txt", STORY)
    dialog = AddFilesScreen(make_assistant(tmp_path / "home"), start=tmp_path)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        field = dialog.query_one(PathInput)
        field.value = f"{tmp_path}/ligh"
        field.cursor_position = len(field.value)
        await wait_for(pilot, lambda: field._suggestion == f"{tmp_path}/lighthouse.txt")
        await pilot.press("tab")
        assert field.value == f"{tmp_path}/lighthouse.txt" and field.has_focus
        await pilot.press("tab")  # nothing left to complete: Tab moves the focus on
        assert not field.has_focus

    run(dialog, scenario)


def test_the_tree_adds_a_file_or_a_folders_files_and_delete_removes(tmp_path: Path) -> None:
    root = tmp_path / "books"
    root.mkdir()
    for name in ("b.txt", "a.md", "picture.png", ".hidden.txt"):
        write(root / name, STORY)
    dialog = AddFilesScreen(make_assistant(tmp_path / "home"), start=root)

    async def scenario(host: Host, pilot: Pilot[None]) -> None:
        tree = dialog.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 3)  # no dotfile
        tree.focus()
        tree.move_cursor(tree.root)
        await pilot.press("a")  # the folder: its readable files, in name order
        await wait_for(pilot, lambda: len(dialog._pending) == 2)
        assert dialog._pending == [root / "a.md", root / "b.txt"]
        pending = dialog.query_one(PendingList)
        pending.focus()
        pending.highlighted = 0
        await pilot.press("delete")
        assert dialog._pending == [root / "b.txt"]
        picture = next(n for n in tree.root.children if str(n.label) == "picture.png")
        tree.focus()
        tree.move_cursor(picture)
        await pilot.press("enter")  # a file is added as it is: adding says if it can be read
        await wait_for(pilot, lambda: len(dialog._pending) == 2)

    run(dialog, scenario)


def test_the_dialog_fits_an_80_by_24_terminal(tmp_path: Path) -> None:
    dialog = AddFilesScreen(make_assistant(tmp_path / "home"), start=tmp_path)

    async def main() -> None:
        host = Host(dialog)
        async with host.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: host.screen is dialog)
            await pilot.pause()
            for widget in (
                dialog.query_one(PathInput),
                dialog.query_one(DirectoryTree),
                dialog.query_one(PendingList),
                dialog.query_one("#start", Button),
                dialog.query_one(Footer),
            ):
                region = widget.region
                assert region.height > 0 and region.bottom <= 24 and region.right <= 80, widget
            footer_keys = {b.binding.key for b in dialog.active_bindings.values()}
            assert {"ctrl+s", "escape"} <= footer_keys

    asyncio.run(main())


# -- the pure parts -------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "dickens.epub").write_bytes(b"")
    (tmp_path / "books" / "dumas.pdf").write_bytes(b"")
    (tmp_path / "bookmarks.html").write_text("", encoding="utf-8")
    (tmp_path / ".config").mkdir()
    (tmp_path / "notes.md").write_text("", encoding="utf-8")
    return tmp_path


def test_completion_picks_the_first_entry_in_sorted_order(tree: Path) -> None:
    assert complete_path(f"{tree}/boo") == f"{tree}/bookmarks.html"
    assert complete_path(f"{tree}/books/d") == f"{tree}/books/dickens.epub"
    assert complete_path(f"{tree}/books/du") == f"{tree}/books/dumas.pdf"


def test_completion_adds_a_slash_to_folders(tree: Path) -> None:
    assert complete_path(f"{tree}/books") == f"{tree}/books/"
    assert complete_path("bo", cwd=tree) == "bookmarks.html"
    assert complete_path("books", cwd=tree) == "books/"


def test_completion_hides_dotfiles_unless_asked(tree: Path) -> None:
    assert complete_path(f"{tree}/") == f"{tree}/bookmarks.html"
    assert complete_path(f"{tree}/.c") == f"{tree}/.config/"


def test_completion_expands_the_home_folder_but_keeps_the_tilde(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert complete_path("~/no") == "~/notes.md"
    assert complete_path("~/books/di") == "~/books/dickens.epub"


def test_completion_gives_nothing_when_nothing_is_left_to_add(tree: Path) -> None:
    assert complete_path("") is None
    assert complete_path(f"{tree}/zzz") is None
    assert complete_path(f"{tree}/notes.md") is None
    assert complete_path(f"{tree}/missing/x") is None
    assert complete_path(f"{tree}/notes.md/x") is None  # a file is not a folder


def test_the_suggester_completes_without_caching(tree: Path) -> None:
    suggester = PathSuggester(cwd=tree)
    assert asyncio.run(suggester.get_suggestion("no")) == "notes.md"
    (tree / "new.txt").write_text("", encoding="utf-8")
    assert asyncio.run(suggester.get_suggestion("ne")) == "new.txt"
    assert suggester.cache is None


def test_split_paths_reads_lines_quotes_and_uris() -> None:
    assert split_paths("/a/b.pdf\n\n  /c d/e.txt  \n") == ["/a/b.pdf", "/c d/e.txt"]
    assert split_paths("'/x y/a.pdf' '/z.pdf'") == ["/x y/a.pdf", "/z.pdf"]
    assert split_paths(r"/x\ y/a.pdf") == ["/x y/a.pdf"]
    assert split_paths("file:///home/me/My%20Book.epub") == ["/home/me/My Book.epub"]
    assert split_paths("'unbalanced.pdf") == ["'unbalanced.pdf"]


def test_resolve_paths_expands_folders_and_reports_missing_ones(tree: Path) -> None:
    found, problems = resolve_paths(["books", "notes.md", "nowhere.pdf", ".config"], tree)
    assert found == [
        tree / "books" / "dickens.epub",
        tree / "books" / "dumas.pdf",
        tree / "notes.md",
    ]
    assert len(problems) == 2
    assert "nowhere.pdf does not exist" in problems[0]
    assert ".config holds no files" in problems[1]
