"""The bare llama.cpp baseline that benchmarks hold longread's own prefill against.

`raw_prefill` evaluates the very tokens `LlamaCppLLM.stream_chat` would (`chat_prompt_tokens`)
on a plain `llama_cpp.Llama` built from the same arguments, with nothing of longread in the
timed path. What it does not do: reuse, save or cancel anything; it is a measurement.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.llamacpp.binding import load_llama_cpp
from engine.llamacpp.model import LlamaCppLLM
from engine.llamacpp.params import accepted_parameters, llama_kwargs
from engine.llm import CachedPrefix, ChatMessage
from engine.types import ContextPlan
from models.types import ModelProfile


def chat_prompt_tokens(
    llm: LlamaCppLLM, messages: Sequence[ChatMessage], prefix: CachedPrefix | None = None
) -> list[int]:
    """The exact tokens `llm.stream_chat(messages, prefix=prefix)` evaluates, so a benchmark
    can feed the very same tokens to a bare `Llama` (`raw_prefill`)."""
    return llm.prompt_tokens(messages, prefix)


@dataclass(frozen=True)
class RawPrefill:
    """One prefill on a bare `llama_cpp.Llama`: what it evaluated, how long it took."""

    tokens: int
    seconds: float
    load_seconds: float
    threads_batch: int
    """The threads llama.cpp used for the prefill (llama-cpp-python's default when None
    was asked for: all CPUs)."""


def raw_prefill(
    profile: ModelProfile,
    plan: ContextPlan,
    tokens: Sequence[int],
    threads: int | None = None,
) -> RawPrefill:
    """Evaluate `tokens` on a plain `llama_cpp.Llama(**llama_kwargs(...))` with `Llama.eval`,
    and time it: the baseline that longread's own prefill is compared against.

    Nothing of `LlamaCppLLM` is in the timed path. Outside it, the model gets the same
    warm-up `LlamaCppLLM` gives itself (weights paged in, first decode done), so both sides
    start equally warm. Close any other model first, so only one is in memory (a runtime's
    resident model: `LlamaCppRuntime.close()`). The bare model is freed before returning.
    """
    if not tokens:
        raise ValueError("raw_prefill needs at least one token")
    llama_cpp = load_llama_cpp()
    kwargs = llama_kwargs(profile, plan, threads, accepted_parameters(llama_cpp.Llama))
    started = time.perf_counter()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        llama = llama_cpp.Llama(**kwargs)
    llama.verbose = False
    try:
        warm = llama.token_bos() if llama.token_bos() >= 0 else llama.token_eos()
        llama.eval([warm, warm])
        llama.eval([warm])
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.reset()
        load_seconds = time.perf_counter() - started
        batch = [int(token) for token in tokens]
        started = time.perf_counter()
        llama.eval(batch)
        llama_cpp.llama_synchronize(llama.ctx)
        seconds = time.perf_counter() - started
        threads_batch = int(llama.n_threads_batch)
    finally:
        llama.close()
    return RawPrefill(len(batch), seconds, load_seconds, threads_batch)
