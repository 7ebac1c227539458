"""`longread batch` with the real bundled model, in its own process: killed mid-run and run
again, it answers every question exactly once; malformed lines are reported, not fatal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from tests.conftest import REPO_ROOT
from tests.fakes import FakeEmbedder

pytestmark = [pytest.mark.model, pytest.mark.slow]

LETTER = """# A Letter from the Lighthouse

Dear Anna, the supply boat comes every second Tuesday. The lamp room is locked with a brass
padlock whose combination is 4719. In October a storm broke the outer glass, and I mended it
with glass from the boat. The previous keeper, Tobias Wren, left a logbook on the desk.
"""

QUESTIONS = [
    {"id": "boat", "question": "When does the supply boat come?"},
    {"id": "code", "question": "What is the padlock's combination?"},
    {"id": "storm", "question": "What broke in October?"},
    {"id": "keeper", "question": "Who was the previous keeper?"},
    {"id": "desk", "question": "What was left on the desk?"},
    {"id": "glass", "question": "How was the glass mended?"},
]


def _batch(home: Path, questions: Path, output: Path) -> subprocess.Popen[str]:
    environment = os.environ | {
        "LONGREAD_HOME": str(home),
        "LONGREAD_MODEL_MAX_ANSWER_TOKENS": "48",
        "COLUMNS": "200",
    }
    command = [sys.executable, str(REPO_ROOT / "main.py"), "batch", str(questions)]
    return subprocess.Popen(
        [*command, "--doc", "lighthouse", "-o", str(output)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answered(output: Path) -> list[str]:
    lines = output.read_text(encoding="utf-8").splitlines() if output.exists() else []
    return [json.loads(line)["id"] for line in lines if line.endswith("}")]


def test_a_killed_batch_resumes_and_answers_each_question_once(
    tmp_path: Path, isolated_home: Path
) -> None:
    letter = tmp_path / "letter.md"
    letter.write_text(LETTER, encoding="utf-8")
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, embedder=FakeEmbedder()) as assistant:
        list(assistant.add([letter], index=False))  # a short letter is read whole: no index

    questions = tmp_path / "questions.jsonl"
    rows = (
        [json.dumps(q) for q in QUESTIONS[:2]]
        + ["{not json"]
        + [json.dumps(q) for q in QUESTIONS[2:]]
    )
    questions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    output = tmp_path / "answers.jsonl"

    first = _batch(isolated_home, questions, output)
    deadline = time.monotonic() + 300
    while not _answered(output) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    _, first_errors = first.communicate()
    before = _answered(output)
    assert first.returncode == -signal.SIGKILL, f"the first run ended by itself: {first_errors}"
    print(f"answered before the kill: {len(before)} of {len(QUESTIONS)}")
    assert 1 <= len(before) < len(QUESTIONS), "the kill should land mid-run"

    second = _batch(isolated_home, questions, output)
    _, stderr = second.communicate(timeout=600)
    print(stderr)
    answered = _answered(output)
    assert sorted(answered) == sorted(q["id"] for q in QUESTIONS), "each question exactly once"
    assert "line 3" in stderr, "the malformed line is reported with its number"
    assert f"{len(before)} already answered" in stderr
    assert second.returncode == 1, "a skipped line makes the run incomplete"

    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    code = next(r for r in records if r["id"] == "code")
    assert code["answer"].strip() and code["route"]["strategy"] == "long"
    assert code["timings"]["prompt_tokens"] > 0 and code["line"] == 2


def test_ctrl_c_stops_a_batch_keeping_only_finished_answers(
    tmp_path: Path, isolated_home: Path
) -> None:
    """Ctrl-C sets the cancel event (a KeyboardInterrupt can be lost inside llama.cpp's
    callbacks): the answer in progress stops and is not written, the run exits 130."""
    letter = tmp_path / "letter.md"
    letter.write_text(LETTER, encoding="utf-8")
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, embedder=FakeEmbedder()) as assistant:
        list(assistant.add([letter], index=False))
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n", encoding="utf-8")
    output = tmp_path / "answers.jsonl"

    running = _batch(isolated_home, questions, output)
    deadline = time.monotonic() + 300
    while not _answered(output) and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=120)
    answered = _answered(output)
    print(f"answered before Ctrl-C: {len(answered)} of {len(QUESTIONS)}")
    assert running.returncode == 130, stderr
    assert "cancelled; answers so far are kept" in stderr and "Traceback" not in stderr
    assert 1 <= len(answered) < len(QUESTIONS)
    lines = output.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(answered), "only whole records are written"
    assert all(json.loads(line)["answer"].strip() for line in lines)
