"""The document library: one SQLite file holding documents, their text, sections and chunks,
each document's conversation, and its beacon summaries.

WAL mode, numbered schema migrations (ingest/schema.py, which backs the file up before
migrating it), and one transaction per document, so a failure or a kill mid-way leaves the
library exactly as it was. A document's id is the sha256 of its file's bytes. Search
indexes are not kept here (retrieval/ owns them).

Every method goes through one guard (`_reading`, and `_transaction` built on it) that holds
the lock, runs SQLite's quick_check over the whole file once per Library before trusting
it, and turns any SQLite or OS failure into a LibraryError subclass saying what to do
(ingest/library_errors.py): damaged, read-only, busy, disk full, failing disk. A damaged
file is never written to; `repair_library` (ingest/repair.py) salvages one.

A conversation turn is stored as an opaque JSON payload with its place and time: the engine
decides what a turn holds (engine/history.py); the library only keeps the turns in order
and drops them with their document. Beacon summaries are kept the same way
(ingest/engine_rows.py): the engine makes their keys and settings (engine/beacon_store.py),
the library stores them by window.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from ingest import engine_rows
from ingest.errors import (
    AmbiguousDocumentError,
    DocumentNotFoundError,
    LibraryError,
)
from ingest.library_errors import damage_found, damaged_error, translated
from ingest.schema import (
    CURRENT_VERSION,
    DOCUMENT_COLUMNS,
    back_up_before_migration,
    document_from_row,
    migrate,
    schema_version,
)
from ingest.types import (
    BeaconSetKey,
    BeaconSetRecord,
    Chunk,
    ChunkSettings,
    Document,
    ExtractedText,
    Section,
    SectionKind,
    StoredBeacon,
    StoredTurn,
)

DATABASE_NAME = "library.sqlite3"
# How long a write waits for another longread's transaction before giving up as busy.
BUSY_TIMEOUT_MS = 5000
_MIN_ID_PREFIX = 4


def document_id(data: bytes) -> str:
    """A document's id: the sha256 of its bytes, so the same file is the same document."""
    return hashlib.sha256(data).hexdigest()


def content_hash(text: str) -> str:
    """The key under which a chunk's derived data (its embedding) can be reused."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Library:
    """A SQLite library at `home/library.sqlite3`. Safe to share across threads."""

    def __init__(self, home: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = home / DATABASE_NAME
        self._lock = threading.RLock()
        self._whole = False  # quick_check passed
        self._damage: str | None = None  # what quick_check found, said again on each call
        with translated(self.path):
            home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                self._open(busy_timeout_ms)
            except BaseException:
                self._db.close()
                raise

    def _open(self, busy_timeout_ms: int) -> None:
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = schema_version(self._db)
        if version > CURRENT_VERSION:
            raise LibraryError(
                f"the library at {self.path} was written by a newer longread"
                f" (schema {version}, this one knows {CURRENT_VERSION}); upgrade longread"
            )
        if version < CURRENT_VERSION:
            if version > 0:
                # A damaged library is not rewritten, and one that is about to be gets a
                # copy to go back to.
                self._check_whole()
                back_up_before_migration(self._db, self.path, CURRENT_VERSION)
            migrate(self._db)

    def close(self) -> None:
        with self._lock, translated(self.path):
            self._db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_whole(self) -> None:
        """Raise LibraryDamagedError unless the file passed quick_check (run once, here).

        Reads touch only the pages they need, so without this, damage in the middle of
        the file would let `list` work while `search` failed, and a save could go on
        writing into a broken file. The verdict is kept: a damaged file stays damaged for
        this connection, whose file `longread repair` replaces rather than mends.
        """
        if self._whole:
            return
        if self._damage is None:
            self._damage = damage_found(self._db)
        if self._damage is not None:
            raise damaged_error(self.path, self._damage)
        self._whole = True

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, on a file known whole, with errors translated."""
        with self._lock, translated(self.path):
            self._check_whole()
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._reading() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _roll_back(db)
                raise

    @property
    def schema_version(self) -> int:
        with self._reading() as db:
            return schema_version(db)

    def has(self, doc_id: str) -> bool:
        with self._reading() as db:
            row = db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return row is not None

    def save(
        self,
        document: Document,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        settings: ChunkSettings,
    ) -> bool:
        """Write a document with its text, sections and chunks, all or nothing.

        Returns False, changing nothing, when a document with its id is already there:
        another process may have added the same file since the caller last looked. The
        check runs under the write lock, so of two processes saving at once, one saves.
        """
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM documents WHERE id = ?", (document.id,)).fetchone():
                return False
            db.execute(
                f"INSERT INTO documents ({DOCUMENT_COLUMNS}, chunk_max_tokens, chunk_overlap)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    document.id,
                    document.title,
                    document.source_path,
                    document.format.value,
                    document.page_count,
                    document.section_count,
                    document.token_count,
                    document.chunk_count,
                    document.byte_size,
                    document.added_at.isoformat(),
                    settings.max_tokens,
                    settings.overlap,
                ),
            )
            db.execute("INSERT INTO document_texts VALUES (?, ?)", (document.id, extracted.text))
            db.executemany(
                "INSERT INTO sections VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (document.id, s.ordinal, s.label, s.kind.value, s.start, s.end, s.level)
                    for s in extracted.sections
                ],
            )
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        document.id,
                        c.ordinal,
                        c.text,
                        c.start,
                        c.end,
                        c.location,
                        c.token_count,
                        c.section_ordinal,
                        content_hash(c.text),
                    )
                    for c in chunks
                ],
            )
        return True

    def remove(self, doc_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def documents(self) -> list[Document]:
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents ORDER BY added_at, title"
            ).fetchall()
        return [document_from_row(row) for row in rows]

    def get(self, doc_id: str) -> Document:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return document_from_row(row)

    def resolve(self, ref: str) -> Document:
        """The one document an id prefix or a title fragment names; else a helpful error."""
        needle = ref.strip()
        if not needle:
            raise DocumentNotFoundError("name a document by an id prefix or part of its title")
        documents = self.documents()
        by_id = [d for d in documents if d.id == needle.lower()]
        if by_id:
            return by_id[0]
        matches = [
            d
            for d in documents
            if len(needle) >= _MIN_ID_PREFIX and d.id.startswith(needle.lower())
        ]
        if not matches:
            matches = [d for d in documents if needle.casefold() in d.title.casefold()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DocumentNotFoundError(
                f"no document matches {ref!r}; `longread list` shows what is in the library"
            )
        listing = "\n".join(f"  {d.id[:12]}  {d.title}" for d in matches)
        raise AmbiguousDocumentError(
            f"{ref!r} matches {len(matches)} documents; give more of the id or title:\n{listing}"
        )

    def text(self, doc_id: str) -> str:
        with self._reading() as db:
            row = db.execute(
                "SELECT text FROM document_texts WHERE document_id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return str(row[0])

    def sections(self, doc_id: str) -> list[Section]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT ordinal, label, kind, start_char, end_char, level FROM sections"
                " WHERE document_id = ? ORDER BY ordinal",
                (doc_id,),
            ).fetchall()
        return [
            Section(ordinal=o, label=lb, kind=SectionKind(k), start=s, end=e, level=lv)
            for o, lb, k, s, e, lv in rows
        ]

    def chunks(self, doc_id: str) -> list[Chunk]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT ordinal, text, start_char, end_char, location, token_count,"
                " section_ordinal FROM chunks WHERE document_id = ? ORDER BY ordinal",
                (doc_id,),
            ).fetchall()
        return [
            Chunk(
                ordinal=o, text=t, start=s, end=e, location=loc, token_count=n, section_ordinal=so
            )
            for o, t, s, e, loc, n, so in rows
        ]

    def chunk_hashes(self, doc_id: str) -> list[str]:
        """Content hashes of a document's chunks, in order."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT content_hash FROM chunks WHERE document_id = ? ORDER BY ordinal", (doc_id,)
            ).fetchall()
        return [str(h) for (h,) in rows]

    def chunk_settings(self, doc_id: str) -> ChunkSettings:
        """The chunking a document was cut with (an index built with others is stale)."""
        with self._reading() as db:
            row = db.execute(
                "SELECT chunk_max_tokens, chunk_overlap FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return ChunkSettings(max_tokens=row[0], overlap=row[1])

    # -- conversations (rows in ingest/engine_rows.py) --------------------------------

    def append_turn(self, doc_id: str, payload: str, created_at: datetime) -> int:
        """Add a turn after the document's last one; returns its ordinal (0 for the first).

        The ordinal is chosen and the row written in one transaction, so turns appended
        from several threads or processes never share a place.
        """
        with self._transaction() as db:
            return engine_rows.append_turn(db, doc_id, payload, created_at)

    def turns(self, doc_id: str) -> list[StoredTurn]:
        """The document's conversation, oldest first (empty for none, or no such document)."""
        with self._reading() as db:
            return engine_rows.turns(db, doc_id)

    def clear_turns(self, doc_id: str) -> int:
        """Forget the document's conversation; returns how many turns were deleted."""
        with self._transaction() as db:
            return engine_rows.clear_turns(db, doc_id)

    # -- beacon summaries (rows in ingest/engine_rows.py) ------------------------------

    def open_beacon_set(self, key: BeaconSetKey, window_count: int, settings: str) -> None:
        """Make sure the set exists; a set recorded with another window count (only a
        damaged one: a key fixes the windows) is emptied first."""
        with self._transaction() as db:
            engine_rows.open_set(db, key, window_count, settings)

    def save_beacon(self, key: BeaconSetKey, beacon: StoredBeacon) -> None:
        """Store one beacon of an open set (replacing one at the same place), committed at
        once: a kill loses at most the beacon being written."""
        with self._transaction() as db:
            engine_rows.save(db, key, beacon)

    def beacons(self, key: BeaconSetKey) -> list[StoredBeacon]:
        """The set's stored beacons in window order (empty when there is no such set)."""
        with self._reading() as db:
            return engine_rows.beacons(db, key)

    def beacon_sets(self, doc_id: str) -> list[BeaconSetRecord]:
        """Every set of beacons of the document, on any model and settings."""
        with self._reading() as db:
            return engine_rows.sets(db, doc_id)

    def delete_beacon_set(self, key: BeaconSetKey) -> None:
        """Forget a set of beacons and every beacon in it."""
        with self._transaction() as db:
            engine_rows.delete_set(db, key)


def _roll_back(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it does after some failures:
    a full disk, an I/O error), keeping the error that caused it the one reported."""
    if not db.in_transaction:
        return
    # Should ROLLBACK fail too, the transaction is abandoned all the same: SQLite rolls it
    # back when the connection closes, or the next reader rolls back its hot journal.
    with suppress(sqlite3.Error):
        db.execute("ROLLBACK")
