"""The `Embedder` contract: texts in, L2-normalized float32 vectors out.

An embedder also exposes its own tokenizer's word-piece spans, so that retrieval/windows.py
can cut long chunks into windows it reads whole. The sentence-transformers implementation
lives in retrieval/dense.py (the one module that imports sentence_transformers and faiss);
tests use a fake through the same seam. Nothing here imports a heavy library.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class Embedder(Protocol):
    """One small contract for every embedding backend; tests use a fake through the same seam."""

    @property
    def id(self) -> str:
        """Names the model and its weights: vectors from two ids are never mixed or reused."""
        ...

    @property
    def dimension(self) -> int:
        """The length of every vector `embed` returns."""
        ...

    @property
    def max_tokens(self) -> int:
        """How many word pieces of one text the model reads; the rest is silently ignored."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of the model's word pieces in `text` (no specials)."""
        ...

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """An (len(texts), dimension) float32 array of L2-normalized rows."""
        ...
