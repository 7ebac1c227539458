"""Ingestion throughput on a real PDF: reading (pages/s), chunking (chunks/s), whole pipeline.

Runs the real pipeline into a throwaway library, so the figures include SQLite writes; the
reading stage alone is also timed with the bare reader, so the pipeline's overhead shows
as a ratio measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.library import Library
from ingest.pipeline import AddStatus, FileOutcome, Stage, add_file
from ingest.readers import reader_for
from ingest.sniff import sniff_format
from ingest.types import ChunkSettings, ReadOptions

DEFAULT_BENCH_PDF = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "corpus"
    / "books"
    / "pride-and-prejudice"
    / "1342-pdf.pdf"
)


@dataclass(frozen=True)
class IngestBenchmark:
    path: Path
    pages: int
    chunks: int
    bare_read_seconds: float
    read_seconds: float
    chunk_seconds: float
    save_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.read_seconds + self.chunk_seconds + self.save_seconds

    def report(self) -> str:
        bare = self.pages / self.bare_read_seconds
        total = self.pages / self.total_seconds
        rows = [
            ("bare pypdf reading", bare, "pages/s", self.bare_read_seconds),
            ("reading", self.pages / self.read_seconds, "pages/s", self.read_seconds),
            ("chunking", self.chunks / self.chunk_seconds, "chunks/s", self.chunk_seconds),
            ("saving", self.chunks / self.save_seconds, "chunks/s", self.save_seconds),
            ("total pipeline", total, "pages/s", self.total_seconds),
        ]
        lines = [f"ingest benchmark: {self.path.name} ({self.pages} pages, {self.chunks} chunks)"]
        lines += [f"  {name:<20}{rate:8.1f} {unit:<9}({s:.2f} s)" for name, rate, unit, s in rows]
        lines.append(f"  pipeline / bare reading: {total / bare:.2f} (goal: at least 0.5)")
        return "\n".join(lines)


def _bare_read_seconds(path: Path) -> float:
    data = path.read_bytes()
    started = time.perf_counter()
    run = reader_for(sniff_format(data, path.name))(data, path.name, ReadOptions())
    for _ in run:
        pass
    return time.perf_counter() - started


def _pipeline_once(path: Path) -> FileOutcome:
    with (
        tempfile.TemporaryDirectory(prefix="longread-bench-") as home,
        Library(Path(home)) as library,
    ):
        run = add_file(library, path, ChunkSettings())
        try:
            while True:
                next(run)
        except StopIteration as finished:
            outcome: FileOutcome = finished.value
    if outcome.status is not AddStatus.ADDED or outcome.document is None:
        raise RuntimeError(f"benchmark file could not be added: {outcome.error}")
    return outcome


def run_ingest_benchmark(path: Path, runs: int = 1) -> IngestBenchmark:
    """Best of `runs` for the bare reader and for the pipeline, alternated in one run."""
    bare: list[float] = []
    outcomes: list[FileOutcome] = []
    for _ in range(max(runs, 1)):
        bare.append(_bare_read_seconds(path))
        outcomes.append(_pipeline_once(path))
    best = min(outcomes, key=lambda o: o.seconds)
    document = best.document
    assert document is not None
    return IngestBenchmark(
        path=path,
        pages=document.page_count or document.section_count,
        chunks=document.chunk_count,
        bare_read_seconds=min(bare),
        read_seconds=best.stage_seconds[Stage.READING],
        chunk_seconds=best.stage_seconds[Stage.CHUNKING],
        save_seconds=best.stage_seconds[Stage.SAVING],
    )
