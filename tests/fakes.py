"""Fakes that stand in for the slow or heavy backends, through the same seams the product uses.

Each fake is a self-contained class below its own banner; add new fakes the same way.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from numpy.typing import NDArray

# ---------------------------------------------------------------------------------------------
# FakeEmbedder: the retrieval.embedder.Embedder protocol without a model
# ---------------------------------------------------------------------------------------------

_FAKE_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """A deterministic bag-of-words embedder: each lowercased word adds 1 to a hashed slot of
    a `dimension`-long vector, then the vector is L2-normalized.

    Like a real model it reads only the first `max_tokens` words of a text and silently
    ignores the rest, and `max_tokens` is small, so window logic is exercised by short texts.
    Texts with no words get a fixed unit vector. `calls` and `embedded` count what was asked
    of it, so tests can prove a cache saved work.
    """

    def __init__(self, dimension: int = 128, max_tokens: int = 16, name: str = "fake") -> None:
        self.id = f"{name}-d{dimension}-t{max_tokens}"
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.calls = 0
        self.embedded: list[str] = []

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _FAKE_WORD.finditer(text)]

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        self.calls += 1
        self.embedded.extend(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [m.group().lower() for m in _FAKE_WORD.finditer(text)][: self.max_tokens]
            if not words:
                vectors[row, 0] = 1.0
            for word in words:
                vectors[row, self.slot(word)] += 1.0
            vectors[row] /= np.linalg.norm(vectors[row])
        return vectors

    def slot(self, word: str) -> int:
        """The vector slot a word adds to (tests use it to pick words that do not collide)."""
        digest = hashlib.blake2b(word.lower().encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.dimension
