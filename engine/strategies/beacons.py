"""Answering from beacon summaries: not built in this version.

The router knows the strategy (whole-book questions on documents too long for the window
need it), and a person may ask for it with `--mode beacons`; until beacon summaries can be
built, asking for them says so and names the strategies that work, before any model loads.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

from engine.errors import EngineError
from engine.llm import LLM
from engine.strategies.base import AskContext, StrategyEvents
from engine.types import ContextPlan, Preparing, Strategy


class BeaconsNotBuiltError(EngineError):
    """The document has no beacon summaries for this model."""


class Beacons:
    """Beacon summaries of a document too long for the window (not built yet)."""

    kind = Strategy.BEACONS

    def prepare(
        self, ask: AskContext, cancel: threading.Event | None
    ) -> Generator[Preparing, None, int]:
        raise BeaconsNotBuiltError(
            f"beacon summaries of {ask.document.title!r} are not built yet, and this version"
            " of longread cannot build them; ask with --mode auto, long or rag"
        )
        yield  # a generator, like every strategy's prepare

    def answer(
        self,
        ask: AskContext,
        llm: LLM,
        plan: ContextPlan,
        *,
        load_seconds: float,
        attempt: int,
        cancel: threading.Event | None,
    ) -> StrategyEvents:
        raise BeaconsNotBuiltError("beacon summaries are not built yet")
        yield  # a generator, like every strategy's answer
