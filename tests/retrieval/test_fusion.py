from __future__ import annotations

import pytest

from retrieval.fusion import RRF_K, reciprocal_rank_fusion


def test_hand_computed_example() -> None:
    fused = reciprocal_rank_fusion({"bm25": ["a", "b", "c"], "dense": ["b", "d", "a"]})
    # b: 1/61 + 1/62 = 0.0325225   a: 1/61 + 1/63 = 0.0322665
    # d: 1/62        = 0.0161290   c: 1/63        = 0.0158730
    assert [item for item, _ in fused] == ["b", "a", "d", "c"]
    expected = {"b": 1 / 61 + 1 / 62, "a": 1 / 61 + 1 / 63, "d": 1 / 62, "c": 1 / 63}
    for item, score in fused:
        assert score == pytest.approx(expected[item])
    assert fused[0][1] == pytest.approx(0.0325225, abs=1e-7)


def test_default_constant_is_the_papers() -> None:
    assert RRF_K == 60


def test_ties_break_by_best_rank_then_first_appearance() -> None:
    # x and y score alike (1/61 + 1/62); both were ranked first somewhere, x was seen first.
    fused = reciprocal_rank_fusion({"bm25": ["x", "y"], "dense": ["y", "x"]})
    assert [item for item, _ in fused] == ["x", "y"]
    assert fused[0][1] == fused[1][1]
    # q (rank 2 once) and s (rank 2 once) tie; q's list came first.
    fused = reciprocal_rank_fusion({"bm25": ["p", "q"], "dense": ["r", "s"]})
    assert [item for item, _ in fused] == ["p", "r", "q", "s"]


def test_duplicates_count_once_at_their_best_place() -> None:
    fused = dict(reciprocal_rank_fusion({"one": ["a", "b", "a"]}, k=0))
    assert fused == {"a": 1.0, "b": 0.5}


def test_empty_and_one_sided_inputs() -> None:
    assert reciprocal_rank_fusion({}) == []
    assert reciprocal_rank_fusion({"bm25": [], "dense": []}) == []
    fused = reciprocal_rank_fusion({"bm25": [], "dense": [3, 1, 2]})
    assert [item for item, _ in fused] == [3, 1, 2]


def test_negative_constant_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        reciprocal_rank_fusion({"a": [1]}, k=-1)
