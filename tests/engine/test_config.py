"""Settings: defaults < file < environment < flags, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_settings
from engine.errors import ConfigError
from ingest.types import ChunkSettings


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.chunking == ChunkSettings(600, 100)


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[chunking]\nmax_tokens = 800\noverlap = 50\n")
    env = {"LONGREAD_HOME": str(tmp_path)}
    assert load_settings(environ=env).chunking == ChunkSettings(800, 50)
    env["LONGREAD_CHUNKING_OVERLAP"] = "120"
    assert load_settings(environ=env).chunking == ChunkSettings(800, 120)
    flags = {"chunking": {"overlap": 10, "max_tokens": None}}
    assert load_settings(environ=env, overrides=flags).chunking == ChunkSettings(800, 10)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[chunking]\nmax_token = 5\n", "unknown setting chunking.max_token"),
        ("[chunks]\nmax_tokens = 5\n", "unknown section 'chunks'"),
        ("[chunking]\nmax_tokens = 'many'\n", "chunking.max_tokens"),
        ("[chunking]\noverlap = 900\n", "overlap"),
        ("[chunking\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"LONGREAD_HOME": str(tmp_path)})


def test_an_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_path=tmp_path / "nope.toml", environ={})
