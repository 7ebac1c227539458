"""The SQLite library: round trips, idempotence by content (also across processes),
atomicity, lookup by reference, and the copy kept before a migration."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from ingest.chunker import chunk_document
from ingest.errors import (
    AmbiguousDocumentError,
    DocumentNotFoundError,
    LibraryConstraintError,
    LibraryDamagedError,
    LibraryError,
)
from ingest.library import Library
from ingest.normalize import TextBuilder
from ingest.schema import CURRENT_VERSION, migration_backup_path
from ingest.types import Chunk, ChunkSettings, Document, ExtractedText, Format, SectionKind
from tests.library_checks import assert_consistent, sample_document, table_counts


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
        with pytest.raises(LibraryConstraintError, match="nothing was changed"):
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
    with pytest.raises(LibraryDamagedError, match=r"is damaged .*longread repair"):
        Library(tmp_path)


def test_saving_a_document_that_is_already_there_changes_nothing(tmp_path: Path) -> None:
    document, extracted, chunks = sample_document("Walden", "Life in the woods. " * 50)
    with Library(tmp_path) as library:
        assert library.save(document, extracted, chunks, ChunkSettings()) is True
        counts = table_counts(tmp_path)
        renamed = Document(**{**document.__dict__, "title": "Walden, again"})
        assert library.save(renamed, extracted, chunks, ChunkSettings()) is False
        assert library.documents() == [document]
    assert table_counts(tmp_path) == counts


_ROUNDS = 6


def _save_each_when_released(
    home: Path,
    documents: list[tuple[Document, ExtractedText, list[Chunk]]],
    start: Barrier,
    results: Queue[tuple[str, object]],
) -> None:
    """One of two processes: at each round, save the round's document the moment both are
    ready, and report what save returned (or what it raised)."""
    with Library(home) as library:
        for parts in documents:
            start.wait(timeout=60)
            try:
                outcome: object = library.save(*parts, ChunkSettings())
            except Exception as error:  # noqa: BLE001 - reported, so the parent sees it
                outcome = f"{type(error).__name__}: {error}"
            results.put((parts[0].id, outcome))


def test_two_processes_saving_the_same_document_at_once_save_it_once(tmp_path: Path) -> None:
    documents = [
        sample_document(f"Round {n}", f"Round {n} of the race. " * 60) for n in range(_ROUNDS)
    ]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results: Queue[tuple[str, object]] = context.Queue()
    savers = [
        context.Process(target=_save_each_when_released, args=(tmp_path, documents, start, results))
        for _ in range(2)
    ]
    for saver in savers:
        saver.start()
    outcomes: dict[str, list[object]] = {}
    for _ in range(2 * _ROUNDS):
        doc_id, outcome = results.get(timeout=120)
        outcomes.setdefault(doc_id, []).append(outcome)
    for saver in savers:
        saver.join(timeout=60)
        assert saver.exitcode == 0
    for parts in documents:
        assert sorted(outcomes[parts[0].id], key=repr) == [False, True], outcomes
    assert sorted(assert_consistent(tmp_path)) == sorted(p[0].title for p in documents)


def _downgrade_to_schema_3(home: Path) -> None:
    """Make the library look as a longread of schema 3 left it (no beacon tables)."""
    db = sqlite3.connect(home / "library.sqlite3")
    db.executescript("DROP TABLE beacons; DROP TABLE beacon_sets; PRAGMA user_version = 3;")
    db.close()


def _titles_in(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        return version, sorted(t for (t,) in db.execute("SELECT title FROM documents"))
    finally:
        db.close()


def test_an_old_library_is_copied_before_it_is_migrated(tmp_path: Path) -> None:
    walden = sample_document("Walden", "Life in the woods. " * 50)
    waves = sample_document("The Waves", "The sun had not yet risen. " * 50)
    backup = migration_backup_path(tmp_path / "library.sqlite3", CURRENT_VERSION)
    with Library(tmp_path) as library:
        library.save(*walden, ChunkSettings())
    assert not backup.exists(), "a new library is not copied"
    _downgrade_to_schema_3(tmp_path)
    with Library(tmp_path) as library:
        assert library.schema_version == CURRENT_VERSION
        library.save(*waves, ChunkSettings())
    assert _titles_in(backup) == (3, ["Walden"])

    # Migrated to the same version again: the copy is replaced, not added to.
    _downgrade_to_schema_3(tmp_path)
    Library(tmp_path).close()
    assert _titles_in(backup) == (3, ["The Waves", "Walden"])
    copies = sorted(p.name for p in tmp_path.iterdir() if "before-schema" in p.name)
    assert copies == [backup.name]
