from __future__ import annotations

import numpy as np
import pytest

from retrieval.dense import DenseIndex


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    rows = rng.normal(size=(n, d)).astype(np.float32)
    normalized: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalized


@pytest.mark.parametrize("seed", range(5))
def test_a_chunk_scores_as_its_best_row_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows_per_chunk = rng.integers(1, 6, size=30)
    owners = np.repeat(np.arange(30), rows_per_chunk)
    vectors = unit_rows(rng, len(owners), 16)
    query = unit_rows(rng, 1, 16)[0]
    best = np.full(30, -np.inf)
    np.maximum.at(best, owners, vectors @ query)
    expected = np.argsort(-best, kind="stable")
    index = DenseIndex(vectors, owners, 30)
    for k in (1, 3, 10, 30, 100):
        hits = index.search(query, k)
        assert [row for row, _ in hits] == expected[: min(k, 30)].tolist()
        np.testing.assert_allclose([s for _, s in hits], best[expected[: min(k, 30)]], rtol=1e-5)


def test_empty_and_nonpositive() -> None:
    index = DenseIndex(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64), 0)
    assert index.search(np.ones(4, dtype=np.float32), 5) == []
    one = DenseIndex(np.eye(4, dtype=np.float32)[:1], np.zeros(1, dtype=np.int64), 1)
    assert one.search(np.eye(4, dtype=np.float32)[0], 0) == []
    ((row, score),) = one.search(np.eye(4, dtype=np.float32)[0], 3)
    assert row == 0
    assert score == pytest.approx(1.0)


def test_rows_need_owners() -> None:
    with pytest.raises(ValueError, match="one owner per row"):
        DenseIndex(np.zeros((3, 4), dtype=np.float32), np.zeros(2, dtype=np.int64), 1)
