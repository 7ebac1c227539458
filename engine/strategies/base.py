"""The contract every answering strategy keeps, and the one relay from a model stream to events.

A strategy (long context, retrieval, beacons) is asked two things about a question, in
order: `prepare` does whatever must happen before a model is chosen (a search, for
retrieval), yielding progress, and returns the window the question needs under this
strategy; `answer` then streams the answer on a model loaded for that window and returns the
finished `Answer`. The facade (engine/assistant.py) owns everything around it: resolving the
document and the model once (`AskContext`), routing, planning, loading, and the Self-Route
fallback. Adding a strategy touches its module and the router's table, not the facade.

What this module does not do: choose a strategy (engine/router.py), plan a context
(engine/planner.py), or write prompts (engine/prompts.py).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Protocol

from engine.llm import LLM, Done, PrefillProgress, StreamEvent, TextPiece
from engine.strategies.timing import timings_from
from engine.types import (
    Answer,
    AnswerEvent,
    AnswerToken,
    Backend,
    ContextPlan,
    Preparing,
    PrepStage,
    PromptLayout,
    Strategy,
)
from ingest.types import Document, Section
from models.catalog import ModelEntry
from models.types import ModelProfile


@dataclass(frozen=True, eq=False)
class AskContext:
    """One question on one document and model, resolved once (the facade builds it).

    `rendered` is the document with its location marks and `document_tokens` its length as
    the long-context prompt carries it (title line included), both cached by the facade per
    (model file, document) so follow-up questions never re-read or re-count the book.
    `layout` is a layout the person forced, else None (the plan recommends one).
    """

    document: Document
    text: str
    sections: tuple[Section, ...]
    rendered: str
    document_tokens: int
    model: ModelEntry
    profile: ModelProfile
    backend: Backend
    memory_budget: int
    question: str
    question_tokens: int
    max_answer_tokens: int
    layout: PromptLayout | None = None


StrategyEvents = Generator[AnswerEvent, None, Answer]
"""What `answer` is: the answer's events (sources, tokens, prefill progress), returning the
finished `Answer`. The facade, not the strategy, yields `AnswerDone`."""


class AnsweringStrategy(Protocol):
    """One way of answering a question. A new instance serves one question."""

    @property
    def kind(self) -> Strategy: ...

    def prepare(
        self, ask: AskContext, cancel: threading.Event | None
    ) -> Generator[Preparing, None, int]:
        """Do what comes before the model (yielding progress); return the tokens the
        context window must hold for this question: prompt and answer together."""
        ...

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
        """Stream the answer on `llm` (loaded for `plan`); return the finished Answer."""
        ...


def relay(
    stream: Iterator[StreamEvent], attempt: int = 1
) -> Generator[AnswerToken | Preparing, None, Done]:
    """Turn a model's stream into answer events: prefill progress becomes `Preparing`,
    text becomes `AnswerToken`s of `attempt`; returns the stream's `Done`."""
    done: Done | None = None
    for event in stream:
        if isinstance(event, PrefillProgress):
            yield Preparing(PrepStage.PREFILL, event.done, event.total, "tokens")
        elif isinstance(event, TextPiece):
            yield AnswerToken(event.text, attempt)
        else:
            done = event
    assert done is not None, "an LLM stream always ends with Done"
    return done


def cancelled_answer(ask: AskContext, strategy: Strategy) -> Answer:
    """The answer to a question cancelled before the model was asked: empty, cancelled."""
    return Answer(
        question=ask.question,
        text="",
        strategy=strategy,
        document_ids=(ask.document.id,),
        citations=(),
        timings=timings_from(None, 0.0),
        cancelled=True,
    )
