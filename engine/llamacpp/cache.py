"""What one `Llama`'s KV cache holds, and making it hold a prompt as cheaply as possible.

`KVCache` reuses the longest common token prefix already in the cache, loads a document
prefix's saved state from `engine.kvcache.KVStateStore` (or evaluates it and saves it
there), and evaluates the rest in batches, yielding a `PrefillProgress` after each one. A
cancel (or the model closing) aborts the running `llama_decode` mid-batch through the
context's `AbortFlag`; the cache is then trimmed back to the batches that completed, and
a prefix cut short is never saved. It counts what it evaluated, and reads llama.cpp's own
perf counters beside that count, so statistics can show the reuse really happened.

What it does not do: tokenize or template (engine/llamacpp/chat.py), generate, or hold the
model's lock (engine/llamacpp/model.py does both).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.kvcache import KVStateStore, StateKey
from engine.llamacpp.abort import AbortFlag
from engine.llamacpp.log import LOG, explain
from engine.llm import GenerationStats, PrefillProgress
from engine.llm_errors import GenerationError

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Prepared:
    """How the KV cache came to hold a prompt."""

    evaluated: int
    backend_evaluated: int | None
    loaded: bool
    saved: bool
    cancelled: bool


def prepared_stats(
    prompt_tokens: int,
    prepared: Prepared,
    prefill_seconds: float,
    first_token: float | None,
    generated: int,
    total: float,
) -> GenerationStats:
    """The statistics of a call whose prompt was made ready as `prepared` says."""
    return GenerationStats(
        prompt_tokens=prompt_tokens,
        reused_tokens=prompt_tokens - prepared.evaluated,
        evaluated_tokens=prepared.evaluated,
        backend_evaluated_tokens=prepared.backend_evaluated,
        state_loaded=prepared.loaded,
        state_saved=prepared.saved,
        prefill_seconds=prefill_seconds,
        first_token_seconds=first_token,
        generated_tokens=generated,
        total_seconds=total,
    )


def finish(steps: Generator[PrefillProgress, None, _Result]) -> _Result:
    """Run a prefill to its end, dropping its progress events; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            result: _Result = finished.value
            return result


@dataclass(frozen=True)
class _Filled:
    evaluated: int
    cancelled: bool


def _never() -> bool:
    return False


class KVCache:
    """The KV cache of one `Llama` (sequence 0), kept in step with Llama's token record."""

    def __init__(self, llama_cpp: Any, llama: Any, abort: AbortFlag) -> None:
        self._llama_cpp = llama_cpp
        self._llama = llama
        self.abort = abort

    # -- making it hold a prompt -----------------------------------------------------------

    def prepare(
        self,
        tokens: list[int],
        prefix: list[int] | None,
        key: StateKey | None,
        store: KVStateStore | None,
        stop: Callable[[], bool],
        *,
        need_logits: bool,
    ) -> Generator[PrefillProgress, None, Prepared]:
        """Make the cache hold `tokens`: reuse, load the saved `prefix`, evaluate the rest.

        Yields `PrefillProgress(done, len(tokens))` after every evaluated batch, `done`
        counting the tokens reused or loaded from a saved state too; nothing when nothing is
        evaluated (a loaded state shows in the next batch's event). With `need_logits`
        at least the last token is evaluated, so a prompt found whole in the cache yields
        exactly one event, the final one.
        """
        before = self.counters()
        loaded = saved = cancelled = False
        evaluated = 0
        total = len(tokens)
        if prefix is not None:
            loaded, saved, evaluated, cancelled = yield from self._ensure_prefix(
                prefix, key, store, stop, total
            )
        if not cancelled:
            filled = yield from self.fill(tokens, stop, need_logits=need_logits, total=total)
            evaluated += filled.evaluated
            cancelled = filled.cancelled
        after = self.counters()
        backend = None if before is None or after is None else after - before
        return Prepared(evaluated, backend, loaded, saved, cancelled)

    def _ensure_prefix(
        self,
        prefix: list[int],
        key: StateKey | None,
        store: KVStateStore | None,
        stop: Callable[[], bool],
        total: int,
    ) -> Generator[PrefillProgress, None, tuple[bool, bool, int, bool]]:
        """(loaded, saved, evaluated, cancelled) after making the cache start with `prefix`.

        Already there: nothing to do. Else a saved state is loaded if one checks out, else
        the prefix is evaluated and, with a key and a store, saved, unless it was cancelled:
        a part of a document is never saved as if it were the whole.
        """
        if self.common_prefix(prefix) == len(prefix):
            if key is None or store is None or store.contains(key):
                return False, False, 0, False
            # In memory but not on disk (evicted, or never saved): keep it for next time.
            yield from self.fill(prefix, _never, need_logits=False, total=total)  # trims only
            entry = store.save(key, lambda path: self.save_state(path, prefix))
            return False, entry is not None, 0, False
        if key is not None and store is not None:
            entry = store.lookup(key)
            if entry is not None:
                if self.load_state(entry.payload_path, prefix):
                    return True, False, 0, False
                store.discard(key, "llama.cpp refused the saved state")
        filled = yield from self.fill(prefix, stop, need_logits=False, total=total)
        if filled.cancelled or key is None or store is None:
            return False, False, filled.evaluated, filled.cancelled
        saved = store.save(key, lambda path: self.save_state(path, prefix)) is not None
        return False, saved, filled.evaluated, False

    def fill(
        self,
        tokens: list[int],
        stop: Callable[[], bool],
        *,
        need_logits: bool,
        total: int,
    ) -> Generator[PrefillProgress, None, _Filled]:
        """Make the cache hold exactly `tokens`, evaluating only what it lacks, a batch at a
        time; `stop` is asked before each batch, the abort flag during one."""
        llama = self._llama
        keep = self.common_prefix(tokens)
        if need_logits:
            # What sits in the cache may have been followed by an earlier answer, or loaded
            # from disk without logits: sampling needs the last token decoded afresh.
            keep = max(0, min(keep, len(tokens) - 1))
        if keep < llama.n_tokens:
            keep = self.truncate(keep)
        evaluated = 0
        for start in range(keep, len(tokens), llama.n_batch):
            if stop():
                return _Filled(evaluated, True)
            batch = tokens[start : start + llama.n_batch]
            if not self.decode(batch):
                return _Filled(evaluated, True)
            evaluated += len(batch)
            yield PrefillProgress(int(llama.n_tokens), total)
        return _Filled(evaluated, False)

    # -- primitives ------------------------------------------------------------------------

    def decode(self, batch: list[int]) -> bool:
        """Evaluate `batch` after what the cache holds. False when the abort flag stopped it:
        the cache then holds what it held before (never a part of the batch)."""
        llama = self._llama
        try:
            llama.eval(batch)
        except RuntimeError as error:
            if self.abort.raised:
                # llama_decode returned 2 (aborted): llama.cpp keeps the micro-batches it
                # finished, Llama.eval counted none of them. Trim to what Llama counted, so
                # its token record and the cache agree again.
                log.debug("prefill aborted (%s); %d tokens kept", error, llama.n_tokens)
                self.truncate(int(llama.n_tokens))
                return False
            self.forget()
            raise GenerationError(f"llama.cpp failed to evaluate the prompt: {error}") from error
        # Each batch is synchronized on its own, so llama.cpp's perf counters attribute it
        # (a lone token to n_eval, more to n_p_eval) instead of lumping batches together.
        self._llama_cpp.llama_synchronize(llama.ctx)
        return True

    def common_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` the cache already holds."""
        import numpy as np  # deferred with llama_cpp, which needs it anyway

        held = self._llama.input_ids[: self._llama.n_tokens]
        limit = min(len(held), len(tokens))
        differ = np.flatnonzero(held[:limit] != np.asarray(tokens[:limit], dtype=held.dtype))
        return int(differ[0]) if differ.size else limit

    def truncate(self, keep: int) -> int:
        """Drop the cache after `keep` tokens; returns what is kept (0 if it cannot trim)."""
        llama_cpp, llama = self._llama_cpp, self._llama
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1):
            # Recurrent models cannot drop a tail: start over.
            self.forget()
            return 0
        llama.n_tokens = keep
        if hasattr(llama, "_requires_eval"):
            llama._requires_eval = True
        return keep

    def forget(self) -> None:
        """Empty the cache and Llama's token record."""
        llama_cpp = self._llama_cpp
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._llama.ctx), True)
        self._llama.reset()

    def counters(self) -> int | None:
        """Tokens llama.cpp has decoded in this context, by its perf counters."""
        llama_cpp = self._llama_cpp
        try:
            llama_cpp.llama_synchronize(self._llama.ctx)
            data = llama_cpp.llama_perf_context(self._llama.ctx)
        except AttributeError:  # a build without the perf API
            return None
        return int(data.n_p_eval) + int(data.n_eval)

    # -- saved states ----------------------------------------------------------------------

    def save_state(self, path: Path, tokens: list[int]) -> None:
        """Write the one sequence's tokens and KV cells (no logits) to `path`."""
        llama_cpp, llama = self._llama_cpp, self._llama
        if llama.n_tokens != len(tokens):
            raise OSError("the KV cache does not hold exactly the prefix")
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(
            llama.ctx, os.fsencode(path), 0, array, len(tokens)
        )
        if not written:
            raise OSError(f"llama.cpp could not write the KV state to {path}")

    def load_state(self, path: Path, tokens: list[int]) -> bool:
        """Load a verified state file into sequence 0; False (and an empty cache) if refused."""
        llama_cpp, llama = self._llama_cpp, self._llama
        self.forget()
        capacity = llama.n_ctx()
        array = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        with LOG.capture() as lines:
            read = llama_cpp.llama_state_seq_load_file(
                llama.ctx, os.fsencode(path), 0, array, capacity, ctypes.byref(count)
            )
        if not read or count.value != len(tokens) or list(array[: count.value]) != tokens:
            log.info("llama.cpp refused the saved KV state %s: %s", path.name, explain(lines))
            self.forget()
            return False
        llama.input_ids[: len(tokens)] = tokens
        llama.n_tokens = len(tokens)
        # No logits came with the state: the next token must be decoded before sampling
        # (fill always decodes at least one token before generating; this keeps Llama's own
        # bookkeeping right too).
        if hasattr(llama, "_requires_eval"):
            llama._requires_eval = True
        return True
