"""Saved KV states of prefilled document prefixes: a size-capped, checked, on-disk store.

After a document prefix has been prefilled once, its KV state (the prefix's tokens and KV
cells, nothing else: not the logits buffer that `Llama.save_state()` also copies) is kept
under `<home>/kvcache/` so later questions, in this session or the next, load it instead of
evaluating the document again.

Each state is two files named by its key's digest: `<digest>.kvstate`, the payload as the
backend wrote it, and `<digest>.json`, a manifest with the format version, the full key,
the token count, and the payload's size and sha256. A state is trusted only when the
manifest parses, names this format and exactly the key asked for, and the payload has the
recorded size and checksum; anything else is deleted and reported as a miss, so the caller
rebuilds it. The manifest's mtime is the entry's "last used" time: the store keeps under
`max_bytes` by deleting the least recently used entries.

The key holds everything that changes the bytes of a KV state: the model file's sha256,
the runtime (llama.cpp build), the plan fields that shape the cache (n_ctx, RoPE method and
values, KV type, flash attention), the document id and the sha256 of the prefix tokens.

What this module does not do: it never imports llama_cpp. The backend writes the payload
into a path the store hands it (`save`) and reads a verified one back (`lookup`).
Concurrent processes are tolerated (atomic renames; a vanished file is a miss), not
coordinated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.types import ContextPlan

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 2 * 2**30
STORE_DIR_NAME = "kvcache"
PAYLOAD_SUFFIX = ".kvstate"
MANIFEST_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
ORPHAN_GRACE_SECONDS = 120.0
"""A payload without a manifest (or a temp file) younger than this may be another process's
save in flight; older ones are leftovers of a crash and are deleted."""

_HASH_CHUNK = 4 * 2**20

log = logging.getLogger(__name__)


def token_digest(tokens: Sequence[int]) -> str:
    """sha256 of the token ids as little-endian int32: stable across processes and hosts."""
    digest = hashlib.sha256()
    for start in range(0, len(tokens), 65536):
        part = tokens[start : start + 65536]
        digest.update(struct.pack(f"<{len(part)}i", *part))
    return digest.hexdigest()


@dataclass(frozen=True)
class StateKey:
    """Everything that decides whether a saved KV state fits a model, a plan and a prefix."""

    model_sha256: str
    runtime: str
    n_ctx: int
    rope_method: str
    rope_freq_scale: float
    rope_freq_base: float | None
    yarn_orig_ctx: int
    kv_type: str
    flash_attn: bool
    document_id: str
    prefix_tokens: int
    prefix_sha256: str

    @classmethod
    def build(
        cls,
        *,
        model_sha256: str,
        runtime: str,
        plan: ContextPlan,
        document_id: str,
        tokens: Sequence[int],
    ) -> StateKey:
        return cls(
            model_sha256=model_sha256,
            runtime=runtime,
            n_ctx=plan.n_ctx,
            rope_method=plan.rope_method.value,
            rope_freq_scale=float(plan.rope_freq_scale),
            rope_freq_base=None if plan.rope_freq_base is None else float(plan.rope_freq_base),
            yarn_orig_ctx=plan.yarn_orig_ctx,
            kv_type=plan.kv_type.value,
            flash_attn=plan.flash_attn,
            document_id=document_id,
            prefix_tokens=len(tokens),
            prefix_sha256=token_digest(tokens),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> StateKey:
        """The key a manifest records; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("key is not an object")
        if set(data) != set(_KEY_FIELD_TYPES):
            raise ValueError("key has the wrong fields")
        for name, types in _KEY_FIELD_TYPES.items():
            value = data[name]
            # bool is an int to isinstance; a flag where a count belongs is still wrong.
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"key field {name} has the wrong type")
        return cls(**data)

    @property
    def digest(self) -> str:
        """The entry's file stem: sha256 over the canonical JSON of every field."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def summary(self) -> str:
        """One line for `longread cache`: what shaped this state."""
        rope = "" if self.rope_method == "none" else f", rope {self.rope_method}"
        attention = ", flash-attn" if self.flash_attn else ""
        return (
            f"model {self.model_sha256[:12]}, n_ctx {self.n_ctx}{rope},"
            f" kv {self.kv_type}{attention}, {self.prefix_tokens} tokens"
        )


_KEY_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model_sha256": (str,),
    "runtime": (str,),
    "n_ctx": (int,),
    "rope_method": (str,),
    "rope_freq_scale": (float, int),
    "rope_freq_base": (float, int, type(None)),
    "yarn_orig_ctx": (int,),
    "kv_type": (str,),
    "flash_attn": (bool,),
    "document_id": (str,),
    "prefix_tokens": (int,),
    "prefix_sha256": (str,),
}
"""The JSON types of each StateKey field, to check a manifest before trusting it."""


@dataclass(frozen=True)
class StateEntry:
    """One saved state, as `entries()` lists it and `lookup()` returns it."""

    key: StateKey
    payload_path: Path
    payload_bytes: int
    payload_sha256: str
    last_used: datetime

    @property
    def document_id(self) -> str:
        return self.key.document_id

    @property
    def tokens(self) -> int:
        return self.key.prefix_tokens

    @property
    def digest(self) -> str:
        return self.payload_path.name.removesuffix(PAYLOAD_SUFFIX)


class KVStateStore:
    """The folder of saved KV states, capped at `max_bytes` with least-recently-used eviction.

    `last_miss_reason` says why the latest `lookup` found nothing usable (for logs and
    tests); it is None after a hit.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.root = root
        self.max_bytes = max_bytes
        self.last_miss_reason: str | None = None

    @classmethod
    def under(cls, home: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> KVStateStore:
        """The store of a longread data dir: `<home>/kvcache/`."""
        return cls(home / STORE_DIR_NAME, max_bytes)

    # -- paths ---------------------------------------------------------------------------

    def _payload_path(self, digest: str) -> Path:
        return self.root / f"{digest}{PAYLOAD_SUFFIX}"

    def _manifest_path(self, digest: str) -> Path:
        return self.root / f"{digest}{MANIFEST_SUFFIX}"

    # -- reading -------------------------------------------------------------------------

    def lookup(self, key: StateKey) -> StateEntry | None:
        """The verified entry for `key`, touched as used; None (the files deleted) otherwise."""
        digest = key.digest
        manifest_path = self._manifest_path(digest)
        if not manifest_path.is_file():
            self.last_miss_reason = "no saved state"
            return None
        try:
            entry = self._read_entry(manifest_path)
        except ValueError as error:
            self._miss(digest, f"unusable manifest: {error}")
            return None
        if entry.key != key:
            self._miss(digest, "the manifest records a different key")
            return None
        try:
            size = entry.payload_path.stat().st_size
            checksum = _file_sha256(entry.payload_path) if size == entry.payload_bytes else ""
        except OSError as error:
            self._miss(digest, f"payload unreadable: {error}")
            return None
        if size != entry.payload_bytes:
            self._miss(digest, f"payload is {size} bytes, the manifest says {entry.payload_bytes}")
            return None
        if checksum != entry.payload_sha256:
            self._miss(digest, "payload checksum does not match the manifest")
            return None
        self.last_miss_reason = None
        return self._touched(entry)

    def _miss(self, digest: str, reason: str) -> None:
        log.info("discarding saved KV state %s: %s", digest[:12], reason)
        self.last_miss_reason = reason
        self._delete(digest)

    def _read_entry(self, manifest_path: Path) -> StateEntry:
        """Parse a manifest; ValueError for anything that is not this format's manifest."""
        try:
            raw = manifest_path.read_text(encoding="utf-8")
            stat = manifest_path.stat()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(str(error)) from error
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT_VERSION}")
        key = StateKey.from_json(data.get("key"))
        payload_bytes = data.get("payload_bytes")
        payload_sha256 = data.get("payload_sha256")
        if not isinstance(payload_bytes, int) or not isinstance(payload_sha256, str):
            raise ValueError("payload size or checksum missing")
        digest = manifest_path.name.removesuffix(MANIFEST_SUFFIX)
        if key.digest != digest:
            raise ValueError("the file name does not match the key it records")
        return StateEntry(
            key=key,
            payload_path=self._payload_path(digest),
            payload_bytes=payload_bytes,
            payload_sha256=payload_sha256,
            last_used=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        )

    def _touched(self, entry: StateEntry) -> StateEntry:
        manifest_path = self._manifest_path(entry.digest)
        with contextlib.suppress(OSError):  # a vanished file only loses its LRU position
            os.utime(manifest_path)
            return StateEntry(
                key=entry.key,
                payload_path=entry.payload_path,
                payload_bytes=entry.payload_bytes,
                payload_sha256=entry.payload_sha256,
                last_used=datetime.fromtimestamp(manifest_path.stat().st_mtime, tz=UTC),
            )
        return entry

    def contains(self, key: StateKey) -> bool:
        """Whether an entry for `key` exists (cheap: not verified; `lookup` verifies)."""
        return self._manifest_path(key.digest).is_file()

    def touch(self, key: StateKey) -> None:
        """Mark `key`'s entry as just used (it moves to the back of the eviction queue)."""
        with contextlib.suppress(OSError):
            os.utime(self._manifest_path(key.digest))

    def entries(self) -> list[StateEntry]:
        """Every readable entry, most recently used first. Unreadable ones are deleted."""
        if not self.root.is_dir():
            return []
        self._sweep_orphans()
        found: list[StateEntry] = []
        for manifest_path in self.root.glob(f"*{MANIFEST_SUFFIX}"):
            try:
                found.append(self._read_entry(manifest_path))
            except ValueError as error:
                if manifest_path.exists():
                    self._miss(manifest_path.name.removesuffix(MANIFEST_SUFFIX), str(error))
        found.sort(key=lambda entry: entry.last_used, reverse=True)
        return found

    def total_bytes(self) -> int:
        """Bytes the store holds on disk (payloads and manifests)."""
        if not self.root.is_dir():
            return 0
        total = 0
        for path in self.root.iterdir():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    # -- writing -------------------------------------------------------------------------

    def save(self, key: StateKey, write_payload: Callable[[Path], None]) -> StateEntry | None:
        """Store a state: `write_payload(path)` writes the backend's bytes to `path`.

        Returns the new entry, or None when it was not kept (the writer failed, the disk
        refused, or the state alone is larger than the cap). Saving never raises for I/O:
        a state that cannot be kept only costs a later prefill.
        """
        digest = key.digest
        temp = self.root / f"{digest}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_payload(temp)
            size = temp.stat().st_size
            if size == 0:
                raise OSError("the backend wrote an empty state")
            if size + _MANIFEST_ALLOWANCE > self.max_bytes:
                log.info("not keeping KV state %s: %d bytes exceed the cap", digest[:12], size)
                temp.unlink(missing_ok=True)
                return None
            checksum = _file_sha256(temp)
            self._evict(self.max_bytes - size - _MANIFEST_ALLOWANCE, keep=digest)
            manifest = {
                "format": FORMAT_VERSION,
                "key": key.to_json(),
                "payload_bytes": size,
                "payload_sha256": checksum,
                "created": datetime.now(tz=UTC).isoformat(),
            }
            temp.replace(self._payload_path(digest))
            # The manifest lands last: a payload without one is never trusted.
            _write_text_atomic(self._manifest_path(digest), json.dumps(manifest, indent=1))
        except OSError as error:
            log.warning("could not save KV state %s: %s", digest[:12], error)
            temp.unlink(missing_ok=True)
            return None
        entry = StateEntry(
            key=key,
            payload_path=self._payload_path(digest),
            payload_bytes=size,
            payload_sha256=checksum,
            last_used=datetime.now(tz=UTC),
        )
        return entry

    def discard(self, key: StateKey, reason: str = "discarded") -> None:
        """Delete `key`'s entry, e.g. when the backend refused a payload that checked out."""
        self._miss(key.digest, reason)

    def clear(self, document_id: str | None = None) -> int:
        """Delete every entry, or those of one document; returns the bytes freed."""
        freed = 0
        for entry in self.entries():
            if document_id is None or entry.document_id == document_id:
                freed += self._delete(entry.digest)
        if document_id is None and self.root.is_dir():
            for path in self.root.glob(f"*{TEMP_SUFFIX}"):
                freed += _unlink_size(path)
        return freed

    def _evict(self, budget: int, keep: str | None = None) -> int:
        """Delete least recently used entries until the rest fit in `budget` bytes."""
        entries = [entry for entry in self.entries() if entry.digest != keep]
        used = sum(entry.payload_bytes + _MANIFEST_ALLOWANCE for entry in entries)
        freed = 0
        for entry in reversed(entries):  # oldest first
            if used <= budget:
                break
            log.info("evicting KV state %s (least recently used)", entry.digest[:12])
            used -= entry.payload_bytes + _MANIFEST_ALLOWANCE
            freed += self._delete(entry.digest)
        return freed

    def _delete(self, digest: str) -> int:
        return _unlink_size(self._manifest_path(digest)) + _unlink_size(self._payload_path(digest))

    def _sweep_orphans(self) -> None:
        """Delete crash leftovers: temp files and payloads without a manifest, once stale."""
        cutoff = time.time() - ORPHAN_GRACE_SECONDS
        for path in self.root.iterdir():
            stem = path.name.split(".", 1)[0]
            orphan = path.name.endswith(TEMP_SUFFIX) or (
                path.name.endswith(PAYLOAD_SUFFIX) and not self._manifest_path(stem).exists()
            )
            if not orphan:
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


_MANIFEST_ALLOWANCE = 4096
"""Bytes counted per entry for its manifest (they are well under a block)."""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unlink_size(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError:
        return 0
    return size


def _write_text_atomic(target: Path, text: str) -> None:
    temp = target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        temp.write_text(text, encoding="utf-8")
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)
