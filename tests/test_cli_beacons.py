"""`longread summarize`: beacon summaries built ahead of questions, stopped and resumed.

With the real bundled model, each command in its own process, on the opening of a real book
from the shared corpus cut into many short windows: a build killed with SIGKILL mid-way keeps
every finished beacon, one stopped with Ctrl-C (SIGINT) says what it stored and exits 130,
and a re-run builds only what is missing, into beacons that cover the text end to end; a
complete set is reused without loading a model, and `ask --mode beacons` answers from it.
A fast test without the model checks the command's errors and help.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import main
from ingest.library import Library
from tests.conftest import REPO_ROOT, corpus_path

BOOK = "books/The Time Machine.txt"
BOOK_CHARS = 9_000
"""The book's opening, enough for 10 windows of 256 tokens: a build long enough to stop
mid-way, short enough for two CPU cores."""

CONFIG = """[beacons]
window_tokens = 256
max_beacon_tokens = 32
recent_tokens = 128

[model]
max_answer_tokens = 64
"""
"""Short windows, short beacons and few earlier beacons in view keep each window to a few
seconds of prefill on CI's two cores."""

WAIT_SECONDS = 300.0
POLL_SECONDS = 0.2


def _environment(home: Path) -> dict[str, str]:
    return os.environ | {"LONGREAD_HOME": str(home), "COLUMNS": "200"}


def longread(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process, as a person would; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _start_summarize(home: Path, document_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), "summarize", document_id],
        env=_environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read(home: Path, query: str, args: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the library, read-only, while another process may be writing."""
    connection = sqlite3.connect(f"file:{home / 'library.sqlite3'}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(query, args).fetchall()
    finally:
        connection.close()


def _stored_beacons(home: Path) -> int:
    """How many beacons the library holds; 0 while it cannot say (the set not yet made, or
    the writer holding the lock past the timeout)."""
    try:
        return int(_read(home, "SELECT COUNT(*) FROM beacons")[0][0])
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return 0
        raise


def _window_count(home: Path) -> int:
    rows = _read(home, "SELECT window_count FROM beacon_sets")
    assert len(rows) == 1, f"one set of beacons expected, found {rows}"
    return int(rows[0][0])


def _wait_until(process: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    """Poll until `ready()`; fail if the process ends first or it takes too long."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not ready():
        if process.poll() is not None:
            _, stderr = process.communicate()
            raise AssertionError(f"summarize ended before {what}: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=30)
            raise AssertionError(f"no {what} within {WAIT_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


def _summarize_json(home: Path, document_id: str) -> tuple[dict[str, Any], str]:
    result = longread(home, "summarize", document_id, "--json")
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload, result.stderr


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A library (its home, the document's id) holding the opening of a corpus book, with
    settings for many short windows. Shared by the module: the build is the slow part."""
    text = (corpus_path() / BOOK).read_text(encoding="utf-8")[:BOOK_CHARS]
    folder = tmp_path_factory.mktemp("beacons")
    source = folder / "time-machine-opening.txt"
    source.write_text(text, encoding="utf-8")
    home = folder / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG, encoding="utf-8")
    longread(home, "add", str(source))
    listed = json.loads(longread(home, "list", "--json").stdout)
    assert len(listed) == 1
    yield home, str(listed[0]["id"])


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.corpus
def test_a_killed_or_stopped_build_resumes_into_beacons_that_cover_the_text(
    book: tuple[Path, str],
) -> None:
    home, document_id = book

    killed = _start_summarize(home, document_id)
    _wait_until(killed, lambda: _stored_beacons(home) >= 2, "two beacons stored")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    windows = _window_count(home)
    after_kill = _stored_beacons(home)
    print(f"killed with {after_kill} of {windows} beacons stored")
    assert 2 <= after_kill < windows, "the kill landed mid-build and kept what was finished"

    stopped = _start_summarize(home, document_id)
    _wait_until(stopped, lambda: _stored_beacons(home) > after_kill, "a beacon more stored")
    stopped.send_signal(signal.SIGINT)
    _, stderr = stopped.communicate(timeout=120)
    after_stop = _stored_beacons(home)
    print(f"stopped with {after_stop} of {windows} beacons stored: {stderr.strip()}")
    assert stopped.returncode == 130, stderr
    assert f"stopped: {after_stop} of {windows} beacons stored" in stderr
    assert "run the same command again to resume" in stderr
    assert after_kill < after_stop < windows

    resumed, _ = _summarize_json(home, document_id)
    print(f"resumed: built {resumed['built']}, reused {resumed['reused']}")
    assert resumed["document"] == document_id
    assert resumed["window_tokens"] == 256 and resumed["ratio"] in (2, 4, 8, 16, 32)
    assert resumed["reused"] >= after_stop, "what was stored before is not written again"
    beacons = resumed["beacons"]
    assert resumed["built"] + resumed["reused"] == len(beacons) == windows
    assert _stored_beacons(home) == windows
    assert [b["ordinal"] for b in beacons] == list(range(windows))
    ((text,),) = _read(
        home, "SELECT text FROM document_texts WHERE document_id = ?", (document_id,)
    )
    assert beacons[0]["start"] == 0
    for previous, beacon in pairwise(beacons):
        assert beacon["start"] == previous["end"], "windows leave no gap and do not overlap"
    assert beacons[-1]["end"] == len(text)
    assert all(b["text"].strip() and b["start"] < b["end"] and b["location"] for b in beacons)

    started = time.monotonic()
    again, stderr = _summarize_json(home, document_id)
    seconds = time.monotonic() - started
    print(f"a complete set: {again['built']} built, {again['reused']} reused in {seconds:.1f} s")
    assert (again["built"], again["reused"]) == (0, windows)
    assert again["beacons"] == beacons
    assert "loading" not in stderr, "a complete set is reused without loading the model"

    plain = longread(home, "summarize", document_id)
    assert plain.stdout.startswith(f"Built 0 beacons, reused {windows} ({windows} windows")


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.corpus
def test_ask_in_beacons_mode_answers_from_the_built_beacons(book: tuple[Path, str]) -> None:
    home, document_id = book
    built, _ = _summarize_json(home, document_id)  # already built when run after the test above
    result = longread(
        home, "ask", document_id, "Summarize the story.", "--mode", "beacons", "--json"
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    print(answer["text"])
    assert answer["strategy"] == "beacons"
    assert answer["text"].strip()
    with Library(home) as library:
        sections = {section.citation() for section in library.sections(document_id)}
    known = sections | {b["location"] for b in built["beacons"]}
    assert answer["citations"], "an answer from beacons cites the windows it rests on"
    for citation in answer["citations"]:
        assert citation["location"] in known, f"{citation['location']!r} is none of {known}"
        assert citation["start"] < citation["end"]


def test_summarize_names_an_unknown_document_in_red_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors = io.StringIO()
    monkeypatch.setattr(main, "err", Console(file=errors, force_terminal=True, width=200))
    result = CliRunner().invoke(main.cli, ["summarize", "no-such-book"])
    assert result.exit_code == 1, result.output
    printed = errors.getvalue()
    assert "\x1b[31merror:" in printed, f"a red error line, got {printed!r}"
    assert "no-such-book" in printed


def test_summarize_help_mentions_rebuild() -> None:
    result = CliRunner().invoke(main.cli, ["summarize", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--rebuild" in result.output
    assert "resumes" in result.output


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.corpus
def test_ctrl_c_while_a_question_builds_beacons_keeps_them_and_exits_130(
    book: tuple[Path, str],
) -> None:
    home, document_id = book
    before = _stored_beacons(home)
    # Other settings mean other beacons: this question must build its own on first need.
    environment = _environment(home) | {"LONGREAD_BEACONS_MAX_BEACON_TOKENS": "24"}
    command = ["ask", document_id, "Summarize it.", "--mode", "beacons"]
    asking = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), *command],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until(asking, lambda: _stored_beacons(home) > before, "a beacon of the new set")
    asking.send_signal(signal.SIGINT)
    _, stderr = asking.communicate(timeout=120)
    assert asking.returncode == 130, stderr
    assert "cancelled" in stderr
    assert _stored_beacons(home) > before, "the beacons written before Ctrl-C are kept"
