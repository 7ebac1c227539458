from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import ChunkSettings
from retrieval import index_store
from retrieval.errors import RetrievalError, StaleIndexError
from retrieval.hybrid import Searcher
from retrieval.index_files import write_file
from retrieval.index_store import FORMAT_VERSION, IndexStore, remove_index
from retrieval.types import IndexProgress, SearchMode
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


def reseal(folder: Path) -> None:
    """Record the data files' present sizes and sha256s in the manifest, as a build would:
    damage behind a matching checksum, which only the parsers' own checks can catch."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = [
        {
            "name": record["name"],
            "size": (folder / record["name"]).stat().st_size,
            "sha256": hashlib.sha256((folder / record["name"]).read_bytes()).hexdigest(),
        }
        for record in manifest["files"]
    ]
    path.write_text(json.dumps(manifest))


def top_ordinal(store: IndexStore, library: Library, doc_id: str, query: str, mode: str) -> int:
    """The chunk a fresh searcher ranks first (nothing held over from an earlier load)."""
    return Searcher(library, store).search(query, 1, SearchMode(mode), [doc_id])[0].ordinal


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
    assert {(f["name"], f["size"]) for f in manifest["files"]} == {
        (name, (folder / name).stat().st_size)
        for name in ("terms.json", "vectors.npy", "vector_chunks.npy")
    }
    for record in manifest["files"]:
        assert (
            record["sha256"] == hashlib.sha256((folder / record["name"]).read_bytes()).hexdigest()
        )
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
    "damage",
    [
        b"{not json",
        b'{"format_version": %d}' % FORMAT_VERSION,
        b'{"format_version": "1", "embedder_id": 2}',
        b"[]",
        b" " * 70_000 + b"{}",  # far bigger than any manifest: not read whole
    ],
)
def test_a_damaged_manifest_is_reported_and_rebuilt(
    store: IndexStore, library: Library, doc: str, damage: bytes
) -> None:
    run(store, library, doc)
    (store.folder(doc) / "manifest.json").write_bytes(damage)
    with pytest.raises(StaleIndexError, match="manifest is damaged"):
        store.load(library, doc)
    events = ensure(store, library, doc)
    assert "manifest is damaged" in (events[0].reason or "")
    assert store.stale_reason(library, doc) is None


SpoilRecords = Callable[[list[dict[str, object]]], object]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda files: files[:2], id="a-file-unrecorded"),
        pytest.param(lambda files: [*files, files[0]], id="a-file-twice"),
        pytest.param(
            lambda files: [{**files[0], "name": "../manifest.json"}, *files[1:]], id="path"
        ),
        pytest.param(lambda files: [{**files[0], "size": -1}, *files[1:]], id="negative-size"),
        pytest.param(lambda files: [{**files[0], "size": True}, *files[1:]], id="true-size"),
        pytest.param(lambda files: [{**files[0], "sha256": "abc"}, *files[1:]], id="short-sha"),
        pytest.param(lambda files: [{**files[0], "extra": 1}, *files[1:]], id="extra-key"),
        pytest.param(lambda files: {"terms.json": files[0]}, id="not-a-list"),
    ],
)
def test_file_records_that_are_not_one_per_data_file_are_damage(
    store: IndexStore, library: Library, doc: str, spoil: SpoilRecords
) -> None:
    run(store, library, doc)
    path = store.folder(doc) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = spoil(manifest["files"])
    path.write_text(json.dumps(manifest))
    reason = store.stale_reason(library, doc) or ""
    assert "manifest is damaged" in reason and "sha256 of each of" in reason


DATA_DAMAGE = [
    ("terms.json", b'{"terms": ["one"]}', "terms file is damaged"),
    ("terms.json", b'{"terms": [1, 2, 3, 4, 5]}', "terms file is damaged"),
    ("terms.json", b"", "terms file is damaged"),
    ("vectors.npy", b"\x93NUMPY garbage", "vectors file is damaged"),
    ("vectors.npy", b"", "vectors file is damaged"),
    ("vectors.npy", b"PK\x05\x06" + bytes(18), "vectors file is damaged"),  # an empty .npz
    ("vector_chunks.npy", b"", "vector chunks file is damaged"),
]


@pytest.mark.parametrize(("name", "damage", "reason"), DATA_DAMAGE)
def test_a_changed_data_file_fails_its_checksum_and_is_rebuilt(
    store: IndexStore, library: Library, doc: str, name: str, damage: bytes, reason: str
) -> None:
    run(store, library, doc)
    (store.folder(doc) / name).write_bytes(damage)
    with pytest.raises(StaleIndexError, match=f"{name} does not match its checksum"):
        store.load(library, doc)
    events = ensure(store, library, doc)
    assert f"{name} does not match its checksum" in (events[0].reason or "")
    assert store.load(library, doc).vectors.shape == (len(TEXTS), store.encoder.dimension)


@pytest.mark.parametrize(("name", "damage", "reason"), DATA_DAMAGE)
def test_damage_behind_a_matching_checksum_is_still_caught(
    store: IndexStore, library: Library, doc: str, name: str, damage: bytes, reason: str
) -> None:
    run(store, library, doc)
    (store.folder(doc) / name).write_bytes(damage)
    reseal(store.folder(doc))
    with pytest.raises(StaleIndexError, match=reason):
        store.load(library, doc)
    events = ensure(store, library, doc)
    assert reason in (events[0].reason or "")
    assert store.stale_reason(library, doc) is None


def swap_vector_rows(folder: Path) -> None:
    vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    vectors[[0, 3]] = vectors[[3, 0]]
    np.save(folder / "vectors.npy", vectors, allow_pickle=False)  # same shape, dtype and size


def swap_terms(folder: Path) -> None:
    terms = json.loads((folder / "terms.json").read_text())["terms"]
    terms[0], terms[3] = terms[3], terms[0]
    (folder / "terms.json").write_text(json.dumps({"terms": terms}))  # same size


# A query only chunk 0 answers, by words (BM25) and by the fake embedder's bag of words.
SWAPS = [
    pytest.param("vectors.npy", swap_vector_rows, "dense", id="vector-rows"),
    pytest.param("terms.json", swap_terms, "bm25", id="terms-entries"),
]


@pytest.mark.parametrize(("name", "swap", "mode"), SWAPS)
def test_swapped_rows_would_rank_the_wrong_passage(
    store: IndexStore,
    library: Library,
    doc: str,
    name: str,
    swap: Callable[[Path], None],
    mode: str,
) -> None:
    """Why checksums: a swap leaves every file valid, so only they can tell."""
    run(store, library, doc)
    assert top_ordinal(store, library, doc, "clerk Christmas Day off", mode) == 0
    size = (store.folder(doc) / name).stat().st_size
    swap(store.folder(doc))
    assert (store.folder(doc) / name).stat().st_size == size
    reseal(store.folder(doc))
    assert top_ordinal(store, library, doc, "clerk Christmas Day off", mode) == 3


@pytest.mark.parametrize(("name", "swap", "mode"), SWAPS)
def test_swapped_rows_fail_the_checksum_and_are_rebuilt(
    store: IndexStore,
    library: Library,
    doc: str,
    name: str,
    swap: Callable[[Path], None],
    mode: str,
) -> None:
    run(store, library, doc)
    swap(store.folder(doc))
    with pytest.raises(StaleIndexError, match=f"{name} does not match its checksum") as raised:
        store.load(library, doc)
    assert "content changed after the index was built" in raised.value.reason
    with pytest.raises(StaleIndexError, match=f"{name} does not match its checksum"):
        top_ordinal(store, library, doc, "clerk Christmas Day off", mode)
    searcher = Searcher(library, store)
    events = list(searcher.prepare([doc]))
    assert events[0].reason == raised.value.reason
    assert searcher.search("clerk Christmas Day off", 1, SearchMode(mode), [doc])[0].ordinal == 0
    assert store.stale_reason(library, doc) is None


def test_an_index_of_the_old_format_is_stale_and_rebuilt(
    store: IndexStore, library: Library, doc: str
) -> None:
    run(store, library, doc)
    path = store.folder(doc) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]  # as format 1 wrote it: no checksums
    manifest["format_version"] = 1
    path.write_text(json.dumps(manifest))
    reason = f"it was written in index format 1, and this longread uses format {FORMAT_VERSION}"
    assert FORMAT_VERSION > 1
    assert store.stale_reason(library, doc) == reason
    events = ensure(store, library, doc)
    assert events[0].reason == reason
    assert events[0].cached == len(TEXTS)  # rebuilt from the embedding cache
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    assert store.stale_reason(library, doc) is None


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
    reseal(store.folder(doc))
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
    reseal(store.folder(doc))
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
    real_write = write_file

    def dies_at_the_manifest(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            raise KeyboardInterrupt  # as if killed half-way through the folder
        real_write(path, data)

    monkeypatch.setattr(index_store, "write_file", dies_at_the_manifest)
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


def leave_killed_builds(store: IndexStore, library: Library, doc_id: str) -> None:
    """Leave what builds killed outright leave (no `finally` runs): a `.retired-` folder (killed
    after swapping a rebuilt index in) and a `.building-` one (killed while writing)."""
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        run(store, library, doc_id)
        run(store, library, doc_id)  # over the first: the old folder is retired, not deleted
        real_write = write_file

        def killed_at_the_manifest(path: Path, data: bytes) -> None:
            if path.name == "manifest.json":
                raise KeyboardInterrupt
            real_write(path, data)

        patch.setattr(index_store, "write_file", killed_at_the_manifest)
        with pytest.raises(KeyboardInterrupt):
            run(store, library, doc_id)
    finally:
        patch.undo()


def test_remove_deletes_leftovers_of_killed_builds_of_that_document_only(
    store: IndexStore, library: Library, doc: str, add_document: AddDocument
) -> None:
    other = add_document(TEXTS[:2], title="other")
    leave_killed_builds(store, library, doc)
    leave_killed_builds(store, library, other)
    # Named as a document "<doc>-x" would name its own (ids may hold "-").
    lookalike = store.root / f".building-{doc}-x-0123456789ab"
    shutil.copytree(next(store.root.glob(f".building-{doc}-*")), lookalike)

    def leftovers(doc_id: str) -> list[str]:
        return sorted(
            p.name.split("-")[0] for p in store.root.glob(f".*-{doc_id}-*") if p != lookalike
        )

    assert leftovers(doc) == leftovers(other) == [".building", ".retired"]
    # Whatever their age: just now, or "from the future" after the clock was set back.
    future = time.time() + 3600
    for leftover in store.root.glob(f".retired-{doc}-*"):
        os.utime(leftover, (future, future))
    assert store.remove(doc) is True
    assert leftovers(doc) == []
    assert not store.folder(doc).exists()
    assert leftovers(other) == [".building", ".retired"]
    assert lookalike.is_dir()
    assert store.stale_reason(library, other) is None
    assert store.remove(other) is True
    assert leftovers(other) == []


def test_remove_with_only_leftovers_and_no_index(
    store: IndexStore, library: Library, doc: str
) -> None:
    leave_killed_builds(store, library, doc)
    shutil.rmtree(store.folder(doc))
    assert store.remove(doc) is False  # there was no index, only leftovers
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []


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


def test_remove_index_needs_no_store(
    store: IndexStore, library: Library, doc: str, isolated_home: Path
) -> None:
    """What removing a document from the library can call without loading an embedder."""
    leave_killed_builds(store, library, doc)
    assert remove_index(isolated_home, doc) is True
    assert sorted(p.name for p in store.root.iterdir() if doc in p.name) == []
    assert remove_index(isolated_home, "../" + doc) is False  # names no folder of ours
