"""`longread search DOC "query"` run as a person runs it: a whole process, timed.

The retrieval benchmark (retrieval.py) hands this module a throwaway data dir whose indexes it
has built, and the embedder settings it built them with (`SearchedWith`). Each search runs
as a separate process with exactly those settings, hybrid and `--mode bm25` alternated, and
one more hybrid run first, untimed, under `python -X importtime`, says whether torch was
imported. A search process that rebuilds the index is an error: its time would not be a
search's.

It does not build indexes or time in-process searches (retrieval.py does).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.config import ENV_PREFIX, environment_variable
from ingest.types import Document
from retrieval.embedder import Embedder
from retrieval.embedders import configured_embedder
from retrieval.index_files import MANIFEST_NAME
from retrieval.index_store import INDEXES_DIR_NAME
from retrieval.types import SearchMode

# The goal for `longread search DOC "query"` as a whole process, on 2 cores.
PROCESS_GOAL_SECONDS = 1.5
PROCESS_RUNS = 5
# A search process that takes longer than this is stuck, not slow.
_PROCESS_TIMEOUT_SECONDS = 300.0
# One line of `python -X importtime`: "import time: self | cumulative | name".
_IMPORT_LINE = re.compile(r"^import time:\s*\d+\s*\|\s*\d+\s*\|\s*(\S+)\s*$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProcessTiming:
    """Wall-clock seconds of whole `longread search` processes in one mode."""

    mode: SearchMode
    samples: tuple[float, ...]

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0

    @property
    def max_seconds(self) -> float:
        return max(self.samples, default=0.0)


@dataclass(frozen=True)
class SearchProcesses:
    """`longread search DOC "query"` run as a person runs it, in each mode."""

    document: str  # the title searched
    query: str
    timings: tuple[ProcessTiming, ...]
    torch_imported: bool  # by the hybrid search process
    goal_seconds: float = PROCESS_GOAL_SECONDS

    def timing(self, mode: SearchMode) -> ProcessTiming:
        return next(timing for timing in self.timings if timing.mode is mode)

    @property
    def meets_goal(self) -> bool:
        return self.timing(SearchMode.HYBRID).median_seconds <= self.goal_seconds

    def report_lines(self) -> list[str]:
        runs = len(self.timings[0].samples) if self.timings else 0
        lines = [
            f'`longread search DOC "query"` as a whole process, {runs} runs each'
            f" ({self.document[:40]!r}, {self.query[:50]!r}):"
        ]
        for timing in self.timings:
            lines.append(
                f"  {timing.mode.value:<7} median {timing.median_seconds:6.2f} s"
                f"   max {timing.max_seconds:6.2f} s"
            )
        torch = "yes" if self.torch_imported else "no"
        lines.append(f"  torch imported by the hybrid search process: {torch}")
        verdict = "met" if self.meets_goal else "NOT met"
        hybrid = self.timing(SearchMode.HYBRID).median_seconds
        lines.append(
            f"  goal: hybrid median at most {self.goal_seconds:.1f} s: {verdict} ({hybrid:.2f} s)"
        )
        return lines


@dataclass(frozen=True)
class SearchedWith:
    """The embedder settings the benchmark builds with, and hands to the search processes."""

    setting: str
    runtime: str
    exports: Path

    def embedder(self) -> Embedder:
        return configured_embedder(self.setting, self.runtime, self.exports)

    def environment(self, home: Path) -> dict[str, str]:
        """The search process's environment: these settings and longread's defaults for the
        rest (no other LONGREAD_* variable, and `home` has no config file), so it judges the
        indexes built here by the same settings."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        environment["LONGREAD_HOME"] = str(home)
        environment[environment_variable("retrieval", "embedder")] = self.setting
        environment[environment_variable("retrieval", "embedder_runtime")] = str(self.runtime)
        environment[environment_variable("retrieval", "onnx_dir")] = str(self.exports)
        return environment


def longread_command() -> list[str]:
    """How to start `longread` with this interpreter: its script beside the interpreter (what
    a person runs), else the module."""
    script = Path(sys.executable).parent / "longread"
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "main"]


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from the stderr of `python -X importtime`."""
    found: set[str] = set()
    for line in importtime_log.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            found.add(match.group(1))
    return found


def time_search_processes(
    home: Path,
    searched: SearchedWith,
    document: Document,
    query: str,
    runs: int,
    say: Progress,
) -> SearchProcesses:
    environment = searched.environment(home)
    arguments = ["search", document.id[:12], query]
    modes = {SearchMode.HYBRID: [], SearchMode.BM25: ["--mode", SearchMode.BM25.value]}
    manifest = home / INDEXES_DIR_NAME / document.id / MANIFEST_NAME
    before = manifest.stat().st_mtime_ns
    say(f"timing `longread search` processes on {document.title[:40]!r}, {runs} runs per mode")
    # Untimed: it also warms the file cache, as a person's earlier commands would have.
    log = _run_search(["-X", "importtime"], arguments, environment).stderr
    torch_imported = any(name.split(".")[0] == "torch" for name in imported_modules(log))
    samples: dict[SearchMode, list[float]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode, flags in modes.items():  # alternated, so a busy moment hits both alike
            started = time.perf_counter()
            _run_search([], [*arguments, *flags], environment)
            samples[mode].append(time.perf_counter() - started)
    if manifest.stat().st_mtime_ns != before:
        raise RuntimeError(
            "the search process rebuilt the index, so its settings differ from the"
            " benchmark's and its times are not those of a search"
        )
    return SearchProcesses(
        document=document.title,
        query=query,
        timings=tuple(ProcessTiming(mode, tuple(found)) for mode, found in samples.items()),
        torch_imported=torch_imported,
    )


def _run_search(
    interpreter_flags: Sequence[str], arguments: Sequence[str], environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = longread_command()
    command[1:1] = interpreter_flags
    finished = subprocess.run(
        [*command, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=_PROCESS_TIMEOUT_SECONDS,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(
            f"`longread {' '.join(arguments)}` failed (exit {finished.returncode}):"
            f" {finished.stderr.strip()[-2000:]}"
        )
    return finished
