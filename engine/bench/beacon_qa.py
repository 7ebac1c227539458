"""Beacon QA benchmark: how well beacon summaries answer questions, against retrieval.

For each book of a LaRA question file (`run_beacon_qa_benchmark`), the whole book is added
to a throwaway data dir, its beacons are built (automatic window), and every question is
answered with beacons and with retrieval (and with the whole text when the model can read
it at once: the LaRA 32k books cannot, even with RoPE x4). Each answer is scored against the
reference with SQuAD-style token F1 (`token_f1`).

What it does not do: judge answers beyond token overlap (F1 rewards shared words, not sound
reasoning; an evaluation with a judge will replace `token_f1`), time the beacon build beyond
its seconds (engine/bench/beacons.py measures what a build costs), run more than once (a
run takes most of an hour on a CPU), assert any goal, print (`report()` returns the text),
or touch the person's library: their data dir is only read for its settings
(`config.toml`, `LONGREAD_*`) and registered model names.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.assistant import Assistant
from engine.bench.scratch import (
    Progress,
    add_document,
    build_beacons,
    quiet,
    scratch_settings,
)
from engine.errors import USER_ERRORS
from engine.types import AnswerDone, Strategy

DEFAULT_QA_FILE = "lara_32k_book_reasoning.jsonl"

QA_STRATEGIES = (Strategy.BEACONS, Strategy.RAG, Strategy.LONG_CONTEXT)
"""The strategies each question is answered with, in the order the report shows them."""

_STRATEGY_NAMES = {
    Strategy.BEACONS: "beacons",
    Strategy.RAG: "rag",
    Strategy.LONG_CONTEXT: "long context",
}


# -- scoring --------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles (a, an, the),
    single spaces. Punctuation is ASCII's and every Unicode punctuation mark besides, so
    the LaRA references' curly apostrophes ("Hartman’s") count as the model's straight ones."""
    lowered = text.lower()
    kept = "".join(
        ch
        for ch in lowered
        if ch not in string.punctuation and not unicodedata.category(ch).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", kept).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 of `prediction` against `reference`: the harmonic mean of the
    share of the prediction's tokens found in the reference (precision) and of the
    reference's found in the prediction (recall), tokens counted with repeats after
    `normalize_answer`. Two empty answers agree (1.0); one empty answer scores 0.0, as in
    SQuAD 2.0."""
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted)
    recall = shared / len(expected)
    return 2 * precision * recall / (precision + recall)


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QAQuestion:
    """One LaRA question: the book's file name, its level, the question and the reference."""

    file: str
    level: str
    question: str
    answer: str


@dataclass(frozen=True)
class ScoredAnswer:
    """One strategy's answer to one question, and its token F1 against the reference.
    `error` is the message of an answer that failed (it scores 0.0)."""

    strategy: Strategy
    text: str
    f1: float
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class QuestionResult:
    question: QAQuestion
    answers: tuple[ScoredAnswer, ...]

    def answer(self, strategy: Strategy) -> ScoredAnswer | None:
        return next((a for a in self.answers if a.strategy is strategy), None)


@dataclass(frozen=True)
class BookResult:
    """One book: its beacons (layout and build time), whether the whole text fits the
    model, and the scored answers to its questions."""

    file: str
    document_tokens: int
    windows: int
    window_tokens: int
    ratio: int
    beacon_tokens: int
    build_seconds: float
    long_context_fits: bool
    long_context_reason: str
    questions: tuple[QuestionResult, ...]

    def scores(self, strategy: Strategy) -> list[float]:
        return _scores(self.questions, strategy)


@dataclass(frozen=True)
class BeaconQABenchmark:
    model: str
    qa_file: str
    books: tuple[BookResult, ...]

    @property
    def questions(self) -> tuple[QuestionResult, ...]:
        return tuple(question for book in self.books for question in book.questions)

    def mean_f1(self, strategy: Strategy) -> float | None:
        """Mean F1 over every question answered with `strategy`; None when none was."""
        return _mean(_scores(self.questions, strategy))

    def report(self) -> str:
        lines = [
            f"beacon QA benchmark: {self.qa_file}, {len(self.books)} books,"
            f" {len(self.questions)} questions; {self.model}; token F1 (SQuAD-style) against"
            " the reference answers"
        ]
        for book in self.books:
            lines.append(
                f"  {book.file}: {book.document_tokens:,} tokens, {book.windows} windows of up"
                f" to {book.window_tokens:,} tokens, ratio {book.ratio} (beacons up to"
                f" {book.beacon_tokens:,} tokens); beacons built in {book.build_seconds:.1f} s"
            )
            lines.append(
                f"    {len(book.questions)} questions, mean F1: {_f1_columns(book.questions)}"
            )
            if not book.long_context_fits:
                lines.append(f"    long context n/a: {book.long_context_reason}")
        lines.append(
            f"  overall, {len(self.questions)} questions, mean F1: {_f1_columns(self.questions)}"
        )
        failed = [
            answer for question in self.questions for answer in question.answers if answer.error
        ]
        if failed:
            lines.append(
                f"  {len(failed)} answers failed and scored 0.0; the first"
                f" ({_STRATEGY_NAMES[failed[0].strategy]}): {failed[0].error}"
            )
        return "\n".join(lines)


def _scores(questions: Sequence[QuestionResult], strategy: Strategy) -> list[float]:
    return [
        answer.f1 for question in questions if (answer := question.answer(strategy)) is not None
    ]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _f1_columns(questions: Sequence[QuestionResult]) -> str:
    """`beacons 0.183 (12.3 s)   rag 0.201 (4.5 s)   long context n/a`: mean F1 and mean
    seconds an answer took, per strategy."""
    columns = []
    for strategy in QA_STRATEGIES:
        name = _STRATEGY_NAMES[strategy]
        answers = [a for q in questions if (a := q.answer(strategy)) is not None]
        if not answers:  # long context, where the text does not fit the model
            columns.append(f"{name} n/a")
            continue
        f1 = sum(a.f1 for a in answers) / len(answers)
        seconds = sum(a.seconds for a in answers) / len(answers)
        columns.append(f"{name} {f1:.3f} ({seconds:.1f} s)")
    return "   ".join(columns)


# -- running -------------------------------------------------------------------------------


def load_qa(
    corpus: Path,
    qa_file: str = DEFAULT_QA_FILE,
    books: int | None = None,
    questions_per_book: int | None = None,
) -> list[tuple[str, list[QAQuestion]]]:
    """The questions of `corpus/qa/qa_file`, grouped by book in the file's order: the
    first `books` books (None: all), the first `questions_per_book` of each (None: all)."""
    grouped: dict[str, list[QAQuestion]] = {}
    path = corpus / "qa" / qa_file
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record: dict[str, Any] = json.loads(line)
        question = QAQuestion(
            file=str(record["file"]),
            level=str(record.get("level", "")),
            question=str(record["question"]),
            answer=str(record["answer"]),
        )
        grouped.setdefault(question.file, []).append(question)
    chosen = list(grouped.items())[: books if books is not None else None]
    limit = questions_per_book
    return [
        (file, questions[:limit] if limit is not None else questions) for file, questions in chosen
    ]


def run_beacon_qa_benchmark(
    corpus: Path,
    *,
    qa_file: str = DEFAULT_QA_FILE,
    books: int | None = None,
    questions_per_book: int | None = None,
    home: Path | None = None,
    config_path: Path | None = None,
    model: str | None = None,
    progress: Progress | None = None,
) -> BeaconQABenchmark:
    """Answer the LaRA questions of `qa_file` with beacons, retrieval and (where the book
    fits) long context, and score them (module docstring). Slow: each 32k book's beacons
    take several minutes to build on a CPU, each answer tens of seconds.

    `home`, `config_path` and `model` (a registered name or a .gguf path) are the person's,
    read only, as `scratch_settings` reads them (None: as the CLI finds them, the configured
    model). The beacon window is always automatic.
    """
    say = progress or quiet
    grouped = load_qa(corpus, qa_file, books, questions_per_book)
    if not grouped:
        raise ValueError(f"no questions found in {corpus / 'qa' / qa_file}")
    results: list[BookResult] = []
    with tempfile.TemporaryDirectory(prefix="longread-bench-beacon-qa-") as folder:
        settings = scratch_settings(
            Path(folder) / "home", home, config_path, model, {"window_tokens": 0}
        )
        with Assistant(settings) as assistant:
            model_name = assistant.catalog.resolve(settings.model.name).path.name
            for file, questions in grouped:
                results.append(_book(assistant, corpus / "books" / file, questions, say))
    return BeaconQABenchmark(model=model_name, qa_file=qa_file, books=tuple(results))


def _book(
    assistant: Assistant, path: Path, questions: Sequence[QAQuestion], say: Progress
) -> BookResult:
    added = add_document(assistant, path, say, index=True)
    context = assistant.ask_context(added.id, "?")
    say(f"building beacons of {path.name} ({context.document_tokens:,} tokens)")
    built = build_beacons(assistant, added.id, path.name, say)
    whole = assistant.plan(added.id).plan
    strategies = [Strategy.BEACONS, Strategy.RAG]
    if whole.fits:
        strategies.append(Strategy.LONG_CONTEXT)
    answers: dict[int, list[ScoredAnswer]] = {index: [] for index in range(len(questions))}
    # One strategy at a time over all the questions: each strategy plans its own window,
    # and interleaving them could reload the model at every question.
    for strategy in strategies:
        for index, question in enumerate(questions):
            say(
                f"{path.name}: question {index + 1}/{len(questions)} with"
                f" {_STRATEGY_NAMES[strategy]}"
            )
            answers[index].append(_answer(assistant, added.id, question, strategy))
    layout = built.layout
    return BookResult(
        file=path.name,
        document_tokens=context.document_tokens,
        windows=len(layout.windows),
        window_tokens=layout.window_tokens,
        ratio=layout.choice.ratio,
        beacon_tokens=layout.choice.beacon_tokens,
        build_seconds=built.seconds,
        long_context_fits=whole.fits,
        long_context_reason=whole.reason,
        questions=tuple(
            QuestionResult(question, tuple(answers[index]))
            for index, question in enumerate(questions)
        ),
    )


def _answer(
    assistant: Assistant, document_id: str, question: QAQuestion, strategy: Strategy
) -> ScoredAnswer:
    """One forced-strategy answer, scored. A failure the engine explains (a user error)
    scores 0.0 with its message, so one answer does not end an hour-long run; anything
    else is a bug and propagates."""
    started = time.perf_counter()
    try:
        events = list(assistant.ask(document_id, question.question, strategy=strategy))
    except USER_ERRORS as error:
        return ScoredAnswer(strategy, "", 0.0, time.perf_counter() - started, str(error))
    seconds = time.perf_counter() - started
    done = events[-1]
    if not isinstance(done, AnswerDone):
        raise RuntimeError(f"the answer ended with {type(done).__name__}, not AnswerDone")
    text = done.answer.text
    return ScoredAnswer(strategy, text, token_f1(text, question.answer), seconds)


__all__ = [
    "DEFAULT_QA_FILE",
    "QA_STRATEGIES",
    "BeaconQABenchmark",
    "BookResult",
    "QAQuestion",
    "QuestionResult",
    "ScoredAnswer",
    "load_qa",
    "normalize_answer",
    "run_beacon_qa_benchmark",
    "token_f1",
]
