"""Context planning: how to run one document's prompt on one model, as a pure function.

`plan_context(profile, tokens_needed, memory_budget_bytes, backend)` returns a `ContextPlan`:
the context size, the RoPE scaling (if the document is longer than the trained window), the
KV cache type, flash attention, GPU layers, estimated KV bytes and prefill seconds, the
recommended prompt layout, and one-line reasons for all of it. `describe(plan)` turns a plan
into the lines `longread plan` prints.

The rules (DESIGN.md, key decisions 1 and 2, with the facts measured on the project machine):

- The smallest scale that fits is chosen per document: inside the trained window the plan
  runs unscaled; past it the factor is exactly n_ctx / n_ctx_train (continuous, not a power
  of two), up to `max_rope_factor`. Models whose GGUF already carries long-context RoPE are
  never scaled again.
- YaRN needs `rope_freq_scale = n_ctx_train / n_ctx` *and* `yarn_orig_ctx = n_ctx_train`:
  with llama-cpp-python the scaling type alone is a no-op for these GGUFs.
- KV cache: f16 when it fits, q8_0 then q4_0 only when memory demands it, because on CPU
  they made prefill about 2x and 3.5x slower. A quantized V cache needs flash attention.
- Small models, or documents whose prefill is cheap, get the query-aware layout.

What it does not do: no I/O, no llama_cpp import, no memory detection (that is
`engine.memory`; the caller passes the budget: free RAM on CPU, free VRAM on CUDA/Metal), and
no check of the RAM side of a partially offloaded GPU plan. Every estimate here (compute
buffers, prefill rates, GPU speed-ups) is a documented rule of thumb, not a measurement of
the machine it runs on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout, RopeMethod
from models.types import ModelProfile, SizeClass

MIN_CONTEXT = 512
"""The smallest n_ctx planned: below it llama.cpp's batch (512) would not fill once."""

UBATCH = 512
"""llama-cpp-python's default n_ubatch: the tokens one compute step holds."""

COMPUTE_BUFFER_BASE_BYTES = 256 * 2**20
"""Compute-buffer allowance every plan reserves (logits, activations, graph scratch)."""

COMPUTE_BUFFER_WEIGHTS_FRACTION = 0.05
"""Further allowance per byte of weights: wider models have wider activations."""

KQ_SCRATCH_COPIES = 2
"""Without flash attention llama.cpp materialises the attention scores for a whole ubatch
(n_ctx x n_ubatch x heads, f32) and their softmax side by side: that is what grows the
compute buffer with the context, and why flash attention shrinks it."""

# The CPU prefill rate of the reference model, SmolLM2-135M (Q4_1, 2 threads), measured on
# the project machine: ~250 tokens/s over a 512-token prompt, ~130 tokens/s over 6k. The
# rate decays as attention grows with the context: rate(n) = A / (1 + n / C), fitted to the
# two points (274 / 1.095 = 250, 274 / 2.11 = 130).
REFERENCE_PARAMETERS = 135_000_000
REFERENCE_EMBEDDING = 576
REFERENCE_RATE_A = 274.0
REFERENCE_RATE_C = 5400.0

BYTES_PER_PARAMETER_GUESS = 0.6
"""Parameter count from the file size when the GGUF does not state it (~4.5-bit quants plus
higher-precision embeddings); a Q8 file reads as a bigger model: a conservative error."""

CPU_KV_SLOWDOWN: dict[KVCacheType, float] = {
    KVCacheType.F16: 1.0,
    KVCacheType.Q8_0: 2.0,  # measured here: q8_0 KV made CPU prefill about 2x slower
    KVCacheType.Q4_0: 3.5,  # measured here: q4_0 about 3.5x slower
}

GPU_SPEEDUP: dict[Backend, float] = {
    Backend.CPU: 1.0,
    # Not measured here (the project machine has no GPU): deliberately conservative
    # multiples of the 2-thread CPU rate. A discrete GPU prefills a 7-8B model at thousands
    # of tokens/s against a few on two CPU threads, but tiny models do not fill a GPU, so one
    # multiple errs low for big models; erring low only tips the layout toward `cached`.
    # Quantized KV under flash attention is assumed to cost nothing on a GPU.
    # `prefill_tokens_per_second` overrides the whole estimate.
    Backend.CUDA: 200.0,
    Backend.METAL: 30.0,
}

CHEAP_PREFILL_SECONDS = 5.0
"""Under this, re-reading the document for every question costs little: query-aware."""

KV_TYPES_BY_PREFERENCE = (KVCacheType.F16, KVCacheType.Q8_0, KVCacheType.Q4_0)

_ROPE_NAMES = {RopeMethod.YARN: "YaRN", RopeMethod.LINEAR: "linear", RopeMethod.NTK: "NTK-aware"}


@dataclass(frozen=True)
class PlannerSettings:
    """What a person may force; None means the planner decides.

    `rope_method` is the method used when the document exceeds the trained window
    (`RopeMethod.NONE` forbids scaling). `gpu_layers` None means all layers on a GPU backend,
    fewer if VRAM is short, and 0 on CPU. `context_granularity` rounds n_ctx up so documents
    of nearly the same length share a plan (and a saved KV state).
    """

    rope_method: RopeMethod = RopeMethod.YARN
    max_rope_factor: float = 4.0
    kv_type: KVCacheType | None = None
    layout: PromptLayout | None = None
    prefill_tokens_per_second: float | None = None
    gpu_layers: int | None = None
    context_granularity: int = 256

    def __post_init__(self) -> None:
        if not self.max_rope_factor >= 1.0:
            raise ValueError(f"max_rope_factor must be at least 1, not {self.max_rope_factor}")
        if self.context_granularity < 1:
            raise ValueError(
                f"context_granularity must be at least 1, not {self.context_granularity}"
            )
        rate = self.prefill_tokens_per_second
        if rate is not None and not rate > 0:
            raise ValueError(f"prefill_tokens_per_second must be positive, not {rate}")
        if self.gpu_layers is not None and self.gpu_layers < 0:
            raise ValueError(f"gpu_layers must be 0 or more, not {self.gpu_layers}")


# --- sizes ---------------------------------------------------------------------------------


def kv_bytes_per_token_layer(profile: ModelProfile, kv_type: KVCacheType) -> float:
    """K and V bytes one token takes in one layer (K and V widths may differ; usually equal)."""
    elements = profile.kv_head_count * (profile.key_length + profile.value_length)
    return elements * kv_type.bytes_per_element


def kv_cache_bytes(
    profile: ModelProfile, n_ctx: int, kv_type: KVCacheType, layers: int | None = None
) -> int:
    """KV cache bytes: n_ctx x 2 x layers x kv_heads x head_dim x bytes per element.

    Every layer is counted at the full n_ctx, sliding-window layers too: prefix reuse needs
    `swa_full=True`, which gives them a full-size cache. `layers` counts part of the model
    (the offloaded layers of a GPU plan).
    """
    layer_count = profile.layer_count if layers is None else layers
    # bytes_per_element is 2, 34/32 or 18/32: exact in binary, so this product is exact.
    return math.ceil(n_ctx * layer_count * kv_bytes_per_token_layer(profile, kv_type))


def weights_bytes(profile: ModelProfile) -> int:
    """The weights' memory: the GGUF file's size (mmapped into RAM, or copied to VRAM)."""
    return profile.file_size


def compute_allowance_bytes(profile: ModelProfile, n_ctx: int, flash_attn: bool) -> int:
    """Compute-buffer allowance: a base, a fraction of the weights, and, without flash
    attention, the attention-score scratch that grows with the context."""
    allowance = COMPUTE_BUFFER_BASE_BYTES + COMPUTE_BUFFER_WEIGHTS_FRACTION * profile.file_size
    if not flash_attn:
        allowance += KQ_SCRATCH_COPIES * n_ctx * UBATCH * profile.head_count * 4
    return math.ceil(allowance)


def needs_swa_full(profile: ModelProfile) -> bool:
    """Sliding-window models (Gemma 3) must be loaded with `swa_full=True` for prefix reuse.

    ContextPlan has no field for it; the llama.cpp wrapper asks the profile through this.
    """
    return bool(profile.sliding_window)


def uses_flash_attn(backend: Backend, kv_type: KVCacheType) -> bool:
    """Quantized V needs flash attention (else the context fails to build); on a GPU it is
    on for f16 too (less memory, faster); on CPU f16 keeps it off, as measured here."""
    return kv_type is not KVCacheType.F16 or backend is not Backend.CPU


# --- prefill estimate ----------------------------------------------------------------------


def estimated_parameters(profile: ModelProfile) -> int:
    """The stated parameter count, else a guess from the file size."""
    if profile.parameter_count:
        return profile.parameter_count
    return max(1, round(profile.file_size / BYTES_PER_PARAMETER_GUESS))


def cpu_prefill_rate(profile: ModelProfile, n_tokens: int) -> float:
    """Average CPU prefill tokens/s over an `n_tokens` prompt with an f16 KV cache.

    The reference curve A / (1 + n / C) is scaled inversely by parameter count (the matmuls
    dominate), and C by the embedding width: attention per token grows as n x d against the
    d^2 of the matmuls, so wider models slow down later in the context.
    """
    size_ratio = estimated_parameters(profile) / REFERENCE_PARAMETERS
    width = profile.embedding_length or REFERENCE_EMBEDDING
    decay = REFERENCE_RATE_C * width / REFERENCE_EMBEDDING
    return REFERENCE_RATE_A / (1.0 + n_tokens / decay) / size_ratio


def estimate_prefill_seconds(
    profile: ModelProfile,
    tokens: int,
    backend: Backend,
    kv_type: KVCacheType,
    gpu_layers: int,
    tokens_per_second: float | None = None,
) -> float:
    """Seconds to prefill `tokens`: `tokens_per_second` when given (a measured rate is taken
    as it is), else the CPU estimate split by layer between CPU and GPU, each slowed by the
    KV type's factor where it runs."""
    if tokens_per_second is not None:
        return tokens / tokens_per_second
    cpu_seconds = tokens / cpu_prefill_rate(profile, tokens)
    layers = max(1, profile.layer_count)
    on_gpu = min(gpu_layers, layers) if backend is not Backend.CPU else 0
    gpu_share = on_gpu / layers
    cpu_part = cpu_seconds * (1.0 - gpu_share) * CPU_KV_SLOWDOWN[kv_type]
    gpu_part = cpu_seconds * gpu_share / GPU_SPEEDUP[backend]
    return cpu_part + gpu_part


# --- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rope:
    n_ctx: int
    method: RopeMethod
    factor: float
    freq_scale: float
    freq_base: float | None
    yarn_orig_ctx: int
    fits: bool
    reason: str


@dataclass(frozen=True)
class _Memory:
    kv_type: KVCacheType
    gpu_layers: int
    fits: bool
    reason: str


def plan_context(
    profile: ModelProfile,
    tokens_needed: int,
    memory_budget_bytes: int,
    backend: Backend,
    settings: PlannerSettings = PlannerSettings(),  # frozen, so one shared default is safe
) -> ContextPlan:
    """Plan one prompt of `tokens_needed` tokens (document, instructions, question and the
    answer budget) on `profile` within `memory_budget_bytes` (free RAM on CPU, free VRAM on
    CUDA/Metal).

    On CUDA/Metal a short budget means fewer GPU layers (down to none), not `fits=False`,
    unless `settings.gpu_layers` forces a count that does not fit: the RAM that the CPU-side
    layers then use is the caller's to check.

    When `fits` is false the plan still describes what the document would need (its n_ctx,
    scaling and KV size), for `longread plan` to show; it is not meant to be run.
    """
    if tokens_needed < 1:
        raise ValueError(f"tokens_needed must be at least 1, not {tokens_needed}")
    if memory_budget_bytes < 0:
        raise ValueError(f"memory_budget_bytes must be 0 or more, not {memory_budget_bytes}")

    rope = _plan_rope(profile, tokens_needed, settings)
    memory = _plan_memory(profile, rope.n_ctx, memory_budget_bytes, backend, settings)
    kv_type = memory.kv_type
    prefill = estimate_prefill_seconds(
        profile,
        tokens_needed,
        backend,
        kv_type,
        memory.gpu_layers,
        settings.prefill_tokens_per_second,
    )
    layout, layout_reason = _recommend_layout(profile, prefill, settings)

    parts = [rope.reason]
    # A plan whose document is too long is not run: its memory details would be noise.
    if rope.fits or not memory.fits:
        parts.append(memory.reason)
    if rope.fits and kv_type is not KVCacheType.F16 and backend is Backend.CPU:
        parts.append(f"prefill ~{CPU_KV_SLOWDOWN[kv_type]:g}x slower than f16 on CPU")
    if needs_swa_full(profile):
        parts.append(
            f"sliding-window attention ({profile.sliding_window:,} tokens): "
            "load with swa_full=True so the document prefix can be reused"
        )
    return ContextPlan(
        tokens_needed=tokens_needed,
        n_ctx=rope.n_ctx,
        n_ctx_train=profile.context_length,
        rope_method=rope.method,
        rope_factor=rope.factor,
        rope_freq_scale=rope.freq_scale,
        rope_freq_base=rope.freq_base,
        yarn_orig_ctx=rope.yarn_orig_ctx,
        kv_type=kv_type,
        flash_attn=uses_flash_attn(backend, kv_type),
        gpu_layers=memory.gpu_layers,
        backend=backend,
        kv_bytes=kv_cache_bytes(profile, rope.n_ctx, kv_type),
        prefill_seconds=prefill,
        fits=rope.fits and memory.fits,
        reason="; ".join(parts),
        layout=layout,
        layout_reason=layout_reason,
    )


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _plan_rope(profile: ModelProfile, tokens: int, settings: PlannerSettings) -> _Rope:
    trained = profile.context_length
    n_ctx = max(MIN_CONTEXT, _round_up(tokens, settings.context_granularity))
    if tokens <= trained:
        # Rounding (or the floor) must not push a document that fits into scaling.
        return _Rope(
            n_ctx=min(n_ctx, trained),
            method=RopeMethod.NONE,
            factor=1.0,
            freq_scale=0.0,
            freq_base=None,
            yarn_orig_ctx=0,
            fits=True,
            reason=f"fits the {trained:,}-token trained window unscaled (needs {tokens:,})",
        )

    needs = f"document needs {tokens:,} tokens"
    if profile.baked_long_context:
        baked = (
            f"{profile.rope_scaling_type} scaling in its metadata"
            if profile.rope_scaling_type not in (None, "", "none")
            else "Llama 3.1 rope_freqs"
        )
        return _unscaled_overflow(
            n_ctx,
            tokens,
            f"{needs}; the model takes at most {trained:,} (its GGUF already carries "
            f"long-context RoPE, {baked}, so it is not scaled again): use retrieval",
        )
    method = settings.rope_method
    if method is RopeMethod.NONE:
        return _unscaled_overflow(
            n_ctx,
            tokens,
            f"{needs}; the model's trained window is {trained:,} and RoPE scaling is off: "
            "use retrieval",
        )

    ceiling = math.floor(trained * settings.max_rope_factor)
    fits = tokens <= ceiling
    if fits:
        n_ctx = min(n_ctx, ceiling)  # rounding must not cross the largest allowed factor
    factor = n_ctx / trained
    name = _ROPE_NAMES[method]
    if fits:
        reason = f"{trained:,}-token window, {needs}: {name} x{factor:.2f}"
    else:
        reason = (
            f"{needs}; the model takes at most {ceiling:,} ({trained:,} trained "
            f"x{settings.max_rope_factor:g} max RoPE scaling): use retrieval"
        )
    freq_scale = trained / n_ctx
    if method is RopeMethod.YARN:
        # The scaling type alone is a no-op for these GGUFs: both values must be passed.
        return _Rope(n_ctx, method, factor, freq_scale, None, trained, fits, reason)
    if method is RopeMethod.LINEAR:
        return _Rope(n_ctx, method, factor, freq_scale, None, 0, fits, reason)
    # NTK-aware: stretch the base so the lowest frequency spans s times the trained window.
    d = profile.head_dim
    exponent = d / (d - 2) if d > 2 else 1.0  # real head dims are 64 and up
    base = profile.rope_freq_base * factor**exponent
    return _Rope(n_ctx, method, factor, 1.0, base, 0, fits, reason)


def _unscaled_overflow(n_ctx: int, tokens: int, reason: str) -> _Rope:
    return _Rope(n_ctx, RopeMethod.NONE, 1.0, 0.0, None, 0, False, reason)


def _plan_memory(
    profile: ModelProfile, n_ctx: int, budget: int, backend: Backend, settings: PlannerSettings
) -> _Memory:
    candidates = (settings.kv_type,) if settings.kv_type else KV_TYPES_BY_PREFERENCE
    if backend is Backend.CPU:
        return _plan_cpu_memory(profile, n_ctx, budget, candidates, forced=bool(settings.kv_type))
    return _plan_gpu_memory(profile, n_ctx, budget, backend, candidates, settings)


def _need_bytes(
    profile: ModelProfile, n_ctx: int, backend: Backend, kv_type: KVCacheType, layers: int
) -> int:
    """Bytes a plan puts in the budget's memory: weights and KV of `layers` layers, plus the
    compute allowance."""
    share = layers / max(1, profile.layer_count)
    return (
        math.ceil(weights_bytes(profile) * share)
        + kv_cache_bytes(profile, n_ctx, kv_type, layers)
        + compute_allowance_bytes(profile, n_ctx, uses_flash_attn(backend, kv_type))
    )


def _plan_cpu_memory(
    profile: ModelProfile,
    n_ctx: int,
    budget: int,
    candidates: tuple[KVCacheType, ...],
    forced: bool,
) -> _Memory:
    layers = profile.layer_count
    free = f"{format_bytes(budget)} free"
    for kv_type in candidates:
        if _need_bytes(profile, n_ctx, Backend.CPU, kv_type, layers) <= budget:
            kv = f"{kv_type} KV {format_bytes(kv_cache_bytes(profile, n_ctx, kv_type))}"
            weights = f"weights {format_bytes(weights_bytes(profile))}"
            if forced:
                return _Memory(kv_type, 0, True, f"{kv} (chosen by --kv-type) fits in {free}")
            if kv_type is KVCacheType.F16:
                return _Memory(kv_type, 0, True, f"{kv} + {weights} fits in {free}")
            f16 = format_bytes(kv_cache_bytes(profile, n_ctx, KVCacheType.F16))
            return _Memory(kv_type, 0, True, f"{kv} fits in {free} (f16 would need {f16})")
    smallest = candidates[-1]
    need = _need_bytes(profile, n_ctx, Backend.CPU, smallest, layers)
    return _Memory(
        smallest,
        0,
        False,
        f"weights + {smallest} KV + compute need {format_bytes(need)}, more than the {free}",
    )


def _plan_gpu_memory(
    profile: ModelProfile,
    n_ctx: int,
    budget: int,
    backend: Backend,
    candidates: tuple[KVCacheType, ...],
    settings: PlannerSettings,
) -> _Memory:
    total = profile.layer_count
    memory = "VRAM" if backend is Backend.CUDA else "GPU memory"
    free = f"{format_bytes(budget)} {memory} free"
    if settings.gpu_layers is not None:
        layers = min(settings.gpu_layers, total)
        for kv_type in candidates:
            if _need_bytes(profile, n_ctx, backend, kv_type, layers) <= budget:
                reason = f"{layers} of {total} layers on GPU (chosen by --gpu-layers), {kv_type} KV"
                return _Memory(kv_type, layers, True, f"{reason} fit in {free}")
        need = _need_bytes(profile, n_ctx, backend, candidates[-1], layers)
        return _Memory(
            candidates[-1],
            layers,
            False,
            f"{layers} GPU layers (chosen by --gpu-layers) need {format_bytes(need)}, "
            f"more than the {free}",
        )

    # All layers on the GPU with the least quantized KV that fits: quantized KV under flash
    # attention is cheap on a GPU, running layers on the CPU is not.
    for kv_type in candidates:
        if _need_bytes(profile, n_ctx, backend, kv_type, total) <= budget:
            kv = f"{kv_type} KV {format_bytes(kv_cache_bytes(profile, n_ctx, kv_type))}"
            return _Memory(kv_type, total, True, f"all {total} layers on GPU; {kv} fits in {free}")

    # Partial offload: per KV type, as many layers as fit; keep the fastest estimate.
    best: tuple[float, KVCacheType, int] | None = None
    for kv_type in candidates:
        layers = _max_layers(profile, n_ctx, budget, backend, kv_type)
        seconds = estimate_prefill_seconds(profile, n_ctx, backend, kv_type, layers)
        if best is None or seconds < best[0]:
            best = (seconds, kv_type, layers)
    assert best is not None  # candidates is never empty
    _, kv_type, layers = best
    need_all = _need_bytes(profile, n_ctx, backend, candidates[-1], total)
    where = "the rest run on the CPU" if layers else "the model runs on the CPU"
    return _Memory(
        kv_type,
        layers,
        True,
        f"only {layers} of {total} layers on GPU with {kv_type} KV (all would need "
        f"{format_bytes(need_all)} even with {candidates[-1]} KV, {free}): {where}, "
        "so prefill is slower",
    )


def _max_layers(
    profile: ModelProfile, n_ctx: int, budget: int, backend: Backend, kv_type: KVCacheType
) -> int:
    """The most layers whose weights and KV fit beside the compute allowance."""
    # Need grows with the layer count, so a binary search finds the largest that fits.
    low, high = 0, profile.layer_count
    while low < high:
        middle = (low + high + 1) // 2
        if _need_bytes(profile, n_ctx, backend, kv_type, middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _recommend_layout(
    profile: ModelProfile, prefill_seconds: float, settings: PlannerSettings
) -> tuple[PromptLayout, str]:
    if settings.layout is not None:
        return settings.layout, "chosen by --layout"
    size = profile.size_class
    if size in (SizeClass.TINY, SizeClass.SMALL):
        params = (
            f"{format_parameters(profile.parameter_count)} parameters"
            if profile.parameter_count
            else "unknown size, taken as tiny"
        )
        return PromptLayout.QUERY_AWARE, (
            f"a {size} model ({params}) misses facts in the cached layout: on a passkey "
            "document the 135M model found the key 3/3 query-aware against 0/3 cached"
        )
    if prefill_seconds < CHEAP_PREFILL_SECONDS:
        return PromptLayout.QUERY_AWARE, (
            f"prefill is cheap (~{format_seconds(prefill_seconds)}), so each question "
            "re-reads the document with the question in view"
        )
    return PromptLayout.CACHED, (
        f"prefill takes ~{format_seconds(prefill_seconds)}: the cached layout reads the "
        "document once and reuses it for every follow-up question"
    )


# --- presentation --------------------------------------------------------------------------


def format_bytes(count: int | float) -> str:
    """1.5 GiB, 302 MiB, 12 KiB: binary units, as memory is counted."""
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    if count >= 2**20:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**10:.0f} KiB"


def format_parameters(count: int) -> str:
    """135M, 1.7B, 8.0B."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"


def format_seconds(seconds: float) -> str:
    """0.4 s, 12 s, 3 min 20 s, 2 h 05 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def describe(plan: ContextPlan) -> list[str]:
    """The lines `longread plan` prints: window, scaling, KV cache, backend, prefill,
    layout, and the verdict with its reason."""
    if plan.rope_method is RopeMethod.NONE:
        scaling = "none (the model's own RoPE)"
    elif plan.rope_method is RopeMethod.NTK:
        scaling = (
            f"NTK-aware x{plan.rope_factor:.3g} (rope_freq_base {plan.rope_freq_base:,.0f}, "
            f"rope_freq_scale {plan.rope_freq_scale:g})"
        )
    else:
        scaling = (
            f"{_ROPE_NAMES[plan.rope_method]} x{plan.rope_factor:.3g} "
            f"(rope_freq_scale {plan.rope_freq_scale:.4g}"
        )
        if plan.yarn_orig_ctx:
            scaling += f", yarn_orig_ctx {plan.yarn_orig_ctx:,}"
        scaling += ")"
    flash = "on" if plan.flash_attn else "off"
    if plan.backend is Backend.CPU:
        backend = "cpu"
    else:
        backend = f"{plan.backend}, {plan.gpu_layers} layers on the GPU"
    verdict = "fits" if plan.fits else "does not fit"
    return [
        f"window:    {plan.n_ctx:,} tokens (needs {plan.tokens_needed:,}; "
        f"trained {plan.n_ctx_train:,})",
        f"scaling:   {scaling}",
        f"KV cache:  {plan.kv_type}, {format_bytes(plan.kv_bytes)}, flash attention {flash}",
        f"backend:   {backend}",
        f"prefill:   ~{format_seconds(plan.prefill_seconds)} (estimated)",
        f"layout:    {plan.layout} ({plan.layout_reason})",
        f"verdict:   {verdict}: {plan.reason}",
    ]
