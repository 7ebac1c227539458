"""The context planner: table tests on realistic model shapes, and properties.

Profiles are built by hand with the shapes their GGUFs state (no GGUF reader involved).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.planner import (
    CPU_KV_SLOWDOWN,
    MIN_CONTEXT,
    PlannerSettings,
    compute_allowance_bytes,
    cpu_prefill_rate,
    describe,
    estimate_prefill_seconds,
    format_bytes,
    format_seconds,
    kv_cache_bytes,
    needs_swa_full,
    plan_context,
    weights_bytes,
)
from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout, RopeMethod
from models.types import ModelProfile
from tests.model_fixtures import smollm2_profile

GiB = 2**30
MiB = 2**20
PLENTY = 64 * GiB


def profile(**changes: Any) -> ModelProfile:
    """SmolLM2-135M-Instruct (Q4_1) as its GGUF states it; `changes` make other models."""
    return smollm2_profile(**{"file_size": 98_000_000} | changes)


SMOL = profile()
LLAMA31 = profile(
    name="Meta-Llama-3.1-8B-Instruct",
    context_length=131072,
    embedding_length=4096,
    layer_count=32,
    head_count=32,
    kv_head_count=8,
    key_length=128,
    value_length=128,
    rope_freq_base=500000.0,
    has_rope_freqs=True,
    parameter_count=8_030_261_248,
    file_type="Q4_K_M",
    file_size=4_920_000_000,
)
QWEN_YARN = profile(
    name="Qwen2.5-7B-Instruct (YaRN x4 baked)",
    architecture="qwen2",
    context_length=131072,
    embedding_length=3584,
    layer_count=28,
    head_count=28,
    kv_head_count=4,
    key_length=128,
    value_length=128,
    rope_freq_base=1000000.0,
    rope_scaling_type="yarn",
    rope_scaling_factor=4.0,
    rope_original_context=32768,
    parameter_count=7_615_616_512,
    file_size=4_680_000_000,
)
GEMMA3 = profile(
    name="gemma-3-1b-it",
    architecture="gemma3",
    context_length=32768,
    embedding_length=1152,
    layer_count=26,
    head_count=4,
    kv_head_count=1,
    key_length=256,
    value_length=256,
    rope_freq_base=1000000.0,
    sliding_window=512,
    parameter_count=999_885_952,
    file_size=806_000_000,
)
MISTRAL = profile(
    name="Mistral-7B-Instruct-v0.3",
    context_length=32768,
    embedding_length=4096,
    layer_count=32,
    head_count=32,
    kv_head_count=8,
    key_length=128,
    value_length=128,
    rope_freq_base=1000000.0,
    parameter_count=7_248_023_552,
    file_size=4_370_000_000,
)


def cpu_need(p: ModelProfile, n_ctx: int, kv_type: KVCacheType) -> int:
    """What a CPU plan must find free: weights, KV and the compute allowance."""
    flash = kv_type is not KVCacheType.F16
    return (
        weights_bytes(p)
        + kv_cache_bytes(p, n_ctx, kv_type)
        + compute_allowance_bytes(p, n_ctx, flash_attn=flash)
    )


# --- the window and RoPE scaling -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "granularity", "n_ctx"),
    [
        (1, 256, MIN_CONTEXT),
        (300, 256, MIN_CONTEXT),
        (512, 256, 512),
        (513, 256, 768),
        (3000, 256, 3072),
        (8000, 256, 8192),
        (8192, 256, 8192),
        (8100, 1000, 8192),  # rounding to 9000 would cross the window: clamped, unscaled
        (3001, 1, 3001),
    ],
)
def test_inside_the_trained_window_runs_unscaled(tokens: int, granularity: int, n_ctx: int) -> None:
    plan = plan_context(
        SMOL, tokens, PLENTY, Backend.CPU, PlannerSettings(context_granularity=granularity)
    )
    assert plan.fits
    assert plan.n_ctx == n_ctx
    assert plan.n_ctx_train == 8192
    assert (plan.rope_method, plan.rope_factor) == (RopeMethod.NONE, 1.0)
    assert (plan.rope_freq_scale, plan.rope_freq_base, plan.yarn_orig_ctx) == (0.0, None, 0)
    assert plan.kv_type is KVCacheType.F16
    assert not plan.flash_attn
    assert plan.gpu_layers == 0
    assert "unscaled" in plan.reason


def test_13k_tokens_on_the_8k_model_use_yarn_with_both_values() -> None:
    plan = plan_context(SMOL, 13_100, PLENTY, Backend.CPU)
    assert plan.fits
    assert plan.n_ctx == 13_312  # 13,100 rounded up to a multiple of 256
    assert plan.rope_method is RopeMethod.YARN
    assert plan.rope_factor == pytest.approx(1.625)
    assert plan.rope_freq_scale == 8192 / 13_312
    assert plan.yarn_orig_ctx == 8192
    assert plan.rope_freq_base is None
    assert plan.reason.startswith("8,192-token window, document needs 13,100 tokens: YaRN x1.6")


def test_linear_scaling_passes_the_scale_only() -> None:
    plan = plan_context(
        SMOL, 13_100, PLENTY, Backend.CPU, PlannerSettings(rope_method=RopeMethod.LINEAR)
    )
    assert plan.rope_method is RopeMethod.LINEAR
    assert plan.rope_freq_scale == 8192 / 13_312
    assert (plan.rope_freq_base, plan.yarn_orig_ctx) == (None, 0)
    assert "linear x1.6" in plan.reason


def test_ntk_aware_scaling_stretches_the_base() -> None:
    plan = plan_context(
        SMOL, 13_100, PLENTY, Backend.CPU, PlannerSettings(rope_method=RopeMethod.NTK)
    )
    assert plan.rope_method is RopeMethod.NTK
    assert plan.rope_freq_scale == 1.0
    assert plan.yarn_orig_ctx == 0
    # base * s ** (d / (d - 2)) with s = 1.625 and d = 64: 100000 * 1.625 ** (64 / 62)
    assert plan.rope_freq_base == pytest.approx(100_000 * 1.625 ** (64 / 62))
    assert plan.rope_freq_base == pytest.approx(165_079, rel=1e-4)


def test_scale_is_continuous_not_a_power_of_two() -> None:
    plan = plan_context(SMOL, 20_000, PLENTY, Backend.CPU)
    assert plan.n_ctx == 20_224
    assert plan.rope_factor == pytest.approx(20_224 / 8192)  # 2.47, not 4
    assert plan.rope_freq_scale == pytest.approx(8192 / 20_224)


@pytest.mark.parametrize(
    ("tokens", "max_factor", "granularity", "n_ctx", "fits"),
    [
        (32_768, 4.0, 256, 32_768, True),  # exactly the largest allowed factor
        (32_500, 4.0, 1000, 32_768, True),  # rounding to 33,000 would cross it: clamped
        (32_769, 4.0, 256, 33_024, False),
        (40_000, 4.0, 256, 40_192, False),
        (16_385, 2.0, 256, 16_640, False),
    ],
)
def test_the_largest_factor_is_the_limit(
    tokens: int, max_factor: float, granularity: int, n_ctx: int, fits: bool
) -> None:
    options = PlannerSettings(max_rope_factor=max_factor, context_granularity=granularity)
    plan = plan_context(SMOL, tokens, PLENTY, Backend.CPU, options)
    assert plan.fits is fits
    assert plan.n_ctx == n_ctx  # a plan that does not fit still says what it would need


def test_beyond_the_largest_factor_says_the_numbers_and_suggests_retrieval() -> None:
    plan = plan_context(SMOL, 40_000, PLENTY, Backend.CPU)
    assert not plan.fits
    assert "40,000" in plan.reason
    assert "32,768" in plan.reason
    assert "retrieval" in plan.reason
    half = plan_context(SMOL, 20_000, PLENTY, Backend.CPU, PlannerSettings(max_rope_factor=2.0))
    assert not half.fits
    assert "20,000" in half.reason
    assert "16,384" in half.reason


def test_scaling_switched_off_refuses_past_the_window() -> None:
    options = PlannerSettings(rope_method=RopeMethod.NONE)
    plan = plan_context(SMOL, 9000, PLENTY, Backend.CPU, options)
    assert not plan.fits
    assert plan.rope_method is RopeMethod.NONE
    assert "retrieval" in plan.reason
    assert plan_context(SMOL, 8000, PLENTY, Backend.CPU, options).fits


@pytest.mark.parametrize(("model", "baked"), [(LLAMA31, "rope_freqs"), (QWEN_YARN, "yarn")])
def test_baked_long_context_models_are_not_scaled_again(model: ModelProfile, baked: str) -> None:
    assert model.baked_long_context
    inside = plan_context(model, 100_000, PLENTY, Backend.CPU)
    assert inside.fits
    assert (inside.rope_method, inside.rope_factor, inside.rope_freq_scale) == (
        RopeMethod.NONE,
        1.0,
        0.0,
    )
    assert (inside.rope_freq_base, inside.yarn_orig_ctx) == (None, 0)
    beyond = plan_context(model, 200_000, PLENTY, Backend.CPU)
    assert not beyond.fits
    assert beyond.rope_method is RopeMethod.NONE
    assert beyond.rope_factor == 1.0
    assert "200,000" in beyond.reason
    assert "131,072" in beyond.reason
    assert baked in beyond.reason
    assert "not scaled again" in beyond.reason


# --- KV cache ------------------------------------------------------------------------------


def test_kv_bytes_follow_the_exact_formula() -> None:
    assert kv_cache_bytes(SMOL, 8192, KVCacheType.F16) == 8192 * 2 * 30 * 3 * 64 * 2
    assert kv_cache_bytes(SMOL, 8192, KVCacheType.Q8_0) == 8192 * 2 * 30 * 3 * 64 * 34 // 32
    assert kv_cache_bytes(SMOL, 8192, KVCacheType.Q4_0) == 8192 * 2 * 30 * 3 * 64 * 18 // 32
    assert kv_cache_bytes(LLAMA31, 131072, KVCacheType.F16) == 16 * GiB
    assert kv_cache_bytes(LLAMA31, 1000, KVCacheType.F16, layers=8) == 1000 * 2 * 8 * 8 * 128 * 2
    plan = plan_context(SMOL, 8192, PLENTY, Backend.CPU)
    assert plan.kv_bytes == 8192 * 2 * 30 * 3 * 64 * 2  # 180 MiB


@pytest.mark.parametrize(
    ("budget_for", "kv_type", "fits"),
    [
        (KVCacheType.F16, KVCacheType.F16, True),
        (KVCacheType.Q8_0, KVCacheType.Q8_0, True),
        (KVCacheType.Q4_0, KVCacheType.Q4_0, True),
        (None, KVCacheType.Q4_0, False),
    ],
)
def test_kv_type_steps_down_only_when_memory_demands(
    budget_for: KVCacheType | None, kv_type: KVCacheType, fits: bool
) -> None:
    n_ctx = 8192
    # Each budget is exactly what one type needs, one byte short of the type before it.
    budget = cpu_need(SMOL, n_ctx, budget_for) if budget_for else cpu_need(SMOL, n_ctx, kv_type) - 1
    plan = plan_context(SMOL, n_ctx, budget, Backend.CPU)
    assert plan.kv_type is kv_type
    assert plan.fits is fits
    assert plan.flash_attn is (kv_type is not KVCacheType.F16)
    assert plan.kv_bytes == kv_cache_bytes(SMOL, n_ctx, kv_type)
    if kv_type is not KVCacheType.F16 and fits:
        assert f"~{CPU_KV_SLOWDOWN[kv_type]:g}x slower than f16 on CPU" in plan.reason
        assert "f16 would need" in plan.reason
    if not fits:
        assert "more than the" in plan.reason


def test_each_step_is_one_byte_apart() -> None:
    n_ctx = 8192
    assert plan_context(
        SMOL, n_ctx, cpu_need(SMOL, n_ctx, KVCacheType.F16) - 1, Backend.CPU
    ).kv_type is (KVCacheType.Q8_0)
    assert plan_context(
        SMOL, n_ctx, cpu_need(SMOL, n_ctx, KVCacheType.Q8_0) - 1, Backend.CPU
    ).kv_type is (KVCacheType.Q4_0)


def test_quantized_kv_makes_the_cpu_prefill_slower() -> None:
    f16 = plan_context(SMOL, 8192, PLENTY, Backend.CPU)
    q8 = plan_context(SMOL, 8192, PLENTY, Backend.CPU, PlannerSettings(kv_type=KVCacheType.Q8_0))
    q4 = plan_context(SMOL, 8192, PLENTY, Backend.CPU, PlannerSettings(kv_type=KVCacheType.Q4_0))
    assert q8.prefill_seconds == pytest.approx(2.0 * f16.prefill_seconds)
    assert q4.prefill_seconds == pytest.approx(3.5 * f16.prefill_seconds)
    assert q8.flash_attn and q4.flash_attn
    assert "chosen by --kv-type" in q8.reason


def test_forced_kv_type_that_does_not_fit() -> None:
    options = PlannerSettings(kv_type=KVCacheType.F16)
    plan = plan_context(SMOL, 8192, cpu_need(SMOL, 8192, KVCacheType.F16) - 1, Backend.CPU, options)
    assert not plan.fits
    assert plan.kv_type is KVCacheType.F16


# --- GPU -----------------------------------------------------------------------------------


def test_cpu_backend_never_offloads() -> None:
    plan = plan_context(LLAMA31, 8192, PLENTY, Backend.CPU, PlannerSettings(gpu_layers=20))
    assert plan.gpu_layers == 0


@pytest.mark.parametrize("backend", [Backend.CUDA, Backend.METAL])
def test_gpu_takes_all_layers_when_they_fit(backend: Backend) -> None:
    plan = plan_context(LLAMA31, 32_768, 24 * GiB, backend)
    assert plan.fits
    assert plan.gpu_layers == 32
    assert plan.kv_type is KVCacheType.F16
    assert plan.flash_attn  # on for f16 too on a GPU
    assert "all 32 layers on GPU" in plan.reason


def test_gpu_quantizes_the_kv_before_leaving_layers_on_the_cpu() -> None:
    plan = plan_context(LLAMA31, 32_768, 8 * GiB, Backend.CUDA)
    assert plan.fits
    assert plan.gpu_layers == 32
    assert plan.kv_type is KVCacheType.Q8_0
    assert plan.flash_attn


def test_gpu_partial_offload_when_vram_is_short() -> None:
    plan = plan_context(LLAMA31, 32_768, 4 * GiB, Backend.CUDA)
    assert plan.fits
    assert 0 < plan.gpu_layers < 32
    assert f"only {plan.gpu_layers} of 32 layers on GPU" in plan.reason
    assert "4.0 GiB VRAM free" in plan.reason
    full = plan_context(LLAMA31, 32_768, 24 * GiB, Backend.CUDA)
    assert plan.prefill_seconds > full.prefill_seconds


def test_gpu_with_no_room_runs_on_the_cpu() -> None:
    plan = plan_context(LLAMA31, 8192, 0, Backend.CUDA)
    assert plan.gpu_layers == 0
    assert plan.fits
    assert "the model runs on the CPU" in plan.reason


def test_forced_gpu_layers() -> None:
    plan = plan_context(LLAMA31, 8192, PLENTY, Backend.CUDA, PlannerSettings(gpu_layers=10))
    assert plan.gpu_layers == 10
    assert "chosen by --gpu-layers" in plan.reason
    assert (
        plan_context(LLAMA31, 8192, PLENTY, Backend.CUDA, PlannerSettings(gpu_layers=99)).gpu_layers
        == 32
    )
    tight = plan_context(LLAMA31, 8192, 1 * GiB, Backend.CUDA, PlannerSettings(gpu_layers=32))
    assert not tight.fits


def test_gpu_prefill_is_a_large_multiple_faster() -> None:
    cpu = plan_context(MISTRAL, 8192, PLENTY, Backend.CPU)
    cuda = plan_context(MISTRAL, 8192, PLENTY, Backend.CUDA)
    assert cuda.prefill_seconds * 50 < cpu.prefill_seconds


# --- prefill estimate ----------------------------------------------------------------------


def test_cpu_rate_matches_the_measurements_of_the_default_model() -> None:
    reference = profile(parameter_count=135_000_000)
    assert cpu_prefill_rate(reference, 512) == pytest.approx(250, rel=0.02)
    assert cpu_prefill_rate(reference, 6000) == pytest.approx(130, rel=0.02)


def test_cpu_rate_scales_inversely_with_parameters() -> None:
    small = profile(parameter_count=135_000_000)
    big = profile(parameter_count=1_350_000_000)
    assert cpu_prefill_rate(big, 512) == pytest.approx(cpu_prefill_rate(small, 512) / 10)


def test_unknown_parameter_count_is_guessed_from_the_file() -> None:
    unknown = profile(parameter_count=None, file_size=4_800_000_000)
    assert cpu_prefill_rate(unknown, 512) < cpu_prefill_rate(SMOL, 512) / 20


def test_prefill_seconds_and_the_override() -> None:
    plan = plan_context(SMOL, 3000, PLENTY, Backend.CPU)
    assert plan.prefill_seconds == pytest.approx(3000 / cpu_prefill_rate(SMOL, 3000))
    options = PlannerSettings(prefill_tokens_per_second=1000.0)
    assert plan_context(SMOL, 3000, PLENTY, Backend.CPU, options).prefill_seconds == 3.0
    assert estimate_prefill_seconds(SMOL, 500, Backend.CPU, KVCacheType.Q4_0, 0, 100.0) == 5.0


# --- layout --------------------------------------------------------------------------------


def test_small_models_read_query_aware() -> None:
    for model in (SMOL, GEMMA3):
        plan = plan_context(model, 6000, PLENTY, Backend.CPU)
        assert plan.layout is PromptLayout.QUERY_AWARE
        assert "3/3" in plan.layout_reason
        assert "0/3" in plan.layout_reason
    assert "135M parameters" in plan_context(SMOL, 6000, PLENTY, Backend.CPU).layout_reason


def test_a_medium_model_with_a_costly_prefill_uses_the_cached_layout() -> None:
    plan = plan_context(MISTRAL, 20_000, PLENTY, Backend.CPU)
    assert plan.layout is PromptLayout.CACHED
    assert "reuses" in plan.layout_reason


def test_a_cheap_prefill_reads_query_aware() -> None:
    options = PlannerSettings(prefill_tokens_per_second=10_000.0)
    plan = plan_context(MISTRAL, 20_000, PLENTY, Backend.CUDA, options)
    assert plan.layout is PromptLayout.QUERY_AWARE
    assert "cheap" in plan.layout_reason


def test_layout_can_be_forced() -> None:
    options = PlannerSettings(layout=PromptLayout.CACHED)
    plan = plan_context(SMOL, 3000, PLENTY, Backend.CPU, options)
    assert plan.layout is PromptLayout.CACHED
    assert plan.layout_reason == "chosen by --layout"


# --- sliding window ------------------------------------------------------------------------


def test_sliding_window_models_need_swa_full() -> None:
    plan = plan_context(GEMMA3, 6000, PLENTY, Backend.CPU)
    assert needs_swa_full(GEMMA3)
    assert not needs_swa_full(SMOL)
    assert "swa_full=True" in plan.reason
    assert "swa_full" not in plan_context(SMOL, 6000, PLENTY, Backend.CPU).reason
    # swa_full gives the sliding-window layers a full-size cache: all layers are counted.
    assert plan.kv_bytes == plan.n_ctx * 2 * 26 * 1 * 256 * 2


# --- input checks and presentation ---------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_rope_factor": 0.5},
        {"context_granularity": 0},
        {"prefill_tokens_per_second": 0.0},
        {"gpu_layers": -1},
    ],
)
def test_bad_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PlannerSettings(**options)  # type: ignore[arg-type]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="tokens_needed"):
        plan_context(SMOL, 0, PLENTY, Backend.CPU)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        plan_context(SMOL, 10, -1, Backend.CPU)


def test_describe_lists_every_decision() -> None:
    lines = describe(plan_context(SMOL, 13_100, int(9.8 * GiB), Backend.CPU))
    text = "\n".join(lines)
    assert lines[0].startswith("window:")
    assert "13,312 tokens (needs 13,100; trained 8,192)" in text
    assert "YaRN x1.62 (rope_freq_scale 0.6154, yarn_orig_ctx 8,192)" in text
    assert "f16, 292 MiB, flash attention off" in text
    assert "prefill:" in text
    assert "layout:    query-aware" in text
    assert "verdict:   fits: 8,192-token window" in text
    ntk = describe(
        plan_context(SMOL, 13_100, PLENTY, Backend.CPU, PlannerSettings(rope_method=RopeMethod.NTK))
    )
    assert any("NTK-aware x1.62 (rope_freq_base 165,0" in line for line in ntk)
    unscaled = describe(plan_context(LLAMA31, 200_000, PLENTY, Backend.CUDA))
    assert any(line.startswith("verdict:   does not fit") for line in unscaled)
    assert any("none (the model's own RoPE)" in line for line in unscaled)


@pytest.mark.parametrize(
    ("value", "text"), [(302 * MiB, "302 MiB"), (int(9.8 * GiB), "9.8 GiB"), (2048, "2 KiB")]
)
def test_format_bytes(value: int, text: str) -> None:
    assert format_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (12.4, "12 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


# --- properties ----------------------------------------------------------------------------

MODELS = st.sampled_from([SMOL, GEMMA3, MISTRAL])
METHODS = st.sampled_from([RopeMethod.YARN, RopeMethod.LINEAR, RopeMethod.NTK])
GRANULARITY = st.sampled_from([1, 64, 256, 1000, 4096])


@settings(max_examples=300, deadline=None)
@given(
    model=MODELS,
    tokens=st.integers(1, 200_000),
    method=METHODS,
    granularity=GRANULARITY,
    max_factor=st.floats(1.0, 8.0),
)
def test_window_properties(
    model: ModelProfile, tokens: int, method: RopeMethod, granularity: int, max_factor: float
) -> None:
    options = PlannerSettings(
        rope_method=method, max_rope_factor=max_factor, context_granularity=granularity
    )
    plan = plan_context(model, tokens, PLENTY, Backend.CPU, options)
    trained = model.context_length
    if plan.fits:
        assert plan.n_ctx >= tokens
        assert plan.n_ctx >= min(MIN_CONTEXT, trained)
        # Minimal: no more than one rounding step (or the floor) above what is needed.
        assert plan.n_ctx < max(tokens + granularity, MIN_CONTEXT + 1)
        assert plan.rope_factor <= max_factor
    # The scale is needed exactly when the document is past the trained window.
    assert (plan.rope_factor == 1.0) is (tokens <= trained)
    assert (plan.rope_method is RopeMethod.NONE) is (tokens <= trained)
    assert plan.fits is (tokens <= max(trained, int(trained * max_factor)))
    if plan.rope_method is not RopeMethod.NONE:
        assert plan.rope_factor == pytest.approx(plan.n_ctx / trained)


@settings(max_examples=200, deadline=None)
@given(model=MODELS, n_ctx=st.integers(1, 500_000), extra=st.integers(0, 100_000))
def test_kv_bytes_grow_with_the_context(model: ModelProfile, n_ctx: int, extra: int) -> None:
    for kv_type in KVCacheType:
        assert kv_cache_bytes(model, n_ctx, kv_type) <= kv_cache_bytes(
            model, n_ctx + extra, kv_type
        )
    assert (
        kv_cache_bytes(model, n_ctx, KVCacheType.Q4_0)
        < kv_cache_bytes(model, n_ctx, KVCacheType.Q8_0)
        < kv_cache_bytes(model, n_ctx, KVCacheType.F16)
    )


_ORDER = {KVCacheType.F16: 0, KVCacheType.Q8_0: 1, KVCacheType.Q4_0: 2}


@settings(max_examples=200, deadline=None)
@given(
    model=MODELS,
    tokens=st.integers(1, 32_768),
    budget=st.integers(0, 32 * GiB),
    more=st.integers(0, 32 * GiB),
)
def test_more_memory_never_quantizes_more(
    model: ModelProfile, tokens: int, budget: int, more: int
) -> None:
    tight = plan_context(model, tokens, budget, Backend.CPU)
    roomy = plan_context(model, tokens, budget + more, Backend.CPU)
    assert _ORDER[roomy.kv_type] <= _ORDER[tight.kv_type]
    assert roomy.fits or not tight.fits
    assert tight.flash_attn is (tight.kv_type is not KVCacheType.F16)


@settings(max_examples=200, deadline=None)
@given(tokens=st.integers(1, 131_072), budget=st.integers(0, 80 * GiB))
def test_gpu_layers_stay_in_range(tokens: int, budget: int) -> None:
    plan: ContextPlan = plan_context(LLAMA31, tokens, budget, Backend.CUDA)
    assert 0 <= plan.gpu_layers <= 32
    assert plan.flash_attn
    assert plan.fits
