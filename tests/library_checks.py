"""Assertions about a library database's consistency, shared by the pipeline, CLI and kill tests,
a sample document to save into one, and adding a file through the facade for its id."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.chunker import chunk_document
from ingest.library import document_id
from ingest.normalize import TextBuilder
from ingest.types import Chunk, ChunkSettings, Document, ExtractedText, Format, SectionKind

if TYPE_CHECKING:
    from engine.assistant import Assistant

ADDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def table_counts(home: Path) -> dict[str, int]:
    """Rows per table: equal before and after a failed add means nothing changed."""
    path = home / "library.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        tables = ["documents", "document_texts", "sections", "chunks"]
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        db.close()


def assert_consistent(home: Path) -> list[str]:
    """Every document is whole (text, all sections, all chunks) and nothing is orphaned.

    Returns the titles of the documents found.
    """
    db = sqlite3.connect(home / "library.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        titles = []
        for doc_id, title, sections, chunks in db.execute(
            "SELECT id, title, section_count, chunk_count FROM documents"
        ).fetchall():
            assert (
                db.execute(
                    "SELECT count(*) FROM document_texts WHERE document_id = ?", (doc_id,)
                ).fetchone()[0]
                == 1
            ), f"{title}: text missing"
            found_sections = db.execute(
                "SELECT count(*) FROM sections WHERE document_id = ?", (doc_id,)
            ).fetchone()[0]
            found_chunks = db.execute(
                "SELECT count(*) FROM chunks WHERE document_id = ?", (doc_id,)
            ).fetchone()[0]
            assert (found_sections, found_chunks) == (sections, chunks), f"{title} is partial"
            titles.append(title)
        for table in ("document_texts", "sections", "chunks"):
            orphans = db.execute(
                f"SELECT count(*) FROM {table} WHERE document_id NOT IN (SELECT id FROM documents)"
            ).fetchone()[0]
            assert orphans == 0, f"orphaned rows in {table}"
        return titles
    finally:
        db.close()


def sample_document(
    title: str, body: str, added_at: datetime = ADDED
) -> tuple[Document, ExtractedText, list[Chunk]]:
    """A one-chapter text document, read and chunked as the pipeline would, ready to save."""
    builder = TextBuilder()
    builder.add("Chapter 1", SectionKind.CHAPTER, body)
    extracted = builder.build(Format.TEXT, title=title)
    chunks = chunk_document(extracted.text, extracted.sections, ChunkSettings())
    document = Document(
        id=document_id(body.encode()),
        title=title,
        source_path=f"/books/{title}.txt",
        format=Format.TEXT,
        page_count=None,
        section_count=len(extracted.sections),
        token_count=42,
        chunk_count=len(chunks),
        byte_size=len(body),
        added_at=added_at,
    )
    return document, extracted, chunks


def added_id(assistant: Assistant, path: Path, *, index: bool = True) -> str:
    """Add `path` through the facade (indexed unless told not to) and return its id."""
    *_, outcome = assistant.add([path], index=index)
    document = getattr(outcome, "document", None)
    assert document is not None, outcome
    return str(document.id)
