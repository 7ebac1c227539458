"""`longread bench beacons` and `longread bench beacons-qa`, without a model: their errors
and their help. The benchmarks themselves are tested in tests/engine/test_bench_beacons.py
and tests/engine/test_bench_beacon_qa.py (the runs take minutes to an hour)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import main


def _errors(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the CLI prints on stderr, with its colours kept."""
    errors = io.StringIO()
    monkeypatch.setattr(main, "err", Console(file=errors, force_terminal=True, width=200))
    return errors


def test_bench_beacons_names_a_missing_document_in_red_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors = _errors(monkeypatch)
    result = CliRunner().invoke(main.cli, ["bench", "beacons", "--document", "/nonexistent"])
    assert result.exit_code == 1, result.output
    printed = errors.getvalue()
    assert "\x1b[31merror:" in printed, f"a red error line, got {printed!r}"
    assert "/nonexistent not found; pass --document" in printed


def test_bench_beacons_shows_a_settings_error_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    document = tmp_path / "book.txt"
    document.write_text("It was a dark and stormy night.", encoding="utf-8")
    errors = _errors(monkeypatch)
    home = str(tmp_path / "home")
    command = ["bench", "beacons", "--document", str(document), "--window-tokens", "10"]
    result = CliRunner().invoke(main.cli, ["--home", home, *command])
    assert result.exit_code == 1, result.output
    printed = errors.getvalue()
    # "[beacons]" is printed as it is, not taken for markup
    assert "[beacons] settings are invalid" in printed, printed
    assert "window_tokens must be 0 (automatic) or at least 64" in printed


def test_bench_beacons_qa_names_a_missing_question_file_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    errors = _errors(monkeypatch)
    result = CliRunner().invoke(main.cli, ["bench", "beacons-qa", "--corpus", str(tmp_path)])
    assert result.exit_code == 1, result.output
    printed = errors.getvalue()
    assert "\x1b[31merror:" in printed
    assert "lara_32k_book_reasoning.jsonl not found; pass --corpus or --qa-file" in printed


def test_bench_beacons_help_mentions_its_options() -> None:
    result = CliRunner().invoke(main.cli, ["bench", "beacons", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--document", "--chars", "--window-tokens", "--model"):
        assert option in result.output
    assert "prefill-bound" in result.output
    assert "automatic" in result.output


def test_bench_beacons_qa_help_mentions_its_options() -> None:
    result = CliRunner().invoke(main.cli, ["bench", "beacons-qa", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--corpus", "--qa-file", "--books", "--questions", "--model"):
        assert option in result.output
    assert "token F1" in result.output


def test_bench_lists_both_beacon_benchmarks() -> None:
    result = CliRunner().invoke(main.cli, ["bench", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "beacons-qa" in result.output
    assert "Beacon building against plain prefill" in result.output
