"""The SQLite library: round trips, idempotence by content, atomicity, lookup by reference."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.chunker import chunk_document
from ingest.errors import AmbiguousDocumentError, DocumentNotFoundError, LibraryError
from ingest.library import Library
from ingest.normalize import TextBuilder
from ingest.types import ChunkSettings, Format, SectionKind
from tests.library_checks import sample_document


def test_a_saved_document_comes_back_whole(tmp_path: Path) -> None:
    document, extracted, chunks = sample_document("Walden", "Life in the woods. " * 50)
    with Library(tmp_path) as library:
        library.save(document, extracted, chunks, ChunkSettings())
    with Library(tmp_path) as library:
        assert library.documents() == [document]
        assert library.get(document.id) == document
        assert library.text(document.id) == extracted.text
        assert library.sections(document.id) == list(extracted.sections)
        assert library.chunks(document.id) == chunks
        assert library.chunk_settings(document.id) == ChunkSettings()
        assert library.has(document.id)


def test_front_matter_kind_round_trips_and_old_body_rows_are_migrated(tmp_path: Path) -> None:
    builder = TextBuilder()
    builder.add("Walden", SectionKind.FRONT, "A preface of sorts.")
    builder.add("Chapter 1", SectionKind.CHAPTER, "Life in the woods. " * 20)
    extracted = builder.build(Format.TEXT, title="Walden")
    document, _, _ = sample_document("Walden", "Life in the woods. " * 20)
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings())
    with Library(tmp_path) as library:
        library.save(document, extracted, chunks, ChunkSettings())
        assert library.sections(document.id) == list(extracted.sections)
    # A library of schema 1, written before FRONT existed, stored front matter as "body",
    # labelled "Start"; opening it migrates those rows to FRONT.
    db = sqlite3.connect(tmp_path / "library.sqlite3")
    with db:
        db.execute(
            "UPDATE sections SET kind = 'body', label = 'Start'"
            " WHERE document_id = ? AND ordinal = 0",
            (document.id,),
        )
        db.execute("PRAGMA user_version = 1")
    db.close()
    with Library(tmp_path) as library:
        first, second = library.sections(document.id)[:2]
        assert library.schema_version >= 2  # later migrations run too
    assert (first.label, first.kind) == ("Start", SectionKind.FRONT)
    assert second.kind is SectionKind.CHAPTER


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        assert library.schema_version >= 1
    db = sqlite3.connect(tmp_path / "library.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_save_leaves_the_library_as_it_was(tmp_path: Path) -> None:
    document, extracted, chunks = sample_document("Walden", "Life in the woods. " * 50)
    duplicated_chunks = [*chunks, chunks[0]]  # same primary key twice: the insert fails
    with Library(tmp_path) as library:
        with pytest.raises(sqlite3.IntegrityError):
            library.save(document, extracted, duplicated_chunks, ChunkSettings())
        assert library.documents() == []
        assert not library.has(document.id)
        library.save(document, extracted, chunks, ChunkSettings())
        assert library.documents() == [document]


def test_resolve_by_id_prefix_and_title_fragment(tmp_path: Path) -> None:
    walden = sample_document("Walden", "Life in the woods. " * 20)
    waves = sample_document("The Waves", "The sun had not yet risen. " * 20)
    with Library(tmp_path) as library:
        for doc, extracted, chunks in (walden, waves):
            library.save(doc, extracted, chunks, ChunkSettings())
        assert library.resolve(walden[0].id[:8]).title == "Walden"
        assert library.resolve("walden").title == "Walden"
        assert library.resolve("WAVES").title == "The Waves"
        with pytest.raises(AmbiguousDocumentError) as ambiguous:
            library.resolve("wa")
        assert "Walden" in str(ambiguous.value) and "The Waves" in str(ambiguous.value)
        with pytest.raises(DocumentNotFoundError, match="longread list"):
            library.resolve("moby dick")


def test_remove_deletes_everything_of_asample_document(tmp_path: Path) -> None:
    document, extracted, chunks = sample_document("Walden", "Life in the woods. " * 50)
    with Library(tmp_path) as library:
        library.save(document, extracted, chunks, ChunkSettings())
        library.remove(document.id)
        assert library.documents() == []
        assert library.chunks(document.id) == []
        assert library.sections(document.id) == []
        with pytest.raises(DocumentNotFoundError):
            library.text(document.id)


def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    Library(tmp_path).close()
    db = sqlite3.connect(tmp_path / "library.sqlite3")
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(LibraryError, match="newer longread"):
        Library(tmp_path)


def test_a_corrupt_database_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "library.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LibraryError, match="cannot be opened"):
        Library(tmp_path)
