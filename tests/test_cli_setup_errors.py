"""Set-up mistakes through the real CLI: each is one clear line and exit status 1 (2 for a
usage error), never a traceback, and leaves the library as it was.

Covered: a data dir that is a file, under a file or impossible to make; a config that is a
folder, binary, not UTF-8, or holds a value of the wrong kind; counts below one; messages
with brackets that rich would read as markup; a registered model cut short; a question too
long for the model's window. And the data dir's privacy: what `add` writes is 0700/0600.

Most cases run in-process through typer's runner; the privacy check and the shared
library run the CLI in a fresh process, as a person would.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ingest.library import DATABASE_NAME
from ingest.pipeline import AddStatus, FileOutcome
from main import _outcome_line
from tests.cli_runner import invoke
from tests.conftest import REPO_ROOT
from tests.gguf_factory import gguf_bytes, llama_metadata, truncated, write_gguf

DOCUMENT = "# Harbour Lights\n\nThe ferry came in at dawn, and the lamps were put out.\n"
LONG_QUESTION = "Why did the ferry come in at dawn and not at dusk? " * 1000  # 51,000 chars


def _fails(expected_status: int, *args: str) -> str:
    """The output of a run that must end with `expected_status`, on one `error:` line."""
    result = invoke(*args)
    assert result.exit_code == expected_status, result.output
    return result.output


def _error_line(expected_status: int, *args: str) -> str:
    """The one line a run that must fail with `expected_status` prints: `error: ...`."""
    output = _fails(expected_status, *args)
    assert output.startswith("error: ") and output.count("\n") == 1, output
    return output


def _snapshot(home: Path) -> dict[str, bytes]:
    """Every file under the data dir with its bytes, to compare before and after."""
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir made by a real `longread add` of a small text file in a fresh process."""
    folder = tmp_path_factory.mktemp("setup-errors")
    source = folder / "harbour.md"
    source.write_text(DOCUMENT, encoding="utf-8")
    home = folder / "home"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), "--home", str(home), "add", str(source)],
        env=os.environ | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return home


# -- the data dir ----------------------------------------------------------------------


def test_what_add_writes_is_private_to_its_owner(library: Path) -> None:
    folders = [library, *(p for p in library.rglob("*") if p.is_dir())]
    files = [p for p in library.rglob("*") if p.is_file()]
    assert any(p.name == DATABASE_NAME for p in files) and len(folders) > 1
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) & 0o777 == 0o700, folder
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) & 0o777 == 0o600, file


def test_a_data_dir_that_is_a_file_is_named_with_the_fix(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder", encoding="utf-8")
    for flag in (["--home", str(taken)], ["--home", str(taken / "below")]):
        output = _error_line(1, *flag, "list")
        assert f"{taken} is a file, not a folder" in output
        assert "LONGREAD_HOME" in output and "--home" in output
    assert taken.read_text(encoding="utf-8") == "not a folder"


def test_a_data_dir_from_the_environment_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = tmp_path / "taken"
    taken.write_bytes(b"")
    monkeypatch.setenv("LONGREAD_HOME", str(taken))
    assert f"the data dir {taken} is a file" in _error_line(1, "list")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_data_dir_that_cannot_be_made() -> None:
    output = _error_line(1, "--home", "/proc/longread-cannot-be-here", "list")
    assert "the data dir /proc/longread-cannot-be-here cannot be made" in output
    assert not Path("/proc/longread-cannot-be-here").exists()


# -- the config file -------------------------------------------------------------------


def _add_with_config(isolated_home: Path, tmp_path: Path, config: Path) -> str:
    """`add` under a bad config: the error, with nothing added to the library."""
    source = tmp_path / "harbour.md"
    source.write_text(DOCUMENT, encoding="utf-8")
    output = _error_line(1, "--config", str(config), "add", str(source))
    assert not (isolated_home / DATABASE_NAME).exists()
    return output


def test_a_config_that_is_a_folder(isolated_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "settings"
    folder.mkdir()
    output = _add_with_config(isolated_home, tmp_path, folder)
    assert f"config file {folder} is a folder" in output


def test_a_binary_config(isolated_home: Path, tmp_path: Path) -> None:
    binary = tmp_path / "config.toml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    output = _add_with_config(isolated_home, tmp_path, binary)
    assert f"config file {binary} is not UTF-8 text" in output


def test_a_config_in_the_data_dir_that_is_not_utf8(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True)
    config = isolated_home / "config.toml"
    config.write_bytes("[ui]\ntheme = 'café'\n".encode("latin-1"))
    output = _error_line(1, "list")
    assert f"config file {config} is not UTF-8 text" in output and "save it as UTF-8" in output
    assert not (isolated_home / DATABASE_NAME).exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[retrieval]\ntop_k = [1, 2]\n", "retrieval.top_k in {}: expected a whole number"),
        ("[chunking]\nmax_tokens = 600.5\n", "chunking.max_tokens in {}: expected a whole number"),
        ("[chunking]\nmax_tokens = true\n", "chunking.max_tokens in {}: expected a whole number"),
        ("[ingest]\nmax_file_mb = 0\n", "[ingest] settings are invalid (set in {})"),
        ("[model]\nname = 3\n", "model.name in {}: expected text in quotes"),
    ],
)
def test_a_value_of_the_wrong_kind(
    isolated_home: Path, tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(toml, encoding="utf-8")
    output = _add_with_config(isolated_home, tmp_path, config)
    assert message.format(config) in output  # the brackets of [ingest] survive, too


# -- counts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "harbour", "ferry", "-k", "0"],
        ["search", "harbour", "ferry", "-k", "-1"],
        ["bench", "ingest", "--runs", "0"],
        ["bench", "engine", "--rounds", "0"],
        ["bench", "engine", "--threads", "0"],
        ["bench", "passkey", "--runs", "-1"],
        ["bench", "passkey", "--tokens", "0"],
        ["bench", "retrieval", "--queries", "0"],
        ["bench", "beacons", "--chars", "0"],
        ["bench", "beacons-qa", "--books", "0"],
    ],
)
def test_a_count_below_one_is_a_usage_error(isolated_home: Path, args: list[str]) -> None:
    output = _fails(2, *args)
    assert "Invalid value for" in output and "greater than or equal to 1" in output
    assert not (isolated_home / DATABASE_NAME).exists()


# -- markup ------------------------------------------------------------------------------


def _rendered(markup: str) -> str:
    console = Console(record=True, width=400, soft_wrap=True)
    console.print(markup, highlight=False)
    return console.export_text()


def test_an_add_error_with_brackets_is_printed_intact(tmp_path: Path) -> None:
    failed = FileOutcome(
        tmp_path / "[bold]odd.md",
        AddStatus.FAILED,
        error="[chunking] max_tokens must be at least 16 [/red]",
    )
    line = _rendered(_outcome_line(failed))
    assert "[bold]odd.md: [chunking] max_tokens must be at least 16 [/red]" in line


def test_a_missing_file_with_brackets_in_its_name(tmp_path: Path) -> None:
    output = _fails(1, "add", str(tmp_path / "[red]notes.md"))
    assert "[red]notes.md" in output


# -- models ------------------------------------------------------------------------------


def test_a_model_cut_short_is_listed_as_unusable_and_the_rest_still_are(
    library: Path, tmp_path: Path
) -> None:
    home = ["--home", str(library)]
    data = gguf_bytes(llama_metadata())
    model = write_gguf(tmp_path / "short.gguf", data)
    assert invoke(*home, "models", "add", str(model), "--name", "short").exit_code == 0
    try:
        model.write_bytes(truncated(data, 0.5))
        table = invoke(*home, "models")
        assert table.exit_code == 0, table.output
        assert "default" in table.output and "unusable" in table.output
        assert "short: " in table.output and "cut short" in table.output

        listed = json.loads(invoke(*home, "models", "--json").stdout)
        by_name = {item["model"]["name"]: item for item in listed}
        assert by_name["default"]["problem"] is None and by_name["default"]["profile"]
        assert by_name["short"]["profile"] is None and "cut short" in by_name["short"]["problem"]

        before = _snapshot(library)
        asked = _error_line(1, *home, "ask", "harbour", "When?", "--model", "short")
        assert "short.gguf" in asked and "cut short" in asked
        assert _snapshot(library) == before
    finally:
        invoke(*home, "models", "remove", "short")


# -- questions ---------------------------------------------------------------------------


def test_a_question_too_long_for_the_window_says_so(library: Path) -> None:
    before = _snapshot(library)
    output = _error_line(1, "--home", str(library), "ask", "harbour", LONG_QUESTION)
    assert output.startswith("error: the question is ")
    assert "tokens; the model's window is 8,192" in output and "shorten it" in output
    assert "passages" not in output and "Harbour Lights" not in output  # nobody else blamed
    assert _snapshot(library) == before


def test_a_question_too_long_in_a_batch_is_that_line_s_error(library: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": LONG_QUESTION}) + "\n")
    answers = tmp_path / "answers.jsonl"
    output = _fails(
        1, "--home", str(library), "batch", str(questions), "-o", str(answers), "--doc", "harbour"
    )
    assert "line 1 (q1): the question is " in output and "shorten it" in output
    assert not answers.read_text(encoding="utf-8").strip()


def test_an_answer_length_that_leaves_no_room_names_the_setting(
    library: Path, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("[model]\nmax_answer_tokens = 8000\n", encoding="utf-8")
    output = _error_line(
        1, "--home", str(library), "--config", str(config), "ask", "harbour", "Why?"
    )
    assert "lower [model] max_answer_tokens" in output  # the brackets are not eaten
