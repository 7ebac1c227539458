"""Hostile input: text that defeats sentence splitting, paths that are not files (a named
pipe, a device, a socket, a folder), files too large or unreadable, and a reader that fails
on a bug. Each is refused or survived, quickly, and never stops the files after it."""

from __future__ import annotations

import os
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path

import pytest

from ingest import chunker, readers
from ingest.library import Library
from ingest.pipeline import AddStatus, FileOutcome, add_file
from ingest.readers import Reader
from ingest.types import (
    Chunk,
    ChunkSettings,
    ExtractedText,
    Format,
    ReadOptions,
    ReadProgress,
    Section,
)
from tests.library_checks import assert_consistent, table_counts
from tests.measured import run_measured

REPO_ROOT = Path(__file__).resolve().parents[2]

BOOK = """# The Lighthouse {n}

The keeper climbed the stairs each night. The lamp held through storm {n}.
"""

# The old chunker took 85 s and 7.6 GB on 16 MB of text without sentence ends; on the ~3 MB
# here it took ~12 s and ~1.2 GB (either text). Now it takes 1-4 s and ~65 MB: the bounds
# leave room for a loaded machine, and still catch the old behaviour by its memory.
MAX_SECONDS = 30.0
MAX_RSS_MB = 400.0

_CHUNK_A_GENERATED_TEXT = textwrap.dedent(
    """
    import random, sys
    from ingest.chunker import chunk_document
    from ingest.types import ChunkSettings
    random.seed(5)
    words = "alpha beta the of and river".split()
    end = sys.argv[1]
    text = " ".join(random.choice(words) + end for _ in range(560_000))
    chunks = chunk_document(text, (), ChunkSettings())
    assert chunks and chunks[-1].end == len(text), "text not covered"
    assert max(c.token_count for c in chunks) <= 600, "chunk over the limit"
    print(len(text), len(chunks))
    """
)


@pytest.mark.parametrize(
    "sentence_end",
    [pytest.param("", id="no sentence ends"), pytest.param(".", id="every word a sentence")],
)
def test_chunking_text_whatever_its_punctuation_is_fast_and_small(sentence_end: str) -> None:
    run = run_measured(_CHUNK_A_GENERATED_TEXT, sentence_end, timeout=MAX_SECONDS * 4)
    characters, chunks = run.output.split()
    print(
        f"{characters} characters, {chunks} chunks: {run.seconds:.1f} s, peak {run.peak_mb:.0f} MB"
    )
    assert run.seconds < MAX_SECONDS
    assert run.peak_mb < MAX_RSS_MB


# --------------------------------------------------------------------------------------------
# Paths that are not files, or files that cannot be read


def _add_all(
    library: Library, paths: Sequence[Path], options: ReadOptions | None = None
) -> list[FileOutcome]:
    """Add files one after another, as the engine's `Assistant.add` does."""
    outcomes: list[FileOutcome] = []
    for path in paths:
        run = add_file(library, path, ChunkSettings(), options)
        while True:
            try:
                next(run)
            except StopIteration as finished:
                outcomes.append(finished.value)
                break
    return outcomes


def _books(folder: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        path = folder / f"book-{n}.md"
        path.write_text(BOOK.format(n=n), encoding="utf-8")
        paths.append(path)
    return paths


def _add_with_a_deadline(
    library: Library, path: Path, options: ReadOptions | None = None, seconds: float = 10.0
) -> FileOutcome:
    """Add `path` in a thread, failing (not hanging) if it blocks, as opening a pipe does."""
    outcomes: list[FileOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.extend(_add_all(library, [path], options)))
    worker.daemon = True
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        # Release a reader stuck opening the pipe: a writer's open completes its open.
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
        worker.join(seconds)
        pytest.fail(f"adding {path.name} blocked for {seconds} s")
    return outcomes[0]


def test_a_named_pipe_is_refused_without_being_opened(tmp_path: Path, isolated_home: Path) -> None:
    pipe = tmp_path / "book.txt"
    os.mkfifo(pipe)
    with Library(isolated_home) as library:
        _add_all(library, _books(tmp_path, 1))
        before = table_counts(isolated_home)
        started = time.perf_counter()
        outcome = _add_with_a_deadline(library, pipe)
        assert time.perf_counter() - started < 5
    assert outcome.status is AddStatus.FAILED
    assert outcome.error == (
        f"{pipe} is not a regular file (a named pipe); longread reads files only"
    )
    assert table_counts(isolated_home) == before


def test_a_socket_is_refused(isolated_home: Path) -> None:
    # A socket's path must be short (~100 bytes), which pytest's tmp_path may not be.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = Path(folder) / "s"
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(path))
            with Library(isolated_home) as library:
                outcome = _add_with_a_deadline(library, path)
    assert outcome.status is AddStatus.FAILED
    assert outcome.error == f"{path} is not a regular file (a socket); longread reads files only"


def test_dev_zero_is_refused(isolated_home: Path) -> None:
    zero = Path("/dev/zero")
    if not zero.exists():
        pytest.skip("no /dev/zero here")
    with Library(isolated_home) as library:
        started = time.perf_counter()
        # The small limit bounds the damage were the refusal ever lost: /dev/zero never ends.
        outcome = _add_with_a_deadline(library, zero, ReadOptions(max_file_bytes=1024 * 1024))
        assert time.perf_counter() - started < 5
    assert outcome.status is AddStatus.FAILED
    assert outcome.error == (
        "/dev/zero is not a regular file (a character device); longread reads files only"
    )


def test_a_file_over_the_size_limit_is_refused_and_one_at_it_is_read(
    tmp_path: Path, isolated_home: Path
) -> None:
    at_limit, over = tmp_path / "at.txt", tmp_path / "over.txt"
    at_limit.write_text("a" * 199 + "\n")
    over.write_text("b" * 200 + "\n")
    with Library(isolated_home) as library:
        outcomes = _add_all(library, [over, at_limit], ReadOptions(max_file_bytes=200))
    refused, read = outcomes
    assert refused.status is AddStatus.FAILED
    assert refused.error == (
        f"{over} is 201 bytes, over the limit of 200 bytes for one file; to add it, raise"
        " `max_file_mb` in the `[ingest]` table of config.toml"
        " (or set LONGREAD_INGEST_MAX_FILE_MB)"
    )
    assert read.status is AddStatus.ADDED


def test_the_default_size_limit_is_512_mib_and_named_in_megabytes(
    tmp_path: Path, isolated_home: Path
) -> None:
    assert ReadOptions().max_file_bytes == 512 * 1024 * 1024
    sparse = tmp_path / "huge.txt"
    with sparse.open("wb") as file:  # sparse: no disk is used for the hole
        file.truncate(512 * 1024 * 1024 + 3 * 1024 * 1024 // 2)
    with Library(isolated_home) as library:
        (outcome,) = _add_all(library, [sparse])
    assert outcome.error is not None
    assert "is 513.5 MB, over the limit of 512 MB for one file" in outcome.error


def test_folders_and_missing_paths_among_good_files_do_not_stop_them(
    tmp_path: Path, isolated_home: Path
) -> None:
    first, second = _books(tmp_path, 2)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    missing = tmp_path / "nowhere.md"
    with Library(isolated_home) as library:
        outcomes = _add_all(library, [first, folder, missing, second])
    assert [o.status for o in outcomes] == [
        AddStatus.ADDED,
        AddStatus.FAILED,
        AddStatus.FAILED,
        AddStatus.ADDED,
    ]
    assert outcomes[1].error == f"{folder} is a folder; give the files in it instead"
    assert outcomes[2].error == f"{missing} does not exist"
    assert sorted(assert_consistent(isolated_home)) == ["The Lighthouse 0", "The Lighthouse 1"]


def test_an_unreadable_file_among_good_ones_is_skipped_with_the_reason(
    tmp_path: Path, isolated_home: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    first, locked, second = _books(tmp_path, 3)
    locked.chmod(0)
    try:
        with Library(isolated_home) as library:
            outcomes = _add_all(library, [first, locked, second])
    finally:
        locked.chmod(0o644)
    assert [o.status for o in outcomes] == [AddStatus.ADDED, AddStatus.FAILED, AddStatus.ADDED]
    assert outcomes[1].error == (
        f"{locked} cannot be read: permission denied; check its permissions"
    )


# --------------------------------------------------------------------------------------------
# A reader or the chunker failing on a bug


def _reader_failing_on(name: str, real: Reader) -> Reader:
    def reader(
        data: bytes, file_name: str, options: ReadOptions
    ) -> Generator[ReadProgress, None, ExtractedText]:
        if file_name == name:
            yield ReadProgress(0, 2)  # fails part-way, as a real reader would
            raise AssertionError("expected a start tag")
        return (yield from real(data, file_name, options))

    return reader


@pytest.fixture
def bug_in_reading(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the reader of book-1.md (whatever its format) fail on a bug; returns the name."""

    def reader_for(file_format: Format) -> Reader:
        return _reader_failing_on("book-1.md", readers.reader_for(file_format))

    monkeypatch.setattr("ingest.pipeline.reader_for", reader_for)
    return "book-1.md"


def test_a_reader_failing_on_a_bug_fails_that_file_only(
    tmp_path: Path, isolated_home: Path, bug_in_reading: str
) -> None:
    paths = _books(tmp_path, 3)
    with Library(isolated_home) as library:
        outcomes = _add_all(library, paths)
    assert [o.status for o in outcomes] == [AddStatus.ADDED, AddStatus.FAILED, AddStatus.ADDED]
    assert outcomes[1].error == (
        f"{bug_in_reading} could not be read: longread's markdown reader failed"
        " (AssertionError: expected a start tag); this is a bug, please report it"
    )
    assert len(assert_consistent(isolated_home)) == 2


def test_the_chunker_failing_on_a_bug_fails_that_file_only(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def chunk_document(
        text: str, sections: Sequence[Section], settings: ChunkSettings
    ) -> list[Chunk]:
        if "Lighthouse 0" in text:
            raise IndexError("list index out of range")
        return chunker.chunk_document(text, sections, settings)

    monkeypatch.setattr("ingest.pipeline.chunk_document", chunk_document)
    first, second = _books(tmp_path, 2)
    with Library(isolated_home) as library:
        outcomes = _add_all(library, [first, second])
    assert [o.status for o in outcomes] == [AddStatus.FAILED, AddStatus.ADDED]
    assert outcomes[0].error == (
        f"{first.name} could not be read: longread's chunker failed"
        " (IndexError: list index out of range); this is a bug, please report it"
    )
