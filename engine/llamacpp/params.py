"""What a `ContextPlan` means to llama.cpp: the `Llama` keyword arguments, and the constants
they are made of.

Pure: nothing here imports llama_cpp (tests check the constants against the installed
build). What it does not do: choose the plan (engine/planner.py) or load anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Any

from engine.types import ContextPlan, KVCacheType, RopeMethod
from models.types import ModelProfile

GGML_TYPE_IDS: dict[KVCacheType, int] = {
    KVCacheType.F16: 1,  # GGML_TYPE_F16
    KVCacheType.Q8_0: 8,  # GGML_TYPE_Q8_0
    KVCacheType.Q4_0: 2,  # GGML_TYPE_Q4_0
}
"""KV cache element types as llama.cpp's `type_k` / `type_v` take them."""

ROPE_SCALING_LINEAR = 1  # LLAMA_ROPE_SCALING_TYPE_LINEAR
ROPE_SCALING_YARN = 2  # LLAMA_ROPE_SCALING_TYPE_YARN

SEED = 1234
"""A fixed sampling seed: llama-cpp-python reads 0 as "random", and answers at temperature
> 0 should still be reproducible."""

REPEAT_PENALTY = 1.1
"""llama.cpp's long-standing default. Small models decoding greedily fall into loops ("The
code was written on the logbook." until max_tokens); a mild penalty on the last 64 tokens
breaks them without keeping the model from quoting the document."""


def llama_kwargs(
    profile: ModelProfile,
    plan: ContextPlan,
    threads: int | None = None,
    accepted: Collection[str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments for `llama_cpp.Llama` that carry out `plan` for `profile`.

    `accepted` is the parameter names the installed Llama takes (None: assume all), so an
    option an older version lacks (`swa_full`) is left out rather than passed blind.
    """
    kwargs: dict[str, Any] = {
        "model_path": str(profile.path),
        "n_ctx": plan.n_ctx,
        "n_gpu_layers": plan.gpu_layers,
        "flash_attn": plan.flash_attn,
        "type_k": GGML_TYPE_IDS[plan.kv_type],
        "type_v": GGML_TYPE_IDS[plan.kv_type],
        "seed": SEED,
        # True only stops llama-cpp-python from redirecting the process's stdout/stderr file
        # descriptors during the load (a TUI drawing from another thread would lose frames);
        # llama.cpp's own log goes to our callback, and its Python prints are captured.
        "verbose": True,
    }
    if threads is not None:
        kwargs["n_threads"] = threads
        kwargs["n_threads_batch"] = threads
    if plan.rope_method is RopeMethod.YARN:
        # The scaling type alone is a no-op for these GGUFs: the scale and the original
        # window must be passed too (DESIGN.md, decision 1).
        kwargs["rope_scaling_type"] = ROPE_SCALING_YARN
        kwargs["rope_freq_scale"] = plan.rope_freq_scale
        kwargs["yarn_orig_ctx"] = plan.yarn_orig_ctx
    elif plan.rope_method is RopeMethod.LINEAR:
        kwargs["rope_scaling_type"] = ROPE_SCALING_LINEAR
        kwargs["rope_freq_scale"] = plan.rope_freq_scale
    elif plan.rope_method is RopeMethod.NTK and plan.rope_freq_base:
        kwargs["rope_freq_base"] = plan.rope_freq_base
    if profile.sliding_window and (accepted is None or "swa_full" in accepted):
        # Without a full-size SWA cache llama.cpp cannot truncate it to a common prefix,
        # and every question would prefill the document again.
        kwargs["swa_full"] = True
    return kwargs


def accepted_parameters(llama_class: Any) -> frozenset[str]:
    """The keyword arguments the installed `Llama` takes."""
    return frozenset(inspect.signature(llama_class.__init__).parameters)


def can_serve(
    resident: tuple[ModelProfile, ContextPlan, int | None],
    wanted: tuple[ModelProfile, ContextPlan, int | None],
) -> bool:
    """Whether a model loaded for `resident` (profile, plan, threads) can carry out `wanted`.

    Everything llama.cpp computes with must match: the file, the RoPE settings, the KV
    type, flash attention, GPU layers and threads. The window need only be large enough:
    a prompt that fits the smaller plan fits the larger context, and reloading to shrink it
    would cost seconds and throw away the prefilled document.
    """
    (have_profile, have, have_threads), (want_profile, want, want_threads) = resident, wanted
    return (
        have_profile.path == want_profile.path
        and have.rope_method is want.rope_method
        and have.rope_freq_scale == want.rope_freq_scale
        and have.rope_freq_base == want.rope_freq_base
        and have.yarn_orig_ctx == want.yarn_orig_ctx
        and have.kv_type is want.kv_type
        and have.flash_attn == want.flash_attn
        and have.gpu_layers == want.gpu_layers
        and have_threads == want_threads
        and have.n_ctx >= want.n_ctx
    )
