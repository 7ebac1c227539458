"""Per-document search indexes as folders of plain files, with a manifest that guards them.

`<home>/indexes/<doc_id>/` holds `manifest.json` (format version, encoder id, dimension,
chunk settings, chunk count, a digest of the chunks' content hashes, and each data file's size
and sha256), `terms.json` (each chunk's BM25 terms, space-joined), `vectors.npy` (float32 rows:
one per chunk, or one per window under MAX pooling) and `vector_chunks.npy` (the chunk each row
belongs to), both loaded with allow_pickle=False. Nothing is pickled: an index can be
inspected, never runs code. index_files.py writes and reads these files.

An index whose manifest differs from today's settings, or whose files are damaged or do not
match their checksums, is never used: `load` raises `StaleIndexError` with the reason, and
`ensure` reports that reason in its first progress event and rebuilds. A build writes into a
temporary folder and renames it into place, so a kill mid-build leaves the old index or none,
never half of one; `remove` deletes a document's index with any such leftovers. Embeddings come
from the shared `EmbeddingCache`, so only chunks never seen before are embedded.

It does not search (hybrid.py does) and does not chunk (the library's chunks are the input).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ingest.errors import DocumentNotFoundError
from ingest.library import Library
from ingest.types import Chunk
from retrieval.embedding_cache import CACHE_FILE_NAME, EmbeddingCache
from retrieval.errors import RetrievalError, StaleIndexError
from retrieval.index_files import FORMAT_VERSION as FORMAT_VERSION
from retrieval.index_files import MANIFEST_NAME as MANIFEST_NAME
from retrieval.index_files import (
    encode_files,
    file_records,
    manifest_bytes,
    read_index_files,
    read_manifest,
    write_file,
)
from retrieval.text_tokens import tokenize
from retrieval.types import IndexFile, IndexManifest, IndexProgress
from retrieval.windows import ChunkEncoder

INDEXES_DIR_NAME = "indexes"
# Chunks embedded per call: big enough to batch well, small enough for lively progress.
DEFAULT_BATCH_CHUNKS = 16
# Leftover temporary folders older than this are from a killed build, not a running one.
_LEFTOVER_AGE_SECONDS = 3600
_LEFTOVER_PREFIXES = (".building-", ".retired-")
# The token a build appends to its temporary folders' names: hex, so never a "-".
_LEFTOVER_TOKEN = re.compile(r"[0-9a-f]+")
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
        manifest = read_manifest(document_id, folder / MANIFEST_NAME)
        reason = _mismatch(manifest, expected)
        if reason:
            raise StaleIndexError(document_id, reason)
        terms, vectors, owners = read_index_files(
            document_id, folder, manifest, len(chunks), expected.dimension
        )
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
        files = encode_files([tokenize(c.text) for c in chunks], vectors, owners)
        manifest = self._expected_manifest(
            library, document_id, chunks, hashes, files=file_records(files)
        )
        self._write(target, manifest, files)
        return manifest

    def remove(self, document_id: str) -> bool:
        """Delete the document's index and any leftovers of its builds; True if it had one."""
        self.folder(document_id)  # refuses what is not a document id
        return remove_index(self.root.parent, document_id)

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
        files: tuple[IndexFile, ...] = (),
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
            files=files,
        )

    def _write(self, target: Path, manifest: IndexManifest, files: Mapping[str, bytes]) -> None:
        """Write a complete folder beside `target`, then swap it in with renames."""
        document_id = target.name
        _remove_leftovers(self.root, document_id, older_than=_LEFTOVER_AGE_SECONDS)
        token = uuid.uuid4().hex[:12]
        building = self.root / f"{_LEFTOVER_PREFIXES[0]}{document_id}-{token}"
        building.mkdir(parents=True)
        retired = self.root / f"{_LEFTOVER_PREFIXES[1]}{document_id}-{token}"
        try:
            for name, data in files.items():
                write_file(building / name, data)
            # The manifest goes last: a folder with a manifest has everything else.
            write_file(building / MANIFEST_NAME, manifest_bytes(manifest))
            if target.exists():
                target.rename(retired)
            building.rename(target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def remove_index(home: Path, document_id: str) -> bool:
    """Delete a document's index folder and the temporary folders of its builds, whatever
    their age (a build killed a minute ago leaves them too); True if it had an index.

    Needs no embedder, so removing a document from the library does not load one.
    """
    root = home / INDEXES_DIR_NAME
    if not _DOCUMENT_ID.fullmatch(document_id):
        return False  # not a document id: it names no folder of ours
    target = root / document_id
    existed = target.exists() or target.is_symlink()
    if target.is_symlink():  # rmtree refuses links; drop the link, never what it points to
        target.unlink()
    shutil.rmtree(target, ignore_errors=True)
    _remove_leftovers(root, document_id, older_than=None)
    return existed


def _remove_leftovers(root: Path, document_id: str, older_than: float | None) -> None:
    """Delete `document_id`'s temporary build folders, those older than `older_than` seconds
    only when it is given (a younger one may belong to a build still running)."""
    if not root.is_dir():
        return
    now = time.time()
    for leftover in root.iterdir():
        if _leftover_owner(leftover.name) != document_id:
            continue
        try:
            if older_than is not None and now - leftover.lstat().st_mtime < older_than:
                continue
        except OSError:
            continue  # gone already (another process cleared it)
        if leftover.is_symlink():
            leftover.unlink(missing_ok=True)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _leftover_owner(name: str) -> str | None:
    """The document id in a temporary build folder's name, or None if it is not one.

    Matched exactly, not by prefix: ids may hold "-", and document "a"'s leftovers must not
    take those of document "a-b" with them.
    """
    for prefix in _LEFTOVER_PREFIXES:
        if name.startswith(prefix):
            owner, _, token = name[len(prefix) :].rpartition("-")
            if _DOCUMENT_ID.fullmatch(owner) and _LEFTOVER_TOKEN.fullmatch(token):
                return owner
    return None


def _require(library: Library, document_id: str) -> None:
    if not library.has(document_id):
        raise DocumentNotFoundError(
            f"no document with id {document_id}; `longread list` shows what is in the library"
        )


def _mismatch(found: IndexManifest, expected: IndexManifest) -> str | None:
    """The first difference that makes an index unusable, said for a person; None if none.
    (`read_manifest` already refused another index format.)"""
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
