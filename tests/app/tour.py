"""A tour of the TUI as a new user would take it, driven by Pilot with the real model,
embedder, library and files: add a book and a PDF through the add-files dialog, ask about
each, open a source, stop an answer, quit, start again and find everything intact. It
prints what it saw and saves screenshots (the README's come from here).

Run from the repository root: `.venv/bin/python -m tests.app.tour OUT_DIR` (a few minutes on
a CPU; not part of the test suite). It reads the shared corpus beside the checkout.
"""

import asyncio
import shutil
import sys
import time
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from app.app import LongreadApp, create_app
from app.screens.chat import ChatScreen
from app.screens.library import LibraryScreen
from app.screens.passage import PassageScreen
from app.widgets.answer import AnswerBlock
from app.widgets.sources import SourcesPanel
from engine.assistant import Assistant
from engine.config import load_settings
from tests.app.harness import wait_for
from tests.conftest import CORPUS_DIR

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tour").resolve()
HOME = OUT / "home"
BOOK = CORPUS_DIR / "books" / "The Time Machine.txt"
PDF = CORPUS_DIR / "pdfs" / "real" / "us_copyright_office_dmca_summary_1998.pdf"
STARTED = time.monotonic()


def log(*parts: object) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s]", *parts, flush=True)


async def ask(pilot: Pilot[None], screen: ChatScreen, question: str) -> AnswerBlock:
    """Send a question; returns its answer block once the answer has started."""
    before = len(screen.query(AnswerBlock))
    field = screen.query_one("#question", Input)
    field.value = question
    field.focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(screen.query(AnswerBlock)) > before)
    return screen.query(AnswerBlock).last()


async def answer(pilot: Pilot[None], screen: ChatScreen, question: str) -> None:
    """Ask and wait for the finished answer; print what it was."""
    await ask(pilot, screen, question)
    await wait_for(pilot, lambda: not screen.busy, seconds=600)
    block = screen.query(AnswerBlock).last()
    done = block.answer
    assert done is not None
    strategy = done.route.strategy if done.route else None
    log("Q:", question)
    log(f"  route: {strategy} | escalated: {done.escalated} | {done.timings.total_seconds:.1f} s")
    log("  A:", block.text[:300].replace("\n", " "))
    log("  sources:", [citation.location for citation in done.citations][:5])


async def open_doc(pilot: Pilot[None], app: LongreadApp, title_part: str) -> ChatScreen:
    table = app.screen.query_one(DataTable)
    for row in range(table.row_count):
        if title_part.lower() in str(table.get_row_at(row)[0]).lower():
            table.move_cursor(row=row)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def first_run() -> None:
    assistant = Assistant(load_settings(environ={"LONGREAD_HOME": str(HOME)}))
    app = create_app(assistant=assistant)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("a")
        await pilot.pause(0.5)
        path = app.screen.query_one("#path", Input)
        for file in (BOOK, PDF):
            path.value = str(file)
            await pilot.press("enter")
            await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        log("adding two files…")
        await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen), seconds=900)
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        planned = lambda: all(str(table.get_row_at(r)[1]) != "…" for r in range(2))  # noqa: E731
        await wait_for(pilot, planned, seconds=120)
        for row in range(2):
            log("row:", [str(cell) for cell in table.get_row_at(row)])
        app.save_screenshot(str(OUT / "library.svg"))

        screen = await open_doc(pilot, app, "time machine")
        await answer(
            pilot, screen, "What did the Time Traveller find in the Palace of Green Porcelain?"
        )
        app.save_screenshot(str(OUT / "chat-book.svg"))
        panel = screen.query_one("#sources", SourcesPanel)
        if panel.refs:
            panel.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen))
            log("passage highlighted:", repr(app.screen.query_one(TextArea).selected_text[:120]))
            app.save_screenshot(str(OUT / "passage.svg"))
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))

        block = await ask(pilot, screen, "Summarize everything the Time Traveller saw, in detail.")
        await pilot.pause(2)
        await pilot.press("escape")  # stop it, mid-prefill or mid-answer
        await wait_for(pilot, lambda: not screen.busy, seconds=60)
        log("stopped answer marked cancelled:", block.has_class("cancelled"), len(block.text))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))

        screen = await open_doc(pilot, app, "digital millennium")
        await answer(pilot, screen, "What does the DMCA say about circumventing copy protection?")
        app.save_screenshot(str(OUT / "chat-pdf.svg"))
        await pilot.press("ctrl+q")
    assistant.close()


async def second_run() -> None:
    assistant = Assistant(load_settings(environ={"LONGREAD_HOME": str(HOME)}))
    app = create_app(assistant=assistant)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        log("after a restart the library has", table.row_count, "documents")
        for part in ("time machine", "digital millennium"):
            screen = await open_doc(pilot, app, part)
            questions = [block.question for block in screen.query(AnswerBlock)]
            log(f"  {part}: {len(questions)} turn(s) restored:", questions)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))
    assistant.close()


if __name__ == "__main__":
    shutil.rmtree(HOME, ignore_errors=True)  # a fresh library each time
    asyncio.run(first_run())
    asyncio.run(second_run())
    log("done")
