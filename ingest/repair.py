"""Salvaging a damaged library: copy it aside, rebuild it from every document that still
reads whole, and put the rebuilt file in its place.

`repair_library(home)` first checks the file as the library does (SQLite's quick_check);
a library that passes is left exactly as it is. A damaged one is copied byte for byte,
with its -wal and -shm, to `library.sqlite3.damaged-<UTC time>` beside it. Then each
document whose row, text, sections and chunks all read back (with the counts its row
records, and each chunk's text matching its stored hash) is copied into a new file, with
its conversation and beacon summaries where those read too; any document one of whose
rows fails is left out and named in the report, so the person can add it again. The new
file replaces the old in one rename.

It does not mend pages: SQLite cannot tell which bytes were garbage, so what cannot be
read whole is given up rather than guessed at. Run it while no other longread is using
the library: it holds the write lock while it works, but a process that had the old file
open would keep writing into that (kept only as the backup) after the rename.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ingest.errors import LibraryError
from ingest.library import BUSY_TIMEOUT_MS, DATABASE_NAME, content_hash
from ingest.library_errors import damage_found, is_damage, translated
from ingest.schema import CURRENT_VERSION, DOCUMENT_COLUMNS, document_from_row, migrate

_STORED_DOCUMENT_COLUMNS = f"{DOCUMENT_COLUMNS}, chunk_max_tokens, chunk_overlap"
_CHUNK_COLUMNS = (
    "document_id, ordinal, text, start_char, end_char, location, token_count,"
    " section_ordinal, content_hash"
)
# Schema versions that added the tables a document's history lives in.
_TURNS_SINCE = 3
_BEACONS_SINCE = 4

Row = tuple[object, ...]


@dataclass(frozen=True)
class DocumentRef:
    """A document a repair kept or lost, named as far as its rows could be read."""

    id: str
    title: str | None  # None when its documents row could not be read at all
    source_path: str | None


@dataclass(frozen=True)
class RepairReport:
    """What `repair_library` found and did."""

    library: Path
    damaged: bool
    detail: str | None = None  # what the check found; None for a whole library
    backup: Path | None = None  # the damaged file's copy; None when nothing was done
    kept: tuple[DocumentRef, ...] = ()
    lost: tuple[DocumentRef, ...] = ()
    # Kept, but their conversation or beacon summaries could not be read (they were not
    # copied; beacons are rebuilt on demand, a conversation is gone).
    history_lost: tuple[DocumentRef, ...] = ()
    # Damage hid rows that even an id could not be read from: `lost` may not name every
    # document that was in the library.
    unnamed_losses: bool = False

    def lines(self) -> list[str]:
        """The report in words, a line each, for the CLI to print."""
        if not self.damaged:
            return [f"the library at {self.library} is not damaged; nothing was changed"]
        lines = [
            f"the library at {self.library} was damaged ({self.detail}).",
            f"The damaged file was copied to {self.backup}.",
            f"Kept {len(self.kept)} document(s); lost {len(self.lost)}.",
        ]
        for ref in self.lost:
            title = ref.title or f"a document with id {ref.id[:12]} (title unreadable)"
            where = f" (from {ref.source_path})" if ref.source_path else ""
            lines.append(f"  lost: {title}{where}")
        if self.lost:
            lines.append("Add the lost documents again with `longread add`.")
        if self.unnamed_losses:
            lines.append("Some rows could not be read at all: other documents may be lost too.")
        for ref in self.history_lost:
            lines.append(f"  kept without its conversation or beacons: {ref.title}")
        return lines


def repair_library(home: Path) -> RepairReport:
    """Check the library in `home` and, if it is damaged, rebuild it (see the module docs).

    Raises a LibraryError for what stops the repair itself (a read-only data dir, a full
    disk, another longread writing), having replaced nothing.
    """
    path = home / DATABASE_NAME
    if not path.exists():
        return RepairReport(path, damaged=False)
    with translated(path):
        source = sqlite3.connect(path, isolation_level=None)
        try:
            source.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _hold_write_lock(source)
            detail = damage_found(source)
            if detail is None:
                return RepairReport(path, damaged=False)
            version = _version(source, path)
            backup = _back_up(path)
            rebuilt = path.with_name(f"{path.name}.repairing-{os.getpid()}")
            try:
                report = _rebuild(source, rebuilt, version, path, detail, backup)
            except BaseException:
                rebuilt.unlink(missing_ok=True)
                raise
        finally:
            _close(source)
        _put_in_place(rebuilt, path)
    return report


def _hold_write_lock(source: sqlite3.Connection) -> None:
    """Keep other longreads from writing while the file is copied and rebuilt. A file too
    broken to lock is too broken for them to use as well."""
    try:
        source.execute("BEGIN IMMEDIATE")
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise


def _version(source: sqlite3.Connection, path: Path) -> int:
    """The schema the rebuilt file is given: the damaged one's, so that its rows fit, and
    the library's own migrations (with their backup) take it on from there."""
    try:
        version = int(source.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError:
        return CURRENT_VERSION
    if version > CURRENT_VERSION:
        raise LibraryError(
            f"the library at {path} was written by a newer longread (schema {version}, this"
            f" one knows {CURRENT_VERSION}); repair it with that longread"
        )
    return version or CURRENT_VERSION


def _back_up(path: Path) -> Path:
    """Copy the damaged file and its -wal and -shm (which hold committed pages not yet in
    the file) aside, each under a partial name first so that no half copy looks whole."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.damaged-{stamp}")
    attempt = 1
    while backup.exists():  # two repairs in one second
        attempt += 1
        backup = path.with_name(f"{path.name}.damaged-{stamp}-{attempt}")
    wal = path.with_name(f"{path.name}-wal")
    # An empty -wal (as opening the file for this repair leaves) holds nothing to keep; a
    # -shm is only an index of the -wal, copied along with one that has pages.
    suffixes = ["", "-wal", "-shm"] if wal.exists() and wal.stat().st_size > 0 else [""]
    for suffix in suffixes:
        original = path.with_name(path.name + suffix)
        if original.exists():
            copy = backup.with_name(backup.name + suffix)
            partial = copy.with_name(copy.name + ".partial")
            shutil.copy2(original, partial)
            partial.replace(copy)
    return backup


def _rebuild(
    source: sqlite3.Connection,
    rebuilt_path: Path,
    version: int,
    path: Path,
    detail: str,
    backup: Path,
) -> RepairReport:
    rebuilt_path.unlink(missing_ok=True)  # left by a repair that was killed
    rebuilt = sqlite3.connect(rebuilt_path, isolation_level=None)
    try:
        rebuilt.execute("PRAGMA foreign_keys=ON")
        migrate(rebuilt, up_to=version)
        documents, documents_complete = _document_rows(source)
        kept: list[DocumentRef] = []
        lost: list[DocumentRef] = []
        history_lost: list[DocumentRef] = []
        for row in documents.values():
            ref = DocumentRef(str(row[0]), _text_or_none(row[1]), _text_or_none(row[2]))
            copied = _copy_document(source, rebuilt, row, version)
            if copied is None:
                lost.append(ref)
                continue
            kept.append(ref)
            if not copied:
                history_lost.append(ref)
        others, texts_complete = _ids_elsewhere(source, version)
        lost.extend(DocumentRef(i, None, None) for i in sorted(others - documents.keys()))
        (verdict,) = rebuilt.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise LibraryError(f"the rebuilt library at {rebuilt_path} fails its check: {verdict}")
    finally:
        rebuilt.close()
    return RepairReport(
        library=path,
        damaged=True,
        detail=detail,
        backup=backup,
        kept=tuple(kept),
        lost=tuple(lost),
        history_lost=tuple(history_lost),
        unnamed_losses=not documents_complete and not texts_complete,
    )


def _scan(db: sqlite3.Connection, sql: str) -> tuple[list[Row], bool]:
    """The rows of `sql` up to where damage stops the scan, and whether it reached the end."""
    rows: list[Row] = []
    try:
        for row in db.execute(sql):
            rows.append(tuple(row))
    except sqlite3.DatabaseError:
        return rows, False
    return rows, True


def _scan_both_ways(db: sqlite3.Connection, select: str) -> tuple[list[Row], bool]:
    """A table's rows read from the start and, when damage stops that, from the end too:
    a broken page in the middle then costs only the rows on it."""
    rows, complete = _scan(db, f"{select} ORDER BY rowid")
    if not complete:
        rows += _scan(db, f"{select} ORDER BY rowid DESC")[0]
    return rows, complete


def _document_rows(source: sqlite3.Connection) -> tuple[dict[str, Row], bool]:
    """Every readable documents row by id (in the order added), and whether all were."""
    rows, complete = _scan_both_ways(
        source, f"SELECT rowid, {_STORED_DOCUMENT_COLUMNS} FROM documents"
    )
    by_rowid = {row[0]: row[1:] for row in rows}
    ordered = [by_rowid[rowid] for rowid in sorted(by_rowid, key=lambda r: int(str(r)))]
    return {str(row[0]): row for row in ordered}, complete


def _ids_elsewhere(source: sqlite3.Connection, version: int) -> tuple[set[str], bool]:
    """Document ids named by the other tables, to find documents whose own row is lost;
    and whether the texts table (a row for every document) was read to its end."""
    tables = ["document_texts", "sections", "chunks"]
    if version >= _TURNS_SINCE:
        tables.append("conversation_turns")
    ids: set[str] = set()
    texts_complete = False
    for table in tables:
        rows, complete = _scan_both_ways(source, f"SELECT document_id FROM {table}")
        ids.update(str(doc_id) for (doc_id,) in rows)
        texts_complete = texts_complete or (table == "document_texts" and complete)
    return ids, texts_complete


def _copy_document(
    source: sqlite3.Connection, rebuilt: sqlite3.Connection, row: Row, version: int
) -> bool | None:
    """Copy one document if it reads whole: None when it does not (nothing copied), else
    whether its history (conversation, beacons) came with it."""
    try:
        core = _read_core(source, row)
    except (sqlite3.DatabaseError, ValueError):
        return None
    history = _read_history(source, str(row[0]), version)
    rebuilt.execute("BEGIN IMMEDIATE")
    try:
        for table, rows in core:
            _insert(rebuilt, table, rows)
        history_copied = history is not None and _insert_history(rebuilt, history)
        rebuilt.execute("COMMIT")
    except sqlite3.IntegrityError:
        # Rows that read but contradict each other (garbage that decoded): give it up.
        rebuilt.execute("ROLLBACK")
        return None
    except BaseException:
        if rebuilt.in_transaction:
            rebuilt.execute("ROLLBACK")
        raise
    return history_copied


def _read_core(source: sqlite3.Connection, row: Row) -> list[tuple[str, list[Row]]]:
    """The document's rows by table; ValueError when they are not all there and sound."""
    document = document_from_row(row[:10])  # ValueError for a garbled row
    texts = _rows(source, "SELECT * FROM document_texts WHERE document_id = ?", document.id)
    if len(texts) != 1 or not isinstance(texts[0][1], str):
        raise ValueError("no readable text")
    sections = _rows(
        source, "SELECT * FROM sections WHERE document_id = ? ORDER BY ordinal", document.id
    )
    chunks = _rows(
        source,
        f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE document_id = ? ORDER BY ordinal",
        document.id,
    )
    if (len(sections), len(chunks)) != (document.section_count, document.chunk_count):
        raise ValueError("sections or chunks missing")
    for chunk in chunks:
        # Each chunk's hash was taken of its text when saved: a mismatch is garbage that
        # happened to decode.
        if not isinstance(chunk[2], str) or content_hash(chunk[2]) != chunk[8]:
            raise ValueError("a chunk's text does not match its hash")
    return [
        (f"documents ({_STORED_DOCUMENT_COLUMNS})", [row]),
        ("document_texts", texts),
        ("sections", sections),
        (f"chunks ({_CHUNK_COLUMNS})", chunks),
    ]


def _read_history(
    source: sqlite3.Connection, doc_id: str, version: int
) -> list[tuple[str, list[Row]]] | None:
    """The document's conversation and beacon rows, or None when any fails to read."""
    queries = []
    if version >= _TURNS_SINCE:
        queries.append("conversation_turns")
    if version >= _BEACONS_SINCE:
        queries += ["beacon_sets", "beacons"]  # sets first: beacons refer to them
    try:
        return [
            (table, _rows(source, f"SELECT * FROM {table} WHERE document_id = ?", doc_id))
            for table in queries
        ]
    except sqlite3.DatabaseError:
        return None


def _insert_history(rebuilt: sqlite3.Connection, history: list[tuple[str, list[Row]]]) -> bool:
    """Insert the history rows, all or none (a savepoint inside the document's transaction)."""
    rebuilt.execute("SAVEPOINT history")
    try:
        for table, rows in history:
            _insert(rebuilt, table, rows)
    except sqlite3.IntegrityError:
        rebuilt.execute("ROLLBACK TO history")
        rebuilt.execute("RELEASE history")
        return False
    rebuilt.execute("RELEASE history")
    return True


def _rows(db: sqlite3.Connection, sql: str, doc_id: str) -> list[Row]:
    return [tuple(row) for row in db.execute(sql, (doc_id,)).fetchall()]


def _insert(db: sqlite3.Connection, table: str, rows: list[Row]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _close(source: sqlite3.Connection) -> None:
    """Close the damaged file. Its last connection closing may try to checkpoint into it,
    which can fail on broken pages; the file is backed up and about to be replaced."""
    with suppress(sqlite3.DatabaseError):
        source.close()


def _put_in_place(rebuilt: Path, path: Path) -> None:
    """Swap the rebuilt file in. The old file's -wal and -shm go first: left beside the new
    file, SQLite would replay the old pages into it."""
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    rebuilt.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
