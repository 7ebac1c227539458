"""A persistent cache of chunk embeddings keyed by (encoder id, chunk content hash).

Embedding is the slow part of indexing (~20 chunks/s on two cores), so a chunk's vector is
computed once: re-indexing unchanged chunks, rebuilding an index whose manifest went stale for
another reason, and the same text in two documents all reuse it. The store is one small
SQLite file under `<home>/indexes/`; an entry is a chunk's rows (one per window under MAX
pooling, else one) as a raw float32 blob, no pickling. It is only a cache:
a damaged file is set aside and started afresh, never an error for the person.

It does not compute embeddings and does not know about documents.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

CACHE_FILE_NAME = "embeddings.sqlite3"
# SQLite limits the number of parameters of one statement; stay well below.
_LOOKUP_BATCH = 500

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    encoder_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (encoder_id, content_hash)
) WITHOUT ROWID
"""


class EmbeddingCache:
    """Vectors by (encoder id, content hash) in `path`. Safe to share across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def get_many(
        self, encoder_id: str, hashes: Sequence[str], dimension: int
    ) -> dict[str, NDArray[np.float32]]:
        """The cached (rows, dimension) arrays among `hashes`; entries that do not fit the
        dimension are treated as missing."""
        wanted = list(dict.fromkeys(hashes))

        def lookup(db: sqlite3.Connection) -> dict[str, NDArray[np.float32]]:
            found: dict[str, NDArray[np.float32]] = {}
            for offset in range(0, len(wanted), _LOOKUP_BATCH):
                batch = wanted[offset : offset + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    "SELECT content_hash, vector FROM vectors"
                    f" WHERE encoder_id = ? AND content_hash IN ({marks})",
                    (encoder_id, *batch),
                ).fetchall()
                for content_hash, blob in rows:
                    flat = np.frombuffer(blob, dtype=np.float32)
                    if flat.size and flat.size % dimension == 0 and np.isfinite(flat).all():
                        found[str(content_hash)] = flat.reshape(-1, dimension).copy()
            return found

        return self._run(lookup)

    def put_many(self, encoder_id: str, vectors: Mapping[str, NDArray[np.float32]]) -> None:
        rows = [
            (encoder_id, content_hash, np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for content_hash, vector in vectors.items()
        ]

        def store(db: sqlite3.Connection) -> None:
            with db:  # one transaction: a kill mid-way stores all of the batch or none
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

        if rows:
            self._run(store)

    def count(self, encoder_id: str) -> int:
        def counted(db: sqlite3.Connection) -> int:
            query = "SELECT COUNT(*) FROM vectors WHERE encoder_id = ?"
            return int(db.execute(query, (encoder_id,)).fetchone()[0])

        return self._run(counted)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._open())
            except sqlite3.DatabaseError:
                # A damaged cache costs only recomputation: drop it and start afresh, once.
                self._discard()
                return work(self._open())

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False)
            try:
                db.execute("PRAGMA busy_timeout=5000")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
            except sqlite3.DatabaseError:
                db.close()
                raise
            self._db = db
        return self._db

    def _discard(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
