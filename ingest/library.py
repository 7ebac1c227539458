"""The document library: one SQLite file holding documents, their text, sections and chunks,
each document's conversation, and its beacon summaries.

WAL mode, numbered schema migrations (PRAGMA user_version), and one transaction per
document, so a failure or a kill mid-way leaves the library exactly as it was. A document's
id is the sha256 of its file's bytes. Search indexes are not kept here (retrieval/ owns them).

A conversation turn is stored as an opaque JSON payload with its place and time: the engine
decides what a turn holds (engine/history.py); the library only keeps the turns in order
and drops them with their document. Beacon summaries are kept the same way: the engine
makes their keys and settings (engine/beacon_store.py), the library stores them by window.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest.errors import AmbiguousDocumentError, DocumentNotFoundError, LibraryError
from ingest.types import (
    BeaconSetKey,
    BeaconSetRecord,
    Chunk,
    ChunkSettings,
    Document,
    ExtractedText,
    Format,
    Section,
    SectionKind,
    StoredBeacon,
    StoredTurn,
)

DATABASE_NAME = "library.sqlite3"
_MIN_ID_PREFIX = 4

# Numbered migrations: the database's user_version says how many have run. Append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        source_path TEXT NOT NULL,
        format TEXT NOT NULL,
        page_count INTEGER,
        section_count INTEGER NOT NULL,
        token_count INTEGER NOT NULL,
        chunk_count INTEGER NOT NULL,
        byte_size INTEGER NOT NULL,
        added_at TEXT NOT NULL,
        chunk_max_tokens INTEGER NOT NULL,
        chunk_overlap INTEGER NOT NULL
    );
    CREATE TABLE document_texts (
        document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
        text TEXT NOT NULL
    );
    CREATE TABLE sections (
        document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        label TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        level INTEGER NOT NULL,
        PRIMARY KEY (document_id, ordinal)
    );
    CREATE TABLE chunks (
        document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        location TEXT NOT NULL,
        token_count INTEGER NOT NULL,
        section_ordinal INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        PRIMARY KEY (document_id, ordinal)
    );
    """,
    # Version 2: text before the first heading became its own kind, FRONT; until then it was
    # the only section ever written as BODY.
    """
    UPDATE sections SET kind = 'front' WHERE kind = 'body'
    """,
    # Version 3: each document's conversation, one row per answered question. IF NOT EXISTS
    # so that re-running it over a database that already has the table is harmless.
    """
    CREATE TABLE IF NOT EXISTS conversation_turns (
        document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (document_id, ordinal)
    )
    """,
    # Version 4: beacon summaries, a set per document, model and settings, a row per window.
    """
    CREATE TABLE IF NOT EXISTS beacon_sets (
        document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        model_sha256 TEXT NOT NULL,
        settings_key TEXT NOT NULL,
        window_count INTEGER NOT NULL,
        settings TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (document_id, model_sha256, settings_key)
    );
    CREATE TABLE IF NOT EXISTS beacons (
        document_id TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        settings_key TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        location TEXT NOT NULL,
        text TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        PRIMARY KEY (document_id, model_sha256, settings_key, ordinal),
        FOREIGN KEY (document_id, model_sha256, settings_key)
            REFERENCES beacon_sets(document_id, model_sha256, settings_key) ON DELETE CASCADE
    )
    """,
)

_DOCUMENT_COLUMNS = (
    "id, title, source_path, format, page_count, section_count, token_count,"
    " chunk_count, byte_size, added_at"
)


def document_id(data: bytes) -> str:
    """A document's id: the sha256 of its bytes, so the same file is the same document."""
    return hashlib.sha256(data).hexdigest()


def content_hash(text: str) -> str:
    """The key under which a chunk's derived data (its embedding) can be reused."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Library:
    """A SQLite library at `home/library.sqlite3`. Safe to share across threads."""

    def __init__(self, home: Path) -> None:
        self.path = home / DATABASE_NAME
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._lock = threading.RLock()
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise LibraryError(
                f"the library at {self.path} cannot be opened ({error}); move it aside to"
                " start a new one"
            ) from error

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > len(_MIGRATIONS):
            raise LibraryError(
                f"the library at {self.path} was written by a newer longread"
                f" (schema {version}, this one knows {len(_MIGRATIONS)}); upgrade longread"
            )
        for number in range(version + 1, len(_MIGRATIONS) + 1):
            with self._transaction() as db:
                for statement in _MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def has(self, doc_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return row is not None

    def save(
        self,
        document: Document,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        settings: ChunkSettings,
    ) -> None:
        """Write a document with its text, sections and chunks, all or nothing."""
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}, chunk_max_tokens, chunk_overlap)"
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

    def remove(self, doc_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def documents(self) -> list[Document]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents ORDER BY added_at, title"
            ).fetchall()
        return [_document_from_row(row) for row in rows]

    def get(self, doc_id: str) -> Document:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return _document_from_row(row)

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
        with self._lock:
            row = self._db.execute(
                "SELECT text FROM document_texts WHERE document_id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return str(row[0])

    def sections(self, doc_id: str) -> list[Section]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ordinal, label, kind, start_char, end_char, level FROM sections"
                " WHERE document_id = ? ORDER BY ordinal",
                (doc_id,),
            ).fetchall()
        return [
            Section(ordinal=o, label=lb, kind=SectionKind(k), start=s, end=e, level=lv)
            for o, lb, k, s, e, lv in rows
        ]

    def chunks(self, doc_id: str) -> list[Chunk]:
        with self._lock:
            rows = self._db.execute(
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
        with self._lock:
            rows = self._db.execute(
                "SELECT content_hash FROM chunks WHERE document_id = ? ORDER BY ordinal", (doc_id,)
            ).fetchall()
        return [str(h) for (h,) in rows]

    def chunk_settings(self, doc_id: str) -> ChunkSettings:
        """The chunking a document was cut with (an index built with others is stale)."""
        with self._lock:
            row = self._db.execute(
                "SELECT chunk_max_tokens, chunk_overlap FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with id {doc_id}")
        return ChunkSettings(max_tokens=row[0], overlap=row[1])

    # -- conversations -------------------------------------------------------------------

    def append_turn(self, doc_id: str, payload: str, created_at: datetime) -> int:
        """Add a turn after the document's last one; returns its ordinal (0 for the first).

        The ordinal is chosen and the row written in one transaction, so turns appended
        from several threads or processes never share a place.
        """
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
                raise DocumentNotFoundError(f"no document with id {doc_id}")
            (ordinal,) = db.execute(
                "SELECT COALESCE(MAX(ordinal) + 1, 0) FROM conversation_turns"
                " WHERE document_id = ?",
                (doc_id,),
            ).fetchone()
            db.execute(
                "INSERT INTO conversation_turns VALUES (?, ?, ?, ?)",
                (doc_id, ordinal, created_at.astimezone(UTC).isoformat(), payload),
            )
        return int(ordinal)

    def turns(self, doc_id: str) -> list[StoredTurn]:
        """The document's conversation, oldest first (empty for none, or no such document)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ordinal, created_at, payload FROM conversation_turns"
                " WHERE document_id = ? ORDER BY ordinal",
                (doc_id,),
            ).fetchall()
        return [
            StoredTurn(
                ordinal=int(o), created_at=datetime.fromisoformat(str(at)), payload=str(payload)
            )
            for o, at, payload in rows
        ]

    def clear_turns(self, doc_id: str) -> int:
        """Forget the document's conversation; returns how many turns were deleted."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM conversation_turns WHERE document_id = ?", (doc_id,))
        return int(cursor.rowcount)

    # -- beacon summaries --------------------------------------------------------------

    def open_beacon_set(self, key: BeaconSetKey, window_count: int, settings: str) -> None:
        """Make sure the set exists; a set recorded with another window count (only a
        damaged one: a key fixes the windows) is emptied first."""
        with self._transaction() as db:
            found = db.execute("SELECT 1 FROM documents WHERE id = ?", (key.document_id,))
            if found.fetchone() is None:
                raise DocumentNotFoundError(f"no document with id {key.document_id}")
            row = db.execute(
                f"SELECT window_count FROM beacon_sets WHERE {_SET_MATCH}", _set_args(key)
            ).fetchone()
            if row is None or int(row[0]) != window_count:
                db.execute(f"DELETE FROM beacon_sets WHERE {_SET_MATCH}", _set_args(key))
                created = datetime.now(UTC).isoformat()
                db.execute(
                    "INSERT INTO beacon_sets VALUES (?, ?, ?, ?, ?, ?)",
                    (*_set_args(key), window_count, settings, created),
                )

    def save_beacon(self, key: BeaconSetKey, beacon: StoredBeacon) -> None:
        """Store one beacon of an open set (replacing one at the same place), committed at
        once: a kill loses at most the beacon being written."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO beacons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *_set_args(key),
                    beacon.ordinal,
                    beacon.start,
                    beacon.end,
                    beacon.location,
                    beacon.text,
                    beacon.tokens,
                ),
            )

    def beacons(self, key: BeaconSetKey) -> list[StoredBeacon]:
        """The set's stored beacons in window order (empty when there is no such set)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ordinal, start_char, end_char, location, text, tokens FROM beacons"
                f" WHERE {_SET_MATCH} ORDER BY ordinal",
                _set_args(key),
            ).fetchall()
        return [
            StoredBeacon(int(o), int(start), int(end), str(where), str(text), int(tokens))
            for o, start, end, where, text, tokens in rows
        ]

    def beacon_sets(self, doc_id: str) -> list[BeaconSetRecord]:
        """Every set of beacons of the document, on any model and settings."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.model_sha256, s.settings_key, s.window_count, s.settings,"
                " (SELECT COUNT(*) FROM beacons b WHERE b.document_id = s.document_id"
                "  AND b.model_sha256 = s.model_sha256 AND b.settings_key = s.settings_key)"
                " FROM beacon_sets s WHERE s.document_id = ? ORDER BY s.created_at",
                (doc_id,),
            ).fetchall()
        return [
            BeaconSetRecord(
                key=BeaconSetKey(doc_id, str(model), str(settings_key)),
                window_count=int(windows),
                stored=int(stored),
                settings=str(settings),
            )
            for model, settings_key, windows, settings, stored in rows
        ]

    def delete_beacon_set(self, key: BeaconSetKey) -> None:
        """Forget a set of beacons and every beacon in it."""
        with self._transaction() as db:
            db.execute(f"DELETE FROM beacon_sets WHERE {_SET_MATCH}", _set_args(key))


_SET_MATCH = "document_id = ? AND model_sha256 = ? AND settings_key = ?"


def _set_args(key: BeaconSetKey) -> tuple[str, str, str]:
    return (key.document_id, key.model_sha256, key.settings_key)


def _document_from_row(row: tuple[object, ...]) -> Document:
    (doc_id, title, source, fmt, pages, sections, tokens, chunks, size, added) = row
    return Document(
        id=str(doc_id),
        title=str(title),
        source_path=str(source),
        format=Format(str(fmt)),
        page_count=None if pages is None else int(str(pages)),
        section_count=int(str(sections)),
        token_count=int(str(tokens)),
        chunk_count=int(str(chunks)),
        byte_size=int(str(size)),
        added_at=datetime.fromisoformat(str(added)).astimezone(UTC),
    )
