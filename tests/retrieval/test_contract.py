"""The contract every retriever keeps (BM25, dense, hybrid), as one parametrized suite.

Each test runs on two embedders: the fake, and the product's own (the bundled model on ONNX
Runtime, int8), so the contract holds for real vectors, not only bag-of-words ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.library import Library
from retrieval.embedder import Embedder
from retrieval.hybrid import Searcher
from retrieval.index_store import IndexStore
from retrieval.types import Hit, SearchMode
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder
from tests.retrieval.conftest import AddDocument

MODES = [SearchMode.BM25, SearchMode.DENSE, SearchMode.HYBRID]
CHUNKS = [
    "The harbor master counted 1,250 barrels of herring on the quay in 2019.",
    "At the harbor the lighthouse keeper trimmed the lamp before the storm.",
    "A harbor cat slept on coiled rope while gulls circled the fishing boats.",
    "Merchants at the harbor argued over the price of salt and 3.5 tons of tea.",
    "The harbor froze in the coldest winter, and the ferries stopped for a week.",
    "Children raced paper boats along the harbor wall every Sunday afternoon.",
]
VOCABULARY = sorted({w.strip(".,").lower() for c in CHUNKS for w in c.split()} | {"zebra", "the"})


@pytest.fixture(
    params=["fake", pytest.param("onnx", marks=[pytest.mark.embedder, pytest.mark.slow])]
)
def embedder(request: pytest.FixtureRequest, fake_embedder: FakeEmbedder) -> Embedder:
    """The embedder under the dense side: the fake, or the product's default."""
    if request.param == "fake":
        return fake_embedder
    product: Embedder = request.getfixturevalue("product_embedder")
    return product


@pytest.fixture
def store(isolated_home: Path, embedder: Embedder) -> Iterator[IndexStore]:
    """The conftest's store, on the embedder this test runs with."""
    opened = IndexStore(isolated_home, ChunkEncoder(embedder), batch_chunks=2)
    yield opened
    opened.close()


@pytest.fixture
def ready(library: Library, store: IndexStore, add_document: AddDocument) -> Searcher:
    add_document(CHUNKS, title="harbor")
    add_document(["A single chunk about a zebra crossing the savanna at dawn."], title="zebra")
    searcher = Searcher(library, store)
    list(searcher.prepare())
    return searcher


def assert_well_formed(hits: list[Hit], k: int) -> None:
    assert len(hits) <= k
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    scores = [h.score for h in hits]
    assert all(a >= b for a, b in itertools.pairwise(scores))
    keys = [(h.document_id, h.ordinal) for h in hits]
    assert len(keys) == len(set(keys))
    for hit in hits:
        assert hit.chunk.ordinal == hit.ordinal
        assert hit.scores and hit.ranks
        assert set(hit.scores) == set(hit.ranks) <= {"bm25", "dense"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", ["", "   ", "?!", "\n\t"])
def test_an_empty_query_finds_nothing(ready: Searcher, mode: SearchMode, query: str) -> None:
    assert ready.search(query, k=5, mode=mode) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_stopword_query(ready: Searcher, mode: SearchMode) -> None:
    hits = ready.search("what is it that they were doing there", k=3, mode=mode)
    if mode is SearchMode.BM25:
        assert hits == []  # nothing to score, not everything at score 0
    else:
        # Dense (and so hybrid) still read it by meaning: a well-formed list, dense only.
        assert len(hits) == 3
        assert_well_formed(hits, 3)
        assert all(set(h.scores) == {"dense"} for h in hits)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [0, -1, -100])
def test_k_not_positive_finds_nothing(ready: Searcher, mode: SearchMode, k: int) -> None:
    assert ready.search("harbor", k=k, mode=mode) == []


@pytest.mark.parametrize("mode", MODES)
def test_k_beyond_the_corpus_gives_every_chunk_once(
    ready: Searcher, library: Library, mode: SearchMode
) -> None:
    harbor = next(d.id for d in library.documents() if d.title == "harbor")
    hits = ready.search("harbor", k=100, mode=mode, document_ids=[harbor])
    assert sorted(h.ordinal for h in hits) == list(range(len(CHUNKS)))
    assert_well_formed(hits, 100)


@pytest.mark.parametrize("mode", MODES)
def test_a_document_with_one_chunk(ready: Searcher, library: Library, mode: SearchMode) -> None:
    zebra = next(d.id for d in library.documents() if d.title == "zebra")
    hits = ready.search("zebra at dawn", k=10, mode=mode, document_ids=[zebra])
    assert [(h.document_id, h.ordinal, h.rank) for h in hits] == [(zebra, 0, 1)]
    assert hits[0].score > 0


@pytest.mark.parametrize("mode", MODES)
def test_the_matching_chunk_comes_first(ready: Searcher, mode: SearchMode) -> None:
    hits = ready.search("lighthouse keeper lamp", k=3, mode=mode)
    assert hits[0].chunk.text == CHUNKS[1]
    assert_well_formed(hits, 3)


@pytest.mark.parametrize("mode", MODES)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(words=st.lists(st.sampled_from(VOCABULARY), max_size=6), k=st.integers(-2, 12))
def test_any_query_gives_a_well_formed_list(
    ready: Searcher, mode: SearchMode, words: list[str], k: int
) -> None:
    hits = ready.search(" ".join(words), k=k, mode=mode)
    assert_well_formed(hits, max(k, 0))
