"""The CLI end to end through typer's runner: add, list, show, remove, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from main import cli

runner = CliRunner()

NOVEL = (
    "# Harbour Lights\n\n## Arrival\n\nThe ferry came in at dawn.\n\n"
    "## Departure\n\nShe left at dusk.\n"
)
ESSAY = "# Harbour Walls\n\nStone, lime and patience.\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_add_list_show_remove_round_trip(tmp_path: Path) -> None:
    novel = _write(tmp_path, "novel.md", NOVEL)
    essay = _write(tmp_path, "essay.md", ESSAY)
    added = runner.invoke(cli, ["add", str(novel), str(essay)])
    assert added.exit_code == 0, added.output
    assert "Harbour Lights" in added.output and "chunks" in added.output

    listed = json.loads(runner.invoke(cli, ["list", "--json"]).output)
    assert sorted(d["title"] for d in listed) == ["Harbour Lights", "Harbour Walls"]
    assert set(listed[0]) >= {"id", "title", "format", "page_count", "token_count", "chunk_count"}

    table = runner.invoke(cli, ["list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "Harbour Walls" in table.output

    shown = json.loads(runner.invoke(cli, ["show", "lights", "--json"]).output)
    assert [s["label"] for s in shown["sections"]][-2:] == ["Arrival", "Departure"]
    outline = runner.invoke(cli, ["show", "lights"])
    assert "Departure" in outline.output

    ambiguous = runner.invoke(cli, ["show", "harbour"])
    assert ambiguous.exit_code == 1
    assert "matches 2 documents" in ambiguous.output and "Harbour Walls" in ambiguous.output

    novel_id = next(d["id"] for d in listed if d["title"] == "Harbour Lights")
    removed = runner.invoke(cli, ["remove", novel_id[:8]])
    assert removed.exit_code == 0 and "Harbour Lights" in removed.output
    remaining = json.loads(runner.invoke(cli, ["list", "--json"]).output)
    assert [d["title"] for d in remaining] == ["Harbour Walls"]


def test_add_reports_duplicates_and_failures_but_adds_the_rest(tmp_path: Path) -> None:
    novel = _write(tmp_path, "novel.md", NOVEL)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n garbage that ends abruptly")
    first = runner.invoke(cli, ["add", str(novel)])
    assert first.exit_code == 0
    result = runner.invoke(
        cli, ["add", str(broken), str(novel), str(_write(tmp_path, "e.md", ESSAY))]
    )
    assert result.exit_code == 1
    assert "broken.pdf" in result.output
    assert "already in the library" in result.output
    assert "1 of 3 files could not be added" in result.output
    titles = [d["title"] for d in json.loads(runner.invoke(cli, ["list", "--json"]).output)]
    assert sorted(titles) == ["Harbour Lights", "Harbour Walls"]


def test_unknown_document_is_an_error_with_advice() -> None:
    result = runner.invoke(cli, ["show", "nothing-like-this"])
    assert result.exit_code == 1
    assert "longread list" in result.output


def test_empty_library_says_how_to_add() -> None:
    result = runner.invoke(cli, ["list"])
    assert result.exit_code == 0 and "longread add" in result.output


def test_a_bad_config_file_is_reported_not_a_traceback(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.toml").write_text("[chunking]\nsize = 3\n")
    result = runner.invoke(cli, ["list"])
    assert result.exit_code == 1
    assert "unknown setting chunking.size" in result.output


def test_the_cli_starts_without_loading_heavy_libraries() -> None:
    """`longread --help` stays fast: llama_cpp, torch, faiss and pypdf load only when used."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    heavy = ("llama_cpp", "torch", "sentence_transformers", "faiss", "pypdf", "numpy")
    probe = (
        "import sys, main; main.cli(['--help'], standalone_mode=False);"
        f" print('loaded:' + ','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "loaded:", result.stdout


def test_no_command_without_a_terminal_prints_the_help_instead_of_the_ui() -> None:
    result = runner.invoke(cli, [])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "tui" in result.output


def test_tui_reports_a_bad_config_before_drawing_anything(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.toml").write_text("[nonsense]\nkey = 1\n", encoding="utf-8")
    result = runner.invoke(cli, ["tui"])
    assert result.exit_code == 1
    assert "unknown section 'nonsense'" in result.output


def test_titles_and_paths_with_brackets_are_printed_as_written(tmp_path: Path) -> None:
    """Rich markup in a title ("[bold]", "[draft]") is text, not styling that eats it."""
    novel = _write(tmp_path, "[draft] notes.md", "# Notes [draft] [bold]x\n\nThe tide turned.\n")
    added = runner.invoke(cli, ["add", str(novel)])
    assert added.exit_code == 0, added.output
    assert "Notes [draft] [bold]x" in added.output
    table = runner.invoke(cli, ["list"], env={"COLUMNS": "200"})
    assert "Notes [draft] [bold]x" in table.output
    shown = runner.invoke(cli, ["show", "notes"])
    assert "Notes [draft] [bold]x" in shown.output and "[draft] notes.md" in shown.output
    removed = runner.invoke(cli, ["remove", "notes"])
    assert "Notes [draft] [bold]x" in removed.output
