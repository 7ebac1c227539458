"""The library's tables: numbered migrations, the backup made before running them, and how
a documents row becomes a Document.

A database's PRAGMA user_version says how many migrations have run. Migrations are appended,
never edited. Before an existing library (schema 1 or later) is migrated, a copy of it is
made with SQLite's backup API beside it as `library.sqlite3.before-schema-<N>`, N being the
version it is migrated to: only the latest copy per version is kept (a later migration to
the same version overwrites it), so they never pile up, and a person whose library a new
longread rewrote can go back. A new library is not copied.

It does not open libraries or translate their errors (ingest/library.py and
ingest/library_errors.py do).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ingest.types import Document, Format

# Numbered migrations: the database's user_version says how many have run. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
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

CURRENT_VERSION = len(MIGRATIONS)

DOCUMENT_COLUMNS = (
    "id, title, source_path, format, page_count, section_count, token_count,"
    " chunk_count, byte_size, added_at"
)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, up_to: int = CURRENT_VERSION) -> None:
    """Run the migrations the database lacks, up to `up_to`, each in its own transaction.

    The version is read again inside each transaction, under the write lock: two processes
    opening an old library at once then run each migration once between them.
    """
    for number in range(1, up_to + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) < number:
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def migration_backup_path(path: Path, version: int) -> Path:
    """Where the copy made before migrating `path` to schema `version` is kept."""
    return path.with_name(f"{path.name}.before-schema-{version}")


def back_up_before_migration(db: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the open library `db` (at `path`) beside it before it is migrated to `version`.

    The backup API copies a consistent snapshot, the WAL's committed pages included. It is
    written under a name of this process's own and renamed into place, so a kill or a
    second longread migrating at the same moment never leaves a half-written copy.
    """
    target = migration_backup_path(path, version)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    copy = sqlite3.connect(partial)
    try:
        db.backup(copy)
    finally:
        copy.close()
    partial.replace(target)
    return target


def document_from_row(row: tuple[object, ...]) -> Document:
    """A Document from a row of DOCUMENT_COLUMNS; ValueError for a malformed one."""
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
