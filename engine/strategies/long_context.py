"""Answering with the whole document in the model's context.

The document (rendered with its location marks once per model and document by the facade)
is laid out as the plan says, `cached` or `query-aware` (engine/prompts.py). The window it
needs is the document, the question twice (the query-aware layout repeats it), the chat
template's overhead and the answer. Nothing here truncates a document: a plan that does not
fit is refused before this strategy runs.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

from engine.citations import cited_locations
from engine.llm import LLM, FinishReason
from engine.prompts import long_context_messages
from engine.strategies.base import AskContext, StrategyEvents, relay
from engine.strategies.timing import timings_from
from engine.types import Answer, ContextPlan, Preparing, Strategy

PROMPT_OVERHEAD_TOKENS = 96
"""Tokens the chat template and instructions add around a document and question."""


def long_context_tokens(ask: AskContext) -> int:
    """The window a whole-document answer needs (see the module docstring)."""
    return (
        ask.document_tokens
        + 2 * ask.question_tokens
        + PROMPT_OVERHEAD_TOKENS
        + ask.max_answer_tokens
    )


class LongContext:
    """The whole document in context: reasoning and comparison over a document that fits."""

    kind = Strategy.LONG_CONTEXT

    def prepare(
        self, ask: AskContext, cancel: threading.Event | None
    ) -> Generator[Preparing, None, int]:
        return long_context_tokens(ask)
        yield  # a generator with nothing slow to report

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
        messages, prefix = long_context_messages(
            ask.document.id, ask.document.title, ask.rendered, ask.question, plan.layout
        )
        stream = llm.stream_chat(
            messages, max_tokens=ask.max_answer_tokens, cancel=cancel, prefix=prefix
        )
        done = yield from relay(stream, attempt)
        return Answer(
            question=ask.question,
            text=done.text.strip(),
            strategy=Strategy.LONG_CONTEXT,
            document_ids=(ask.document.id,),
            citations=cited_locations(done.text, ask.document.id, ask.text, ask.sections),
            timings=timings_from(done.stats, load_seconds),
            plan=plan,
            layout=plan.layout,
            cancelled=done.reason is FinishReason.CANCELLED,
        )
