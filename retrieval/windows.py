"""Chunk vectors in which every part of a chunk counts.

An embedder reads at most `max_tokens` word pieces (all-MiniLM-L6-v2: 254 plus [CLS]/[SEP])
and silently drops the rest, so a 600-token chunk embedded whole is judged on its first ~40%.
`ChunkEncoder` cuts each text into windows the embedder reads whole (by the embedder's own
tokenizer, overlapping a little so no sentence is only ever seen cut) and embeds all windows
of a batch of texts in one call. Then, by `Pooling`:

- MAX (the default) keeps every window's vector; a chunk scores as its best window
  ("MaxP", Dai & Callan, SIGIR 2019). A fact in one window is not diluted by the others.
- MEAN averages a chunk's windows, weighted by length, into one renormalized vector.

Windows hold at most 128 word pieces by default (fewer if the embedder reads fewer):
all-MiniLM-L6-v2 was fine-tuned on sequences of at most 128 tokens. On the LaRA location
questions, dense search alone with 128-piece windows and MAX pooling put the gold passage in
the top 5 for 15/15 questions, against 12/15 with MEAN over 254-piece windows and 12/15 with
truncation (tests/retrieval/test_quality.py). The price: a 600-token chunk is ~5 windows, so
embedding takes about 3x as long as truncating. `truncate=True` embeds texts whole, the
naive way, kept so the difference can be measured. A query gets one vector (MEAN if long).

It does not cache (embedding_cache.py does) and does not know about documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from retrieval.embedder import Embedder
from retrieval.types import Pooling

# See the module docstring: the length all-MiniLM-L6-v2 was fine-tuned on.
DEFAULT_WINDOW_TOKENS = 128
# Word pieces shared by consecutive windows: enough to hold most of a sentence cut at the
# boundary in one window or the other, small enough to add few windows.
DEFAULT_OVERLAP = 16
# A window may end early, at a word start, if that keeps it at least this full: cutting
# inside a word would make its text re-tokenize into different (possibly more) pieces.
_MIN_FILL_FOR_WORD_CUT = 0.75


def window_spans(
    spans: Sequence[tuple[int, int]], max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """Character spans of windows of at most `max_tokens` of the given token spans.

    Consecutive windows share about `overlap` tokens, and start and end at word starts
    where there is one nearby. Empty `spans` gives no windows.
    """
    return [(spans[a][0], spans[b - 1][1]) for a, b in _window_ranges(spans, max_tokens, overlap)]


def _window_ranges(
    spans: Sequence[tuple[int, int]], max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """[first, last) token index ranges of the windows `window_spans` describes."""
    if max_tokens < 1:
        raise ValueError(f"a window must hold at least one token, got {max_tokens}")
    overlap = max(0, min(overlap, max_tokens // 2))
    count = len(spans)
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < count:
        end = min(start + max_tokens, count)
        if end < count:
            floor = start + max(1, int(max_tokens * _MIN_FILL_FOR_WORD_CUT))
            end = _word_start_at_or_before(spans, end, floor)
        ranges.append((start, end))
        if end >= count:
            break
        following = max(end - overlap, start + 1)
        # Backing up to a word start may grow the overlap, but never beyond twice its size.
        start = _word_start_at_or_before(spans, following, max(start + 1, following - overlap))
    return ranges


def _word_start_at_or_before(spans: Sequence[tuple[int, int]], index: int, floor: int) -> int:
    """The largest i in [floor, index] where a word starts (a gap before token i), else index."""
    for candidate in range(index, max(floor, 1) - 1, -1):
        if spans[candidate][0] > spans[candidate - 1][1]:
            return candidate
    return index


@dataclass(frozen=True)
class ChunkEncoder:
    """Texts to L2-normalized vectors: per text, one row (truncated or MEAN pooled) or one row
    per window (MAX pooling, where a text scores as its best row)."""

    embedder: Embedder
    truncate: bool = False
    pooling: Pooling = Pooling.MAX
    window_tokens: int = DEFAULT_WINDOW_TOKENS
    overlap: int = DEFAULT_OVERLAP

    @property
    def id(self) -> str:
        """The embedder's id plus how texts are fed to it: both decide the vectors."""
        if self.truncate:
            return f"{self.embedder.id}+truncate"
        return f"{self.embedder.id}+{self.pooling}-windows-{self.window_tokens}-{self.overlap}"

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    def encode(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        """Per text an (m, dimension) float32 array of L2-normalized rows; m is 1 unless
        pooling is MAX, then one row per window. Rows the embedder makes zero stay zero."""
        if not texts:
            return []
        if self.truncate:
            return [row[None, :] for row in self.embedder.embed(list(texts))]
        windows = self.windows(texts)
        vectors = self.embedder.embed([piece for _, piece, _ in windows])
        owners = np.asarray([owner for owner, _, _ in windows])
        if self.pooling is Pooling.MAX:
            return [vectors[owners == index] for index in range(len(texts))]
        weights = np.asarray([weight for _, _, weight in windows], dtype=np.float64)
        pooled = np.zeros((len(texts), vectors.shape[1]), dtype=np.float64)
        np.add.at(pooled, owners, vectors * weights[:, None])
        return [row[None, :] for row in _normalized(pooled)]

    def encode_query(self, text: str) -> NDArray[np.float32]:
        """One vector for a query: what it asks is one need, so long queries are MEAN pooled."""
        if self.truncate:
            vector: NDArray[np.float32] = self.embedder.embed([text])[0]
            return vector
        mean = ChunkEncoder(self.embedder, False, Pooling.MEAN, self.window_tokens, self.overlap)
        pooled: NDArray[np.float32] = mean.encode([text])[0][0]
        return pooled

    def windows(self, texts: Sequence[str]) -> list[tuple[int, str, float]]:
        """(text index, window text, weight in word pieces) for every window of every text."""
        size = max(1, min(self.window_tokens, self.embedder.max_tokens))
        windows: list[tuple[int, str, float]] = []
        for index, text in enumerate(texts):
            spans = self.embedder.token_spans(text)
            ranges = _window_ranges(spans, size, self.overlap)
            if not ranges:  # nothing the tokenizer sees: embed as is, the embedder decides
                windows.append((index, text, 1.0))
            for first, last in ranges:
                piece = text[spans[first][0] : spans[last - 1][1]]
                windows.append((index, piece, float(last - first)))
        return windows


def _normalized(vectors: NDArray[np.float64]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # A zero row stays zero rather than becoming NaN; it then matches nothing.
    safe = np.where(norms > 0, norms, 1.0)
    normalized: NDArray[np.float32] = (vectors / safe).astype(np.float32)
    return normalized
