"""The library's rows whose content the engine defines: conversation turns and beacons.

A turn is an opaque JSON payload with its place and time (engine/history.py decides what
it holds). Beacon summaries come in a set per document, model and settings, a row per
window (engine/beacon_store.py makes the keys and settings). Nothing here interprets them.

Each function runs its statements on a connection the caller holds: ingest/library.py
wraps them in its transactions, its lock and its error translation.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from ingest.errors import DocumentNotFoundError
from ingest.types import BeaconSetKey, BeaconSetRecord, StoredBeacon, StoredTurn

_SET_MATCH = "document_id = ? AND model_sha256 = ? AND settings_key = ?"


def _require_document(db: sqlite3.Connection, doc_id: str) -> None:
    if db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
        raise DocumentNotFoundError(f"no document with id {doc_id}")


# -- conversation turns ------------------------------------------------------------------


def append_turn(db: sqlite3.Connection, doc_id: str, payload: str, created_at: datetime) -> int:
    """Add a turn after the document's last one; returns its ordinal (0 for the first).

    Run in one transaction, the ordinal is chosen and the row written under the write
    lock, so turns appended from several threads or processes never share a place.
    """
    _require_document(db, doc_id)
    (ordinal,) = db.execute(
        "SELECT COALESCE(MAX(ordinal) + 1, 0) FROM conversation_turns WHERE document_id = ?",
        (doc_id,),
    ).fetchone()
    db.execute(
        "INSERT INTO conversation_turns VALUES (?, ?, ?, ?)",
        (doc_id, ordinal, created_at.astimezone(UTC).isoformat(), payload),
    )
    return int(ordinal)


def turns(db: sqlite3.Connection, doc_id: str) -> list[StoredTurn]:
    rows = db.execute(
        "SELECT ordinal, created_at, payload FROM conversation_turns"
        " WHERE document_id = ? ORDER BY ordinal",
        (doc_id,),
    ).fetchall()
    return [
        StoredTurn(ordinal=int(o), created_at=datetime.fromisoformat(str(at)), payload=str(payload))
        for o, at, payload in rows
    ]


def clear_turns(db: sqlite3.Connection, doc_id: str) -> int:
    cursor = db.execute("DELETE FROM conversation_turns WHERE document_id = ?", (doc_id,))
    return int(cursor.rowcount)


# -- beacon summaries --------------------------------------------------------------------


def open_set(db: sqlite3.Connection, key: BeaconSetKey, window_count: int, settings: str) -> None:
    """Make sure the set exists; one recorded with another window count is emptied first."""
    _require_document(db, key.document_id)
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


def save(db: sqlite3.Connection, key: BeaconSetKey, beacon: StoredBeacon) -> None:
    """Store one beacon of an open set, replacing one at the same place."""
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


def beacons(db: sqlite3.Connection, key: BeaconSetKey) -> list[StoredBeacon]:
    rows = db.execute(
        "SELECT ordinal, start_char, end_char, location, text, tokens FROM beacons"
        f" WHERE {_SET_MATCH} ORDER BY ordinal",
        _set_args(key),
    ).fetchall()
    return [
        StoredBeacon(int(o), int(start), int(end), str(where), str(text), int(tokens))
        for o, start, end, where, text, tokens in rows
    ]


def sets(db: sqlite3.Connection, doc_id: str) -> list[BeaconSetRecord]:
    rows = db.execute(
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


def delete_set(db: sqlite3.Connection, key: BeaconSetKey) -> None:
    db.execute(f"DELETE FROM beacon_sets WHERE {_SET_MATCH}", _set_args(key))


def _set_args(key: BeaconSetKey) -> tuple[str, str, str]:
    return (key.document_id, key.model_sha256, key.settings_key)
