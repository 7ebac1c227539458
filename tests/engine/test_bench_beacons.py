"""The beacon build benchmark: the reports of hand-made results, and the benchmark itself at
toy size on the bundled model.

The toy build checks the figures are sensible (tokens were read, both sides took time, the
plain run read no more than the build); it never asserts timings or the goal, which are the
benchmark's to report, not CI's to enforce. The QA benchmark's tests are in
test_bench_beacon_qa.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.bench.beacons import (
    DEFAULT_WINDOW_TOKENS,
    BeaconBuildBenchmark,
    run_beacon_build_benchmark,
)


def test_importing_the_benchmarks_does_not_load_llama_cpp() -> None:
    code = (
        "import sys, engine.bench.beacons, engine.bench.beacon_qa;"
        " print('llama_cpp' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False"]


def test_the_default_window_is_the_automatic_one() -> None:
    assert DEFAULT_WINDOW_TOKENS == 0  # the product's own: a quarter of the model's window


# -- reports of hand-made results ---------------------------------------------------------


def build_result(build_seconds: float) -> BeaconBuildBenchmark:
    return BeaconBuildBenchmark(
        document="A Christmas Carol.txt",
        characters=24_000,
        document_tokens=6_100,
        model="m.gguf",
        threads=None,
        n_ctx=1_536,
        windows=7,
        window_tokens=512,
        ratio=2,
        beacon_tokens=256,
        recent_tokens=512,
        build_seconds=build_seconds,
        writes=9,
        build_prompt_tokens=5_000,
        build_evaluated_tokens=4_800,
        build_prefill_seconds=60.0,
        build_decode_seconds=40.0,
        generated_tokens=1_200,
        beacon_lengths=(100, 256, 200, 256, 150, 90, 60),
        plain_seconds=30.0,
        plain_prompt_tokens=3_600,
        plain_evaluated_tokens=2_400,
    )


def test_build_report_shows_a_prefill_bound_build() -> None:
    result = build_result(100.0)
    assert result.prefill_rate == pytest.approx(80.0)
    assert result.prefill_equivalent_seconds == pytest.approx(60.0)
    assert result.build_over_prefill == pytest.approx(100 / 60)
    assert result.generation_seconds == pytest.approx(40.0)
    assert result.rewrites == 2 and result.beacons_at_cap == 2
    assert result.prefill_bound
    report = result.report()
    assert "first 24,000 characters (6,100 tokens)" in report
    assert "7 windows of up to 512 tokens, ratio 2 (beacons capped at 256 tokens)" in report
    assert "9 beacons written (2 again, with the window alone)" in report
    assert "5,000 prompt tokens read (4,800 evaluated), 1,200 tokens generated" in report
    assert "mean 159 tokens, 2 of 7 at the cap" in report
    assert "reading 60.0 s, writing 40.0 s (40% of the build, 30.0 tokens/s)" in report
    assert "30.0 s for 3,600 prompt tokens (2,400 evaluated, 80 tokens/s)" in report
    assert "prefill-equivalent of the build's 4,800 evaluated tokens: 60.0 s" in report
    assert "build / prefill: 1.67; generation took about 40% of the build (40.0 s)" in report
    assert report.endswith("(prefill-bound): met: reading dominates, the build is prefill-bound")


def test_build_report_says_when_generation_dominates() -> None:
    result = build_result(150.0)
    assert not result.prefill_bound
    report = result.report()
    assert "build / prefill: 2.50; generation took about 60% of the build (90.0 s)" in report
    assert report.endswith("NOT met: generation dominates")


def test_the_estimate_never_goes_below_zero() -> None:
    result = build_result(50.0)  # a build faster than its prefill-equivalent: noise
    assert result.generation_seconds == 0.0 and result.generation_share == 0.0


# -- the build benchmark, toy size ------------------------------------------------------------


@pytest.mark.model
@pytest.mark.corpus
@pytest.mark.slow
def test_build_benchmark_runs_and_reports_sensible_figures(corpus: Path) -> None:
    messages: list[str] = []
    result = run_beacon_build_benchmark(
        document=corpus / "books" / "A Christmas Carol.txt",
        max_chars=6000,
        window_tokens=256,
        progress=messages.append,
    )
    assert result.characters == 6000
    assert result.windows >= 2 and result.window_tokens == 256
    assert len(result.beacon_lengths) == result.windows
    assert 0 < result.beacon_tokens <= 256 and result.ratio >= 2
    assert result.writes >= result.windows  # one per window, more when one was rewritten
    assert 0 < result.build_evaluated_tokens <= result.build_prompt_tokens
    assert result.generated_tokens > 0
    # The side run prefills each window's first pass: never more than the build read.
    assert 0 < result.plain_evaluated_tokens <= result.plain_prompt_tokens
    assert result.plain_prompt_tokens <= result.build_prompt_tokens
    if result.rewrites == 0:
        assert result.plain_prompt_tokens == result.build_prompt_tokens
    assert result.build_seconds > 0 and result.plain_seconds > 0
    assert result.build_prefill_seconds > 0 and result.build_decode_seconds > 0
    assert math.isfinite(result.build_over_prefill) and result.build_over_prefill > 0
    assert 0.0 <= result.generation_share < 1.0
    report = result.report()
    assert "build / prefill" in report and "goal: build / prefill at most 2" in report
    assert any("building beacons" in message for message in messages)
