"""Exact inner-product search over L2-normalized vectors with faiss (IndexFlatIP).

On unit vectors the inner product is the cosine similarity. A chunk may own several rows
(one per window, under MAX pooling); it scores as its best row. A flat index is exact and
needs no training: a book is a few hundred chunks and a library a few thousand, where brute
force takes about a millisecond. This is the only module that imports faiss, lazily.

It does not embed (windows.py does) and does not store vectors (index_store.py does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class DenseIndex:
    """Rows of vectors, each owned by a chunk (its position in a list of `chunk_count`)."""

    def __init__(
        self, vectors: NDArray[np.float32], owners: NDArray[np.int64], chunk_count: int
    ) -> None:
        if vectors.ndim != 2 or owners.shape != (vectors.shape[0],):
            raise ValueError(f"need one owner per row, got {owners.shape} for {vectors.shape}")
        import faiss  # deferred: importing faiss costs ~0.3 s that `longread --help` should not pay

        self.size = chunk_count
        self.dimension = int(vectors.shape[1])
        self._owners = owners
        # A chunk's best row is among the top (k * most rows any chunk has): enough rows to
        # hold k distinct chunks, so the top k by best row come out exact.
        self._rows_per_chunk = int(np.bincount(owners).max()) if owners.size else 1
        self._index: Any = faiss.IndexFlatIP(self.dimension)
        if vectors.shape[0]:
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, query_vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Up to `k` (chunk, cosine of its best row) pairs, best first; every chunk competes."""
        k = min(k, self.size)
        if k <= 0:
            return []
        depth = min(k * self._rows_per_chunk, int(self._index.ntotal))
        query = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, self.dimension)
        scores, rows = self._index.search(query, depth)
        found: dict[int, float] = {}
        # Rows come best first, so a chunk's first row is its best.
        for row, score in zip(rows[0], scores[0], strict=True):
            if row >= 0:
                found.setdefault(int(self._owners[row]), float(score))
                if len(found) == k:
                    break
        return list(found.items())
