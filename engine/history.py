"""A document's conversation as the chat view needs it after a restart: turns, their stored
form, and a Markdown export.

A `Turn` keeps what redrawing an answer takes (the question, the answer's text, how it was
answered and why, its sources, its verdict and caveat, its time, whether a saved prefill was
used), not the whole `Answer`: plans, timings in detail and set-aside attempts are for the moment of
answering. The library stores each turn as an opaque JSON payload (ingest/library.py);
`encode_turn` writes it with the one JSON encoder (engine/serialize.py) and `decode_turn`
reads it back. The turn's place (`ordinal`) and time (`created_at`) live in the library's
columns, not in the payload.

Reading is forgiving forwards and strict otherwise: keys a later longread added are ignored,
while a payload that is not JSON, lacks a field, has a value of the wrong type, or names a
payload format this version does not know raises `HistoryError` (an EngineError, so the TUI
and CLI show its message) naming the turn and the fix, rather than dropping turns silently.

`Conversations` keeps them in the library; nothing here prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.caveats import answer_caveat
from engine.errors import EngineError
from engine.serialize import to_jsonable
from engine.types import Answer, Citation, Strategy, Timings, Verdict
from ingest.library import Library
from ingest.types import StoredTurn

PAYLOAD_FORMAT = 1
"""Bump when a payload written now could no longer be read by `decode_turn` as it stands
(a field renamed or its meaning changed); adding a field does not need it."""

UNSAVED = -1
"""The ordinal of a turn the library has not stored yet."""

_FORMAT_KEY = "format"
# Kept in the library's columns, so left out of the payload.
_ROW_FIELDS = ("ordinal", "created_at")
_T = TypeVar("_T")


class HistoryError(EngineError):
    """A saved conversation turn that this longread cannot read."""


@dataclass(frozen=True)
class Turn:
    """One answered question of a document's conversation, as the chat view redraws it.

    `seconds` is the answer's total time as `Timings.total_seconds` gives it; `state_loaded`
    says the document's prefill was not paid again (`prefill_reused`); `route_reason` is the
    router's one sentence ("" when none was recorded); `caveat` is the warning shown under
    the answer (engine/caveats.py), kept as written because the signals behind it (retrieval
    confidence, grounding) are not.
    `ordinal` counts from 0 in the conversation, `UNSAVED` until the library stores the turn.
    """

    question: str
    text: str
    strategy: Strategy
    escalated: bool
    route_reason: str
    citations: tuple[Citation, ...]
    verdict: Verdict
    caveat: str | None
    seconds: float
    state_loaded: bool
    created_at: datetime
    ordinal: int = UNSAVED


def prefill_reused(timings: Timings) -> bool:
    """Whether most of the prompt was not read again: a saved KV state was loaded, or the
    model's cache held the document from the question before. A reused system prompt alone
    (a few dozen tokens) does not count: the reader cares whether the document was re-read."""
    return timings.state_loaded or 2 * timings.reused_tokens >= timings.prompt_tokens > 0


def turn_from_answer(answer: Answer, created_at: datetime, ordinal: int = UNSAVED) -> Turn:
    """The turn a finished answer becomes."""
    timings = answer.timings
    return Turn(
        question=answer.question,
        text=answer.text,
        strategy=answer.strategy,
        escalated=answer.escalated,
        route_reason=answer.route.reason if answer.route is not None else "",
        citations=answer.citations,
        verdict=answer.verdict,
        caveat=answer_caveat(answer),
        seconds=timings.total_seconds,
        state_loaded=prefill_reused(timings),
        created_at=created_at,
        ordinal=ordinal,
    )


def encode_turn(turn: Turn) -> str:
    """The JSON payload the library stores for a turn (without its ordinal and time)."""
    fields = to_jsonable(turn)
    for name in _ROW_FIELDS:
        del fields[name]
    return json.dumps({_FORMAT_KEY: PAYLOAD_FORMAT, **fields}, ensure_ascii=False)


def decode_turn(stored: StoredTurn) -> Turn:
    """The turn a stored payload holds; `HistoryError` when it cannot be read."""
    try:
        data = json.loads(stored.payload)
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        found = _field(data, _FORMAT_KEY, int)
        if found > PAYLOAD_FORMAT:
            raise ValueError(
                f"it was written in format {found} by a newer longread, and this one reads"
                f" format {PAYLOAD_FORMAT} at most"
            )
        return Turn(
            question=_field(data, "question", str),
            text=_field(data, "text", str),
            strategy=Strategy(_field(data, "strategy", str)),
            escalated=_field(data, "escalated", bool),
            route_reason=_field(data, "route_reason", str),
            citations=tuple(_citation(item) for item in _field(data, "citations", list)),
            verdict=Verdict(_field(data, "verdict", str)),
            caveat=_optional_text(data, "caveat"),
            seconds=float(_number(data, "seconds")),
            state_loaded=_field(data, "state_loaded", bool),
            created_at=stored.created_at,
            ordinal=stored.ordinal,
        )
    except (ValueError, TypeError, KeyError) as error:
        raise HistoryError(
            f"turn {stored.ordinal + 1} of this conversation cannot be read ({error});"
            " upgrade longread if a newer one wrote it, or clear the conversation to start over"
        ) from error


def conversation_markdown(title: str, turns: Sequence[Turn]) -> str:
    """The conversation as a Markdown document: the title, then each question with its answer
    and sources ("location — snippet")."""
    lines = [f"# {_one_line(title) or 'Untitled'}", ""]
    if not turns:
        lines += ["_No questions asked yet._", ""]
    for number, turn in enumerate(turns, start=1):
        lines += [f"## {number}. {_one_line(turn.question)}", ""]
        lines += [turn.text.strip() or "_(no answer)_", ""]
        if turn.citations:
            lines += ["Sources:", ""]
            lines += [f"- {_one_line(c.location)} — {_one_line(c.snippet)}" for c in turn.citations]
            lines.append("")
    return "\n".join(lines)


class Conversations:
    """Each document's conversation, turn by turn, in the library."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def remember(self, document_id: str, answer: Answer) -> Turn | None:
        """Keep a finished answer as the conversation's next turn; returns the stored turn.
        A cancelled answer is not an answer: it is never kept (None)."""
        if answer.cancelled:
            return None
        turn = turn_from_answer(answer, datetime.now(UTC))
        ordinal = self.library.append_turn(document_id, encode_turn(turn), turn.created_at)
        return replace(turn, ordinal=ordinal)

    def turns(self, document_id: str) -> list[Turn]:
        """The conversation, oldest first; HistoryError for a turn it cannot read."""
        return [decode_turn(stored) for stored in self.library.turns(document_id)]

    def clear(self, document_id: str) -> int:
        """Forget the conversation; returns how many turns were deleted."""
        return self.library.clear_turns(document_id)

    def export(self, document_id: str) -> str:
        """The conversation as Markdown, under the document's title."""
        return conversation_markdown(self.library.get(document_id).title, self.turns(document_id))


def _one_line(text: str) -> str:
    # A newline would end a heading or a list item early.
    return re.sub(r"\s+", " ", text).strip()


def _citation(item: object) -> Citation:
    if not isinstance(item, dict):
        raise ValueError("a citation is not a JSON object")
    ordinal = item.get("chunk_ordinal")
    if ordinal is not None and type(ordinal) is not int:
        raise ValueError("a citation's chunk_ordinal is not a whole number")
    return Citation(
        document_id=_field(item, "document_id", str),
        location=_field(item, "location", str),
        snippet=_field(item, "snippet", str),
        start=_field(item, "start", int),
        end=_field(item, "end", int),
        chunk_ordinal=ordinal,
    )


def _field(data: Mapping[str, Any], name: str, kind: type[_T]) -> _T:
    """`data[name]`, which must be exactly of `kind` (True is not a number here)."""
    if name not in data:
        raise ValueError(f"{name} is missing")
    value = data[name]
    if type(value) is not kind:
        raise ValueError(f"{name} is not {kind.__name__}")
    result: _T = value
    return result


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    if name in data and data[name] is None:
        return None
    return _field(data, name, str)


def _number(data: Mapping[str, Any], name: str) -> int | float:
    # JSON writes 2.0 as 2.0, but a hand-edited or foreign payload may hold 2.
    if name in data and type(data[name]) is int:
        return int(data[name])
    return _field(data, name, float)
