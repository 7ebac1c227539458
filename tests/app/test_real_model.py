"""End to end in the TUI with the real components a person meets: the bundled GGUF model on
llama.cpp, the bundled embedder, the SQLite library and a short real text file. A question
asked in the chat streams an answer with a route badge and a footer, and it is saved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from app.app import create_app
from app.screens.chat import ChatScreen
from app.widgets.answer import AnswerBlock
from engine.assistant import Assistant
from engine.config import load_settings
from tests.app.harness import LIGHTHOUSE, wait_for

pytestmark = [pytest.mark.model, pytest.mark.embedder, pytest.mark.slow]


def test_a_question_in_the_tui_is_answered_by_the_real_model(
    tmp_path: Path, isolated_home: Path
) -> None:
    book = tmp_path / "lighthouse.txt"
    book.write_text(LIGHTHOUSE, encoding="utf-8")
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    assistant = Assistant(settings)
    streamed: list[int] = []

    async def scenario() -> None:
        app = create_app(assistant=assistant)
        async with app.run_test(size=(120, 36)) as pilot:
            for _ in assistant.add([book]):
                pass
            app.screen.refresh_table()  # type: ignore[attr-defined]
            await wait_for(pilot, lambda: app.screen.query_one(DataTable).row_count == 1)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            screen.query_one("#question", Input).value = "What did the town give the keeper?"
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.busy)
            block = screen.query(AnswerBlock).last()
            while screen.busy:
                streamed.append(len(block.text))
                await pilot.pause(0.05)
                assert len(streamed) < 20 * 180, "no answer within three minutes"
            assert block.answer is not None and not block.answer.cancelled
            assert block.text.strip(), "the model wrote an answer"
            assert block.query_one(".badge").display
            assert " s" in str(block.query_one(".footer").render())

    try:
        asyncio.run(scenario())
        document = assistant.documents()[0]
        history = assistant.conversations.turns(document.id)
        assert len(history) == 1 and history[0].text.strip()
    finally:
        assistant.close()
    growing = [n for n in dict.fromkeys(streamed) if n]
    print(f"distinct partial lengths seen while streaming: {len(growing)}")
    assert len(growing) >= 2, "the answer appeared in pieces, not all at once"
