"""The files of one search index folder: their layout, their bytes with a size and sha256 each,
and reading them back verified and parsed.

`manifest.json` records every data file's size and sha256 (`IndexFile`). A load reads each
file once, bounded by its recorded size, hashes those bytes and parses the same bytes, so a
file changed after the build (two rows of `vectors.npy` swapped, two entries of `terms.json`
swapped: still valid files of the right shape) is caught before it can rank wrong passages,
and nothing can change between the check and the parse. The parsers check shapes and kinds
too, as a second line: a checksum shows a file is the one written, not that it is sane.

It does not decide whether an index matches today's settings, build one, or manage folders
(index_store.py does).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from retrieval.errors import StaleIndexError
from retrieval.types import IndexFile, IndexManifest

# Bump when the files' layout or what text_tokens.tokenize returns changes: old indexes
# then read as stale and are rebuilt (their embeddings still come from the cache).
# 2: the manifest records each data file's size and sha256.
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
TERMS_NAME = "terms.json"
VECTORS_NAME = "vectors.npy"
VECTOR_CHUNKS_NAME = "vector_chunks.npy"
DATA_FILES = (TERMS_NAME, VECTORS_NAME, VECTOR_CHUNKS_NAME)
# A manifest is about 1 KB; a bigger one is not ours, and is not read into memory whole.
_MANIFEST_MAX_BYTES = 64 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


def encode_files(
    terms: Sequence[Sequence[str]], vectors: NDArray[np.float32], owners: NDArray[np.int64]
) -> dict[str, bytes]:
    """The bytes of each data file, by name (not the manifest, which records them)."""
    return {
        TERMS_NAME: json.dumps({"terms": [" ".join(t) for t in terms]}).encode(),
        VECTORS_NAME: _npy(vectors),
        VECTOR_CHUNKS_NAME: _npy(owners),
    }


def file_records(files: Mapping[str, bytes]) -> tuple[IndexFile, ...]:
    return tuple(
        IndexFile(name, len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()
    )


def manifest_bytes(manifest: IndexManifest) -> bytes:
    return json.dumps(asdict(manifest), indent=2).encode()


def write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # so a power cut after the rename cannot leave empty files


def read_manifest(document_id: str, path: Path) -> IndexManifest:
    """The manifest, or `StaleIndexError` if it is damaged or of another index format."""
    try:
        raw = json.loads(_read_at_most(path, _MANIFEST_MAX_BYTES))
    except (OSError, ValueError) as error:
        raise StaleIndexError(document_id, f"its manifest is damaged ({error})") from error
    if not isinstance(raw, dict):
        raise StaleIndexError(document_id, "its manifest is damaged (not a JSON object)")
    # The format first: an older manifest lacks newer fields, and that is not damage.
    version = raw.get("format_version")
    if type(version) is int and version != FORMAT_VERSION:
        raise StaleIndexError(
            document_id,
            f"it was written in index format {version}, and this longread uses format"
            f" {FORMAT_VERSION}",
        )
    values: dict[str, Any] = {}
    for f in fields(IndexManifest):
        if f.name == "files":
            continue
        wanted = int if f.type in ("int", int) else str
        # `type(...) is`: JSON's true must not pass for 1.
        if type(raw.get(f.name)) is not wanted:
            raise StaleIndexError(
                document_id, f"its manifest is damaged ({f.name} is not {wanted.__name__})"
            )
        values[f.name] = raw[f.name]
    return IndexManifest(**values, files=_file_records(document_id, raw.get("files")))


def _file_records(document_id: str, raw: Any) -> tuple[IndexFile, ...]:
    """The manifest's file records: exactly one per data file, each with a size and sha256.
    Only known names are accepted, so a manifest cannot point a load at another path."""
    found = [_file_record(entry) for entry in raw] if isinstance(raw, list) else []
    records = {record.name: record for record in found if record is not None}
    if None in found or len(found) != len(DATA_FILES) or set(records) != set(DATA_FILES):
        raise StaleIndexError(
            document_id,
            "its manifest is damaged (it does not record the size and sha256 of each of "
            + ", ".join(DATA_FILES)
            + ")",
        )
    return tuple(records[name] for name in DATA_FILES)


def _file_record(entry: Any) -> IndexFile | None:
    if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256"}:
        return None
    name, size, sha256 = entry["name"], entry["size"], entry["sha256"]
    if name not in DATA_FILES or type(size) is not int or size < 0:
        return None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        return None
    return IndexFile(name, size, sha256)


def read_index_files(
    document_id: str, folder: Path, manifest: IndexManifest, chunk_count: int, dimension: int
) -> tuple[tuple[tuple[str, ...], ...], NDArray[np.float32], NDArray[np.int64]]:
    """The terms, vectors and vector owners of a folder, each verified against the manifest.

    What verification costs: one sha256 pass over bytes read anyway, about 1 ms per MB
    (1.1-1.7 GB/s measured on a busy 2-core machine). A 10,000-chunk document at 384
    dimensions has 19 MB of files: 18 ms of a 68 ms load; 1,000 chunks: 1 ms of 5 ms. And a
    searcher loads each index once per session.
    """
    records = {record.name: record for record in manifest.files}
    terms = _parse_terms(document_id, _verified(document_id, folder, records[TERMS_NAME]))
    if len(terms) != chunk_count:
        raise StaleIndexError(
            document_id,
            f"its BM25 terms file is damaged ({len(terms)} entries, expected {chunk_count})",
        )
    vectors = _parse_vectors(
        document_id, _verified(document_id, folder, records[VECTORS_NAME]), dimension
    )
    owners = _parse_vector_chunks(
        document_id,
        _verified(document_id, folder, records[VECTOR_CHUNKS_NAME]),
        vectors,
        chunk_count,
    )
    return terms, vectors, owners


_WHAT = {TERMS_NAME: "BM25 terms", VECTORS_NAME: "vectors", VECTOR_CHUNKS_NAME: "vector chunks"}


def _verified(document_id: str, folder: Path, record: IndexFile) -> bytes:
    """The file's bytes if they are the ones the manifest records; else `StaleIndexError`."""
    path = folder / record.name
    try:
        # One byte more than recorded: a grown file is noticed without reading all of it.
        data = _read_at_most(path, record.size + 1)
    except OSError as error:
        what = _WHAT[record.name]
        raise StaleIndexError(document_id, f"its {what} file is damaged ({error})") from error
    if len(data) != record.size:
        change = "its size"
    elif hashlib.sha256(data).hexdigest() != record.sha256:
        change = "its content"
    else:
        return data
    raise StaleIndexError(
        document_id,
        f"{record.name} does not match its checksum ({change} changed after the index was built)",
    )


def _read_at_most(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(limit)


def _parse_terms(document_id: str, data: bytes) -> tuple[tuple[str, ...], ...]:
    try:
        raw = json.loads(data)["terms"]
        if not isinstance(raw, list) or not all(isinstance(line, str) for line in raw):
            raise ValueError("expected a list of strings")
    except (ValueError, KeyError, TypeError) as error:
        raise StaleIndexError(document_id, f"its BM25 terms file is damaged ({error})") from error
    return tuple(tuple(line.split()) for line in raw)


def _parse_vectors(document_id: str, data: bytes, dimension: int) -> NDArray[np.float32]:
    array = _parse_npy(document_id, data, "vectors")
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


def _parse_vector_chunks(
    document_id: str, data: bytes, vectors: NDArray[np.float32], chunk_count: int
) -> NDArray[np.int64]:
    array = _parse_npy(document_id, data, "vector chunks")
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


def _npy(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _parse_npy(document_id: str, data: bytes, what: str) -> NDArray[Any]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise StaleIndexError(document_id, f"its {what} file is damaged ({error})") from error
    if not isinstance(loaded, np.ndarray):  # np.load also opens .npz archives
        raise StaleIndexError(document_id, f"its {what} file is damaged (not a .npy array)")
    array: NDArray[Any] = loaded
    return array
