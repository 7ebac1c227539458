"""The refusal signals on LaRA, with the real embedder and the bundled model: how often each
flags a hallucination question (a made-up detail about a real character; the right answer
is a refusal) against how often it wrongly flags a location question (a detail the book
holds).

Three signals are measured and printed:
- grounding: the model's RAG answer is not supported by the passages it was shown
  (engine.grounding.assess_answer);
- retrieval: the search found little of the question in any one passage
  (engine.grounding.retrieval_confidence below CONFIDENCE_THRESHOLD);
- either of the two.

Cost is bounded for CI's two cores: only the three 32k books are indexed (they hold all 15
location questions and 11 of the hallucination ones); the retrieval signal, which needs no
model, runs on all 26 questions, and the model answers a fixed subset (the first
`ANSWERED_PER_BOOK` questions of each set for each book) with ~1,500 tokens of passages and
an answer of at most 48 tokens. The assertions are margins the figures support, not the
figures themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.grounding import (
    CONFIDENCE_THRESHOLD,
    TermRarity,
    assess_answer,
    retrieval_confidence,
)
from engine.llm import LLM
from engine.planner import plan_context
from engine.prompts import render_passage
from engine.router import fallback
from engine.strategies.rag import answer_with_passages
from engine.types import AnswerDone, ContextPlan, Strategy
from ingest.pipeline import FileOutcome
from retrieval.types import Hit

RAG = Strategy.RAG

pytestmark = [pytest.mark.corpus, pytest.mark.model, pytest.mark.embedder, pytest.mark.slow]

BOOKS = (
    "A Christmas Carol.txt",
    "The Strange Case Of Dr. Jekyll And Mr. Hyde.txt",
    "The Time Machine.txt",
)
HALLUCINATION = "lara_32k_book_hallu.jsonl"
LOCATION = "lara_32k_book_location.jsonl"
ANSWERED_PER_BOOK = 3
PASSAGE_TOKENS = 1500
ANSWER_TOKENS = 48
# Room for the instructions, the question (twice) and the answer around the passages.
PROMPT_ROOM_TOKENS = 400
PLAN_MEMORY_BYTES = 2 * 1024**3  # the plan needs ~150 MiB; any machine that runs CI has this


@dataclass(frozen=True)
class Question:
    kind: str  # "hallucination" or "location"
    book: str
    text: str
    gold: str  # LaRA's reference answer
    answered: bool  # in the subset the model answers


@dataclass
class Flags:
    """For one set of questions: how many each signal flagged, out of how many it saw."""

    grounding: int = 0
    retrieval: int = 0
    either: int = 0
    answered: int = 0
    flagged_wrong: int = 0  # flagged (either signal) and the answer misses the gold one
    right: int = 0  # the answer holds the gold one
    retrieval_on_answered: int = 0
    questions: int = 0
    escalated: int = 0  # flagged, and the router's fallback re-asks with the whole document
    stands: int = 0  # flagged, and no other strategy is feasible: the marked answer stands

    def shares(self) -> tuple[float, float, float, float]:
        """(grounding, retrieval on all, retrieval on the answered subset, either)."""
        answered = max(self.answered, 1)
        return (
            self.grounding / answered,
            self.retrieval / max(self.questions, 1),
            self.retrieval_on_answered / answered,
            self.either / answered,
        )


def load_questions(corpus: Path) -> list[Question]:
    questions: list[Question] = []
    for name, kind in ((HALLUCINATION, "hallucination"), (LOCATION, "location")):
        seen: dict[str, int] = {}
        for line in (corpus / "qa" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["file"] not in BOOKS:
                continue
            seen[row["file"]] = seen.get(row["file"], 0) + 1
            answered = seen[row["file"]] <= ANSWERED_PER_BOOK
            questions.append(Question(kind, row["file"], row["question"], row["answer"], answered))
    return questions


def add_books(assistant: Assistant, corpus: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    for book in BOOKS:
        outcomes = [
            e for e in assistant.add([corpus / "books" / book]) if isinstance(e, FileOutcome)
        ]
        assert outcomes and outcomes[-1].document is not None, outcomes
        assert outcomes[-1].warning is None, outcomes[-1].warning
        ids[book] = outcomes[-1].document.id
    return ids


def pack(llm: LLM, hits: Sequence[Hit]) -> list[Hit]:
    """The hits, best first, whose rendered passages fit PASSAGE_TOKENS together."""
    packed: list[Hit] = []
    used = 0
    for hit in hits:
        cost = llm.count_tokens(render_passage(len(hits), hit.chunk.text, hit.chunk.location))
        if used + cost + 2 <= PASSAGE_TOKENS:
            packed.append(hit)
            used += cost + 2
    return packed


def answer(llm: LLM, plan: ContextPlan, question: str, hits: Sequence[Hit], title: str) -> str:
    done = [
        event
        for event in answer_with_passages(
            llm,
            question,
            hits,
            plan,
            titles={hit.document_id: title for hit in hits},
            budget_tokens=plan.n_ctx,  # already packed to PASSAGE_TOKENS: all of them fit
            max_answer_tokens=ANSWER_TOKENS,
        )
        if isinstance(event, AnswerDone)
    ]
    assert len(done) == 1
    return done[0].answer.text


def test_refusal_signals_flag_hallucination_questions_more_than_location_ones(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.llamacpp import LlamaCppRuntime  # heavy: only when the test runs

    started = time.perf_counter()
    settings = load_settings(home=tmp_path / "home")
    questions = load_questions(corpus)
    flags = {"hallucination": Flags(), "location": Flags()}
    lines: list[str] = []
    with Assistant(settings) as assistant:
        ids = add_books(assistant, corpus)
        indexed = time.perf_counter() - started
        titles = {d.id: d.title for d in assistant.documents()}
        rarity = {
            document_id: TermRarity.from_texts(
                c.text for c in assistant.library.chunks(document_id)
            )
            for document_id in ids.values()
        }
        runtime = LlamaCppRuntime()
        profile = assistant.catalog.profile(assistant.catalog.resolve(None))
        plan = plan_context(
            profile,
            PASSAGE_TOKENS + PROMPT_ROOM_TOKENS,
            PLAN_MEMORY_BYTES,
            runtime.detect_backend(),
        )
        llm = runtime.load(profile, plan, threads=settings.model.threads or None, kv_store=None)
        try:
            for question in questions:
                document_id = ids[question.book]
                hits = assistant.search(question.text, [document_id], k=settings.retrieval.top_k)
                shown = pack(llm, hits)
                passages = [hit.chunk.text for hit in shown]
                confidence = retrieval_confidence(question.text, passages, rarity[document_id])
                weak = confidence < CONFIDENCE_THRESHOLD
                tally = flags[question.kind]
                tally.questions += 1
                tally.retrieval += weak
                if weak:  # what Self-Route then does, as the assistant would route it
                    route = assistant.route(document_id, question.text)
                    assert route.facts is not None
                    escalation = fallback(route, route.facts) if route.strategy is RAG else None
                    tally.escalated += escalation is not None
                    tally.stands += escalation is None
                if not question.answered:
                    continue
                text = answer(llm, plan, question.text, shown, titles[document_id])
                # The passages as the model saw them, labels included: a cited location
                # ("Stave Two") is something it was shown, not something it made up.
                rendered = [
                    render_passage(n, hit.chunk.text, hit.chunk.location)
                    for n, hit in enumerate(shown, start=1)
                ]
                grounding = assess_answer(text, rendered, question.text)
                tally.answered += 1
                tally.retrieval_on_answered += weak
                tally.grounding += not grounding.supported
                flagged = weak or not grounding.supported
                tally.either += flagged
                # Crude, for the printout only: most of the gold answer's terms are in it.
                right = assess_answer(question.gold, [text]).score >= 0.5
                tally.right += right
                tally.flagged_wrong += flagged and not right
                lines.append(
                    f"{question.kind[:5]} conf={confidence:.2f} ground={grounding.score:.2f}"
                    f" {'supported' if grounding.supported else 'UNSUPPORTED'}"
                    f" missing={list(grounding.missing[:4])} | {question.text[:60]}"
                    f" -> {text[:80]!r}"
                )
        finally:
            llm.close()
    elapsed = time.perf_counter() - started

    hallu = flags["hallucination"].shares()
    location = flags["location"].shares()
    with capsys.disabled():
        print(f"\nLaRA refusal signals (32k books; index {indexed:.0f} s, total {elapsed:.0f} s)")
        for line in lines:
            print("  " + line)
        h, loc = flags["hallucination"], flags["location"]
        print(f"  answered by the model: {h.answered} hallucination, {loc.answered} location")
        print(
            f"  location answers holding the gold answer: {loc.right} of {loc.answered};"
            f" flagged location answers that miss it: {loc.flagged_wrong} of {loc.either}"
        )
        print(
            "  signal                        refusals on hallu (want high)  on location (want low)"
        )
        names = ("answer grounding", "retrieval conf. (all 26)", "retrieval conf. (answered)")
        for name, ours, theirs in zip(
            (*names, "grounding or retrieval"), hallu, location, strict=True
        ):
            print(f"  {name:28s}  {ours:28.0%}  {theirs:22.0%}")
        for kind, tally in flags.items():
            print(
                f"  fallback on {kind} questions the search flagged: {tally.escalated}"
                f" re-asked with the whole document, {tally.stands} kept the retrieval answer,"
                " marked as probably not in the text (no other strategy within the budget)"
            )

    # The search alone, on every question: measured 10/11 against 2/15 when this was written.
    assert hallu[1] - location[1] >= 0.4
    # Either signal catches nearly every hallucination question (measured: all of them).
    assert hallu[3] >= 0.8
    # Answer grounding flags wrong answers, not unanswerable questions: the bundled model
    # copies passage text back for a made-up detail (supported) and invents the detail a
    # location question asks for (unsupported), so its rates are printed, not asserted;
    # the combination still flags hallucination questions at least as often.
    assert hallu[3] >= location[3]
