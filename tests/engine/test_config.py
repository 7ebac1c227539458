"""Settings: defaults < file < environment < flags, unknown keys rejected, values of the
wrong kind refused (not converted), and the data dir made private or refused clearly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.config import EMBEDDER_RUNTIMES, IngestSettings, RetrievalSettings, load_settings
from engine.errors import ConfigError
from engine.home import ensure_home
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
        ("[retrieval]\nembedder_runtime = 'cuda'\n", "embedder_runtime must be one of"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"LONGREAD_HOME": str(tmp_path)})


def test_the_embedder_runtimes_settings_accept_are_those_retrieval_runs() -> None:
    from retrieval.embedders import EmbedderRuntime

    assert set(EMBEDDER_RUNTIMES) == {runtime.value for runtime in EmbedderRuntime}
    assert RetrievalSettings().embedder_runtime == EmbedderRuntime.ONNX


def test_an_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_path=tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[chunking]\nmax_tokens = 600.5\n", "chunking.max_tokens in .*: expected a whole number"),
        ("[chunking]\nmax_tokens = 600.0\n", "expected a whole number, got 600.0"),
        ("[chunking]\nmax_tokens = true\n", "expected a whole number, got true"),
        ("[retrieval]\ntop_k = [1, 2]\n", r"retrieval.top_k .*whole number, got \[1, 2\]"),
        ("[router]\nlatency_budget_seconds = true\n", "expected a number, got true"),
        ("[router]\nlatency_budget_seconds = '9'\n", None),  # text is parsed, as from the env
        ("[context]\nrope_method = 3\n", "expected one of none, yarn, linear, ntk, got 3"),
        ("[context]\nkv_type = 'q2'\n", "kv_type must be one of auto, f16, q8_0, q4_0"),
        ("[model]\nname = 5\n", "model.name in .*: expected text in quotes, got 5"),
    ],
)
def test_values_of_the_wrong_kind_are_refused_not_converted(
    tmp_path: Path, toml: str, message: str | None
) -> None:
    (tmp_path / "config.toml").write_text(toml)
    env = {"LONGREAD_HOME": str(tmp_path)}
    if message is None:
        assert load_settings(environ=env).router.latency_budget_seconds == 9.0
        return
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_a_fraction_takes_a_whole_number_and_the_environment_is_parsed(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[router]\nlatency_budget_seconds = 5\n")
    env = {"LONGREAD_HOME": str(tmp_path), "LONGREAD_RETRIEVAL_TOP_K": " 3 "}
    settings = load_settings(environ=env)
    assert settings.router.latency_budget_seconds == 5.0 and settings.retrieval.top_k == 3
    env["LONGREAD_CHUNKING_MAX_TOKENS"] = "600.5"
    with pytest.raises(ConfigError, match="LONGREAD_CHUNKING_MAX_TOKENS in the environment"):
        load_settings(environ=env)


def test_a_range_error_names_where_the_section_was_set(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[chunking]\nmax_tokens = 8\n")
    with pytest.raises(ConfigError, match=r"\[chunking\] settings are invalid \(set in .*config"):
        load_settings(environ={"LONGREAD_HOME": str(tmp_path)})


def test_the_ingest_section(tmp_path: Path) -> None:
    env = {"LONGREAD_HOME": str(tmp_path)}
    assert load_settings(environ=env).ingest == IngestSettings(max_file_mb=512)
    (tmp_path / "config.toml").write_text("[ingest]\nmax_file_mb = 2\n")
    assert load_settings(environ=env).ingest.max_file_bytes == 2 * 1024 * 1024
    (tmp_path / "config.toml").write_text("[ingest]\nmax_file_mb = 0\n")
    with pytest.raises(ConfigError, match="max_file_mb must be at least 1"):
        load_settings(environ=env)


def test_a_config_path_that_is_not_a_readable_toml_file(tmp_path: Path) -> None:
    env = {"LONGREAD_HOME": str(tmp_path / "home")}
    with pytest.raises(ConfigError, match="is a folder; give the path of a TOML file"):
        load_settings(config_path=tmp_path, environ=env)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[ui]\ntheme = 'café'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.toml is not UTF-8 text"):
        load_settings(config_path=latin, environ=env)
    (tmp_path / "home" / "config.toml").mkdir()  # a folder at the default path is not skipped
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings(environ=env)


def test_the_data_dir_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    assert ensure_home(home) == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    ensure_home(shared)  # a folder that is already there keeps its mode
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_a_data_dir_that_cannot_be_a_folder(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(ConfigError, match=f"{taken} is a file, not a folder; set LONGREAD_HOME"):
        ensure_home(taken)
    with pytest.raises(ConfigError, match=f"cannot be made: {taken} is a file"):
        ensure_home(taken / "below" / "home")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is a link to"):
        ensure_home(tmp_path / "dangling")
    with pytest.raises(ConfigError, match="taken is a file"):
        load_settings(environ={"LONGREAD_HOME": str(taken)})
