"""Search one document, several, or the whole library: BM25, dense, or both fused.

`Searcher.prepare` makes sure the indexes a search needs exist and are current (yielding
embedding progress, and the reason for any rebuild); `Searcher.search` answers a query with
ranked `Hit`s. For several documents the per-document indexes are merged into one corpus:

- BM25 is rebuilt over the union of the documents' chunk terms (from the stored terms, no
  re-tokenizing). BM25 scores of separate indexes are not comparable, since idf and the mean
  chunk length are corpus statistics, and rank-fusing per-document lists would not fix that:
  it would put every document's best chunk at rank 1, however weak its match. Over the union,
  a term's rarity is judged across everything searched, which is what a ranking needs.
- Dense vectors are cosine similarities, comparable across documents, so they are stacked.

A hybrid search takes `candidate_depth(k)` candidates from each retriever, fuses their
scores (fusion.py: 0.6 x BM25 over the best BM25 score, plus 0.4 x the cosine min-max scaled
over the dense candidates) and keeps the top k. Scores, not ranks, are fused so that BM25's
clear winner is not displaced by dense's narrow one, while a chunk both retrievers list
gains from both. A query BM25 finds nothing for (stopwords only, or no word of it in the
text) is answered by the dense half alone, in dense order.

It does not build indexes itself (index_store.py does) nor decide how many hits a prompt gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import Chunk
from retrieval.bm25 import BM25Index
from retrieval.dense import DenseIndex
from retrieval.fusion import convex_combination
from retrieval.index_store import DocumentIndex, IndexStore
from retrieval.text_tokens import terms
from retrieval.types import Hit, IndexProgress, SearchMode

# Union corpora kept ready for repeated searches over the same documents.
_CORPORA_KEPT = 4


def candidate_depth(k: int) -> int:
    """How many candidates each retriever gives the fusion for a top-k hybrid search."""
    return max(k * 4, 20)


@dataclass
class _Corpus:
    """The chunks of a set of documents in one row order, with their retrievers built lazily."""

    entries: list[tuple[str, Chunk]]
    indexes: list[DocumentIndex]
    _bm25: BM25Index | None = field(default=None, repr=False)
    _dense: DenseIndex | None = field(default=None, repr=False)

    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = BM25Index([t for index in self.indexes for t in index.terms])
        return self._bm25

    @property
    def dense(self) -> DenseIndex:
        if self._dense is None:
            # Each document's rows name its chunks 0..n-1; in the union they follow on.
            starts = np.cumsum([0] + [len(index.chunks) for index in self.indexes])[:-1]
            owners = [i.vector_chunks + s for i, s in zip(self.indexes, starts, strict=True)]
            self._dense = DenseIndex(
                np.concatenate([index.vectors for index in self.indexes]),
                np.concatenate(owners),
                len(self.entries),
            )
        return self._dense


class Searcher:
    """Queries over the library's documents. Safe to share across threads."""

    def __init__(self, library: Library, store: IndexStore) -> None:
        self.library = library
        self.store = store
        self._lock = threading.RLock()
        self._indexes: dict[str, DocumentIndex] = {}
        self._corpora: OrderedDict[tuple[str, ...], _Corpus] = OrderedDict()

    def prepare(
        self, document_ids: Sequence[str] | None = None
    ) -> Generator[IndexProgress, None, None]:
        """Build or rebuild the indexes of these documents (default: all) where needed.

        An index already loaded stays loaded: it was checked when it was loaded, and
        `forget` (on removal or re-indexing) is what drops it. So asking question after
        question reads no index files again.
        """
        for document_id in self._resolve(document_ids):
            with self._lock:
                if document_id in self._indexes:
                    continue
            self.forget(document_id)
            index = yield from self.store.ensure(self.library, document_id)
            with self._lock:
                self._indexes[document_id] = index

    def chunk_terms(self, document_id: str) -> tuple[tuple[str, ...], ...]:
        """Each chunk's BM25 terms, in chunk order, from the document's index (loaded if it
        is not yet; `StaleIndexError` if it is missing or stale: run `prepare`)."""
        with self._lock:
            return self._index(document_id).terms

    def forget(self, document_id: str) -> None:
        """Drop what is held in memory for a document (after it is removed or re-indexed)."""
        with self._lock:
            self._indexes.pop(document_id, None)
            for key in [key for key in self._corpora if document_id in key]:
                del self._corpora[key]

    def search(
        self,
        query: str,
        k: int = 5,
        mode: SearchMode = SearchMode.HYBRID,
        document_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The top `k` chunks for `query` in these documents (default: the whole library).

        Ranks run 1..n, scores do not increase, no chunk appears twice. A query without a
        word or number, or k <= 0, gives no hits; so does a BM25 query of stopwords only
        (dense and hybrid still answer it by meaning: "to be or not to be"). Raises
        `StaleIndexError` for a document whose index is missing or stale: run `prepare`.
        """
        mode = SearchMode(mode)  # a plain "bm25" from a caller works too
        if k <= 0 or not terms(query):
            return []
        corpus = self._corpus(self._resolve(document_ids))
        if not corpus.entries:
            return []
        if mode is SearchMode.BM25:
            return _single(corpus, SearchMode.BM25, corpus.bm25.search(query, k))
        query_vector = self.store.encoder.encode_query(query)
        if mode is SearchMode.DENSE:
            return _single(corpus, SearchMode.DENSE, corpus.dense.search(query_vector, k))
        depth = candidate_depth(k)
        found = {
            SearchMode.BM25: corpus.bm25.search(query, depth),
            SearchMode.DENSE: corpus.dense.search(query_vector, depth),
        }
        fused = convex_combination(found[SearchMode.BM25], found[SearchMode.DENSE])
        scores = {m: dict(rows) for m, rows in found.items()}
        ranks = {m: {row: r for r, (row, _) in enumerate(rows, 1)} for m, rows in found.items()}
        return [
            _hit(
                corpus,
                row,
                rank,
                score,
                scores={m: scores[m][row] for m in found if row in scores[m]},
                ranks={m: ranks[m][row] for m in found if row in ranks[m]},
            )
            for rank, (row, score) in enumerate(fused[:k], start=1)
        ]

    def _resolve(self, document_ids: Sequence[str] | None) -> tuple[str, ...]:
        if document_ids is None:
            return tuple(d.id for d in self.library.documents())
        unique = tuple(dict.fromkeys(document_ids))
        for document_id in unique:
            if not self.library.has(document_id):
                raise DocumentNotFoundError(
                    f"no document with id {document_id}; `longread list` shows what is in"
                    " the library"
                )
        return unique

    def _corpus(self, document_ids: tuple[str, ...]) -> _Corpus:
        key = tuple(sorted(document_ids))
        with self._lock:
            corpus = self._corpora.get(key)
            if corpus is not None:
                self._corpora.move_to_end(key)
                return corpus
            indexes = [self._index(document_id) for document_id in key]
            entries = [(index.document_id, chunk) for index in indexes for chunk in index.chunks]
            corpus = _Corpus(entries=entries, indexes=indexes)
            self._corpora[key] = corpus
            while len(self._corpora) > _CORPORA_KEPT:
                self._corpora.popitem(last=False)
            return corpus

    def _index(self, document_id: str) -> DocumentIndex:
        index = self._indexes.get(document_id)
        if index is None:
            index = self.store.load(self.library, document_id)
            self._indexes[document_id] = index
        return index


def _single(corpus: _Corpus, mode: SearchMode, rows: list[tuple[int, float]]) -> list[Hit]:
    return [
        _hit(corpus, row, rank, score, scores={mode: score}, ranks={mode: rank})
        for rank, (row, score) in enumerate(rows, start=1)
    ]


def _hit(
    corpus: _Corpus,
    row: int,
    rank: int,
    score: float,
    scores: dict[str, float],
    ranks: dict[str, int],
) -> Hit:
    document_id, chunk = corpus.entries[row]
    return Hit(document_id, chunk.ordinal, score, rank, chunk, scores, ranks)
