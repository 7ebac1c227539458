"""The hybrid fusion function: a convex combination of BM25 scaled by its best score and the
cosine min-max scaled over its candidates (pure logic, no index)."""

from __future__ import annotations

import math
import random

import pytest

from retrieval.fusion import BM25_WEIGHT, convex_combination, min_max, scaled_by_max


def order(fused: list[tuple[str, float]]) -> list[str]:
    return [item for item, _ in fused]


def test_hand_computed_example() -> None:
    fused = convex_combination(
        [("a", 8.0), ("b", 4.0), ("c", 2.0)], [("b", 0.7), ("d", 0.6), ("a", 0.5)], 0.6
    )
    # BM25 / 8: a 1, b 0.5, c 0.25.   cosine min-max over 0.5..0.7: b 1, d 0.5, a 0.
    # a 0.6        b 0.3 + 0.4 = 0.7        c 0.15        d 0.4 * 0.5 = 0.2
    assert order(fused) == ["b", "a", "d", "c"]
    assert dict(fused) == pytest.approx({"b": 0.7, "a": 0.6, "d": 0.2, "c": 0.15})


def test_the_default_weight_is_the_documented_one() -> None:
    assert BM25_WEIGHT == 0.6
    bm25, dense = [("a", 8.0), ("b", 4.0)], [("b", 0.7), ("a", 0.5)]
    assert convex_combination(bm25, dense) == convex_combination(bm25, dense, 0.6)
    assert convex_combination(bm25, dense) != convex_combination(bm25, dense, 0.5)


def test_a_clear_bm25_winner_keeps_its_place_against_a_narrow_dense_winner() -> None:
    # The case RRF got wrong: x is far ahead by BM25 and third by a hair in dense; y is
    # second by BM25 and first in dense. RRF: y 1/62 + 1/61 > x 1/61 + 1/63.
    bm25 = [("x", 10.0), ("y", 5.0), ("z", 4.0)]
    dense = [("y", 0.60), ("w", 0.59), ("x", 0.58), ("z", 0.40)]
    fused = convex_combination(bm25, dense)
    assert order(fused)[:2] == ["x", "y"]
    assert dict(fused)["x"] == pytest.approx(0.6 + 0.4 * 0.9)
    assert dict(fused)["y"] == pytest.approx(0.3 + 0.4)


def test_agreement_beats_a_single_retrievers_favourite() -> None:
    # b is a close second in both lists; a and c are each one list's top only.
    bm25 = [("a", 10.0), ("b", 9.0), ("d", 1.0)]
    dense = [("c", 0.80), ("b", 0.78), ("e", 0.40)]
    assert order(convex_combination(bm25, dense))[0] == "b"


def test_items_in_only_one_list_get_nothing_from_the_other() -> None:
    fused = dict(convex_combination([("p", 4.0), ("q", 2.0)], [("r", 0.9), ("s", 0.3)], 0.6))
    assert fused == pytest.approx({"p": 0.6, "q": 0.3, "r": 0.4, "s": 0.0})


def test_an_item_dense_did_not_list_scores_as_its_weakest_candidate() -> None:
    # "m" is BM25-only, "n" is the last dense candidate; their dense parts are both 0, so
    # with equal BM25 scores they tie and the better place decides.
    fused = convex_combination(
        [("m", 3.0), ("n", 3.0)], [("top", 0.9), ("n", 0.2)], bm25_weight=0.5
    )
    assert dict(fused)["m"] == dict(fused)["n"] == pytest.approx(0.5)


def test_ties_break_by_best_place_then_bm25_first() -> None:
    # p (BM25 only) and q (dense only) both score 0.5, both first in their list: BM25's first.
    fused = convex_combination([("p", 2.0)], [("q", 0.9)], bm25_weight=0.5)
    assert fused == [("p", 0.5), ("q", 0.5)]
    fused = convex_combination([("q", 2.0)], [("p", 0.9)], bm25_weight=0.5)
    assert order(fused) == ["q", "p"]
    # Equal fused scores, different best places: the better place first.
    fused = convex_combination([("a", 1.0), ("b", 1.0), ("c", 1.0)], [], 0.6)
    assert order(fused) == ["a", "b", "c"]
    fused = convex_combination([("x", 2.0), ("y", 2.0)], [("y", 0.5), ("x", 0.5)], 0.6)
    assert fused[0][1] == fused[1][1]
    assert order(fused) == ["x", "y"]  # both placed first somewhere; x was seen first


def test_one_list_empty_keeps_the_others_order() -> None:
    # A stopword-only query: BM25 finds nothing, dense still answers.
    dense = [("c", 0.5), ("a", 0.4), ("b", -0.1)]
    fused = convex_combination([], dense, 0.6)
    assert order(fused) == ["c", "a", "b"]
    assert dict(fused) == pytest.approx({"c": 0.4, "a": 0.4 * 0.5 / 0.6, "b": 0.0})
    fused = convex_combination([("z", 6.0), ("y", 3.0)], [], 0.6)
    assert order(fused) == ["z", "y"]
    assert [score for _, score in fused] == pytest.approx([0.6, 0.3])
    assert convex_combination([], [], 0.6) == []


def test_the_whole_union_comes_back_uncut() -> None:
    bm25 = [(f"b{i}", float(40 - i)) for i in range(40)]
    dense = [(f"d{i}", 1.0 - i / 100) for i in range(30)] + [("b0", 0.1)]
    fused = convex_combination(bm25, dense)
    assert len(fused) == 70
    assert {item for item, _ in fused} == {item for item, _ in bm25 + dense}


def test_duplicates_count_once_at_their_first_place() -> None:
    fused = dict(convex_combination([("a", 4.0), ("b", 2.0), ("a", 1.0)], [], 1.0))
    assert fused == pytest.approx({"a": 1.0, "b": 0.5})
    fused = dict(convex_combination([], [("a", 0.9), ("b", 0.1), ("a", 0.0)], 0.0))
    assert fused == pytest.approx({"a": 1.0, "b": 0.0})


def test_the_weights_ends_give_one_retrievers_order_first() -> None:
    bm25 = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    dense = [("c", 0.9), ("d", 0.8), ("a", 0.1)]
    # All BM25: its order, then dense-only d (0 from BM25, placed 2nd by dense).
    assert order(convex_combination(bm25, dense, 1.0)) == ["a", "b", "c", "d"]
    # All dense: its order; a is dense's weakest (0) and ties b (BM25 only), a placed first.
    assert order(convex_combination(bm25, dense, 0.0)) == ["c", "d", "a", "b"]


@pytest.mark.parametrize("weight", [-0.1, 1.1, math.nan])
def test_a_weight_outside_zero_to_one_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        convex_combination([("a", 1.0)], [("a", 0.5)], weight)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_score_that_is_not_finite_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        convex_combination([("a", 1.0)], [("a", bad)])
    with pytest.raises(ValueError, match="finite"):
        convex_combination([("a", bad)], [])


def test_fused_scores_lie_in_zero_to_one_and_do_not_increase() -> None:
    rng = random.Random(7)
    for _ in range(200):
        items = [str(i) for i in range(12)]
        bm25 = sorted(
            ((i, rng.uniform(0.1, 20)) for i in rng.sample(items, rng.randint(0, 8))),
            key=lambda pair: -pair[1],
        )
        dense = sorted(
            ((i, rng.uniform(-1, 1)) for i in rng.sample(items, rng.randint(0, 8))),
            key=lambda pair: -pair[1],
        )
        scores = [score for _, score in convex_combination(bm25, dense, rng.random())]
        assert all(0.0 <= s <= 1.0 + 1e-12 for s in scores)
        assert scores == sorted(scores, reverse=True)


def test_scaled_by_max() -> None:
    assert scaled_by_max([8.0, 4.0, 2.0]) == [1.0, 0.5, 0.25]
    assert scaled_by_max([3.0]) == [1.0]
    assert scaled_by_max([2.5, 2.5]) == [1.0, 1.0]  # all equal: all the best
    assert scaled_by_max([0.0, 0.0]) == [0.0, 0.0]  # nothing matched: nothing scores
    assert scaled_by_max([]) == []
    with pytest.raises(ValueError, match="must not be negative"):
        scaled_by_max([1.0, -0.5])


def test_min_max() -> None:
    assert min_max([0.7, 0.6, 0.5]) == pytest.approx([1.0, 0.5, 0.0])
    assert min_max([-0.2, -0.5, 0.1]) == pytest.approx([0.5, 0.0, 1.0])  # negative cosines
    assert min_max([0.4]) == [1.0]  # a single candidate is the best one
    assert min_max([0.3, 0.3, 0.3]) == [1.0, 1.0, 1.0]  # all equal: all the best
    assert min_max([]) == []


def test_a_single_or_all_equal_dense_candidates_get_the_full_dense_weight() -> None:
    fused = convex_combination([], [("only", 0.2)], 0.6)
    assert order(fused) == ["only"]
    assert fused[0][1] == pytest.approx(0.4)
    fused = convex_combination([("a", 1.0)], [("a", -0.3), ("b", -0.3)], 0.6)
    assert order(fused) == ["a", "b"]
    assert [score for _, score in fused] == pytest.approx([1.0, 0.4])
