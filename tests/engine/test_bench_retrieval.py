"""The retrieval benchmark, run on a tiny corpus laid out like the shared one.

The full run over the real corpus takes minutes (`longread bench retrieval`); here a few
short books keep it to seconds, with the real embedder, so every stage runs for real,
`longread search` processes included. Speed goals are printed, never asserted.
"""

from __future__ import annotations

import json
import re
import sys
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
from engine.bench.search_process import (
    ProcessTiming,
    SearchedWith,
    SearchProcesses,
    imported_modules,
    longread_command,
)
from engine.config import RetrievalSettings
from retrieval.embedders import configured_embedder
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


def _processes(hybrid: tuple[float, ...], torch_imported: bool = False) -> SearchProcesses:
    return SearchProcesses(
        document="Frankenstein",
        query="Who walked the shore?",
        timings=(
            ProcessTiming(SearchMode.HYBRID, hybrid),
            ProcessTiming(SearchMode.BM25, (0.5, 0.7, 0.6)),
        ),
        torch_imported=torch_imported,
    )


def test_search_process_lines_give_median_max_torch_and_the_goal() -> None:
    lines = "\n".join(_processes((1.2, 1.6, 1.4)).report_lines())
    for pattern in (
        r"as a whole process, 3 runs each \('Frankenstein', 'Who walked the shore\?'\)",
        r"hybrid +median +1\.40 s +max +1\.60 s",
        r"bm25 +median +0\.60 s +max +0\.70 s",
        r"torch imported by the hybrid search process: no",
        r"goal: hybrid median at most 1\.5 s: met \(1\.40 s\)",
    ):
        assert re.search(pattern, lines), f"{pattern!r} not in:\n{lines}"
    slow = "\n".join(_processes((1.4, 1.6, 1.7), torch_imported=True).report_lines())
    assert "goal: hybrid median at most 1.5 s: NOT met (1.60 s)" in slow
    assert "torch imported by the hybrid search process: yes" in slow


def test_imported_modules_reads_python_importtime_output() -> None:
    log = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       120 |        120 |   _io",
            "import time:      3000 |     900000 | torch",
            "import time:        15 |         15 |     torch._C",
            "some other line | torch",
        ]
    )
    assert imported_modules(log) == {"_io", "torch", "torch._C"}
    assert imported_modules("import time:  10 |  10 |   onnxruntime") == {"onnxruntime"}


def test_search_processes_get_exactly_the_benchmark_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGREAD_CHUNKING_MAX_TOKENS", "200")  # would make the index stale
    monkeypatch.setenv("PATH_FOR_TEST", "kept")
    searched = SearchedWith("bundled", "onnx-int8", tmp_path / "exports")
    environment = searched.environment(tmp_path / "home")
    assert {k: v for k, v in environment.items() if k.startswith("LONGREAD_")} == {
        "LONGREAD_HOME": str(tmp_path / "home"),
        "LONGREAD_RETRIEVAL_EMBEDDER": "bundled",
        "LONGREAD_RETRIEVAL_EMBEDDER_RUNTIME": "onnx-int8",
        "LONGREAD_RETRIEVAL_ONNX_DIR": str(tmp_path / "exports"),
    }
    assert environment["PATH_FOR_TEST"] == "kept"


def test_search_processes_run_the_longread_script_of_this_interpreter() -> None:
    command = longread_command()
    assert command[0] == sys.executable
    assert command[1:] in ([str(Path(sys.executable).parent / "longread")], ["-m", "main"])


def _check_processes(processes: SearchProcesses | None, runs: int) -> None:
    assert processes is not None
    assert processes.document.startswith("Frankenstein")
    assert processes.query == "Who walked the shore?"  # the first question about that book
    assert [timing.mode for timing in processes.timings] == [SearchMode.HYBRID, SearchMode.BM25]
    for timing in processes.timings:
        assert len(timing.samples) == runs and all(sample > 0 for sample in timing.samples)
        assert 0 < timing.median_seconds <= timing.max_seconds
    # The export exists, so the search process runs on onnxruntime alone.
    assert processes.torch_imported is False


@pytest.mark.embedder
@pytest.mark.slow
def test_benchmark_reports_builds_and_latencies(tmp_path: Path, shared_onnx_exports: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    messages: list[str] = []
    result = run_retrieval_benchmark(
        corpus, messages.append, queries=3, exports=shared_onnx_exports, process_runs=2
    )

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
        r"`longread search DOC \"query\"` as a whole process, 2 runs each",
        r"hybrid +median +\d+\.\d\d s +max +\d+\.\d\d s",
        r"bm25 +median +\d+\.\d\d s +max +\d+\.\d\d s",
        r"torch imported by the hybrid search process: no",
        r"goal: hybrid median at most 1\.5 s: (met|NOT met)",
    ):
        assert re.search(pattern, report), f"{pattern!r} not in:\n{report}"
    default = configured_embedder(
        "bundled", RetrievalSettings().embedder_runtime, shared_onnx_exports
    )
    assert result.embedder_id.startswith(f"{default.id}+max-windows-"), result.embedder_id
    _check_processes(result.processes, runs=2)


@pytest.mark.embedder
@pytest.mark.slow
def test_quick_benchmark_builds_and_searches_one_book(
    tmp_path: Path, shared_onnx_exports: Path
) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    result = run_retrieval_benchmark(
        corpus, queries=2, exports=shared_onnx_exports, quick=True, process_runs=1
    )

    assert [b.name for b in result.builds] == [FRANKENSTEIN.name]
    assert result.library_documents == 1
    assert result.library_chunks == result.builds[0].chunks == result.library_chunks_reused
    assert result.library_chunks_embedded == 0 and result.library_ingest_seconds == 0
    _check_processes(result.processes, runs=1)
    assert "library: 1 book," in result.report()
