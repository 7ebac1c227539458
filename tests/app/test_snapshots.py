"""Snapshot tests (pytest-textual-snapshot) of settled screens at a fixed size: the library,
a finished answer with its sources, the passage view of a source, and the settings.

Only settled screens: every worker has finished before the picture is taken, the clock in
dates and answer times is fixed, and the input cursor does not blink. Regenerate after a
deliberate change with `pytest tests/app/test_snapshots.py --snapshot-update` and look at
the pictures in the report before committing them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

import ingest.pipeline
from app.app import LongreadApp, create_app
from app.screens.chat import ChatScreen
from app.screens.library import PENDING
from app.screens.passage import PassageScreen
from app.screens.settings import SettingsScreen
from app.widgets.sources import SourcesPanel
from tests.app.harness import add_text, fake_assistant, wait_for
from tests.fake_llm import FakeLLM

SIZE = (100, 30)
ANSWER = (
    "Ida Varga, the keeper, rowed out alone in the storm and brought the Marigold's **three"
    " sailors** home (Chapter Two). The town later gave her a silver lantern (Chapter Three)."
)
GARDENS = "Chapter One\n\nA short book about gardens, their walls and their keepers.\n"


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FixedClock:
        return cls(2026, 3, 14, 9, 30, tzinfo=tz or UTC)


@pytest.fixture
def app(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> LongreadApp:
    monkeypatch.setattr(ingest.pipeline, "datetime", _FixedClock)
    monkeypatch.setattr("app.widgets.answer.answer_footer", lambda seconds, loaded: "1.2 s")
    assistant = fake_assistant(isolated_home, FakeLLM(answers=(ANSWER,)))
    add_text(assistant, tmp_path / "The Lighthouse Keeper.txt")
    add_text(assistant, tmp_path / "Walled Gardens.txt", GARDENS)  # sorts second
    return create_app(assistant=assistant)


async def _library_settled(pilot: Pilot[Any]) -> None:
    table = pilot.app.screen.query_one(DataTable)
    await wait_for(pilot, lambda: table.row_count == 2)
    await wait_for(pilot, lambda: all(str(table.get_row_at(r)[1]) != PENDING for r in (0, 1)))
    await pilot.pause()


async def _answered(pilot: Pilot[Any]) -> None:
    await _library_settled(pilot)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChatScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    question = screen.query_one("#question", Input)
    question.cursor_blink = False
    question.value = "Who saved the sailors, and how was she thanked?"
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.query_one("#sources", SourcesPanel).refs != ())
    await wait_for(pilot, lambda: not screen.busy)
    await pilot.pause()


def test_library(app: LongreadApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=_library_settled)


def test_finished_answer_with_sources(app: LongreadApp, snap_compare: Any) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=_answered)


def test_passage_view(app: LongreadApp, snap_compare: Any) -> None:
    async def open_source(pilot: Pilot[Any]) -> None:
        await _answered(pilot)
        pilot.app.screen.query_one("#sources", SourcesPanel).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PassageScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=open_source)


def test_settings(app: LongreadApp, snap_compare: Any) -> None:
    async def open_settings(pilot: Pilot[Any]) -> None:
        await _library_settled(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SettingsScreen))
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=open_settings)
