"""Turning a generation's statistics into an answer's `Timings`; shared by every strategy."""

from __future__ import annotations

from engine.llm import GenerationStats
from engine.types import Timings


def timings_from(stats: GenerationStats | None, load_seconds: float) -> Timings:
    """The answer's timings: the model load plus what generation cost (nothing, if None)."""
    if stats is None:
        return Timings(
            load_seconds=load_seconds,
            prefill_seconds=0.0,
            first_token_seconds=None,
            total_seconds=load_seconds,
            tokens_per_second=0.0,
            prompt_tokens=0,
            reused_tokens=0,
            evaluated_tokens=0,
            generated_tokens=0,
            state_loaded=False,
        )
    return Timings(
        load_seconds=load_seconds,
        prefill_seconds=stats.prefill_seconds,
        first_token_seconds=stats.first_token_seconds,
        total_seconds=stats.total_seconds + load_seconds,
        tokens_per_second=stats.tokens_per_second,
        prompt_tokens=stats.prompt_tokens,
        reused_tokens=stats.reused_tokens,
        evaluated_tokens=stats.evaluated_tokens,
        generated_tokens=stats.generated_tokens,
        state_loaded=stats.state_loaded,
    )
