"""The retrieval benchmark, run on a tiny corpus laid out like the shared one.

The full run over the real corpus takes minutes (`longread bench retrieval`); here a few
short books keep it to seconds, with the real embedder, so every stage runs for real.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.bench.retrieval import (
    FRANKENSTEIN,
    PDF_BOOK,
    PRIDE_TEXT,
    library_books,
    load_questions,
    percentile,
    run_retrieval_benchmark,
)
from retrieval.types import SearchMode
from tests.pdf_factory import make_pdf, write_pdf


def _paragraphs(topic: str, count: int) -> str:
    return "\n\n".join(
        f"The {topic} chapter {n} tells of the {topic} and its keeper, who walked the shore"
        f" at dawn and counted {n} gulls before the tide turned."
        for n in range(1, count + 1)
    )


def make_corpus(root: Path) -> Path:
    books = root / "books"
    (books / "pride-and-prejudice").mkdir(parents=True)
    pages = [
        f"Page {n} of the novel. Elizabeth walked to Netherfield in the mud." for n in range(3)
    ]
    write_pdf(root / PDF_BOOK, make_pdf(pages))
    (root / FRANKENSTEIN).write_text(_paragraphs("monster", 6), encoding="utf-8")
    (books / "The Time Machine.txt").write_text(_paragraphs("machine", 4), encoding="utf-8")
    (root / PRIDE_TEXT).write_text(_paragraphs("ball", 4), encoding="utf-8")
    (books / "LICENSE_LaRA_MIT.txt").write_text("MIT License\n", encoding="utf-8")  # not a book
    (root / "qa").mkdir()
    questions = [
        ("Who walked the shore?", FRANKENSTEIN.name),
        ("How many gulls were counted?", "The Time Machine.txt"),
        ("What of the ball?", FRANKENSTEIN.name),
    ]
    lines = [json.dumps({"file": f, "question": q, "answer": "a"}) for q, f in questions]
    (root / "qa" / "lara_tiny.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(n) for n in range(1, 101)], 95) == pytest.approx(95.05)


def test_questions_and_books_follow_the_corpus_layout(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    assert load_questions(corpus, 2) == ["Who walked the shore?", "How many gulls were counted?"]
    assert [p.name for p in library_books(corpus)] == [
        "Frankenstein; Or, The Modern Prometheus.txt",
        "The Time Machine.txt",
        "1342-0.txt",
    ]


@pytest.mark.embedder
@pytest.mark.slow
def test_benchmark_reports_builds_and_latencies(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    messages: list[str] = []
    result = run_retrieval_benchmark(corpus, messages.append, queries=3)

    assert messages and any("indexing" in m for m in messages)
    assert [b.name for b in result.builds] == [PDF_BOOK.name, FRANKENSTEIN.name]
    for build in result.builds:
        assert build.chunks > 0 and build.fresh_seconds > 0 and build.cached_seconds > 0
    assert result.library_documents == 3  # the PDF left the library; the text edition is in
    frankenstein = result.builds[1].chunks
    assert result.library_chunks_reused == frankenstein  # reused, not embedded again
    assert result.library_chunks_embedded == result.library_chunks - frankenstein
    assert [latency.mode for latency in result.latencies] == list(SearchMode)
    assert all(len(latency.samples) == 3 for latency in result.latencies)

    report = result.report()
    for pattern in (
        r"1342-pdf\.pdf \(\d+ chunks",
        r"fresh +\d+\.\d chunks/s",
        r"cached +\d+\.\d chunks/s",
        r"library: 3 books, \d+ chunks",
        r"hybrid +p50 +\d+\.\d ms +p95 +\d+\.\d ms",
        r"bm25 +p50",
        r"dense +p50",
        r"goal: hybrid p50 under 50 ms: (met|NOT met)",
    ):
        assert re.search(pattern, report), f"{pattern!r} not in:\n{report}"
