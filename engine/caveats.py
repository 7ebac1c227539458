"""Judging a finished answer by the signals it carries: what a reader should be told before
trusting it (`answer_caveat`), and whether Self-Route sets a retrieval answer aside and asks
again (`set_aside_reason`).

The CLI prints the caveat under an answer and the TUI shows it in the answer's footer, so
both say the same thing. The signals are the model's verdict, retrieval confidence and
answer grounding; nothing is measured here (engine/grounding.py does that), and where a
set-aside answer goes next is the router's call (engine/router.py `fallback`).
"""

from __future__ import annotations

from engine.grounding import CONFIDENCE_THRESHOLD
from engine.types import Answer, Route, Strategy, Verdict


def answer_caveat(answer: Answer) -> str | None:
    """The strongest warning that applies to `answer`, or None when nothing is amiss."""
    if answer.cancelled:
        return "Stopped before the answer was finished."
    confidence = min(
        (c for a in (answer, *answer.attempts) if (c := a.retrieval_confidence) is not None),
        default=None,
    )
    if answer.verdict is Verdict.UNANSWERABLE:
        return "The passages shown to the model do not answer this."
    if confidence is not None and confidence < CONFIDENCE_THRESHOLD:
        return (
            f"Search found little of this question in the text (confidence {confidence:.2f}):"
            " the text may not say this at all."
        )
    if answer.grounding is not None and not answer.grounding.supported:
        missing = ", ".join(answer.grounding.missing[:6])
        return f"Not supported by the passages shown: they do not contain {missing}."
    return None


def set_aside_reason(route: Route, answer: Answer) -> str:
    """Why a retrieval answer should be set aside (Self-Route), or "" when it stands."""
    if answer.cancelled or route.strategy is not Strategy.RAG:
        return ""
    reasons = []
    if answer.verdict is Verdict.UNANSWERABLE:
        reasons.append("the model found no answer in the passages")
    if answer.grounding is not None and not answer.grounding.supported:
        missing = ", ".join(answer.grounding.missing[:4])
        reasons.append(f"the passages do not contain what it names ({missing})")
    confidence = answer.retrieval_confidence
    if confidence is not None and confidence < CONFIDENCE_THRESHOLD:
        reasons.append(f"the search found little of the question (confidence {confidence:.2f})")
    return "; ".join(reasons)
