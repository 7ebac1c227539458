"""Pilot tests of the library screen with fakes behind the facade: the table shows each
document with its statuses and (filled in by a worker) its context plan; removing asks
first; quitting stops running work."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from app.app import create_app
from app.screens.confirm import ConfirmScreen
from app.screens.help import HelpScreen
from app.screens.library import PENDING, LibraryScreen
from tests.app.harness import add_text, fake_assistant, wait_for


def _cells(table: DataTable[object], row: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(row)]


def test_the_table_lists_documents_with_statuses_and_a_plan(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home)
    add_text(assistant, tmp_path / "lighthouse.txt")

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            await wait_for(pilot, lambda: _cells(table, 0)[1] != PENDING)
            title, plan, tokens, pages, file_format, _added, search, beacons, kv = _cells(table, 0)
            assert title == "lighthouse" or "lighthouse" in title.lower()
            assert file_format == "text" and pages == "–"
            assert int(tokens.replace(",", "")) > 50
            assert (search, beacons, kv) == ("✓", "–", "–")
            assert plan == "fits"

    asyncio.run(scenario())


def test_an_empty_library_says_how_to_add_files(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = create_app(assistant=fake_assistant(isolated_home))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            empty = app.screen.query_one("#empty", Static)
            assert empty.display and "add books and PDFs" in str(empty.render())

    asyncio.run(scenario())


def test_removing_asks_first_and_cancel_keeps_the_document(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home)
    add_text(assistant, tmp_path / "lighthouse.txt")
    add_text(assistant, tmp_path / "other.txt", "A second, shorter book about gardens.\n")

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 2)
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))
            assert len(assistant.documents()) == 2
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_for(pilot, lambda: table.row_count == 1)
            assert len(assistant.documents()) == 1

    asyncio.run(scenario())


def test_help_opens_and_the_palette_offers_the_screen_actions(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = create_app(assistant=fake_assistant(isolated_home))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {"Add files", "Remove", "Settings", "Quit"} <= titles

    asyncio.run(scenario())


def test_quitting_sets_every_cancel_event(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = create_app(assistant=fake_assistant(isolated_home))
        async with app.run_test(size=(80, 24)) as pilot:
            event = app.cancels.new()
            await pilot.press("ctrl+q")
            await wait_for(pilot, event.is_set)

    asyncio.run(scenario())


def test_adding_a_file_from_the_library_puts_it_in_the_table(
    tmp_path: Path, isolated_home: Path
) -> None:
    """The dialog's progress rows have their own tests (test_add_files.py); this is the
    round trip through the library screen: the dialog closes and the table has the row."""
    from app.screens.add_files import AddFilesScreen

    book = tmp_path / "keeper.txt"
    book.write_text("Chapter One\n\nThe keeper trimmed the wick every evening.\n", "utf-8")
    assistant = fake_assistant(isolated_home)

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, AddFilesScreen))
            app.screen.query_one("#path", Input).value = str(book)
            await pilot.press("enter")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            title, *_, search, _beacons, _kv = _cells(table, 0)
            assert (title, search) == ("keeper", "✓")

    asyncio.run(scenario())
