from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.library import Library
from retrieval.embedding_cache import EmbeddingCache
from retrieval.index_store import IndexStore
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder
from tests.retrieval.conftest import AddDocument

SHARED = "A paragraph both documents quote word for word, about the harbor in winter."


def test_rebuilding_an_unchanged_document_embeds_nothing(
    store: IndexStore, library: Library, add_document: AddDocument, fake_embedder: FakeEmbedder
) -> None:
    doc = add_document(["one chunk of text", "another chunk of text", "a third"])
    list(store.build(library, doc))
    embedded = len(fake_embedder.embedded)
    assert embedded == 3
    store.remove(doc)
    events = list(store.build(library, doc))
    assert len(fake_embedder.embedded) == embedded
    assert [(e.done, e.cached) for e in events] == [(3, 3)]


def test_a_chunk_shared_by_two_documents_is_embedded_once(
    store: IndexStore, library: Library, add_document: AddDocument, fake_embedder: FakeEmbedder
) -> None:
    first = add_document(["first document opening", SHARED], title="first")
    second = add_document([SHARED, "second document ending", SHARED], title="second")
    list(store.build(library, first))
    fake_embedder.embedded.clear()
    events = list(store.build(library, second))
    assert fake_embedder.embedded == ["second document ending"]
    assert events[0].cached == 2 and events[-1].done == 3
    vectors = store.load(library, second).vectors
    np.testing.assert_array_equal(vectors[0], store.load(library, first).vectors[1])
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_a_build_stopped_half_way_keeps_what_it_embedded(
    store: IndexStore, library: Library, add_document: AddDocument, fake_embedder: FakeEmbedder
) -> None:
    doc = add_document([f"chunk number {n} of six" for n in range(6)])
    building = store.build(library, doc)
    next(building)
    next(building)  # one batch of two chunks embedded
    building.close()
    fake_embedder.embedded.clear()
    events = list(store.build(library, doc))
    assert len(fake_embedder.embedded) == 4
    assert events[0].cached == 2


def test_encoders_do_not_share_vectors(
    isolated_home: Path, library: Library, add_document: AddDocument
) -> None:
    doc = add_document(["some text here"])
    embedder = FakeEmbedder()
    for encoder in (ChunkEncoder(embedder), ChunkEncoder(embedder, truncate=True)):
        list(IndexStore(isolated_home, encoder).build(library, doc))
    assert embedder.calls == 2


def test_a_damaged_cache_file_is_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "embeddings.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = EmbeddingCache(path)
    assert cache.get_many("enc", ["h"], 2) == {}
    cache.put_many("enc", {"h": np.array([[0.6, 0.8]], dtype=np.float32)})
    found = cache.get_many("enc", ["h", "missing"], 2)
    np.testing.assert_array_equal(found["h"], np.array([[0.6, 0.8]], dtype=np.float32))
    cache.close()
    assert EmbeddingCache(path).count("enc") == 1


def test_an_entry_keeps_its_rows(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache.put_many("enc", {"h": rows})
    np.testing.assert_array_equal(cache.get_many("enc", ["h"], 3)["h"], rows)


def test_vectors_of_another_size_are_misses(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    cache.put_many("enc", {"h": np.ones((1, 3), dtype=np.float32)})
    cache.put_many("enc", {"empty": np.ones((0, 3), dtype=np.float32)})
    assert cache.get_many("enc", ["h"], 4) == {}
    assert cache.get_many("enc", ["empty"], 3) == {}
    assert set(cache.get_many("enc", ["h"], 3)) == {"h"}
    assert cache.get_many("other", ["h"], 3) == {}


def test_many_lookups_at_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    vectors = {f"h{i}": np.full((1, 2), i, dtype=np.float32) for i in range(1200)}
    cache.put_many("enc", vectors)
    found = cache.get_many("enc", list(vectors), 2)
    assert len(found) == 1200
    assert found["h1199"][0, 0] == 1199
