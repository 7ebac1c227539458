"""Building a `llama_cpp.Llama` for a plan, with llama.cpp's log captured and its errors
explained in words a person can act on.

What it does not do: decide the arguments (engine/llamacpp/params.py), warm the model up
or keep it (engine/llamacpp/model.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.llamacpp.binding import MODEL_LOADS, load_llama_cpp
from engine.llamacpp.log import LOG, LogLine, explain, parse_kv_buffer_bytes
from engine.llamacpp.params import accepted_parameters, llama_kwargs
from engine.llm_errors import ModelLoadError
from engine.types import ContextPlan
from models.types import ModelProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """A freshly built `Llama` and what llama.cpp said while building it."""

    llama: Any
    log: tuple[str, ...]
    allocated_kv_bytes: int | None  # as llama.cpp's "KV buffer size" lines reported it


def load_llama(profile: ModelProfile, plan: ContextPlan, threads: int | None) -> Loaded:
    """The `Llama` that carries out `plan` for `profile`. Raises ModelLoadError, naming the
    file, when the model cannot be loaded or its context cannot be built."""
    path = profile.path
    if not path.is_file():
        raise ModelLoadError(
            path, f"model file {path} does not exist; check the path or add the model again"
        )
    llama_cpp = load_llama_cpp()
    kwargs = llama_kwargs(profile, plan, threads, accepted_parameters(llama_cpp.Llama))
    printed = io.StringIO()
    with LOG.capture() as lines:
        try:
            # verbose=True (see llama_kwargs) makes llama-cpp-python print its own chatter
            # with print(); it goes to the debug log, not the terminal.
            with (
                MODEL_LOADS,
                contextlib.redirect_stdout(printed),
                contextlib.redirect_stderr(printed),
            ):
                llama = llama_cpp.Llama(**kwargs)
        except ValueError as error:  # what Llama raises when the model or context fails
            raise ModelLoadError(path, _failure(plan, str(error), lines, str(path))) from error
        finally:
            log.debug("llama-cpp-python printed while loading: %s", printed.getvalue())
    llama.verbose = False  # silences the prints in generate() and friends from now on
    load_log = tuple(line.text for line in lines)
    return Loaded(llama, load_log, parse_kv_buffer_bytes(load_log))


def _failure(plan: ContextPlan, error: str, lines: Sequence[LogLine], path: str) -> str:
    detail = explain(lines)
    if "context" in error:
        hint = (
            "llama.cpp could not build a context for this plan"
            f" (n_ctx {plan.n_ctx}, KV {plan.kv_type}, flash attention"
            f" {'on' if plan.flash_attn else 'off'})"
        )
        if "bad_alloc" in detail or "memory" in detail:
            hint += ": not enough memory; plan a smaller context or a quantized KV cache"
    else:
        hint = "the file is not a GGUF model llama.cpp can load (corrupt, truncated?)"
    return f"cannot load model {path}: {hint}" + (f" [llama.cpp: {detail}]" if detail else "")
