"""Per-document search indexes as folders of plain files, with a manifest that guards them.

`<home>/indexes/<doc_id>/` holds `manifest.json` (format version, encoder id, dimension,
chunk settings, chunk count and a digest of the chunks' content hashes), `terms.json` (each
chunk's BM25 terms, space-joined), `vectors.npy` (float32 rows: one per chunk, or one per
window under MAX pooling) and `vector_chunks.npy` (the chunk each row belongs to), both
loaded with allow_pickle=False. Nothing is pickled: an index can be inspected, never runs code.

An index whose manifest differs from today's settings, or whose files are damaged, is never
used: `load` raises `StaleIndexError` with the reason, and `ensure` reports that reason in its
first progress event and rebuilds. A build writes into a temporary folder and renames it into
place, so a kill mid-build leaves the old index or none, never half of one. Embeddings come
from the shared `EmbeddingCache`, so only chunks never seen before are embedded.

It does not search (hybrid.py does) and does not chunk (the library's chunks are the input).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import Chunk
from retrieval.embedding_cache import CACHE_FILE_NAME, EmbeddingCache
from retrieval.errors import RetrievalError, StaleIndexError
from retrieval.text_tokens import tokenize
from retrieval.types import IndexManifest, IndexProgress
from retrieval.windows import ChunkEncoder

# Bump when the files' layout or what text_tokens.tokenize returns changes: old indexes
# then read as stale and are rebuilt (their embeddings still come from the cache).
FORMAT_VERSION = 1
INDEXES_DIR_NAME = "indexes"
MANIFEST_NAME = "manifest.json"
TERMS_NAME = "terms.json"
VECTORS_NAME = "vectors.npy"
VECTOR_CHUNKS_NAME = "vector_chunks.npy"
# Chunks embedded per call: big enough to batch well, small enough for lively progress.
DEFAULT_BATCH_CHUNKS = 16
# Leftover temporary folders older than this are from a killed build, not a running one.
_LEFTOVER_AGE_SECONDS = 3600
_DOCUMENT_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")


@dataclass(frozen=True, eq=False)
class DocumentIndex:
    """A loaded, checked index: `terms[i]` is `chunks[i]`'s; `vectors[r]` is a row of
    `chunks[vector_chunks[r]]` (rows in chunk order, every chunk has at least one)."""

    document_id: str
    manifest: IndexManifest
    chunks: tuple[Chunk, ...]
    terms: tuple[tuple[str, ...], ...]
    vectors: NDArray[np.float32]
    vector_chunks: NDArray[np.int64]


class IndexStore:
    """The indexes under `<home>/indexes/`, built and checked with one `ChunkEncoder`."""

    def __init__(
        self, home: Path, encoder: ChunkEncoder, *, batch_chunks: int = DEFAULT_BATCH_CHUNKS
    ) -> None:
        self.root = home / INDEXES_DIR_NAME
        self.encoder = encoder
        self.batch_chunks = max(1, batch_chunks)
        self.cache = EmbeddingCache(self.root / CACHE_FILE_NAME)

    def close(self) -> None:
        self.cache.close()

    def folder(self, document_id: str) -> Path:
        if not _DOCUMENT_ID.fullmatch(document_id):
            raise RetrievalError(
                f"{document_id!r} is not a document id; `longread list` shows them"
            )
        return self.root / document_id

    def load(self, library: Library, document_id: str) -> DocumentIndex:
        """The document's index, checked against today's settings; else `StaleIndexError`."""
        folder = self.folder(document_id)
        _require(library, document_id)
        if not (folder / MANIFEST_NAME).is_file():
            raise StaleIndexError(document_id, "it has not been built yet")
        chunks = library.chunks(document_id)
        expected = self._expected_manifest(library, document_id, chunks)
        manifest = _read_manifest(document_id, folder / MANIFEST_NAME)
        reason = _mismatch(manifest, expected)
        if reason:
            raise StaleIndexError(document_id, reason)
        terms = _read_terms(document_id, folder / TERMS_NAME, len(chunks))
        vectors = _read_vectors(document_id, folder / VECTORS_NAME, expected.dimension)
        owners = _read_vector_chunks(document_id, folder / VECTOR_CHUNKS_NAME, vectors, len(chunks))
        return DocumentIndex(document_id, manifest, tuple(chunks), terms, vectors, owners)

    def stale_reason(self, library: Library, document_id: str) -> str | None:
        """Why the document's index cannot be used, or None if it can."""
        try:
            self.load(library, document_id)
        except StaleIndexError as stale:
            return stale.reason
        return None

    def ensure(
        self, library: Library, document_id: str
    ) -> Generator[IndexProgress, None, DocumentIndex]:
        """Load the index, or (re)build it first, telling why in the first progress event."""
        try:
            return self.load(library, document_id)
        except StaleIndexError as stale:
            reason = stale.reason
        yield from self.build(library, document_id, reason=reason)
        return self.load(library, document_id)

    def build(
        self, library: Library, document_id: str, reason: str | None = None
    ) -> Generator[IndexProgress, None, IndexManifest]:
        """Build the document's index from its library chunks, yielding embedding progress.

        The first event counts the chunks already in the embedding cache; each later one
        follows a batch of newly embedded chunks.
        """
        target = self.folder(document_id)
        _require(library, document_id)
        chunks = library.chunks(document_id)
        hashes = library.chunk_hashes(document_id)
        if len(hashes) != len(chunks):
            raise RetrievalError(
                f"the library's chunks of document {document_id[:12]} are inconsistent;"
                " remove the document and add it again"
            )
        vectors, owners = yield from self._embed(document_id, chunks, hashes, reason)
        manifest = self._expected_manifest(library, document_id, chunks, hashes)
        self._write(target, manifest, [tokenize(c.text) for c in chunks], vectors, owners)
        return manifest

    def remove(self, document_id: str) -> bool:
        """Delete the document's index (and any leftovers of killed builds); True if one existed."""
        target = self.folder(document_id)
        existed = target.exists()
        shutil.rmtree(target, ignore_errors=True)
        self._remove_leftovers(document_id, min_age_seconds=0)
        return existed

    def _embed(
        self, document_id: str, chunks: Sequence[Chunk], hashes: Sequence[str], reason: str | None
    ) -> Generator[IndexProgress, None, tuple[NDArray[np.float32], NDArray[np.int64]]]:
        encoder_id, dimension = self.encoder.id, self.encoder.dimension
        found = self.cache.get_many(encoder_id, hashes, dimension)
        cached = sum(1 for h in hashes if h in found)
        yield IndexProgress(document_id, cached, len(chunks), cached=cached, reason=reason)
        # Each distinct text is embedded once, even when a document repeats a chunk.
        missing = {h: c.text for h, c in zip(hashes, chunks, strict=True) if h not in found}
        pending = list(missing.items())
        uses = Counter(hashes)
        done = cached
        for offset in range(0, len(pending), self.batch_chunks):
            batch = pending[offset : offset + self.batch_chunks]
            encoded = self.encoder.encode([text for _, text in batch])
            fresh = {h: rows for (h, _), rows in zip(batch, encoded, strict=True)}
            # Cached per batch, so a build killed half-way keeps what it already paid for.
            self.cache.put_many(encoder_id, fresh)
            found.update(fresh)
            done += sum(uses[h] for h in fresh)
            yield IndexProgress(document_id, done, len(chunks), cached=cached)
        if not hashes:
            return np.zeros((0, dimension), dtype=np.float32), np.zeros(0, dtype=np.int64)
        rows = [found[h] for h in hashes]
        owners = np.repeat(np.arange(len(rows), dtype=np.int64), [len(r) for r in rows])
        return np.concatenate(rows).astype(np.float32), owners

    def _expected_manifest(
        self,
        library: Library,
        document_id: str,
        chunks: Sequence[Chunk],
        hashes: Sequence[str] | None = None,
    ) -> IndexManifest:
        settings = library.chunk_settings(document_id)
        hashes = library.chunk_hashes(document_id) if hashes is None else hashes
        return IndexManifest(
            format_version=FORMAT_VERSION,
            embedder_id=self.encoder.id,
            dimension=self.encoder.dimension,
            chunk_max_tokens=settings.max_tokens,
            chunk_overlap=settings.overlap,
            chunk_count=len(chunks),
            chunks_digest=hashlib.sha256("\n".join(hashes).encode()).hexdigest(),
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def _write(
        self,
        target: Path,
        manifest: IndexManifest,
        terms: Sequence[Sequence[str]],
        vectors: NDArray[np.float32],
        owners: NDArray[np.int64],
    ) -> None:
        """Write a complete folder beside `target`, then swap it in with renames."""
        document_id = target.name
        self._remove_leftovers(document_id, min_age_seconds=_LEFTOVER_AGE_SECONDS)
        token = uuid.uuid4().hex[:12]
        building = self.root / f".building-{document_id}-{token}"
        building.mkdir(parents=True)
        retired = self.root / f".retired-{document_id}-{token}"
        try:
            _write_file(building / VECTORS_NAME, _npy(vectors))
            _write_file(building / VECTOR_CHUNKS_NAME, _npy(owners))
            terms_json = {"terms": [" ".join(t) for t in terms]}
            _write_file(building / TERMS_NAME, json.dumps(terms_json).encode())
            # The manifest goes last: a folder with a manifest has everything else.
            manifest_json = json.dumps(asdict(manifest), indent=2)
            _write_file(building / MANIFEST_NAME, manifest_json.encode())
            if target.exists():
                target.rename(retired)
            building.rename(target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)

    def _remove_leftovers(self, document_id: str, min_age_seconds: float) -> None:
        if not self.root.is_dir():
            return
        now = time.time()
        for prefix in (".building-", ".retired-"):
            for leftover in self.root.glob(f"{prefix}{document_id}-*"):
                if now - leftover.stat().st_mtime >= min_age_seconds:
                    shutil.rmtree(leftover, ignore_errors=True)


def _require(library: Library, document_id: str) -> None:
    if not library.has(document_id):
        raise DocumentNotFoundError(
            f"no document with id {document_id}; `longread list` shows what is in the library"
        )


def _npy(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # so a power cut after the rename cannot leave empty files


def _mismatch(found: IndexManifest, expected: IndexManifest) -> str | None:
    """The first difference that makes an index unusable, said for a person; None if none."""
    if found.format_version != expected.format_version:
        return (
            f"it was written in index format {found.format_version}, and this longread"
            f" uses format {expected.format_version}"
        )
    if found.embedder_id != expected.embedder_id:
        return (
            f"it was built with embedder {found.embedder_id}, and the embedder is now"
            f" {expected.embedder_id}"
        )
    if found.dimension != expected.dimension:
        return (
            f"its vectors have {found.dimension} dimensions, and the embedder makes"
            f" {expected.dimension}"
        )
    if (found.chunk_max_tokens, found.chunk_overlap) != (
        expected.chunk_max_tokens,
        expected.chunk_overlap,
    ):
        return (
            f"it was built from chunks of {found.chunk_max_tokens} tokens overlapping by"
            f" {found.chunk_overlap}, and the document is now chunked with"
            f" {expected.chunk_max_tokens} overlapping by {expected.chunk_overlap}"
        )
    if found.chunk_count != expected.chunk_count:
        return (
            f"it covers {found.chunk_count} chunks, and the document now has {expected.chunk_count}"
        )
    if found.chunks_digest != expected.chunks_digest:
        return "the document's chunks have changed since it was built"
    return None


def _read_manifest(document_id: str, path: Path) -> IndexManifest:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        values = {f.name: raw[f.name] for f in fields(IndexManifest)}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StaleIndexError(document_id, f"its manifest is damaged ({error})") from error
    for f in fields(IndexManifest):
        wanted = int if f.type in ("int", int) else str
        if type(values[f.name]) is not wanted:
            raise StaleIndexError(
                document_id, f"its manifest is damaged ({f.name} is not {f.type})"
            )
    return IndexManifest(**values)


def _read_terms(document_id: str, path: Path, count: int) -> tuple[tuple[str, ...], ...]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["terms"]
        if not isinstance(raw, list) or len(raw) != count:
            raise ValueError(f"expected {count} entries")
        return tuple(tuple(str(line).split()) for line in raw)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StaleIndexError(document_id, f"its BM25 terms file is damaged ({error})") from error


def _read_vectors(document_id: str, path: Path, dimension: int) -> NDArray[np.float32]:
    array = _read_npy(document_id, path, "vectors")
    if array.dtype != np.float32 or array.ndim != 2 or array.shape[1] != dimension:
        raise StaleIndexError(
            document_id,
            f"its vectors file is damaged (shape {array.shape} {array.dtype},"
            f" expected rows of {dimension} float32)",
        )
    if not np.isfinite(array).all():
        raise StaleIndexError(document_id, "its vectors file is damaged (non-finite values)")
    vectors: NDArray[np.float32] = array
    return vectors


def _read_vector_chunks(
    document_id: str, path: Path, vectors: NDArray[np.float32], chunk_count: int
) -> NDArray[np.int64]:
    array = _read_npy(document_id, path, "vector chunks")
    valid = (
        array.dtype.kind == "i"
        and array.shape == (vectors.shape[0],)
        and bool(np.all(np.diff(array) >= 0))
        and np.array_equal(np.unique(array), np.arange(chunk_count))
    )
    if not valid:
        raise StaleIndexError(
            document_id,
            f"its vector chunks file is damaged (it does not give each of the {chunk_count}"
            f" chunks its rows of the {vectors.shape[0]} vectors)",
        )
    owners: NDArray[np.int64] = array.astype(np.int64)
    return owners


def _read_npy(document_id: str, path: Path, what: str) -> NDArray[Any]:
    try:
        array: NDArray[Any] = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise StaleIndexError(document_id, f"its {what} file is damaged ({error})") from error
    return array
