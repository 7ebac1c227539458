"""Hand-built ModelProfiles and ContextPlans for tests, so no test needs a GGUF read or a
planner run just to have one. `smollm2_profile` is the bundled model as its header states it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout, RopeMethod
from models.types import ModelProfile

SMOLLM2_PARAMETERS = 134_515_008


def smollm2_profile(path: Path | None = None, **changes: Any) -> ModelProfile:
    """SmolLM2-135M-Instruct (Q4_1); `changes` make other models from it."""
    path = path if path is not None else Path("SmolLM2-135M-Instruct.Q4_1.gguf")
    profile = ModelProfile(
        path=path,
        name="SmolLM2-135M-Instruct",
        architecture="llama",
        context_length=8192,
        embedding_length=576,
        layer_count=30,
        head_count=9,
        kv_head_count=3,
        key_length=64,
        value_length=64,
        rope_freq_base=100000.0,
        rope_scaling_type=None,
        rope_scaling_factor=None,
        rope_original_context=None,
        has_rope_freqs=False,
        sliding_window=None,
        parameter_count=SMOLLM2_PARAMETERS,
        file_type="Q4_1",
        has_chat_template=True,
        file_size=path.stat().st_size if path.exists() else 98_000_000,
        sha256="0" * 64,
    )
    return replace(profile, **changes)


def hand_plan(**changes: Any) -> ContextPlan:
    """An unscaled f16 CPU plan of 2,048 tokens for the 8k model; `changes` vary it."""
    plan = ContextPlan(
        tokens_needed=1024,
        n_ctx=2048,
        n_ctx_train=8192,
        rope_method=RopeMethod.NONE,
        rope_factor=1.0,
        rope_freq_scale=0.0,
        rope_freq_base=None,
        yarn_orig_ctx=0,
        kv_type=KVCacheType.F16,
        flash_attn=False,
        gpu_layers=0,
        backend=Backend.CPU,
        kv_bytes=0,
        prefill_seconds=0.0,
        fits=True,
        reason="test plan",
        layout=PromptLayout.CACHED,
        layout_reason="test plan",
    )
    return replace(plan, **changes)
