"""Okapi BM25 over pre-tokenized chunks (rank-bm25), returning only chunks that match.

`BM25Index` takes each chunk's terms (text_tokens.tokenize) and scores a query's terms with
BM25Okapi (k1 1.5, b 0.75), but with Lucene's idf, log(1 + (N - n + 0.5) / (n + 0.5)), instead
of rank-bm25's, which goes negative for a term in more than half the chunks (and for every term
of a one-chunk document) and then ranks the chunks that contain the query word *below* those
that do not. With a positive idf, a score is above zero exactly when the chunk holds a query
term, so chunks without any are left out rather than listed with score 0.

It does not tokenize documents (the index store does, once) nor merge across indexes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rank_bm25 import BM25Okapi

from retrieval.text_tokens import tokenize


class _LuceneIdfBM25(BM25Okapi):  # type: ignore[misc]  # rank_bm25 is untyped
    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1.0 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


class BM25Index:
    """BM25 over a fixed list of chunks, each given as its terms; rows are list positions."""

    def __init__(self, corpus_terms: Sequence[Sequence[str]]) -> None:
        self.size = len(corpus_terms)
        # rank-bm25 divides by the mean chunk length: with no terms at all there is nothing
        # to find, and no model to build.
        has_terms = any(len(terms) for terms in corpus_terms)
        self._model = _LuceneIdfBM25([list(t) for t in corpus_terms]) if has_terms else None

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to `k` (row, score) pairs, best first, ties by row; only rows that match a term.

        A query of stopwords only has no terms, and so no results.
        """
        terms = tokenize(query)
        if k <= 0 or not terms or self._model is None:
            return []
        scores = np.asarray(self._model.get_scores(terms), dtype=np.float64)
        matching = np.flatnonzero(scores > 0)
        # Stable sort on the negated score keeps equal scores in chunk order (deterministic).
        order = matching[np.argsort(-scores[matching], kind="stable")][:k]
        return [(int(row), float(scores[row])) for row in order]
