"""Saving settings: changed keys written into config.toml, everything else in it kept, a
value that would not load refused with the file untouched, TOML strings escaped; and which
changes load the model again."""

from __future__ import annotations

import math
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import (
    RELOAD_KEYS,
    ContextSettings,
    ModelSettings,
    RouterSettings,
    Settings,
    UISettings,
    changed_values,
    environment_overrides,
    environment_variable,
    load_settings,
    needs_reload,
    save_settings,
)
from engine.errors import ConfigError
from engine.types import RopeMethod, Strategy


def _load(home: Path) -> Settings:
    return load_settings(environ={"LONGREAD_HOME": str(home)})


def test_saved_changes_load_back_and_enums_are_written_as_strings(tmp_path: Path) -> None:
    home = tmp_path / "new-home"  # not there yet: saving creates it
    path = save_settings(
        _load(home),
        {
            "model": {"max_answer_tokens": 200},
            "context": {"rope_method": RopeMethod.NTK, "kv_type": "q8_0", "max_rope_factor": 2.5},
            "router": {"strategy": Strategy.RAG},
            "ui": {"theme": "textual-light"},
        },
    )
    assert path == home / "config.toml"
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {
        "model": {"max_answer_tokens": 200},
        "context": {"rope_method": "ntk", "kv_type": "q8_0", "max_rope_factor": 2.5},
        "router": {"strategy": "rag"},
        "ui": {"theme": "textual-light"},
    }
    loaded = _load(home)
    assert loaded.model == ModelSettings(max_answer_tokens=200)
    assert loaded.context == ContextSettings(
        rope_method=RopeMethod.NTK, kv_type="q8_0", max_rope_factor=2.5
    )
    assert loaded.router.strategy == "rag"
    assert loaded.ui == UISettings(theme="textual-light")


def test_other_tables_and_keys_in_the_file_are_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "# my settings\n[chunking]\nmax_tokens = 800\noverlap = 50\n\n"
        "[model]\nthreads = 2\nmax_answer_tokens = 100\n\n[cache]\nkv_max_mb = 512\n",
        encoding="utf-8",
    )
    save_settings(_load(tmp_path), {"model": {"max_answer_tokens": 300}, "ui": {"theme": "x"}})
    assert tomllib.loads(config.read_text(encoding="utf-8")) == {
        "chunking": {"max_tokens": 800, "overlap": 50},
        "model": {"threads": 2, "max_answer_tokens": 300},
        "cache": {"kv_max_mb": 512},
        "ui": {"theme": "x"},
    }
    loaded = _load(tmp_path)
    assert (loaded.chunking.max_tokens, loaded.model.threads, loaded.cache.kv_max_mb) == (
        800,
        2,
        512,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"context": {"max_rope_factor": 40.0}}, "max_rope_factor must be between 1 and 32"),
        ({"model": {"max_answer_tokens": 8}}, "max_answer_tokens must be at least 16"),
        ({"context": {"kv_type": "q2"}}, r"\[context\] settings are invalid"),
        ({"router": {"strategy": "fastest"}}, "strategy must be one of auto, long, beacons, rag"),
        ({"ui": {"theme": "  "}}, "theme must name a theme"),
        ({"model": {"nmae": "x"}}, "unknown setting model.nmae"),
        ({"models": {"name": "x"}}, "unknown section 'models'"),
        ({"model": {"name": ["a", "b"]}}, "cannot be saved"),
    ],
)
def test_a_value_that_would_not_load_is_refused_and_the_file_is_unchanged(
    tmp_path: Path, changes: dict[str, dict[str, object]], message: str
) -> None:
    config = tmp_path / "config.toml"
    before = "# keep me exactly\n[model]\nmax_answer_tokens = 100\n"
    config.write_text(before, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        save_settings(_load(tmp_path), changes)
    assert config.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temp file left


def test_a_refused_value_creates_no_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        save_settings(_load(tmp_path), {"context": {"gpu_layers": -2}})
    assert not (tmp_path / "config.toml").exists()


def test_an_existing_file_that_does_not_load_is_not_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[model]\nmax_answer_token = 100\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting model\.max_answer_token"):
        save_settings(_load(tmp_path), {"model": {"threads": 4}})
    assert config.read_text(encoding="utf-8") == "[model]\nmax_answer_token = 100\n"


@pytest.mark.parametrize(
    "name",
    [
        'C:\\models\\"quoted" name.gguf',
        "line one\nline two\r\n\ttabbed",
        "bell \x07 escape \x1b delete \x7f nul \x00 backspace \b formfeed \f",
        "trailing backslash \\",
        "unicode: é ✓ 中文 — 🙂",
        "''' and \"\"\" and # not a comment",
        "",
    ],
)
def test_strings_are_escaped_per_the_toml_spec(tmp_path: Path, name: str) -> None:
    save_settings(_load(tmp_path), {"model": {"name": name}})
    text = (tmp_path / "config.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text)["model"]["name"] == name
    assert _load(tmp_path).model.name == name
    assert "\n" not in text.split("name = ", 1)[1].rstrip("\n")  # one line: basic string


def test_a_lone_surrogate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        save_settings(_load(tmp_path), {"model": {"name": "bad \ud800"}})
    assert not (tmp_path / "config.toml").exists()


@pytest.mark.parametrize("seconds", [1e-05, 1e16, 0.1, 60.0, math.inf])
def test_floats_round_trip(tmp_path: Path, seconds: float) -> None:
    save_settings(_load(tmp_path), {"router": {"latency_budget_seconds": seconds}})
    assert _load(tmp_path).router.latency_budget_seconds == seconds


def test_saving_everything_reproduces_the_load(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    custom = replace(
        settings,
        model=ModelSettings(name="my model", threads=3, max_answer_tokens=99),
        context=ContextSettings(rope_method=RopeMethod.LINEAR, gpu_layers=12, layout="cached"),
        router=RouterSettings(strategy="beacons"),
        ui=UISettings(theme="nord"),
    )
    save_settings(custom)
    assert _load(tmp_path) == custom


def test_an_explicit_path_and_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "longread.toml"
    target.parent.mkdir()
    target.write_text("[cache]\nkv_max_mb = 1\n", encoding="utf-8")
    target.chmod(0o640)
    settings = _load(tmp_path / "home")
    assert save_settings(settings, {"ui": {"theme": "dracula"}}, path=target) == target
    assert target.stat().st_mode & 0o777 == 0o640
    assert not settings.config_path.exists()
    loaded = load_settings(config_path=target, environ={})
    assert (loaded.ui.theme, loaded.cache.kv_max_mb) == ("dracula", 1)


def test_strategy_and_theme_come_from_the_environment_too(tmp_path: Path) -> None:
    env = {
        "LONGREAD_HOME": str(tmp_path),
        "LONGREAD_ROUTER_STRATEGY": "long",
        "LONGREAD_UI_THEME": "textual-light",
    }
    loaded = load_settings(environ=env)
    assert (loaded.router.strategy, loaded.ui.theme) == ("long", "textual-light")
    env["LONGREAD_ROUTER_STRATEGY"] = "whole"
    with pytest.raises(ConfigError, match="strategy must be one of"):
        load_settings(environ=env)


def test_changed_values_and_needs_reload(tmp_path: Path) -> None:
    old = _load(tmp_path)
    at_once = replace(
        old,
        model=replace(old.model, max_answer_tokens=128),
        router=replace(old.router, strategy="rag"),
        ui=replace(old.ui, theme="textual-light"),
    )
    assert changed_values(old, at_once) == {
        "model": {"max_answer_tokens": 128},
        "router": {"strategy": "rag"},
        "ui": {"theme": "textual-light"},
    }
    assert needs_reload(old, at_once) == []
    assert needs_reload(old, old) == []

    reloading = replace(
        at_once,
        model=replace(at_once.model, name="qwen", threads=4),
        context=replace(
            old.context,
            rope_method=RopeMethod.NTK,
            max_rope_factor=8.0,
            kv_type="q4_0",
            gpu_layers=10,
            memory_budget_mb=4096,
        ),
    )
    assert needs_reload(old, reloading) == list(RELOAD_KEYS)
    only_kv = replace(old, context=replace(old.context, kv_type="q8_0"))
    assert needs_reload(old, only_kv) == ["context.kv_type"]


def test_environment_overrides_name_the_variables_that_win() -> None:
    changes: dict[str, dict[str, object]] = {
        "model": {"max_answer_tokens": 200, "name": "x"},
        "ui": {"theme": "y"},
    }
    environ = {"LONGREAD_MODEL_MAX_ANSWER_TOKENS": "100", "LONGREAD_HOME": "/tmp"}
    assert environment_overrides(changes, environ) == ["LONGREAD_MODEL_MAX_ANSWER_TOKENS"]
    assert environment_overrides(changes, {}) == []
    assert environment_variable("context", "kv_type") == "LONGREAD_CONTEXT_KV_TYPE"
