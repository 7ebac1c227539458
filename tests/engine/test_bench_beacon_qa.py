"""The beacon QA benchmark: the F1 scorer, the reports of hand-made results, and the LaRA
questions as the QA run reads them.

The QA run itself is not run here: it builds the beacons of three 40k-token books and asks
two dozen questions, most of an hour on two cores (`longread bench beacons-qa` runs it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.bench.beacon_qa import (
    BeaconQABenchmark,
    BookResult,
    QAQuestion,
    QuestionResult,
    ScoredAnswer,
    load_qa,
    normalize_answer,
    token_f1,
)
from engine.types import Strategy

# -- token F1 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Hartman blames indigestion", "Hartman blames indigestion", 1.0),
        ("the ghost of Gordon", "Gordon, a ghost?", 2 * (2 / 3) * 1 / (2 / 3 + 1)),
        ("Gordon's ghost", "Gordon", 0.0),  # "gordons" is not "gordon": no stemming
        ("a cat sat", "dogs barked loudly", 0.0),
        # precision 2/4, recall 2/2: "the" is an article and does not count
        ("Hartman is stingy today", "the stingy Hartman", 2 * 0.5 * (2 / 2) / (0.5 + 1)),
        ("The Time Machine.", "time machine", 1.0),
        ("Hartman’s coins", "hartman's coins!", 1.0),  # curly and straight apostrophes agree
        ("An apple, a pear; the plum", "apple pear plum", 1.0),
        ("", "", 1.0),
        ("", "something", 0.0),
        ("something", "", 0.0),
        ("the a an", "", 1.0),  # nothing left after normalization on either side
        # a word counts as often as both sides have it: once here
        ("coal coal coal", "coal", 2 * (1 / 3) * 1 / (1 / 3 + 1)),
    ],
)
def test_token_f1(prediction: str, reference: str, expected: float) -> None:
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_normalization_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("  The Chrono-Voyager (an inventor) said: “No!”\n") == (
        "chronovoyager inventor said no"
    )


# -- reports of hand-made results ---------------------------------------------------------


def question(index: int) -> QAQuestion:
    return QAQuestion("A Christmas Carol.txt", "reasoning", f"Why {index}?", f"Because {index}.")


def book_result(name: str, scores: list[tuple[float, float]], fits: bool) -> BookResult:
    questions = []
    for index, (beacons, rag) in enumerate(scores):
        answers = [
            ScoredAnswer(Strategy.BEACONS, "b", beacons, 20.0),
            ScoredAnswer(Strategy.RAG, "r", rag, 5.0),
        ]
        if fits:
            answers.append(ScoredAnswer(Strategy.LONG_CONTEXT, "l", 0.5, 60.0))
        questions.append(QuestionResult(question(index), tuple(answers)))
    return BookResult(
        file=name,
        document_tokens=38_000,
        windows=19,
        window_tokens=2_048,
        ratio=16,
        beacon_tokens=128,
        build_seconds=420.0,
        long_context_fits=fits,
        long_context_reason="needs 38,500 tokens; at most 32,768 with RoPE x4",
        questions=tuple(questions),
    )


def test_qa_report_shows_each_book_and_the_overall_means() -> None:
    carol = book_result("A Christmas Carol.txt", [(0.2, 0.1), (0.4, 0.3)], fits=False)
    failed = QuestionResult(
        question(9),
        (
            ScoredAnswer(Strategy.BEACONS, "b", 0.6, 30.0),
            ScoredAnswer(Strategy.RAG, "", 0.0, 1.0, error="the index is broken"),
        ),
    )
    machine = dataclasses.replace(
        book_result("The Time Machine.txt", [], fits=False), questions=(failed,)
    )
    result = BeaconQABenchmark("m.gguf", "lara_32k_book_reasoning.jsonl", (carol, machine))
    assert result.mean_f1(Strategy.BEACONS) == pytest.approx(0.4)
    assert result.mean_f1(Strategy.RAG) == pytest.approx(0.4 / 3)
    assert result.mean_f1(Strategy.LONG_CONTEXT) is None
    assert carol.scores(Strategy.RAG) == pytest.approx([0.1, 0.3])
    report = result.report()
    assert "lara_32k_book_reasoning.jsonl, 2 books, 3 questions; m.gguf" in report
    assert (
        "A Christmas Carol.txt: 38,000 tokens, 19 windows of up to 2,048 tokens, ratio 16"
        " (beacons up to 128 tokens); beacons built in 420.0 s"
    ) in report
    assert (
        "2 questions, mean F1: beacons 0.300 (20.0 s)   rag 0.200 (5.0 s)   long context n/a"
    ) in report
    assert "long context n/a: needs 38,500 tokens" in report
    assert "overall, 3 questions, mean F1: beacons 0.400 (23.3 s)   rag 0.133" in report
    assert "1 answers failed and scored 0.0; the first (rag): the index is broken" in report


def test_qa_report_shows_long_context_where_it_fits() -> None:
    result = BeaconQABenchmark("m.gguf", "q.jsonl", (book_result("b.txt", [(0.2, 0.1)], True),))
    report = result.report()
    assert "long context 0.500 (60.0 s)" in report
    assert "n/a" not in report


# -- the LaRA questions ---------------------------------------------------------------------


@pytest.mark.corpus
def test_load_qa_groups_questions_by_book_in_file_order(corpus: Path) -> None:
    grouped = load_qa(corpus)
    assert [file for file, _ in grouped] == [
        "A Christmas Carol.txt",
        "The Strange Case Of Dr. Jekyll And Mr. Hyde.txt",
        "The Time Machine.txt",
    ]
    assert [len(questions) for _, questions in grouped] == [4, 4, 4]
    for file, questions in grouped:
        assert (corpus / "books" / file).is_file()
        assert all(q.file == file and q.question and q.answer for q in questions)
    first_two = load_qa(corpus, books=2, questions_per_book=1)
    assert [(file, len(questions)) for file, questions in first_two] == [
        ("A Christmas Carol.txt", 1),
        ("The Strange Case Of Dr. Jekyll And Mr. Hyde.txt", 1),
    ]
    assert first_two[0][1][0] == grouped[0][1][0]
