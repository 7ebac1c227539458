"""The engine and passkey benchmarks: their prompts, their sizing, and their reports.

The unmarked tests need no model: documents, sizing with a stand-in token counter, and the
reports of hand-made results. The `model` tests run both benchmarks at toy sizes on the
bundled model and check the figures are sensible (the work was the same on both sides, the
prefix was reused, the KV sizes agree); they never assert timings or passkey accuracy,
which are the benchmarks' figures to print, not CI's to enforce.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.bench.engine import (
    FACTS,
    EngineBenchmark,
    FollowUpLatency,
    KVBytes,
    PrefillParity,
    run_engine_benchmark,
    town_document,
)
from engine.bench.passkey import (
    FILLER,
    QUESTION,
    PasskeyBenchmark,
    PasskeyTrial,
    build_document,
    key_sentence,
    passkey_messages,
    plan_for,
    repetitions_for,
    run_passkey_benchmark,
)
from engine.llm import GenerationStats
from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout, RopeMethod
from models.catalog import bundled_model_path
from models.types import ModelProfile
from tests.model_fixtures import smollm2_profile


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def bundled_model() -> Path:
    """The bundled GGUF, as the product finds it (a missing package fails, never skips)."""
    return bundled_model_path()


def profile(context_length: int = 8192) -> ModelProfile:
    return smollm2_profile(
        Path("/m.gguf"), context_length=context_length, file_size=100_000_000, sha256="5" * 64
    )


def stats(prompt: int, evaluated: int, first_token: float, loaded: bool = False) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=prompt,
        reused_tokens=prompt - evaluated,
        evaluated_tokens=evaluated,
        backend_evaluated_tokens=evaluated,
        state_loaded=loaded,
        state_saved=not loaded and evaluated == prompt,
        prefill_seconds=first_token,
        first_token_seconds=first_token,
        generated_tokens=1,
        total_seconds=first_token,
    )


def test_importing_the_benchmarks_does_not_load_llama_cpp() -> None:
    code = (
        "import sys, engine.bench.engine, engine.bench.passkey;"
        " print('llama_cpp' in sys.modules, 'numpy' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


# -- passkey prompts, no model --------------------------------------------------------------


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.93, 1.0])
def test_the_key_sits_at_the_requested_depth(depth: float) -> None:
    document = build_document(200, "48213", depth)
    assert document.text.count(key_sentence("48213")) == 1
    assert document.text[document.key_offset :].startswith(key_sentence("48213"))
    assert document.text.count(FILLER) == 200
    assert document.key_position == pytest.approx(depth, abs=0.02)


def test_the_question_stands_before_and_after_the_document() -> None:
    document = build_document(20, "48213", 0.5)
    messages = passkey_messages(document)
    user = messages[-1].content
    assert user.count(QUESTION) == 2
    assert user.index(QUESTION) < user.index(document.text) < user.rindex(QUESTION)


def test_filler_is_sized_to_the_target() -> None:
    for target in (1500, 13000):
        repetitions = repetitions_for(words, target)
        document = build_document(repetitions, "48213", 0.5)
        total = sum(words(m.content) for m in passkey_messages(document)) + 24
        assert total == pytest.approx(target, rel=0.01)


def test_unscaled_plan_runs_past_the_trained_window_at_the_yarn_window() -> None:
    yarn = plan_for(profile(), 13000, RopeMethod.YARN)
    none = plan_for(profile(), 13000, RopeMethod.NONE)
    assert yarn.rope_method is RopeMethod.YARN
    assert yarn.rope_freq_scale == pytest.approx(8192 / yarn.n_ctx)
    assert yarn.yarn_orig_ctx == 8192
    assert none.n_ctx == yarn.n_ctx >= 13000
    assert none.rope_method is RopeMethod.NONE
    assert (none.rope_freq_scale, none.yarn_orig_ctx, none.rope_freq_base) == (0.0, 0, None)
    assert none.kv_type is yarn.kv_type is KVCacheType.F16
    ntk = plan_for(profile(), 13000, RopeMethod.NTK)
    assert ntk.rope_freq_base is not None and ntk.rope_freq_base > 100000.0


def trial(run: int, method: RopeMethod, found: bool) -> PasskeyTrial:
    plan = plan_for(profile(), 13000, method)
    return PasskeyTrial(
        run=run,
        method=method,
        plan=plan,
        key="12345",
        depth=0.5,
        key_position=0.5,
        prompt_tokens=13000,
        answer="12345" if found else "no idea",
        found=found,
        prefill_seconds=150.0,
        llama_rope="freq_base 100000.0, freq_scale 1",
    )


def test_passkey_report_counts_accuracy_and_recoveries() -> None:
    trials = [
        trial(1, RopeMethod.NONE, False),
        trial(1, RopeMethod.YARN, True),
        trial(2, RopeMethod.NONE, False),
        trial(2, RopeMethod.YARN, True),
        trial(3, RopeMethod.NONE, True),
        trial(3, RopeMethod.YARN, False),
    ]
    result = PasskeyBenchmark(
        model="m.gguf",
        n_ctx_train=8192,
        target_tokens=13000,
        threads=None,
        seed=1,
        question=QUESTION,
        methods=(RopeMethod.NONE, RopeMethod.YARN),
        trials=tuple(trials),
    )
    assert result.runs == 3
    assert result.accuracy(RopeMethod.YARN) == (2, 3)
    assert result.accuracy(RopeMethod.NONE) == (1, 3)
    assert result.recovered(RopeMethod.YARN) == (2, 3)
    report = result.report()
    assert "accuracy: unscaled 1/3, YaRN 2/3" in report
    assert "YaRN found the key in 2 of 3 runs where unscaled missed it" in report
    assert "(goal: at least 2 of 3)" in report
    assert report.rstrip().endswith("met")


# -- engine benchmark, no model ---------------------------------------------------------------


def test_town_document_is_deterministic_sized_and_holds_the_facts() -> None:
    document = town_document(words, 2000)
    assert document == town_document(words, 2000)
    assert 2000 <= words(document) <= 2000 * 1.1
    for fact, _ in FACTS:
        assert document.count(fact) == 1
    assert town_document(words, 2000, seed=8) != document


def test_engine_report_shows_ratios_and_verdicts() -> None:
    parity = PrefillParity(
        document_tokens=2000,
        prompt_tokens=2100,
        n_ctx=2304,
        threads_batch=2,
        raw_seconds=(10.0, 9.0),
        longread_seconds=(9.5, 9.2),
        longread_evaluated=(2100, 2100),
    )
    assert parity.ratio == pytest.approx(9.0 / 9.2)
    assert parity.round_ratios == pytest.approx((10.0 / 9.5, 9.0 / 9.2))
    follow = FollowUpLatency(
        document_tokens=4000,
        n_ctx=4352,
        cold=stats(4100, 4100, 20.0),
        follow_ups=(stats(4100, 20, 0.2), stats(4100, 20, 0.4), stats(4100, 20, 0.3)),
        reloads=(stats(4100, 20, 0.5, loaded=True),),
        reload_model_seconds=(0.3,),
        state_bytes=90 * 2**20,
    )
    assert follow.follow_up_speedup == pytest.approx(20.0 / 0.3)
    assert follow.reload_speedup == pytest.approx(40.0)
    kv = (
        KVBytes(KVCacheType.F16, 4096, False, 100, 100),
        KVBytes(KVCacheType.Q8_0, 4096, True, 100, 109),
        KVBytes(KVCacheType.Q4_0, 4096, True, 100, None),
    )
    result = EngineBenchmark("m.gguf", None, parity, follow, kv)
    assert result.parity_met and result.speedup_met
    assert not result.kv_met  # q4_0 was not logged: not a pass
    report = result.report()
    assert "longread / raw: 0.978" in report and "per round: 1.05 0.98" in report
    assert "67x" in report and "40x" in report
    assert "not logged" in report


# -- the real model, toy sizes --------------------------------------------------------------


@pytest.mark.model
@pytest.mark.slow
def test_engine_benchmark_runs_and_reports_sensible_figures() -> None:
    result = run_engine_benchmark(
        model_path=bundled_model(),
        parity_tokens=200,
        follow_up_tokens=300,
        rounds=1,
        kv_n_ctx=512,
        kv_types=(KVCacheType.F16, KVCacheType.Q8_0),
    )
    parity = result.parity
    assert parity.longread_evaluated == (parity.prompt_tokens,)
    assert parity.document_tokens >= 200
    assert math.isfinite(parity.ratio) and parity.ratio > 0
    follow = result.follow_up
    assert follow.cold.evaluated_tokens == follow.cold.prompt_tokens
    assert follow.cold.state_saved
    for item in (*follow.follow_ups, *follow.reloads):
        assert 0 < item.evaluated_tokens < 60 < item.reused_tokens
    assert all(item.state_loaded for item in follow.reloads)
    assert follow.state_bytes > 0
    assert [item.kv_type for item in result.kv] == [KVCacheType.F16, KVCacheType.Q8_0]
    assert [item.flash_attn for item in result.kv] == [False, True]
    assert result.kv_met  # sizes are exact, not timings: this one is asserted
    report = result.report()
    assert "longread / raw" in report and "speed-up goal" in report


@pytest.mark.model
@pytest.mark.slow
def test_passkey_smoke_builds_the_prompt_and_reports_found_over_total() -> None:
    progress: list[str] = []
    result = run_passkey_benchmark(
        target_tokens=1500,
        runs=1,
        methods=(RopeMethod.NONE, RopeMethod.YARN),
        seed=3,
        model_path=bundled_model(),
        trained_context=1024,  # so YaRN really scales at this size
        progress=progress.append,
    )
    none, yarn = result.trials
    assert none.key == yarn.key and len(none.key) == 5 and none.key.isdigit()
    assert none.key_position == pytest.approx(none.depth, abs=0.03)
    assert none.prompt_tokens == yarn.prompt_tokens
    assert none.prompt_tokens == pytest.approx(1500, rel=0.05)
    assert none.plan.rope_method is RopeMethod.NONE
    assert yarn.plan.rope_method is RopeMethod.YARN and yarn.plan.yarn_orig_ctx == 1024
    assert none.plan.n_ctx == yarn.plan.n_ctx >= none.prompt_tokens
    # What llama.cpp itself reports: the scale reached it, and the unscaled run has none.
    assert "freq_scale 1" in none.llama_rope
    scale = float(yarn.llama_rope.split("freq_scale ")[1])
    assert scale == pytest.approx(1024 / yarn.plan.n_ctx, rel=1e-3)
    for item in result.trials:
        assert item.found == (item.key in item.answer)
    found, total = result.accuracy(RopeMethod.YARN)
    assert total == 1 and found in (0, 1)
    assert "accuracy: unscaled" in result.report()
    assert "nothing was scaled" not in result.report()
    assert progress


def test_plans_are_cpu_f16_query_aware() -> None:
    plan: ContextPlan = plan_for(profile(1024), 1500, RopeMethod.YARN)
    assert plan.backend is Backend.CPU
    assert plan.layout is PromptLayout.QUERY_AWARE
    assert plan.rope_freq_scale == pytest.approx(1024 / plan.n_ctx)


def test_passkey_report_says_when_nothing_was_scaled() -> None:
    short = plan_for(profile(), 3000, RopeMethod.YARN)
    assert short.rope_method is RopeMethod.NONE  # fits the trained window: the planner's call
    trials = tuple(
        PasskeyTrial(1, method, short, "12345", 0.5, 0.5, 3000, "12345", True, 9.0, "-")
        for method in (RopeMethod.NONE, RopeMethod.YARN)
    )
    result = PasskeyBenchmark(
        "m.gguf", 8192, 3000, 2, 1, QUESTION, (RopeMethod.NONE, RopeMethod.YARN), trials
    )
    report = result.report()
    assert "accuracy: unscaled 1/1, YaRN 1/1" in report
    assert "YaRN: the prompts fit the trained window, so nothing was scaled" in report
    assert "threads 2" in report
