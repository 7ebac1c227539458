from __future__ import annotations

from retrieval.bm25 import BM25Index
from retrieval.text_tokens import tokenize


def index_of(*texts: str) -> BM25Index:
    return BM25Index([tokenize(t) for t in texts])


def test_a_term_in_most_chunks_still_counts_for_the_chunks_that_have_it() -> None:
    # rank-bm25's own idf is negative here (3 of 4 chunks), which would rank the chunk
    # without the word first.
    index = index_of("the castle gate", "castle walls", "a castle moat", "green fields")
    rows = [row for row, _ in index.search("castle", 10)]
    assert sorted(rows) == [0, 1, 2]


def test_a_one_chunk_corpus_finds_its_chunk() -> None:
    hits = index_of("a zebra at dawn").search("zebra", 5)
    assert [row for row, _ in hits] == [0]
    assert hits[0][1] > 0


def test_only_matching_chunks_and_best_first() -> None:
    index = index_of("ghost ghost ghost", "no match here", "one ghost", "ghost story night")
    hits = index.search("ghost night", 10)
    assert hits[0][0] == 3
    assert {row for row, _ in hits} == {0, 2, 3}
    assert all(score > 0 for _, score in hits)


def test_ties_keep_chunk_order() -> None:
    hits = index_of("red apple", "red apple", "red apple").search("apple", 2)
    assert [row for row, _ in hits] == [0, 1]


def test_numbers_match_across_spellings() -> None:
    hits = index_of("they paid 1,250 pounds", "they paid 1 pound").search("1250", 5)
    assert [row for row, _ in hits] == [0]


def test_nothing_to_search_or_nothing_to_search_for() -> None:
    assert index_of().search("ghost", 5) == []
    assert index_of("the and of", "it was").search("was", 5) == []
    assert index_of("ghost").search("what is it", 5) == []
    assert index_of("ghost").search("unknown", 5) == []
    assert index_of("ghost").search("ghost", 0) == []
