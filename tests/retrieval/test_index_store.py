from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import ChunkSettings
from retrieval import index_store
from retrieval.errors import RetrievalError, StaleIndexError
from retrieval.index_store import FORMAT_VERSION, IndexStore
from retrieval.types import IndexProgress
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder
from tests.retrieval.conftest import AddDocument

TEXTS = [
    "The clerk asked for the whole of Christmas Day off.",
    "He must come in all the earlier the next morning, said Hartman.",
    "The bell tolled one, and the first spirit stood by the bed.",
    "A small boy in the street below was sent to buy the prize turkey.",
    "The ghost pointed at a grave; the name on the stone was his own.",
]


@pytest.fixture
def doc(add_document: AddDocument) -> str:
    return add_document(TEXTS)


def run(store: IndexStore, library: Library, doc_id: str) -> list[IndexProgress]:
    return list(store.build(library, doc_id))


def ensure(store: IndexStore, library: Library, doc_id: str) -> list[IndexProgress]:
    return list(store.ensure(library, doc_id))


def test_an_index_is_a_folder_of_plain_files(store: IndexStore, library: Library, doc: str) -> None:
    events = run(store, library, doc)
    folder = store.folder(doc)
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "terms.json",
        "vector_chunks.npy",
        "vectors.npy",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedder_id"] == store.encoder.id
    assert manifest["dimension"] == store.encoder.dimension
    assert (manifest["chunk_max_tokens"], manifest["chunk_overlap"]) == (64, 8)
    assert manifest["chunk_count"] == len(TEXTS)
    vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    assert vectors.shape == (len(TEXTS), store.encoder.dimension)  # short chunks: one window
    owners = np.load(folder / "vector_chunks.npy", allow_pickle=False)
    assert owners.tolist() == list(range(len(TEXTS)))
    terms = json.loads((folder / "terms.json").read_text())["terms"]
    assert terms[0] == "clerk asked whole christmas day"
    index = store.load(library, doc)
    assert [c.text for c in index.chunks] == TEXTS
    assert events[-1].done == events[-1].total == len(TEXTS)


def test_progress_counts_up_to_the_chunk_count(
    store: IndexStore, library: Library, doc: str
) -> None:
    events = run(store, library, doc)
    assert [e.done for e in events] == [0, 2, 4, 5]  # batches of two chunks
    assert {e.total for e in events} == {len(TEXTS)}
    assert {e.document_id for e in events} == {doc}


def test_ensure_builds_a_missing_index_and_says_why(
    store: IndexStore, library: Library, doc: str
) -> None:
    with pytest.raises(StaleIndexError, match="not been built yet") as raised:
        store.load(library, doc)
    assert raised.value.reason == "it has not been built yet"
    assert "needs rebuilding" in str(raised.value)
    events = ensure(store, library, doc)
    assert events[0].reason == "it has not been built yet"
    assert all(e.reason is None for e in events[1:])
    assert store.stale_reason(library, doc) is None
    assert ensure(store, library, doc) == []  # current: loaded, nothing to do


def test_another_embedder_makes_the_index_stale(
    store: IndexStore, library: Library, doc: str, isolated_home: Path
) -> None:
    run(store, library, doc)
    other = IndexStore(isolated_home, ChunkEncoder(FakeEmbedder(name="other")))
    reason = other.stale_reason(library, doc)
    assert reason is not None and "built with embedder fake" in reason and "now other" in reason
    events = ensure(other, library, doc)
    assert events[0].reason == reason
    assert other.stale_reason(library, doc) is None
    assert store.stale_reason(library, doc) is not None  # and back again


def test_switching_to_truncation_makes_the_index_stale(
    store: IndexStore, library: Library, doc: str, isolated_home: Path, fake_embedder: FakeEmbedder
) -> None:
    run(store, library, doc)
    truncating = IndexStore(isolated_home, ChunkEncoder(fake_embedder, truncate=True))
    assert "+truncate" in (truncating.stale_reason(library, doc) or "")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("format_version", FORMAT_VERSION + 1, "index format"),
        ("embedder_id", "someone-else", "built with embedder someone-else"),
        ("dimension", 3, "3 dimensions"),
        ("chunk_max_tokens", 600, "chunks of 600 tokens"),
        ("chunk_overlap", 100, "overlapping by 100"),
        ("chunk_count", 99, "covers 99 chunks"),
        ("chunks_digest", "0" * 64, "chunks have changed"),
    ],
)
def test_a_manifest_that_does_not_match_is_reported_and_rebuilt(
    store: IndexStore, library: Library, doc: str, field: str, value: object, reason: str
) -> None:
    run(store, library, doc)
    path = store.folder(doc) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[field] = value
    path.write_text(json.dumps(manifest))
    with pytest.raises(StaleIndexError, match=reason):
        store.load(library, doc)
    events = ensure(store, library, doc)
    assert reason in (events[0].reason or "")
    assert store.stale_reason(library, doc) is None


def test_chunk_settings_come_from_the_library(
    store: IndexStore, library: Library, add_document: AddDocument
) -> None:
    doc = add_document(TEXTS, settings=ChunkSettings(max_tokens=300, overlap=30))
    run(store, library, doc)
    manifest = store.load(library, doc).manifest
    assert (manifest.chunk_max_tokens, manifest.chunk_overlap) == (300, 30)


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("manifest.json", b"{not json", "manifest is damaged"),
        ("manifest.json", b'{"format_version": 1}', "manifest is damaged"),
        ("manifest.json", b'{"format_version": "1", "embedder_id": 2}', "manifest is damaged"),
        ("terms.json", b'{"terms": ["one"]}', "terms file is damaged"),
        ("terms.json", b"", "terms file is damaged"),
        ("vectors.npy", b"\x93NUMPY garbage", "vectors file is damaged"),
        ("vectors.npy", b"", "vectors file is damaged"),
        ("vector_chunks.npy", b"", "vector chunks file is damaged"),
    ],
)
def test_damaged_files_are_reported_and_rebuilt(
    store: IndexStore, library: Library, doc: str, name: str, damage: bytes, reason: str
) -> None:
    run(store, library, doc)
    (store.folder(doc) / name).write_bytes(damage)
    with pytest.raises(StaleIndexError, match=reason):
        store.load(library, doc)
    events = ensure(store, library, doc)
    assert reason in (events[0].reason or "")
    assert store.load(library, doc).vectors.shape == (len(TEXTS), store.encoder.dimension)


@pytest.mark.parametrize(
    "vectors",
    [
        np.zeros((5, 3), dtype=np.float32),
        np.zeros((4, 128), dtype=np.float32),
        np.zeros((5, 128), dtype=np.float64),
        np.full((5, 128), np.nan, dtype=np.float32),
        np.array([{"pickled": True}] * 5, dtype=object),
    ],
)
def test_vectors_of_the_wrong_shape_or_kind_are_damage(
    store: IndexStore, library: Library, doc: str, vectors: np.ndarray
) -> None:
    run(store, library, doc)
    np.save(store.folder(doc) / "vectors.npy", vectors, allow_pickle=True)
    with pytest.raises(StaleIndexError, match=r"vector(s| chunks) file is damaged"):
        store.load(library, doc)


@pytest.mark.parametrize(
    "owners",
    [
        np.array([0, 1, 2, 3], dtype=np.int64),  # too few rows
        np.array([0, 1, 2, 3, 3], dtype=np.int64),  # chunk 4 has no row
        np.array([0, 1, 2, 4, 3], dtype=np.int64),  # out of order
        np.array([0, 1, 2, 3, 9], dtype=np.int64),  # no such chunk
        np.array([0.0, 1, 2, 3, 4]),  # not integers
    ],
)
def test_rows_must_map_onto_every_chunk(
    store: IndexStore, library: Library, doc: str, owners: np.ndarray
) -> None:
    run(store, library, doc)
    np.save(store.folder(doc) / "vector_chunks.npy", owners)
    with pytest.raises(StaleIndexError, match="vector chunks file is damaged"):
        store.load(library, doc)


def test_long_chunks_have_a_row_per_window(
    store: IndexStore, library: Library, add_document: AddDocument
) -> None:
    long_chunk = " ".join(f"word{i}" for i in range(40))  # windows of 16 sharing 8: 4 rows
    doc = add_document(["short one", long_chunk, "short two"])
    run(store, library, doc)
    index = store.load(library, doc)
    assert index.vector_chunks.tolist() == [0, 1, 1, 1, 1, 2]
    assert index.vectors.shape == (6, store.encoder.dimension)


def test_a_missing_file_is_damage(store: IndexStore, library: Library, doc: str) -> None:
    run(store, library, doc)
    (store.folder(doc) / "terms.json").unlink()
    assert "terms file is damaged" in (store.stale_reason(library, doc) or "")


def test_a_build_that_dies_while_writing_leaves_the_old_index(
    store: IndexStore, library: Library, doc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, library, doc)
    before = {p.name: p.read_bytes() for p in store.folder(doc).iterdir()}
    real_write = index_store._write_file

    def dies_at_the_manifest(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            raise KeyboardInterrupt  # as if killed half-way through the folder
        real_write(path, data)

    monkeypatch.setattr(index_store, "_write_file", dies_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        run(store, library, doc)
    assert {p.name: p.read_bytes() for p in store.folder(doc).iterdir()} == before
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]
    assert store.stale_reason(library, doc) is None


def test_a_build_stopped_mid_embedding_leaves_no_index(
    store: IndexStore, library: Library, doc: str
) -> None:
    building = store.build(library, doc)
    next(building)
    next(building)
    building.close()  # the caller went away (Ctrl-C, a cancelled worker)
    assert not store.folder(doc).exists()
    assert store.stale_reason(library, doc) == "it has not been built yet"
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_leftovers_of_a_killed_build_are_cleared(
    store: IndexStore, library: Library, doc: str
) -> None:
    store.root.mkdir(parents=True)
    leftover = store.root / f".building-{doc}-deadbeef"
    leftover.mkdir()
    (leftover / "vectors.npy").write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    assert store.stale_reason(library, doc) == "it has not been built yet"
    run(store, library, doc)
    assert not leftover.exists()


def test_remove(store: IndexStore, library: Library, doc: str) -> None:
    run(store, library, doc)
    assert store.remove(doc) is True
    assert not store.folder(doc).exists()
    assert store.remove(doc) is False


def test_an_empty_document_has_an_empty_index(
    store: IndexStore, library: Library, add_document: AddDocument
) -> None:
    doc = add_document([])
    events = run(store, library, doc)
    assert events == [IndexProgress(doc, 0, 0)]
    assert store.load(library, doc).vectors.shape == (0, store.encoder.dimension)


def test_ids_that_are_not_document_ids_are_refused(store: IndexStore, library: Library) -> None:
    for bad in ["../etc", "a/b", "", ".hidden"]:
        with pytest.raises(RetrievalError, match="not a document id"):
            store.folder(bad)
    with pytest.raises(DocumentNotFoundError, match="longread list"):
        store.load(library, "ab" * 32)
    with pytest.raises(DocumentNotFoundError):
        run(store, library, "ab" * 32)
