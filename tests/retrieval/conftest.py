"""Fixtures for retrieval tests: a library in the isolated home, documents made of given
chunk texts, and a store and searcher wired to the FakeEmbedder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config import RetrievalSettings
from ingest.library import Library
from ingest.types import Chunk, ChunkSettings, Document, ExtractedText, Format
from retrieval.dense import SentenceTransformerEmbedder
from retrieval.embedder import Embedder
from retrieval.embedders import EmbedderRuntime, configured_embedder
from retrieval.hybrid import Searcher
from retrieval.index_store import IndexStore
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder

AddDocument = Callable[..., str]


def save_chunks(
    library: Library,
    texts: Sequence[str],
    title: str = "doc",
    settings: ChunkSettings | None = None,
) -> str:
    """Save a document whose chunks are exactly `texts` (joined by blank lines); its id."""
    settings = settings or ChunkSettings(max_tokens=64, overlap=8)
    full = "\n\n".join(texts)
    chunks, offset = [], 0
    for ordinal, text in enumerate(texts):
        chunks.append(
            Chunk(
                ordinal=ordinal,
                text=text,
                start=offset,
                end=offset + len(text),
                location=f"part {ordinal + 1}",
                token_count=len(text.split()),
                section_ordinal=0,
            )
        )
        offset += len(text) + 2
    doc_id = hashlib.sha256(f"{title}\0{full}".encode()).hexdigest()
    document = Document(
        id=doc_id,
        title=title,
        source_path=f"/tmp/{title}.txt",
        format=Format.TEXT,
        page_count=None,
        section_count=1,
        token_count=sum(c.token_count for c in chunks),
        chunk_count=len(chunks),
        byte_size=len(full.encode()),
        added_at=datetime.now(UTC),
    )
    library.save(document, ExtractedText(full, (), Format.TEXT), chunks, settings)
    return doc_id


@pytest.fixture
def library(isolated_home: Path) -> Iterator[Library]:
    with Library(isolated_home) as opened:
        yield opened


@pytest.fixture
def add_document(library: Library) -> AddDocument:
    def add(texts: Sequence[str], title: str = "doc", **kwargs: object) -> str:
        return save_chunks(library, texts, title, **kwargs)  # type: ignore[arg-type]

    return add


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def store(isolated_home: Path, fake_embedder: FakeEmbedder) -> Iterator[IndexStore]:
    opened = IndexStore(isolated_home, ChunkEncoder(fake_embedder), batch_chunks=2)
    yield opened
    opened.close()


@pytest.fixture
def searcher(library: Library, store: IndexStore) -> Searcher:
    return Searcher(library, store)


def build(store: IndexStore, library: Library, doc_id: str) -> list[object]:
    """Run a build to the end; its progress events."""
    return list(store.build(library, doc_id))


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2 on torch (fp32), loaded once for the session."""
    return SentenceTransformerEmbedder.bundled()


@pytest.fixture(scope="session")
def product_embedder(shared_onnx_exports: Path) -> Embedder:
    """The embedder longread uses by default: the bundled model on ONNX Runtime (fp32)."""
    runtime = RetrievalSettings().embedder_runtime
    return configured_embedder("bundled", runtime, shared_onnx_exports)


@pytest.fixture(scope="session")
def int8_embedder(shared_onnx_exports: Path) -> Embedder:
    """The bundled model on ONNX Runtime with int8 weights (`embedder_runtime = onnx-int8`)."""
    return configured_embedder("bundled", EmbedderRuntime.ONNX_INT8, shared_onnx_exports)
