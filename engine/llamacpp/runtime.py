"""`LlamaCppRuntime`: the `LLMRuntime` of llama.cpp, which owns the one resident model.

It loads a `LlamaCppLLM` for a plan, or hands back the resident one when that can carry the
plan out (same file and everything llama.cpp computes with, a window at least as large:
`params.can_serve`), so a retrieval question after a long-context one does not reload the
model or lose its prefilled document. Loading another model closes the resident one first:
one model in memory at a time. It counts tokens before any model is loaded, with a
vocab-only load kept for the purpose. `close()` frees both.

What it does not do: plan contexts (engine/planner.py) or decide when to close (the
assistant does, in its own `close()`).
"""

from __future__ import annotations

import threading

from engine.kvcache import KVStateStore
from engine.llamacpp.binding import detect_backend, gpu_memory
from engine.llamacpp.model import LlamaCppLLM
from engine.llamacpp.params import can_serve
from engine.llamacpp.vocab import Vocabularies
from engine.llm_errors import GenerationError
from engine.types import Backend, ContextPlan
from models.types import ModelProfile


class LlamaCppRuntime:
    """The `LLMRuntime` the product uses. Thread-safe; close it when done."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._resident: LlamaCppLLM | None = None
        self._vocabularies = Vocabularies()
        self.loads = 0
        """Models actually loaded by `load` (a reuse of the resident one does not count)."""
        self.last_load_reused = False
        """Whether the last `load` handed back the resident model."""

    @property
    def resident(self) -> LlamaCppLLM | None:
        """The model now loaded, if any (None once it has been closed, by anyone)."""
        current = self._resident
        return None if current is None or current.closed else current

    def detect_backend(self) -> Backend:
        return detect_backend()

    def gpu_memory(self) -> tuple[int, int] | None:
        return gpu_memory()

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        """Tokens of plain `text` in the model's vocabulary, whether or not it is loaded."""
        current = self.resident
        if current is not None and current.model_path == profile.path:
            try:
                return current.count_tokens(text)
            except GenerationError:  # closed since we looked: the vocabulary still answers
                pass
        return self._vocabularies.count(profile.path, text)

    def load(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None,
        kv_store: KVStateStore | None,
    ) -> LlamaCppLLM:
        """The resident model when it can carry out `plan`, else a new one (the resident one
        closed first). A reused model keeps its own plan: its `context_size` is its n_ctx,
        at least the plan's. Raises ModelLoadError when the new model cannot be loaded."""
        with self._lock:
            current = self.resident
            if current is not None and can_serve(
                (current.profile, current.plan, current.threads), (profile, plan, threads)
            ):
                current.kv_store = kv_store
                self.last_load_reused = True
                return current
            self._resident = None
            if current is not None:
                current.close()
            self.last_load_reused = False
            llm = LlamaCppLLM(profile, plan, threads=threads, kv_store=kv_store)
            self._resident = llm
            self.loads += 1
            return llm

    def close(self) -> None:
        """Free the resident model and the kept vocabulary. Safe to call twice; a later
        `load` or `count_tokens` loads again."""
        with self._lock:
            current, self._resident = self._resident, None
        if current is not None:
            current.close()
        self._vocabularies.close()
