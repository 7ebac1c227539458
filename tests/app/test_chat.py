"""Pilot tests of the chat screen with fakes behind the facade: an answer streams into the
log with its route badge and sources, a source opens on its highlighted span, Escape stops
an answer (kept on screen marked cancelled, never saved), the log does not yank a reader who
scrolled up, and the conversation comes back after a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from app.app import LongreadApp, create_app
from app.screens.chat import ChatScreen, PrepClock, export_file_name
from app.screens.passage import PassageScreen
from app.widgets.answer import AnswerBlock
from app.widgets.chat_log import ChatLog
from app.widgets.sources import SourcesPanel
from engine.types import Preparing, PrepStage
from tests.app.harness import LIGHTHOUSE, add_text, fake_assistant, wait_for
from tests.fake_llm import FakeLLM

ANSWER = "Ida rowed out alone and brought its three sailors home (Chapter Two)."
LONG_ANSWER = " ".join(f"word{i}" for i in range(400))


async def _open_chat(app: LongreadApp, pilot: Pilot[None]) -> ChatScreen:
    await wait_for(pilot, lambda: app.screen.query(DataTable).first().row_count == 1)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def _ask(pilot: Pilot[None], screen: ChatScreen, question: str) -> AnswerBlock:
    """Type and send a question; returns its answer block once the answer has started."""
    before = len(screen.query(AnswerBlock))
    screen.query_one("#question", Input).value = question
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(screen.query(AnswerBlock)) > before)
    block = screen.query(AnswerBlock).last()
    await wait_for(pilot, lambda: screen.busy or block.answer is not None)
    return block


def test_an_answer_streams_with_its_route_and_sources_and_a_source_opens_highlighted(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home, FakeLLM(answers=(ANSWER,)))
    add_text(assistant, tmp_path / "lighthouse.txt")

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await _open_chat(app, pilot)
            await _ask(pilot, screen, "Who rescued the sailors of the Marigold?")
            await wait_for(pilot, lambda: not screen.busy)
            block = screen.query(AnswerBlock).last()
            assert block.text == ANSWER
            assert block.answer is not None and not block.answer.cancelled
            badge = block.query_one(".badge")
            assert str(badge.render()).strip() in {"whole document", "retrieval"}
            assert badge.tooltip  # the route's reasons, on hover
            panel = screen.query_one("#sources", SourcesPanel)
            assert panel.refs, "the answer's citations are listed"
            panel.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen))
            area = app.screen.query_one(TextArea)
            ref = panel.refs[0]
            assert area.selected_text == LIGHTHOUSE[ref.start : ref.end]
            assert "Ida" in area.selected_text

    asyncio.run(scenario())
    assert [t.text for t in assistant.conversations.turns(assistant.documents()[0].id)] == [ANSWER]


def test_escape_stops_an_answer_which_stays_marked_cancelled_and_is_not_saved(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home, FakeLLM(answers=(LONG_ANSWER,), delay=0.02))
    document_id = add_text(assistant, tmp_path / "lighthouse.txt")

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await _open_chat(app, pilot)
            block = await _ask(pilot, screen, "Tell me everything about the keeper.")
            await wait_for(pilot, lambda: len(block.text.split()) >= 5)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not screen.busy)
            assert block.answer is not None and block.answer.cancelled
            assert block.has_class("cancelled")
            assert 5 <= len(block.text.split()) < 400
            assert "not saved" in str(block.query_one(".footer").render())
            assert isinstance(app.screen, ChatScreen), "the first escape stops, not leaves"

    asyncio.run(scenario())
    assert assistant.conversations.turns(document_id) == []


def test_a_reader_who_scrolled_up_is_not_pulled_down_and_sees_a_marker(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home, FakeLLM(answers=(LONG_ANSWER,), delay=0.01))
    add_text(assistant, tmp_path / "lighthouse.txt")

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open_chat(app, pilot)
            log = screen.query_one("#log", ChatLog)
            await _ask(pilot, screen, "Tell me everything about the keeper.")
            await wait_for(pilot, lambda: log.max_scroll_y > 5)
            assert log.scroll_y >= log.max_scroll_y - 1, "followed while at the bottom"
            log.focus()
            await pilot.press("home")
            await pilot.pause(0.1)
            height_then = log.max_scroll_y
            await wait_for(pilot, lambda: log.max_scroll_y > height_then + 3)
            assert log.scroll_y == 0, "scrolling up to re-read is never yanked back"
            assert screen.query_one("#new-below").display
            await wait_for(pilot, lambda: not screen.busy, seconds=30)

    asyncio.run(scenario())


def test_the_conversation_comes_back_after_a_restart_and_can_be_exported_and_cleared(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake_assistant(isolated_home, FakeLLM(answers=(ANSWER,)))
    document_id = add_text(first, tmp_path / "lighthouse.txt")

    async def ask_once() -> None:
        app = create_app(assistant=first)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await _open_chat(app, pilot)
            await _ask(pilot, screen, "Who rescued the sailors?")
            await wait_for(pilot, lambda: not screen.busy)

    asyncio.run(ask_once())
    first.close()

    monkeypatch.chdir(tmp_path)
    second = fake_assistant(isolated_home)

    async def reopen() -> None:
        app = create_app(assistant=second)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await _open_chat(app, pilot)
            blocks = list(screen.query(AnswerBlock))
            assert [(b.question, b.text) for b in blocks] == [("Who rescued the sailors?", ANSWER)]
            assert screen.query_one("#sources", SourcesPanel).refs
            await pilot.press("ctrl+s")
            exported = tmp_path / export_file_name(screen.document.title)
            await wait_for(pilot, exported.exists)
            assert "Who rescued the sailors?" in exported.read_text(encoding="utf-8")
            await pilot.press("ctrl+l")
            await pilot.press("y")
            await wait_for(pilot, lambda: not list(screen.query(AnswerBlock)))

    asyncio.run(reopen())
    assert second.conversations.turns(document_id) == []


def test_the_prefill_clock_estimates_time_left_from_the_rate_so_far() -> None:
    clock = PrepClock()
    clock.describe(Preparing(PrepStage.PREFILL, 0, 1000, "tokens"), now=10.0)
    text = clock.describe(Preparing(PrepStage.PREFILL, 250, 1000, "tokens"), now=12.0)
    assert "250 / 1,000 tokens" in text
    assert "about 6 s left" in text  # 750 tokens at 125 tokens/s
    loading = clock.describe(Preparing(PrepStage.MODEL, 0, 1, "SmolLM2"), now=13.0)
    assert loading == "Loading the model SmolLM2…"


def test_a_beacon_build_counts_windows_and_minutes_left() -> None:
    clock = PrepClock()
    clock.describe(Preparing(PrepStage.BEACONS, 0, 40, "windows"), now=0.0)
    text = clock.describe(Preparing(PrepStage.BEACONS, 2, 40, "windows"), now=30.0)
    assert text.startswith("Summarizing the book (once)")
    assert "2 / 40 windows" in text and "about 10 min left" in text  # 38 windows at 15 s


def test_a_conversation_that_cannot_be_read_is_reported_and_the_chat_still_opens(
    tmp_path: Path, isolated_home: Path
) -> None:
    assistant = fake_assistant(isolated_home)
    document_id = add_text(assistant, tmp_path / "lighthouse.txt")
    assistant.library.append_turn(document_id, "{not json", datetime.now(UTC))
    errors: list[str] = []

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(100, 30)) as pilot:
            original = app.notify

            def record(message: str, **options: Any) -> None:
                if options.get("severity") == "error":
                    errors.append(message)
                original(message, **options)

            app.notify = record  # type: ignore[method-assign]
            screen = await _open_chat(app, pilot)
            await wait_for(pilot, lambda: bool(errors))
            assert not list(screen.query(AnswerBlock))
            assert screen.query_one("#question", Input).has_focus

    asyncio.run(scenario())
    assert "cannot be read" in errors[0] and "clear the conversation" in errors[0]
