"""Answering with the whole document in the model's context.

The document is rendered with its location marks and laid out as the plan says (`cached`
or `query-aware`, see engine/prompts.py). Tokens stream as the model writes them; the last
event carries the answer with its citations and timings. Choosing the plan, and loading the
model, happen before this (engine/assistant.py); nothing here truncates a document.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.citations import cited_locations
from engine.llm import LLM, Done, FinishReason, TextPiece
from engine.prompts import long_context_messages, render_document
from engine.strategies.timing import timings_from
from engine.types import (
    Answer,
    AnswerDone,
    AnswerToken,
    ContextPlan,
    PromptLayout,
    Strategy,
)
from ingest.types import Document, Section


@dataclass(frozen=True)
class LongContextQuestion:
    """A question on one document, with the document's text and sections."""

    document: Document
    text: str
    sections: Sequence[Section]
    question: str
    layout: PromptLayout
    max_answer_tokens: int


def answer_with_document(
    llm: LLM,
    request: LongContextQuestion,
    plan: ContextPlan,
    load_seconds: float = 0.0,
    cancel: threading.Event | None = None,
) -> Iterator[AnswerToken | AnswerDone]:
    """Stream the model's answer, then the finished `Answer`."""
    rendered = render_document(request.text, request.sections)
    messages, prefix = long_context_messages(
        request.document.id, request.document.title, rendered, request.question, request.layout
    )
    done: Done | None = None
    for event in llm.stream_chat(
        messages, max_tokens=request.max_answer_tokens, cancel=cancel, prefix=prefix
    ):
        if isinstance(event, TextPiece):
            yield AnswerToken(event.text)
        else:
            done = event
    assert done is not None, "an LLM stream always ends with Done"
    stats = done.stats
    yield AnswerDone(
        Answer(
            question=request.question,
            text=done.text.strip(),
            strategy=Strategy.LONG_CONTEXT,
            document_ids=(request.document.id,),
            citations=cited_locations(
                done.text, request.document.id, request.text, request.sections
            ),
            timings=timings_from(stats, load_seconds),
            plan=plan,
            layout=request.layout,
            cancelled=done.reason is FinishReason.CANCELLED,
        )
    )
