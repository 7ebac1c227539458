"""Hybrid fusion: a convex combination of normalized BM25 and cosine scores, as a pure function.

    fused = 0.6 * bm25 / max(bm25) + 0.4 * (cos - min(cos)) / (max(cos) - min(cos))

with max and min taken over the candidates each retriever gave; a chunk that only one
retriever found gets 0 from the other. This is the convex combination of Bruch, Gai & Ingber
("An Analysis of Fusion Functions for Hybrid Retrieval", 2022), which they found to beat
reciprocal rank fusion (RRF) in and out of domain, and to need only a small set of examples
to set its one weight.

Why not RRF. RRF (1 / (60 + rank), summed) throws the scores away: BM25's top chunk, far ahead
of the rest, weighs no more than dense's top chunk, a hair ahead of its next ones. On the dev
LaRA location questions BM25 is the better retriever at rank 1, and RRF let the weaker
retriever's pick displace BM25's (table below). Scores say how far ahead a chunk is; ranks do
not.

Normalization, each retriever onto [0, 1] with its best candidate at 1:
- BM25 is divided by its best candidate score. Its true lower bound is 0 (a chunk without any
  query term; BM25Index lists only chunks above it), so this is the paper's theoretical
  min-max: a chunk BM25 did not list gets 0, the score of a chunk without the query's words.
- Cosine is min-max scaled over its candidates. The theoretical lower bound, -1, is far from
  what this embedder gives: on the dev books no chunk scored below 0, the 20 candidates lie
  in 0.22-0.78, and the first is only 0.05-0.24 above the 20th. Against -1 (or 0) every
  candidate would land near 1 and the dense half would barely break ties, with a cliff down
  to 0 for a chunk just past the candidate cut; that cliff makes the ranking depend on how
  many candidates were taken (lower bound 0, int8 embedder: at weights 0.4-0.8 a gold
  passage drops out of the top 5 with 40 candidates, not with 20). Against the weakest
  candidate, a chunk dense did not list gets 0, the same as the last chunk it did list:
  the most a chunk below the cut can have scored.
- All-equal scores (a single candidate, say) all normalize to 1: each is as good as the best.

The weight. Chosen on the dev LaRA 32k location questions (15), hit@k over one book each, from
a 0.1 grid; the quality test searches top 5, so 20 candidates per retriever (candidate_depth):

                          onnx int8 (opt-in)        torch fp32 (= onnx fp32, the default)
    hit@                  1     3     5             1     3     5
    bm25                  0.933 0.933 1.000         0.933 0.933 1.000
    dense                 0.600 0.933 1.000         0.667 0.933 1.000
    rrf, k=60             0.733 1.000 1.000         0.800 1.000 1.000
    rrf, bm25 x2          0.933 1.000 1.000         0.933 1.000 1.000
    rrf, bm25 x3          0.933 0.933 1.000         0.933 1.000 1.000
    convex, bm25 0.3      0.800 0.933 1.000         0.733 1.000 1.000
    convex, bm25 0.4      0.867 1.000 1.000         0.867 1.000 1.000
    convex, bm25 0.5      0.933 1.000 1.000         1.000 1.000 1.000
    convex, bm25 0.6  <-  0.933 1.000 1.000         0.933 1.000 1.000
    convex, bm25 0.7      0.933 1.000 1.000         0.933 1.000 1.000
    convex, bm25 0.8      0.933 0.933 0.933         0.933 1.000 1.000
    convex, bm25 0.9      0.933 0.933 1.000         0.933 0.933 1.000

At 0.5-0.7 hybrid is at least as good as each retriever at every k, with both embedders, and
better at hit@3 (the one question BM25 ranks 5th comes up); 0.4 loses hit@1, 0.8 hit@5 (int8).
On a 0.01 grid, the weights that keep "at least as good everywhere, better somewhere" for
both embedders with 20, 32 (a RAG answer's top 8) and 40 candidates are 0.46-0.67; 0.6 is
inside with room on both sides, and leans to BM25, the stronger retriever here, without
shutting dense out. With the cosines jittered (normal noise of sd 0.005 or 0.01, 60 draws,
both embedders, 20 and 32 candidates; int8 and fp32 differ by sd 0.015, though not at
random), 0.6 stayed at least as good as each retriever at every k in 92-100% of runs, 0.5
in 56-92%, RRF with BM25 x2 in 40-62%, plain RRF in 3-5%. One parameter, nothing per question.

It does not retrieve, and does not cut the fused list to a size (the caller does).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

# BM25's share of the fused score; the dense cosine gets the rest (module docstring).
BM25_WEIGHT = 0.6

Key = TypeVar("Key", bound=Hashable)


def scaled_by_max(scores: Sequence[float]) -> list[float]:
    """Scores with a lower bound of 0 (BM25), divided by the largest: the best is 1.

    All zeros stay 0 (nothing matched). A negative score breaks the lower bound: ValueError.
    """
    if any(score < 0 for score in scores):
        raise ValueError(f"scores scaled by their maximum must not be negative, got {min(scores)}")
    top = max(scores, default=0.0)
    return [score / top if top > 0 else 0.0 for score in scores]


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores (cosines, possibly negative) mapped onto [0, 1]: the smallest 0, the largest 1.

    Equal scores (one alone, say) all map to 1: each is as good as the best.
    """
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high <= low:
        return [1.0] * len(scores)
    return [(score - low) / (high - low) for score in scores]


def convex_combination(
    bm25: Sequence[tuple[Key, float]],
    dense: Sequence[tuple[Key, float]],
    bm25_weight: float = BM25_WEIGHT,
) -> list[tuple[Key, float]]:
    """Fuse two retrievers' candidates, (item, score) best first, into (item, score), best first.

    Every item of either list comes back (no cut), scored in [0, 1] as `bm25_weight` times
    its BM25 score over the best BM25 score, plus the rest times its cosine min-max scaled
    over the dense candidates; a list an item is missing from adds 0. With one list empty
    (a stopword-only query gives BM25 nothing) the other's order is kept. An item listed twice
    in one list counts at its first place only. Ties are broken by the item's best place in
    either list, then by first appearance (BM25's list first), so the result is deterministic.
    """
    if not 0.0 <= bm25_weight <= 1.0:  # also refuses NaN
        raise ValueError(f"the BM25 weight must be between 0 and 1, got {bm25_weight}")
    weights = (bm25_weight, 1.0 - bm25_weight)
    scores: dict[Key, float] = {}
    best_place: dict[Key, int] = {}
    for weight, candidates, normalize in zip(
        weights, (bm25, dense), (scaled_by_max, min_max), strict=True
    ):
        first = _first_places(candidates)
        for item, raw in first:
            if not math.isfinite(raw):
                raise ValueError(f"candidate {item!r} has no finite score: {raw}")
        normalized = normalize([score for _, score in first])
        for place, ((item, _), value) in enumerate(zip(first, normalized, strict=True)):
            scores[item] = scores.get(item, 0.0) + weight * value
            best_place[item] = min(best_place.get(item, place), place)
    first_seen = {item: index for index, item in enumerate(scores)}
    ordered = sorted(scores, key=lambda item: (-scores[item], best_place[item], first_seen[item]))
    return [(item, scores[item]) for item in ordered]


def _first_places(candidates: Sequence[tuple[Key, float]]) -> list[tuple[Key, float]]:
    """The candidates with any repeat of an item dropped (its first place is its best)."""
    seen: set[Key] = set()
    kept = []
    for item, score in candidates:
        if item not in seen:
            seen.add(item)
            kept.append((item, score))
    return kept
