"""Conversation turns in the library: the schema 3 migration, order, clearing, and turns
leaving with their document."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import ChunkSettings, StoredTurn
from tests.library_checks import sample_document

ADDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# Schema 2 exactly as longread wrote it before conversations existed (migrations 1 and 2).
V2_SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, source_path TEXT NOT NULL, format TEXT NOT NULL,
    page_count INTEGER, section_count INTEGER NOT NULL, token_count INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL, byte_size INTEGER NOT NULL, added_at TEXT NOT NULL,
    chunk_max_tokens INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL
);
CREATE TABLE document_texts (
    document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    text TEXT NOT NULL
);
CREATE TABLE sections (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, label TEXT NOT NULL, kind TEXT NOT NULL,
    start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, level INTEGER NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);
CREATE TABLE chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL, location TEXT NOT NULL, token_count INTEGER NOT NULL,
    section_ordinal INTEGER NOT NULL, content_hash TEXT NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);
PRAGMA user_version = 2;
"""


def _save(library: Library, title: str) -> str:
    document, extracted, chunks = sample_document(title, f"{title} begins here. " * 40, ADDED)
    library.save(document, extracted, chunks, ChunkSettings())
    return document.id


def _turn_rows(home: Path) -> int:
    db = sqlite3.connect(home / "library.sqlite3")
    try:
        return int(db.execute("SELECT count(*) FROM conversation_turns").fetchone()[0])
    finally:
        db.close()


def test_a_schema_2_library_gains_conversations_and_keeps_its_documents(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "library.sqlite3")
    db.executescript(V2_SCHEMA)
    with db:
        db.execute(
            "INSERT INTO documents VALUES ('abc123', 'Walden', '/books/walden.txt', 'text',"
            " NULL, 1, 10, 1, 100, ?, 600, 100)",
            (ADDED.isoformat(),),
        )
        db.execute("INSERT INTO document_texts VALUES ('abc123', 'Life in the woods.')")
        db.execute("INSERT INTO sections VALUES ('abc123', 0, 'Chapter 1', 'chapter', 0, 18, 1)")
        db.execute(
            "INSERT INTO chunks VALUES ('abc123', 0, 'Life in the woods.', 0, 18, 'Chapter 1',"
            " 5, 0, 'h')"
        )
    db.close()

    with Library(tmp_path) as library:
        assert library.schema_version == 4  # 3 added conversations, 4 beacons
        (walden,) = library.documents()
        assert (walden.id, walden.title, walden.added_at) == ("abc123", "Walden", ADDED)
        assert library.text("abc123") == "Life in the woods."
        assert [c.location for c in library.chunks("abc123")] == ["Chapter 1"]
        assert library.turns("abc123") == []
        assert library.beacon_sets("abc123") == []
        assert library.append_turn("abc123", '{"q": 1}', ADDED) == 0
    # Opening it again runs nothing twice and keeps the turn.
    with Library(tmp_path) as library:
        assert library.schema_version == 4
        assert [t.payload for t in library.turns("abc123")] == ['{"q": 1}']


def test_turns_come_back_in_order_per_document_and_clear_by_document(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        walden = _save(library, "Walden")
        emma = _save(library, "Emma")
        later = ADDED + timedelta(minutes=5)
        assert library.append_turn(walden, "first", ADDED) == 0
        assert library.append_turn(emma, "emma's first", ADDED) == 0
        assert library.append_turn(walden, "second", later) == 1
    with Library(tmp_path) as library:
        assert library.turns(walden) == [
            StoredTurn(ordinal=0, created_at=ADDED, payload="first"),
            StoredTurn(ordinal=1, created_at=later, payload="second"),
        ]
        assert library.clear_turns(walden) == 2
        assert library.clear_turns(walden) == 0
        assert library.turns(walden) == []
        assert [t.payload for t in library.turns(emma)] == ["emma's first"]
        # A cleared conversation starts again from the first place.
        assert library.append_turn(walden, "again", ADDED) == 0


def test_turn_times_are_kept_in_utc(tmp_path: Path) -> None:
    paris = timezone(timedelta(hours=1))
    with Library(tmp_path) as library:
        walden = _save(library, "Walden")
        library.append_turn(walden, "{}", datetime(2026, 3, 1, 13, 0, tzinfo=paris))
        (turn,) = library.turns(walden)
    assert turn.created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert turn.created_at.utcoffset() == timedelta(0)


def test_removing_a_document_removes_its_conversation(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        walden = _save(library, "Walden")
        emma = _save(library, "Emma")
        library.append_turn(walden, "a", ADDED)
        library.append_turn(walden, "b", ADDED)
        library.append_turn(emma, "c", ADDED)
        library.remove(walden)
        assert library.turns(walden) == []
        assert [t.payload for t in library.turns(emma)] == ["c"]
    assert _turn_rows(tmp_path) == 1


def test_a_turn_for_an_unknown_document_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        _save(library, "Walden")
        with pytest.raises(DocumentNotFoundError):
            library.append_turn("not-a-document", "{}", ADDED)
        assert library.turns("not-a-document") == []
    assert _turn_rows(tmp_path) == 0


def test_turns_appended_from_many_threads_each_get_their_own_place(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        walden = _save(library, "Walden")
        ordinals: list[int] = []

        def append(worker: int) -> None:
            for step in range(10):
                ordinals.append(library.append_turn(walden, f"{worker}-{step}", ADDED))

        threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = library.turns(walden)
    assert sorted(ordinals) == list(range(40))
    assert [t.ordinal for t in stored] == list(range(40))
    assert len({t.payload for t in stored}) == 40
