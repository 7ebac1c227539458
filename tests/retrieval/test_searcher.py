from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from retrieval.errors import StaleIndexError
from retrieval.fusion import BM25_WEIGHT
from retrieval.hybrid import Searcher, candidate_depth
from retrieval.index_store import IndexStore
from retrieval.types import SearchMode
from retrieval.windows import ChunkEncoder
from tests.fakes import FakeEmbedder
from tests.retrieval.conftest import AddDocument

MOON = ["The moon rose over the quiet lake.", "Owls hunted mice in the barn.", "Frost came."]
SEA = ["Whales sang far below the ship.", "The moon pulled the tide across the bay."]
DESERT = ["A zebra zebra zebra herd crossed the dry river.", "Camels rested by the well."]


@pytest.fixture
def docs(add_document: AddDocument) -> dict[str, str]:
    return {
        "moon": add_document(MOON, title="moon"),
        "sea": add_document(SEA, title="sea"),
        "desert": add_document(DESERT, title="desert"),
    }


def test_search_needs_prepared_indexes(searcher: Searcher, docs: dict[str, str]) -> None:
    with pytest.raises(StaleIndexError, match="not been built yet"):
        searcher.search("moon", document_ids=[docs["moon"]])
    events = list(searcher.prepare([docs["moon"]]))
    assert events[0].reason == "it has not been built yet"
    assert searcher.search("moon", document_ids=[docs["moon"]])


def test_prepare_defaults_to_the_whole_library(
    searcher: Searcher, docs: dict[str, str], store: IndexStore, library: Library
) -> None:
    events = list(searcher.prepare())
    assert {e.document_id for e in events} == set(docs.values())
    assert all(store.stale_reason(library, d) is None for d in docs.values())
    assert list(searcher.prepare()) == []  # all current


def test_one_several_or_all_documents(searcher: Searcher, docs: dict[str, str]) -> None:
    list(searcher.prepare())
    one = searcher.search("moon", k=10, mode=SearchMode.BM25, document_ids=[docs["moon"]])
    assert {h.document_id for h in one} == {docs["moon"]}
    two = searcher.search(
        "moon", k=10, mode=SearchMode.BM25, document_ids=[docs["moon"], docs["sea"]]
    )
    assert {(h.document_id, h.ordinal) for h in two} == {(docs["moon"], 0), (docs["sea"], 1)}
    everywhere = searcher.search("moon", k=10, mode=SearchMode.DENSE)
    assert {h.document_id for h in everywhere} == set(docs.values())
    assert len(everywhere) == len(MOON) + len(SEA) + len(DESERT)


def test_bm25_across_documents_is_scored_over_their_union(
    searcher: Searcher, docs: dict[str, str]
) -> None:
    list(searcher.prepare())
    hits = searcher.search("zebra moon", k=10, mode=SearchMode.BM25)
    # One corpus, one idf: "zebra" (rare, three times) outranks "moon" (in two documents).
    assert (hits[0].document_id, hits[0].ordinal) == (docs["desert"], 0)
    assert [h.rank for h in hits] == [1, 2, 3]


def test_hybrid_hits_carry_each_retrievers_rank_and_score(
    searcher: Searcher, docs: dict[str, str]
) -> None:
    list(searcher.prepare())
    hits = searcher.search("owls hunted mice", k=3)
    top = hits[0]
    assert top.chunk.text == MOON[1]
    assert set(top.ranks) == {"bm25", "dense"} and top.ranks["bm25"] == 1
    # The fused score: BM25 over the best BM25 candidate's, cosine min-max over the dense ones.
    depth = candidate_depth(3)
    bm25 = searcher.search("owls hunted mice", k=depth, mode=SearchMode.BM25)
    cosines = [h.score for h in searcher.search("owls hunted mice", k=depth, mode=SearchMode.DENSE)]
    dense_part = (top.scores["dense"] - min(cosines)) / (max(cosines) - min(cosines))
    expected = BM25_WEIGHT * top.scores["bm25"] / bm25[0].score + (1 - BM25_WEIGHT) * dense_part
    assert top.score == pytest.approx(expected)
    assert top.scores["bm25"] > 0
    assert top.scores["dense"] == pytest.approx(
        searcher.search("owls hunted mice", k=1, mode=SearchMode.DENSE)[0].score
    )


def test_candidate_depth() -> None:
    assert candidate_depth(1) == 20
    assert candidate_depth(5) == 20
    assert candidate_depth(10) == 40


def test_unknown_documents_are_named(searcher: Searcher, docs: dict[str, str]) -> None:
    with pytest.raises(DocumentNotFoundError, match="longread list"):
        searcher.search("moon", document_ids=["f" * 64])
    assert searcher.search("moon", document_ids=[]) == []


def test_an_empty_library(searcher: Searcher) -> None:
    assert list(searcher.prepare()) == []
    assert searcher.search("anything") == []


def test_forget_and_rebuild_with_another_embedder(
    isolated_home: Path, library: Library, docs: dict[str, str]
) -> None:
    first = Searcher(library, IndexStore(isolated_home, ChunkEncoder(FakeEmbedder())))
    list(first.prepare())
    assert first.search("moon")
    second = Searcher(library, IndexStore(isolated_home, ChunkEncoder(FakeEmbedder(name="b"))))
    with pytest.raises(StaleIndexError, match="built with embedder fake"):
        second.search("moon")
    events = list(second.prepare([docs["sea"]]))
    assert "built with embedder fake" in (events[0].reason or "")
    assert second.search("moon", document_ids=[docs["sea"]])
    # The first searcher holds its indexes in memory; forgetting makes it look again.
    first.forget(docs["sea"])
    with pytest.raises(StaleIndexError):
        first.search("moon", document_ids=[docs["sea"]])


def test_a_mode_may_be_given_by_name(searcher: Searcher, docs: dict[str, str]) -> None:
    list(searcher.prepare())
    by_name = searcher.search("moon", k=3, mode="bm25")  # type: ignore[arg-type]
    assert by_name == searcher.search("moon", k=3, mode=SearchMode.BM25)
    with pytest.raises(ValueError, match="not a valid SearchMode"):
        searcher.search("moon", mode="fuzzy")  # type: ignore[arg-type]
