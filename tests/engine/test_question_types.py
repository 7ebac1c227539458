"""How well `classify_question` agrees with LaRA's own labels on the shared dev questions.

Reads every question in ../shared/corpus/qa/*.jsonl, maps LaRA's level to our type
(location and hallu -> location: LaRA's hallucination questions are phrased as location
questions), prints the confusion matrix, the agreement and every miss, and requires an
agreement of at least 0.90. It measures; it does not tune: the rules must not quote these
questions' wording.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from engine.router import classify_question
from engine.types import QuestionType

LARA_TO_TYPE = {
    "location": QuestionType.LOCATION,
    "hallu": QuestionType.LOCATION,
    "reasoning": QuestionType.REASONING,
    "comparison": QuestionType.COMPARISON,
}
MIN_AGREEMENT = 0.90


def load_questions(corpus: Path) -> list[tuple[str, str]]:
    """(LaRA level, question) for every dev question, file by file."""
    rows: list[tuple[str, str]] = []
    for path in sorted((corpus / "qa").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                rows.append((str(record["level"]), str(record["question"])))
    return rows


def confusion_table(counts: Counter[tuple[QuestionType, QuestionType]]) -> str:
    """Rows: LaRA's label mapped to our type; columns: what `classify_question` said."""
    types = list(QuestionType)
    width = max(len(t.value) for t in types) + 2
    lines = ["LaRA \\ ours".ljust(width + 2) + "".join(t.value.rjust(width) for t in types)]
    for expected in types:
        cells = "".join(str(counts[(expected, got)]).rjust(width) for got in types)
        lines.append(expected.value.ljust(width + 2) + cells)
    return "\n".join(lines)


@pytest.mark.corpus
def test_classifier_agrees_with_lara_labels(corpus: Path) -> None:
    rows = load_questions(corpus)
    assert rows, f"no questions under {corpus / 'qa'}"
    unknown = sorted({level for level, _ in rows} - LARA_TO_TYPE.keys())
    assert not unknown, f"LaRA levels with no mapping: {unknown}"

    counts: Counter[tuple[QuestionType, QuestionType]] = Counter()
    misses: list[str] = []
    for level, question in rows:
        expected = LARA_TO_TYPE[level]
        got = classify_question(question)
        counts[(expected, got)] += 1
        if got is not expected:
            misses.append(f"  [{level} -> {got.value}] {question}")

    agreement = sum(counts[(t, t)] for t in QuestionType) / len(rows)
    print(f"\nquestion types on {len(rows)} LaRA dev questions")
    print(confusion_table(counts))
    print(f"agreement: {agreement:.3f} (required {MIN_AGREEMENT:.2f})")
    print(f"misclassified: {len(misses)}")
    for miss in misses:
        print(miss)
    assert agreement >= MIN_AGREEMENT, "\n".join(misses)
