"""Domain types of retrieval: search modes, hits, index manifests (with their files' checksums)
and indexing progress.

All are frozen dataclasses or StrEnums; nothing here does I/O or scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ingest.types import Chunk


class SearchMode(StrEnum):
    """Which retriever answers a query; BM25 and DENSE also key a hit's per-retriever scores."""

    HYBRID = "hybrid"
    BM25 = "bm25"
    DENSE = "dense"


class Pooling(StrEnum):
    """How the windows of a chunk longer than the embedder reads become its dense score."""

    MAX = "max"  # one vector per window; the chunk scores as its best window
    MEAN = "mean"  # one vector per chunk: the windows' length-weighted mean, renormalized


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `rank` counts from 1; `score` is the mode's own score (BM25, cosine,
    or for hybrid the fused score in [0, 1], fusion.py's convex combination of the two
    normalized over this search's candidates), comparable only within one result list.

    `scores` and `ranks` hold what each retriever that found the chunk gave it, keyed by
    `SearchMode.BM25` / `SearchMode.DENSE` (which are plain strings: `hit.scores["bm25"]`).
    A hybrid hit found by one retriever only has that retriever's entry.
    """

    document_id: str
    ordinal: int
    score: float
    rank: int
    chunk: Chunk
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexFile:
    """One data file of an index as it was written. A file whose size or sha256 differs on
    load (rows swapped, entries reordered, cut short) is never used: the index is stale."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexManifest:
    """What a document's index was built with; any difference from today's settings makes it stale.

    `embedder_id` is the ChunkEncoder's id: the model (name@hash of its files) and how chunks
    are windowed and pooled, since both decide the vectors. `chunks_digest` is a hash over the
    chunks' content hashes, so re-chunked text with the same chunk count is still noticed.
    `files` records each data file as written; it is empty in the manifest a load expects,
    which describes today's settings only.
    """

    format_version: int
    embedder_id: str
    dimension: int
    chunk_max_tokens: int
    chunk_overlap: int
    chunk_count: int
    chunks_digest: str
    built_at: str
    files: tuple[IndexFile, ...]


@dataclass(frozen=True)
class IndexProgress:
    """Building one document's index: `done` of `total` chunks embedded.

    `reason` is set on the first event of a rebuild and says why the old index was not used
    ("no index yet", "built with embedder X, now Y"), so the caller can tell the person.
    `cached` counts chunks whose embeddings came from the cache (they cost nothing).
    """

    document_id: str
    done: int
    total: int
    cached: int = 0
    reason: str | None = None
