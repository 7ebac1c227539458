"""A library file that is damaged, read-only or busy: clear LibraryErrors, nothing changed on
disk, and `repair_library` keeping what still reads whole.

The damaged library is made here: forty documents (so the file spans well over a hundred
pages), one with a conversation and one with beacons, then 8 KiB of seeded random bytes
written over two whole pages in the middle of the file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.errors import (
    LibraryBusyError,
    LibraryDamagedError,
    LibraryDiskFullError,
    LibraryError,
    LibraryIOError,
    LibraryReadOnlyError,
)
from ingest.library import Library
from ingest.library_errors import library_error
from ingest.repair import repair_library
from ingest.schema import CURRENT_VERSION, migration_backup_path
from ingest.types import BeaconSetKey, Chunk, ChunkSettings, Document, ExtractedText, StoredBeacon
from tests.conftest import REPO_ROOT
from tests.library_checks import assert_consistent, sample_document
from tests.unprivileged import permission_bound, skip_if_setpriv_refused

PAGE = 4096
GARBAGE = 8 * 1024
DOCUMENTS = 40

Parts = tuple[Document, ExtractedText, list[Chunk]]


@dataclass(frozen=True)
class Made:
    healthy: bytes
    damaged: bytes
    documents: list[Parts]
    key: BeaconSetKey  # a beacon set of documents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    home = tmp_path_factory.mktemp("library")
    documents = [
        sample_document(
            f"Book {n:02d}",
            f"Book {n} begins. "
            + f"In chapter {n} the tide rose over the harbour wall as the keepers watched. " * 60,
        )
        for n in range(DOCUMENTS)
    ]
    key = BeaconSetKey(documents[1][0].id, "model", "settings")
    with Library(home) as library:
        for parts in documents:
            assert library.save(*parts, ChunkSettings())
        library.append_turn(documents[0][0].id, '{"question": "why"}', datetime.now(UTC))
        library.open_beacon_set(key, 1, "{}")
        library.save_beacon(key, StoredBeacon(0, 0, 10, "Chapter 1", "a summary", 3))
    path = home / "library.sqlite3"
    assert not path.with_name("library.sqlite3-wal").exists(), "closing checkpoints the WAL"
    healthy = path.read_bytes()
    assert len(healthy) > 100 * PAGE
    middle = len(healthy) // 2 // PAGE * PAGE  # whole pages: what they held is certainly gone
    garbage = random.Random(8).randbytes(GARBAGE)
    damaged = healthy[:middle] + garbage + healthy[middle + GARBAGE :]
    return Made(healthy, damaged, documents, key)


def _write(home: Path, data: bytes) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "library.sqlite3"
    path.write_bytes(data)
    return path


# Every public method, called as a caller would on the damaged library.
CALLS: dict[str, Callable[[Library, Made], object]] = {
    "documents": lambda lib, m: lib.documents(),
    "has": lambda lib, m: lib.has(m.documents[0][0].id),
    "get": lambda lib, m: lib.get(m.documents[0][0].id),
    "resolve": lambda lib, m: lib.resolve("Book 01"),
    "text": lambda lib, m: lib.text(m.documents[0][0].id),
    "sections": lambda lib, m: lib.sections(m.documents[0][0].id),
    "chunks": lambda lib, m: lib.chunks(m.documents[0][0].id),
    "chunk_hashes": lambda lib, m: lib.chunk_hashes(m.documents[0][0].id),
    "chunk_settings": lambda lib, m: lib.chunk_settings(m.documents[0][0].id),
    "save": lambda lib, m: lib.save(
        *sample_document("New", "A new book about lighthouses. " * 40), ChunkSettings()
    ),
    "remove": lambda lib, m: lib.remove(m.documents[0][0].id),
    "append_turn": lambda lib, m: lib.append_turn(m.documents[0][0].id, "{}", datetime.now(UTC)),
    "turns": lambda lib, m: lib.turns(m.documents[0][0].id),
    "clear_turns": lambda lib, m: lib.clear_turns(m.documents[0][0].id),
    "open_beacon_set": lambda lib, m: lib.open_beacon_set(m.key, 2, "{}"),
    "save_beacon": lambda lib, m: lib.save_beacon(m.key, StoredBeacon(0, 0, 1, "", "x", 1)),
    "beacons": lambda lib, m: lib.beacons(m.key),
    "beacon_sets": lambda lib, m: lib.beacon_sets(m.key.document_id),
    "delete_beacon_set": lambda lib, m: lib.delete_beacon_set(m.key),
    "schema_version": lambda lib, m: lib.schema_version,
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_method_on_a_damaged_library_says_so_and_changes_nothing(
    made: Made, tmp_path: Path, call: str
) -> None:
    path = _write(tmp_path, made.damaged)
    before = _sha(path)
    with Library(tmp_path) as library, pytest.raises(LibraryDamagedError) as raised:
        CALLS[call](library, made)
    message = str(raised.value)
    assert str(path) in message and "longread repair" in message
    assert "Nothing was changed" in message
    assert _sha(path) == before


@pytest.mark.parametrize("page", [2, 4, 6, 8, 15])
def test_the_damage_is_said_on_one_line_however_many_problems_there_are(
    made: Made, tmp_path: Path, page: int
) -> None:
    """quick_check puts several problems in one row, a line each (garbage over one of these
    early pages, the tables' inner pages, strands the pages below): one line all the same."""
    healthy = made.healthy
    garbage = random.Random(page).randbytes(PAGE)
    at = page * PAGE
    _write(tmp_path, healthy[:at] + garbage + healthy[at + PAGE :])
    with Library(tmp_path) as library, pytest.raises(LibraryDamagedError) as raised:
        library.documents()
    assert "\n" not in str(raised.value), str(raised.value)


def test_a_damaged_library_due_a_migration_is_refused_before_anything_is_written(
    made: Made, tmp_path: Path
) -> None:
    # user_version sits at bytes 60..63 of the header: say schema 3, so opening migrates.
    old = made.damaged[:60] + (3).to_bytes(4, "big") + made.damaged[64:]
    path = _write(tmp_path, old)
    with pytest.raises(LibraryDamagedError, match="is damaged"):
        Library(tmp_path)
    assert path.read_bytes() == old
    assert not migration_backup_path(path, CURRENT_VERSION).exists()


# -- read-only, busy, full, failing -------------------------------------------------------


def _read_only(folder: Path) -> None:
    folder.chmod(0o555)


def test_a_read_only_data_dir_is_said_as_such_not_as_damage(made: Made, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the next test covers root")
    home = tmp_path / "home"
    path = _write(home, made.healthy)
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (home, empty):
        _read_only(folder)
    try:
        for folder in (home, empty, empty / "not-yet"):
            with pytest.raises(LibraryReadOnlyError) as raised:
                Library(folder).documents()
            assert "is read-only" in str(raised.value)
            assert "LONGREAD_HOME" in str(raised.value)
            assert "damaged" not in str(raised.value)
    finally:
        for folder in (home, empty):
            folder.chmod(0o755)
    assert path.read_bytes() == made.healthy


_OPEN_AND_LIST = """
import sys
from pathlib import Path
from ingest.library import Library
try:
    Library(Path(sys.argv[1])).documents()
except Exception as error:
    print(type(error).__name__, error)
"""


def test_a_read_only_data_dir_as_root_is_checked_without_roots_override(
    made: Made, tmp_path: Path
) -> None:
    """Root ignores permission bits (and a read-only file is no help: root writes it too),
    so as root the check runs in a child process that setpriv(1) has stripped of the
    capabilities that do that. Running it as another user would need an interpreter that
    user can reach, which a venv under /root is not."""
    if os.geteuid() != 0:
        pytest.skip("not root: the test above covers a read-only data dir")
    command = permission_bound([sys.executable, "-c", _OPEN_AND_LIST])
    home = tmp_path / "home"
    path = _write(home, made.healthy)
    _read_only(home)
    try:
        child = subprocess.run(
            [*command, str(home)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        home.chmod(0o755)
    out = child.stdout + child.stderr
    skip_if_setpriv_refused(out)
    assert out.startswith("LibraryReadOnlyError"), out
    assert f"the data dir {home} is read-only" in out
    assert path.read_bytes() == made.healthy


def test_a_read_only_database_is_not_called_damaged(made: Made, tmp_path: Path) -> None:
    """SQLITE_READONLY met for real (as root too: mode=ro is SQLite's, not the kernel's)."""
    path = _write(tmp_path, made.healthy)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        db.execute("DELETE FROM documents")
    db.close()
    translated = library_error(raised.value, path)
    assert isinstance(translated, LibraryReadOnlyError), translated
    assert "read-only" in str(translated)


def test_a_library_another_process_is_writing_is_busy_not_damaged(
    made: Made, tmp_path: Path
) -> None:
    path = _write(tmp_path, made.healthy)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with Library(tmp_path, busy_timeout_ms=100) as library:
            assert library.has(made.documents[0][0].id), "WAL readers are not blocked"
            with pytest.raises(LibraryBusyError, match="another longread is writing"):
                library.remove(made.documents[0][0].id)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_full_disk_and_a_failing_one_are_said_as_such(tmp_path: Path) -> None:
    path = tmp_path / "library.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.execute("PRAGMA max_page_count = 2")  # a full disk, as SQLite reports it
    with pytest.raises(sqlite3.OperationalError) as full:
        db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    db.close()
    assert isinstance(library_error(full.value, path), LibraryDiskFullError)
    assert isinstance(library_error(OSError(errno.ENOSPC, "No space"), path), LibraryDiskFullError)

    io = sqlite3.OperationalError("disk I/O error")
    io.sqlite_errorcode = 266  # SQLITE_IOERR_READ
    io.sqlite_errorname = "SQLITE_IOERR_READ"
    for error in (io, OSError(errno.EIO, "Input/output error")):
        translated = library_error(error, path)
        assert isinstance(translated, LibraryIOError), translated
        assert str(path) in str(translated)


def test_a_data_dir_that_is_a_file_is_said_as_such(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    with pytest.raises(LibraryError, match="not a folder"):
        Library(home)


# -- repair ---------------------------------------------------------------------------------


def test_repair_keeps_what_reads_whole_and_backs_up_the_damaged_file(
    made: Made, tmp_path: Path
) -> None:
    path = _write(tmp_path, made.damaged)
    report = repair_library(tmp_path)

    assert report.damaged and report.backup is not None
    assert report.backup.read_bytes() == made.damaged
    assert report.backup.name.startswith("library.sqlite3.damaged-")
    kept = {str(ref.title) for ref in report.kept}
    lost = {str(ref.title) for ref in report.lost}
    assert kept and lost, report
    assert kept | lost == {parts[0].title for parts in made.documents}
    assert not report.unnamed_losses
    for ref in report.lost:
        assert ref.source_path == f"/books/{ref.title}.txt"
    said = "\n".join(report.lines())
    assert str(report.backup) in said and all(title in said for title in lost)

    assert sorted(assert_consistent(tmp_path)) == sorted(kept)  # integrity_check passes
    originals = {parts[0].id: parts for parts in made.documents}
    with Library(tmp_path) as library:
        assert library.schema_version == CURRENT_VERSION
        for document in library.documents():
            original, extracted, chunks = originals[document.id]
            assert document == original
            assert library.text(document.id) == extracted.text
            assert library.chunks(document.id) == chunks
        if "Book 00" in kept:
            assert [t.payload for t in library.turns(made.documents[0][0].id)] == [
                '{"question": "why"}'
            ]
        if "Book 01" in kept:
            assert [b.text for b in library.beacons(made.key)] == ["a summary"]
        # The repaired library takes new documents again.
        assert library.save(*sample_document("New", "A book about buoys. " * 40), ChunkSettings())
    assert path.exists()


def test_repair_leaves_a_whole_library_as_it_is(made: Made, tmp_path: Path) -> None:
    path = _write(tmp_path, made.healthy)
    report = repair_library(tmp_path)
    assert not report.damaged and report.backup is None
    assert "not damaged" in report.lines()[0]
    assert path.read_bytes() == made.healthy
    assert not list(tmp_path.glob("library.sqlite3.damaged-*"))
    assert not repair_library(tmp_path / "nowhere").damaged


def test_repair_of_a_file_that_is_no_database_starts_an_empty_library(tmp_path: Path) -> None:
    garbage = random.Random(1).randbytes(64 * 1024)
    _write(tmp_path, garbage)
    report = repair_library(tmp_path)
    assert report.damaged and report.kept == () and report.unnamed_losses
    assert report.backup is not None and report.backup.read_bytes() == garbage
    with Library(tmp_path) as library:
        assert library.documents() == []
        assert library.schema_version == CURRENT_VERSION
