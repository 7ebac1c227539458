"""Retrieval benchmark: index build throughput and search latency, measured in one run.

In a throwaway home (so the first build of each book is really fresh, with an empty
embedding cache) it measures:

1. Index builds (term lists, embedding, writing the index folder) for the Pride and
   Prejudice PDF and for Frankenstein: once fresh, once again with every embedding taken
   from the cache, in chunks/s. The embedder is loaded before the clock starts; its load
   time is reported on its own line.
2. A library of all the corpus books (the LaRA books and the Pride and Prejudice text),
   built through the product path (ingest pipeline, IndexStore, Searcher.prepare) on the
   same embedding cache, so Frankenstein's chunks are not embedded twice.
3. Search latency (p50 / p95) over the whole library for hybrid, BM25 and dense, with the
   query embedding included, using the LaRA questions (qa/*.jsonl) as queries. The first
   search of each mode is a warm-up (it builds the library's union BM25 and faiss indexes)
   and is reported separately, not counted in the percentiles.
4. `longread search DOC "query"` as a whole process, as a person runs it (interpreter start,
   imports, settings, loading the index and the embedder, the search, printing), on
   Frankenstein in the throwaway home: hybrid and `--mode bm25` alternated, median and max,
   against the goal of a hybrid median at most 1.5 s. One more hybrid run first, untimed,
   under `python -X importtime`, says whether the search process imported torch
   (search_process.py).

The embedder is the product's: `[retrieval] embedder` on `embedder_runtime` (the product's
default unless told), with its export in `exports` (the person's export folder, so it is made
once per machine; a fresh one in the throwaway home if none is given, its cost then in the
load line). The search processes get exactly those settings and longread's defaults for the rest,
so they find the indexes built here current and rebuild nothing (checked).

`quick` limits the run to Frankenstein: one build, a library of that one book.

It does not judge retrieval quality (tests/retrieval/test_quality.py does), nor touch the
person's library: everything lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.bench.search_process import (
    PROCESS_RUNS,
    SearchedWith,
    SearchProcesses,
    time_search_processes,
)
from engine.config import RetrievalSettings
from ingest.library import Library
from ingest.pipeline import AddStatus, add_file
from ingest.types import ChunkSettings, Document
from retrieval.embedders import EMBEDDERS_DIR
from retrieval.hybrid import Searcher
from retrieval.index_store import IndexStore
from retrieval.types import IndexProgress, SearchMode
from retrieval.windows import ChunkEncoder

PDF_BOOK = Path("books") / "pride-and-prejudice" / "1342-pdf.pdf"
FRANKENSTEIN = Path("books") / "Frankenstein; Or, The Modern Prometheus.txt"
PRIDE_TEXT = Path("books") / "pride-and-prejudice" / "1342-0.txt"
QUESTIONS_GLOB = "qa/*.jsonl"
HYBRID_GOAL_MS = 50.0
# Hits per search: about what a RAG prompt gets before packing trims it.
SEARCH_K = 10
# Progress lines during a long embedding run, at most this often.
_PROGRESS_EVERY_SECONDS = 5.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildTiming:
    """One document's index, built fresh (empty cache) and again from the embedding cache."""

    name: str
    chunks: int
    tokens: int
    ingest_seconds: float
    fresh_seconds: float
    cached_seconds: float

    @property
    def fresh_rate(self) -> float:
        return self.chunks / self.fresh_seconds if self.fresh_seconds > 0 else 0.0

    @property
    def cached_rate(self) -> float:
        return self.chunks / self.cached_seconds if self.cached_seconds > 0 else 0.0


@dataclass(frozen=True)
class Latency:
    """Search times of one mode, in seconds, one per query (warm-up excluded)."""

    mode: SearchMode
    warmup_seconds: float
    samples: tuple[float, ...]

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples, 50) * 1000

    @property
    def p95_ms(self) -> float:
        return percentile(self.samples, 95) * 1000


@dataclass(frozen=True)
class RetrievalBenchmark:
    embedder_id: str
    embedder_load_seconds: float
    builds: tuple[BuildTiming, ...]
    library_documents: int
    library_chunks: int
    library_tokens: int
    library_ingest_seconds: float
    library_index_seconds: float
    library_chunks_embedded: int
    library_chunks_reused: int
    latencies: tuple[Latency, ...]
    processes: SearchProcesses | None = None
    machine: str = ""
    k: int = SEARCH_K
    goal_ms: float = HYBRID_GOAL_MS

    def latency(self, mode: SearchMode) -> Latency:
        return next(latency for latency in self.latencies if latency.mode is mode)

    @property
    def meets_goal(self) -> bool:
        return self.latency(SearchMode.HYBRID).p50_ms < self.goal_ms

    def report(self) -> str:
        lines = [f"retrieval benchmark: embedder {self.embedder_id}"]
        if self.machine:
            lines.append(f"  machine: {self.machine}")
        lines.append(f"  embedder load (not counted below): {self.embedder_load_seconds:.2f} s")
        lines.append("index build (terms + embedding + writing), chunks/s:")
        for build in self.builds:
            lines.append(
                f"  {build.name} ({build.chunks} chunks, {build.tokens:,} tokens;"
                f" ingest {build.ingest_seconds:.2f} s)"
            )
            lines.append(
                f"    fresh  {build.fresh_rate:8.1f} chunks/s ({build.fresh_seconds:.2f} s)"
            )
            lines.append(
                f"    cached {build.cached_rate:8.1f} chunks/s ({build.cached_seconds:.2f} s)"
            )
        books = "book" if self.library_documents == 1 else "books"
        lines.append(
            f"library: {self.library_documents} {books}, {self.library_chunks} chunks,"
            f" {self.library_tokens:,} tokens; ingest {self.library_ingest_seconds:.1f} s,"
            f" indexes {self.library_index_seconds:.1f} s"
            f" ({self.library_chunks_embedded} chunks embedded,"
            f" {self.library_chunks_reused} reused from the index or the embedding cache)"
        )
        queries = len(self.latencies[0].samples) if self.latencies else 0
        lines.append(
            f"search latency over the whole library, k={self.k}, {queries} LaRA questions"
            " (query embedding included):"
        )
        for latency in self.latencies:
            lines.append(
                f"  {latency.mode.value:<7} p50 {latency.p50_ms:7.1f} ms   p95"
                f" {latency.p95_ms:7.1f} ms   (first search {latency.warmup_seconds * 1000:.0f} ms)"
            )
        if self.latencies:
            verdict = "met" if self.meets_goal else "NOT met"
            hybrid = self.latency(SearchMode.HYBRID).p50_ms
            lines.append(
                f"  goal: hybrid p50 under {self.goal_ms:.0f} ms: {verdict} ({hybrid:.1f} ms)"
            )
        if self.processes is not None:
            lines += self.processes.report_lines()
        return "\n".join(lines)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _records(corpus_dir: Path) -> list[dict[str, object]]:
    """The LaRA question records, files in name order, lines in file order."""
    records: list[dict[str, object]] = []
    for path in sorted(corpus_dir.glob(QUESTIONS_GLOB)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def load_questions(corpus_dir: Path, limit: int) -> list[str]:
    """The first `limit` LaRA questions."""
    return [str(record["question"]) for record in _records(corpus_dir)][: max(limit, 0)]


def library_books(corpus_dir: Path) -> list[Path]:
    """The books of the search library: the LaRA books (those its questions name, so license
    and notice files stay out), then the Pride and Prejudice text."""
    names = {str(record["file"]) for record in _records(corpus_dir)}
    books = sorted(corpus_dir / "books" / name for name in names)
    return [*(book for book in books if book.is_file()), corpus_dir / PRIDE_TEXT]


def run_retrieval_benchmark(
    corpus_dir: Path,
    progress: Progress | None = None,
    queries: int = 50,
    *,
    embedder_setting: str = "bundled",
    runtime: str | None = None,
    exports: Path | None = None,
    quick: bool = False,
    process_runs: int = PROCESS_RUNS,
) -> RetrievalBenchmark:
    """Run the whole benchmark (see the module docstring); a few minutes on two cores, about
    a minute with `quick`.

    `embedder_setting`, `runtime` and `exports` are `[retrieval] embedder`, `embedder_runtime`
    (None: the product's default) and the folder of ONNX exports (None: a fresh one in the
    throwaway home); `progress` receives one-line messages meant for stderr.
    """
    say = progress or quiet
    machine = describe_machine()
    questions = load_questions(corpus_dir, queries)
    if not questions:
        raise ValueError(f"no questions found under {corpus_dir / QUESTIONS_GLOB}")
    with tempfile.TemporaryDirectory(prefix="longread-bench-retrieval-") as folder:
        home = Path(folder)
        searched = SearchedWith(
            embedder_setting,
            runtime or RetrievalSettings().embedder_runtime,
            exports or home / EMBEDDERS_DIR,
        )
        encoder = ChunkEncoder(searched.embedder())
        library = Library(home)
        store = IndexStore(home, encoder)
        try:
            say(f"loading the embedder {encoder.embedder.id}")
            started = time.perf_counter()
            encoder.encode(["warm up"])  # load the model before any clock that counts
            load_seconds = time.perf_counter() - started

            books = [FRANKENSTEIN] if quick else [PDF_BOOK, FRANKENSTEIN]
            builds = [_time_builds(library, store, corpus_dir / book, say) for book in books]
            ingest_seconds = 0.0
            if not quick:
                # The PDF is the same book as the text edition: it leaves the search library.
                pdf_id = _document_for(library, corpus_dir / PDF_BOOK).id
                library.remove(pdf_id)
                store.remove(pdf_id)
                for path in library_books(corpus_dir):
                    ingest_seconds += _ingest(library, path, say)[1]
            searcher = Searcher(library, store)
            say("building the library's indexes (embeddings of known chunks come from the cache)")
            started = time.perf_counter()
            embedded, _ = _count_embedding(searcher.prepare(), say)
            index_seconds = time.perf_counter() - started

            documents = library.documents()
            chunks = sum(d.chunk_count for d in documents)
            latencies = tuple(
                _time_searches(searcher, mode, questions, say)
                for mode in (SearchMode.HYBRID, SearchMode.BM25, SearchMode.DENSE)
            )
            searched_document = _document_for(library, corpus_dir / FRANKENSTEIN)
        finally:
            # Closed before the search processes open the same files.
            store.close()
            library.close()
        processes = time_search_processes(
            home,
            searched,
            searched_document,
            _question_about(corpus_dir, FRANKENSTEIN.name) or questions[0],
            max(process_runs, 1),
            say,
        )
        return RetrievalBenchmark(
            embedder_id=encoder.id,
            embedder_load_seconds=load_seconds,
            builds=tuple(builds),
            library_documents=len(documents),
            library_tokens=sum(d.token_count for d in documents),
            library_chunks=chunks,
            library_ingest_seconds=ingest_seconds,
            library_index_seconds=index_seconds,
            library_chunks_embedded=embedded,
            # Frankenstein's index was already built: prepare() loads it, embeds nothing.
            library_chunks_reused=chunks - embedded,
            latencies=latencies,
            processes=processes,
            machine=machine,
        )


def describe_machine() -> str:
    """Cores, load and the OpenMP settings: on a shared machine the figures mean little
    without them (torch's threads wait for each other at every step, and slow down badly
    when other processes hold the cores)."""
    cores = os.cpu_count() or 0
    try:
        load = f"load average {os.getloadavg()[0]:.1f} at start"
    except OSError:  # not every platform can say
        load = "load average unknown"
    omp = ", ".join(
        f"{name}={os.environ[name]}"
        for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
        if name in os.environ
    )
    return f"{cores} cores, {load}; {omp or 'OpenMP defaults'}"


def quiet(message: str) -> None:
    """A progress callback that says nothing."""
    del message


def _ingest(library: Library, path: Path, say: Progress) -> tuple[Document, float]:
    say(f"adding {path.name}")
    run = add_file(library, path, ChunkSettings())
    try:
        while True:
            next(run)
    except StopIteration as finished:
        outcome = finished.value
    if outcome.status is AddStatus.FAILED or outcome.document is None:
        raise RuntimeError(f"benchmark file {path} could not be added: {outcome.error}")
    return outcome.document, outcome.seconds


def _document_for(library: Library, path: Path) -> Document:
    resolved = str(path.resolve())
    return next(d for d in library.documents() if d.source_path == resolved)


def _time_builds(library: Library, store: IndexStore, path: Path, say: Progress) -> BuildTiming:
    document, ingest_seconds = _ingest(library, path, say)
    say(f"indexing {path.name}, fresh ({document.chunk_count} chunks)")
    started = time.perf_counter()
    _, cached = _count_embedding(store.build(library, document.id), say)
    fresh = time.perf_counter() - started
    if cached:
        raise RuntimeError(f"the fresh build of {path.name} found {cached} chunks already cached")
    say(f"indexing {path.name} again, every embedding from the cache")
    started = time.perf_counter()
    embedded, _ = _count_embedding(store.build(library, document.id), say)
    again = time.perf_counter() - started
    if embedded:
        raise RuntimeError(f"the cached build of {path.name} embedded {embedded} chunks again")
    return BuildTiming(
        name=path.name,
        chunks=document.chunk_count,
        tokens=document.token_count,
        ingest_seconds=ingest_seconds,
        fresh_seconds=fresh,
        cached_seconds=again,
    )


def _count_embedding(events: Iterator[IndexProgress], say: Progress) -> tuple[int, int]:
    """Run index builds to their end: (chunks embedded, chunks found in the cache)."""
    embedded = cached = 0
    last = time.perf_counter()
    for event in events:
        # A build's first event is the only one with nothing newly embedded yet: it says
        # what the cache already had, and so what is left to embed.
        if event.done == event.cached:
            cached += event.cached
            embedded += event.total - event.cached
        now = time.perf_counter()
        if now - last >= _PROGRESS_EVERY_SECONDS:
            say(f"  {event.document_id[:12]}: {event.done}/{event.total} chunks")
            last = now
    return embedded, cached


def _question_about(corpus_dir: Path, file_name: str) -> str | None:
    """The first LaRA question about this book, if any."""
    for record in _records(corpus_dir):
        if record.get("file") == file_name:
            return str(record["question"])
    return None


def _time_searches(
    searcher: Searcher, mode: SearchMode, questions: Sequence[str], say: Progress
) -> Latency:
    say(f"timing {mode.value} search over {len(questions)} questions")
    started = time.perf_counter()
    searcher.search(questions[0], k=SEARCH_K, mode=mode)
    warmup = time.perf_counter() - started
    samples: list[float] = []
    for question in questions:
        started = time.perf_counter()
        searcher.search(question, k=SEARCH_K, mode=mode)
        samples.append(time.perf_counter() - started)
    return Latency(mode=mode, warmup_seconds=warmup, samples=tuple(samples))


__all__ = [
    "BuildTiming",
    "Latency",
    "RetrievalBenchmark",
    "describe_machine",
    "library_books",
    "load_questions",
    "percentile",
    "run_retrieval_benchmark",
]
