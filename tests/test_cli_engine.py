"""The engine through the CLI with the real bundled model, each command in its own process.

Short documents only: CI has 2 cores and no GPU. Reuse of a document's KV state is asserted
from llama.cpp's own counts of evaluated tokens, never from wall-clock thresholds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.gguf_factory import truncated, write_gguf, yarn_llama

KEEPER = """# The Lighthouse Keeper

## Arrival

Mara arrived at Gull Rock lighthouse in the spring of 1911. The previous keeper, Tobias
Wren, had left a logbook on the desk.

## The Storm

In October a storm broke the lamp's outer glass. Mara repaired it with glass from the
supply boat, which came every second Tuesday.

## The Code

The lamp room was locked with a brass padlock. Its combination was 4719, written inside
the cover of the logbook.
"""

pytestmark = [pytest.mark.model, pytest.mark.slow]


def longread(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process, as a person would."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        env=os.environ | {"LONGREAD_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def ask_json(home: Path, question: str, *flags: str) -> dict[str, Any]:
    result = longread(home, "ask", "keeper", question, "--json", *flags)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


@pytest.fixture
def library(tmp_path: Path, isolated_home: Path) -> Path:
    source = tmp_path / "keeper.md"
    source.write_text(KEEPER, encoding="utf-8")
    longread(isolated_home, "add", str(source))
    return isolated_home


def test_ask_json_reports_the_answer_plan_layout_and_timings(library: Path) -> None:
    answer = ask_json(library, "What was the combination of the padlock?")
    print(answer["text"])
    assert answer["text"].strip()
    assert answer["layout"] == "query-aware"
    assert answer["strategy"] == "long"
    assert answer["plan"]["fits"] and answer["plan"]["rope_method"] == "none"
    timings = answer["timings"]
    assert timings["prompt_tokens"] == timings["evaluated_tokens"] > 100
    assert set(timings) >= {"load_seconds", "prefill_seconds", "first_token_seconds"}


def test_the_plain_output_streams_the_answer_and_puts_the_plan_on_stderr(library: Path) -> None:
    result = longread(library, "ask", "keeper", "What was the combination of the padlock?")
    assert "window:" in result.stderr and "layout:" in result.stderr
    assert "window:" not in result.stdout
    assert result.stdout.strip()


def test_a_follow_up_in_another_process_loads_the_saved_kv_state(library: Path) -> None:
    explain = ("ask", "keeper", "Why did Mara stay?", "--layout", "cached", "--explain", "--json")
    before = json.loads(longread(library, *explain).stdout)
    assert before["strategy"] == "long" and not before["facts"]["kv_cached"]
    first = ask_json(library, "When did Mara arrive?", "--layout", "cached")
    assert not first["timings"]["state_loaded"]
    assert first["timings"]["evaluated_tokens"] == first["timings"]["prompt_tokens"]

    follow_up = ask_json(library, "What broke in October?", "--layout", "cached")
    timings = follow_up["timings"]
    print(f"cold: {first['timings']}\nfollow-up: {timings}")
    assert timings["state_loaded"]
    assert timings["reused_tokens"] > 150
    assert timings["evaluated_tokens"] < 30, "only the question should be evaluated"
    after = json.loads(longread(library, *explain).stdout)
    assert after["facts"]["kv_cached"], "the router knows the document is already read"
    assert after["question_type"] == "reasoning" and after["reasons"]

    listing = longread(library, "cache")
    assert "The Lighthouse Keeper" in listing.stdout
    cleared = longread(library, "cache", "clear")
    assert "freed" in cleared.stdout and "freed 0.0 MiB" not in cleared.stdout
    assert "No saved KV states" in longread(library, "cache").stdout


def test_a_corrupt_saved_state_is_rebuilt_not_trusted(library: Path) -> None:
    ask_json(library, "When did Mara arrive?", "--layout", "cached")
    payloads = [p for p in (library / "kvcache").rglob("*") if p.is_file() and p.suffix != ".json"]
    assert payloads, "a state was saved"
    for payload in payloads:
        data = bytearray(payload.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        payload.write_bytes(bytes(data))

    again = ask_json(library, "What broke in October?", "--layout", "cached")
    assert not again["timings"]["state_loaded"]
    assert again["timings"]["evaluated_tokens"] == again["timings"]["prompt_tokens"]
    reloaded = ask_json(library, "Who was the previous keeper?", "--layout", "cached")
    assert reloaded["timings"]["state_loaded"], "the rebuilt state is saved and used"


def test_plan_shows_the_window_and_why(library: Path) -> None:
    planned = json.loads(longread(library, "plan", "keeper", "--json").stdout)
    plan = planned["plan"]
    assert plan["fits"] and plan["n_ctx"] >= plan["tokens_needed"]
    assert plan["kv_type"] == "f16" and planned["model"] == "default"
    text = longread(library, "plan", "keeper").stdout
    assert "8,192-token trained window" in text and "verdict:" in text


def test_models_lists_adds_and_refuses_corrupt_files(tmp_path: Path, isolated_home: Path) -> None:
    listed = json.loads(longread(isolated_home, "models", "--json").stdout)
    assert listed[0]["model"]["name"] == "default"
    assert listed[0]["profile"]["context_length"] == 8192

    long_model = write_gguf(tmp_path / "long-llama.gguf", yarn_llama())
    longread(isolated_home, "models", "add", str(long_model), "--name", "long")
    names = [
        m["model"]["name"] for m in json.loads(longread(isolated_home, "models", "--json").stdout)
    ]
    assert names == ["default", "long"]

    broken = write_gguf(tmp_path / "broken.gguf", truncated(yarn_llama(), 0.3))
    refused = longread(isolated_home, "models", "add", str(broken), check=False)
    assert refused.returncode == 1 and "broken.gguf" in refused.stderr

    longread(isolated_home, "models", "remove", "long")
    names = [
        m["model"]["name"] for m in json.loads(longread(isolated_home, "models", "--json").stdout)
    ]
    assert names == ["default"]


def test_a_missing_model_file_is_a_clear_error(library: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    result = longread(library, "ask", "keeper", "Why?", "--model", str(missing), check=False)
    assert result.returncode == 1
    assert "nowhere.gguf" in result.stderr
