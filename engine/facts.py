"""What the router weighs about a document on a model, measured: the context facts.

From a question's `AskContext` and the plan for reading the whole document, `measure_facts`
gives the router its `ContextFacts`: how the document fits the window (natively, only with
RoPE scaling, or not at all), the estimated cold prefill against the latency budget,
whether a saved KV state would make a follow-up cheap, the model's size class, whether
beacons exist, and the retrieval window. `planner_settings` turns the configuration and a
forced layout into the planner's settings.

It does not route (engine/router.py) or plan (engine/planner.py); it reads the KV state
store's entries and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.config import ContextSettings, Settings
from engine.kvcache import StateEntry
from engine.planner import PlannerSettings
from engine.strategies.base import AskContext
from engine.types import (
    ContextFacts,
    ContextFit,
    ContextPlan,
    KVCacheType,
    PromptLayout,
    RopeMethod,
)
from models.types import ModelProfile


def planner_settings(context: ContextSettings, layout: PromptLayout | None) -> PlannerSettings:
    """The planner's settings from `[context]`; a layout given for this question wins."""
    configured = None if context.layout == "auto" else PromptLayout(context.layout)
    return PlannerSettings(
        rope_method=context.rope_method,
        max_rope_factor=context.max_rope_factor,
        kv_type=None if context.kv_type == "auto" else KVCacheType(context.kv_type),
        layout=layout or configured,
        gpu_layers=None if context.gpu_layers < 0 else context.gpu_layers,
    )


def retrieval_window(settings: Settings, profile: ModelProfile) -> int:
    """The largest window a retrieval answer uses on this model."""
    return min(settings.retrieval.rag_context_tokens, profile.context_length)


def fit_of(whole: ContextPlan) -> ContextFit:
    """How the whole-document plan fits: unscaled, only scaled, or not at all."""
    if not whole.fits:
        return ContextFit.TOO_LONG
    return ContextFit.NATIVE if whole.rope_method is RopeMethod.NONE else ContextFit.SCALED


def kv_state_saved(ask: AskContext, whole: ContextPlan, saved: Iterable[StateEntry]) -> bool:
    """Whether a follow-up would reuse a saved prefill: the cached layout, and a saved state
    of this document on this model, window and KV type."""
    if not whole.fits or whole.layout is not PromptLayout.CACHED:
        return False
    return any(
        entry.document_id == ask.document.id
        and entry.key.model_sha256 == ask.profile.sha256
        and entry.key.n_ctx == whole.n_ctx
        and entry.key.kv_type == whole.kv_type.value
        for entry in saved
    )


def measure_facts(
    ask: AskContext,
    whole: ContextPlan,
    settings: Settings,
    saved: Iterable[StateEntry],
    *,
    beacons_built: bool = False,
) -> ContextFacts:
    """The router's facts for a question on a document, given the whole-document plan and
    the saved KV states."""
    return ContextFacts(
        document_tokens=ask.document_tokens,
        window_tokens=ask.profile.context_length,
        fit=fit_of(whole),
        rope_factor=whole.rope_factor,
        cold_prefill_seconds=whole.prefill_seconds,
        latency_budget_seconds=settings.router.latency_budget_seconds,
        kv_cached=kv_state_saved(ask, whole, saved),
        size_class=ask.profile.size_class,
        beacons_built=beacons_built,
        retrieval_window_tokens=retrieval_window(settings, ask.profile),
    )
