"""What the TUI's Pilot tests share: an assistant with fakes behind its seams, documents
written by the tests, a host app that records notifications, and a bounded wait for a
condition on the running app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import App
from textual.notifications import SeverityLevel
from textual.pilot import Pilot

from engine.assistant import Assistant
from engine.config import load_settings
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder
from tests.library_checks import added_id

LIGHTHOUSE = (
    "Chapter One\n\nThe keeper of the northern light was a patient woman named Ida Varga."
    " Every evening she climbed the ninety steps of the tower and trimmed the wick.\n\n"
    "Chapter Two\n\nIn the winter of the great storm a fishing boat, the Marigold, ran onto"
    " the reef below the tower. Ida rowed out alone and brought its three sailors home.\n\n"
    "Chapter Three\n\nThe harbour town gave her a silver lantern, which she kept on the"
    " kitchen shelf beside the lamp room key until the end of her days.\n"
)


def fake_assistant(home: Path, llm: FakeLLM | None = None) -> Assistant:
    """A real Assistant (library, planner, router) with a fake model and embedder."""
    settings = load_settings(environ={"LONGREAD_HOME": str(home)})
    return Assistant(settings, runtime=FakeRuntime(llm=llm or FakeLLM()), embedder=FakeEmbedder())


def add_text(assistant: Assistant, path: Path, text: str = LIGHTHOUSE) -> str:
    """Write `text` to `path`, add it to the library and return the document's id."""
    path.write_text(text, encoding="utf-8")
    return added_id(assistant, path)


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], seconds: float = 10) -> None:
    """Let the app run until `condition` holds; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {condition}")
        await pilot.pause(0.02)


@dataclass(frozen=True)
class Note:
    """A notification the app was asked to show."""

    message: str
    title: str
    severity: SeverityLevel


class NoteTakingApp(App[None]):
    """A host app for one screen or widget that records every notification (and shows it)."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[Note] = []

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notes.append(Note(message, title, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def errors(self) -> list[Note]:
        return [note for note in self.notes if note.severity == "error"]
