"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009), as a pure function.

Each item scores the sum over the lists it appears in of 1 / (k + rank), ranks counting from 1.
RRF needs no score calibration, which is why it suits BM25 scores (unbounded, corpus
dependent) next to cosine similarities; k = 60 is the paper's value and damps the weight of
any single list's top ranks.

It does not retrieve, and does not cut the fused list to a size (the caller does).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

RRF_K = 60

Key = TypeVar("Key", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Key]], k: int = RRF_K
) -> list[tuple[Key, float]]:
    """Fuse ranked lists (best first, named by retriever) into (item, score), best first.

    An item repeated within one list counts at its first (best) place only. Ties are broken
    by the item's best rank in any list, then by first appearance (lists in the given order),
    so the result is deterministic.
    """
    if k < 0:
        raise ValueError(f"the RRF constant must not be negative, got {k}")
    scores: dict[Key, float] = {}
    best_rank: dict[Key, int] = {}
    for ranking in rankings.values():
        seen: set[Key] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    first_seen = {item: index for index, item in enumerate(scores)}
    ordered = sorted(scores, key=lambda item: (-scores[item], best_rank[item], first_seen[item]))
    return [(item, scores[item]) for item in ordered]
