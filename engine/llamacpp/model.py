"""`LlamaCppLLM`: one GGUF model in llama.cpp carrying out one `ContextPlan`; the `LLM`.

It loads the `Llama` for a `ModelProfile` and the planner's plan (engine/llamacpp/
loading.py), warms it up, and streams answers token by token, serialized by a lock: first
`PrefillProgress` events while the KV cache is made to hold the prompt (engine/llamacpp/
cache.py: prefix reuse, saved states, abortable batches), then `TextPiece`s, then one
`Done`. Cancel stops a prefill mid-batch and an answer between tokens; a prompt that does
not fit is refused, never truncated.

What it does not do: decide which model stays resident (engine/llamacpp/runtime.py; a
model built directly is the caller's to close), choose the plan (engine/planner.py), write
prompts (engine/prompts.py), or run several sequences at once. It drives `Llama.eval` and
`Llama.generate` itself rather than `create_chat_completion`, because that API hides which
tokens it evaluated.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.kvcache import KVStateStore, StateKey
from engine.llamacpp.abort import AbortFlag
from engine.llamacpp.binding import load_llama_cpp, runtime_version
from engine.llamacpp.cache import KVCache, Prepared, finish, prepared_stats
from engine.llamacpp.chat import ChatPrompts, Prompt
from engine.llamacpp.loading import load_llama
from engine.llamacpp.params import REPEAT_PENALTY
from engine.llamacpp.stops import StopScanner
from engine.llm import (
    CachedPrefix,
    ChatMessage,
    Done,
    FinishReason,
    GenerationStats,
    PrefillProgress,
    StreamEvent,
    TextPiece,
)
from engine.llm_errors import ContextOverflowError, EngineBusyError, GenerationError
from engine.types import ContextPlan
from models.types import ModelProfile

log = logging.getLogger(__name__)


class LlamaCppLLM:
    """A GGUF model in llama.cpp, carrying out one `ContextPlan`. Implements `engine.llm.LLM`.

    Raises ModelLoadError, naming the file, when the model cannot be loaded or its context
    cannot be built. Close it (or use it as a context manager) to free its memory; at
    interpreter exit it is freed at the latest.
    """

    def __init__(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None = None,
        kv_store: KVStateStore | None = None,
    ) -> None:
        self.profile = profile
        self.plan = plan
        self.threads = threads
        self.kv_store = kv_store
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._closing = threading.Event()
        llama_cpp = load_llama_cpp()
        loaded = load_llama(profile, plan, threads)
        self.load_log: tuple[str, ...] = loaded.log
        """What llama.cpp logged while loading this model and building its context."""
        self.allocated_kv_bytes: int | None = loaded.allocated_kv_bytes
        """Bytes llama.cpp allocated for the KV cache, as its log reported them."""
        llama = self._llama = loaded.llama
        # Freed at interpreter exit at the latest, while llama_cpp still exists (a Llama
        # collected after its module's globals are gone prints a TypeError on the way out).
        self._release = weakref.finalize(self, llama.close)
        try:
            self._runtime = runtime_version()
            self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
            self._abort = AbortFlag(llama_cpp, llama.ctx)
            self._cache = KVCache(llama_cpp, llama, self._abort)
            self._prompts = ChatPrompts(self._open_llama, profile.path)
            self._warm_up()
        except BaseException:
            self._free()
            raise

    def _warm_up(self) -> None:
        """Decode a 2-token and a 1-token batch, then forget them.

        Pages the weights in (so the first answer's timings are honest) and lifts both of
        llama.cpp's perf counters off zero, which `llama_perf_context` reports as 1: from
        here on their differences are exact.
        """
        llama = self._llama
        token = llama.token_bos() if llama.token_bos() >= 0 else llama.token_eos()
        try:
            self._cache.decode([token, token])
            self._cache.decode([token])
        finally:
            self._cache.forget()

    # -- the LLM protocol ------------------------------------------------------------------

    @property
    def context_size(self) -> int:
        return int(self.plan.n_ctx)

    @property
    def model_path(self) -> Path:
        return self.profile.path

    @property
    def closed(self) -> bool:
        return self._llama is None

    def count_tokens(self, text: str) -> int:
        llama = self._open_llama()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_chat_tokens(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> int:
        text = self.render_chat(messages, add_generation_prompt=add_generation_prompt)
        return len(self._prompts.tokens(text))

    def render_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        self._open_llama()
        return self._prompts.render(messages, add_generation_prompt=add_generation_prompt)

    def prompt_tokens(
        self, messages: Sequence[ChatMessage], prefix: CachedPrefix | None = None
    ) -> list[int]:
        """The exact tokens `stream_chat(messages, prefix=prefix)` evaluates."""
        self._open_llama()
        return list(self._prompts.prompt(messages, prefix).tokens)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        prefix: CachedPrefix | None = None,
        repeat_penalty: float | None = None,
    ) -> Generator[StreamEvent, None, None]:
        """See `engine.llm.LLM.stream_chat`. `PrefillProgress` events come after every
        evaluated prefill batch (at most 512 tokens); a prompt found whole in the KV cache
        yields one, the final one, since its last token is evaluated again for fresh logits.
        """
        # A plain function returning the generator: an oversized prompt raises here, at the
        # call, not at the first next().
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        self._open_llama()
        prompt = self._prompts.prompt(messages, prefix)
        self._check_fits(len(prompt.tokens), "the prompt")
        stops = tuple(s for s in (*stop, *self._prompts.template_stops) if s)
        penalty = REPEAT_PENALTY if repeat_penalty is None else repeat_penalty
        return self._stream(prompt, max_tokens, cancel, stops, temperature, penalty)

    def prefill(
        self,
        messages: Sequence[ChatMessage],
        *,
        document_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationStats:
        self._open_llama()
        text = self._prompts.render(messages, add_generation_prompt=False)
        tokens = self._prompts.tokens(text)
        self._check_fits(len(tokens), "the document prefix")
        started = time.perf_counter()
        with self._exclusive():
            self._open_llama()
            prompt = Prompt(tokens, tokens, document_id)
            prepared = finish(self._prepare(prompt, cancel, need_logits=False))
        elapsed = time.perf_counter() - started
        return prepared_stats(len(tokens), prepared, elapsed, None, 0, elapsed)

    def close(self) -> None:
        """Free the model. A decode running in another thread is aborted, and its stream ends
        with `Done(reason=CANCELLED)` before the memory goes. Safe to call twice."""
        if self._llama is None:
            return
        self._closing.set()
        self._abort.raise_for_good()
        if self._owner == threading.get_ident():
            # This thread's own suspended stream holds the lock: it is not inside llama.cpp,
            # and it checks for a closed model before touching it again.
            self._free()
            return
        with self._lock:
            self._free()

    def _free(self) -> None:
        if self._llama is not None:
            self._llama = None
            self._release()  # closes the Llama, once

    def __enter__(self) -> LlamaCppLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation ------------------------------------------------------------------------

    def _check_fits(self, needed: int, what: str) -> None:
        available = self.context_size
        if needed > available:
            raise ContextOverflowError(
                needed,
                available,
                f"{what} needs {needed:,} tokens but the context holds {available:,}"
                f" (n_ctx of this plan); plan a larger context for this document, or ask"
                f" with retrieval instead of the whole document",
            )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the model for one call. A second stream from the same thread would wait for
        itself forever: that is an error instead."""
        me = threading.get_ident()
        if self._owner == me:
            raise EngineBusyError(
                "an earlier answer from this model is still streaming in this thread;"
                " read it to the end or close it first"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _open_llama(self) -> Any:
        llama = self._llama
        if llama is None:
            raise GenerationError(f"the model {self.profile.path.name} has been closed")
        return llama

    def _stop_requested(self, cancel: threading.Event | None) -> bool:
        return self._closing.is_set() or (cancel is not None and cancel.is_set())

    def _prepare(
        self, prompt: Prompt, cancel: threading.Event | None, *, need_logits: bool
    ) -> Generator[PrefillProgress, None, Prepared]:
        """The KV cache's `prepare`, with the abort flag watching `cancel`, and a check for a
        model closed by this thread while the consumer held a progress event."""
        key = self._state_key(prompt.prefix_tokens, prompt.document_id)
        steps = self._cache.prepare(
            prompt.tokens,
            prompt.prefix_tokens,
            key,
            self.kv_store,
            lambda: self._stop_requested(cancel),
            need_logits=need_logits,
        )
        with self._abort.watching(cancel):
            while True:
                try:
                    event = next(steps)
                except StopIteration as finished:
                    prepared: Prepared = finished.value
                    return prepared
                yield event
                if self._llama is None:
                    steps.close()
                    raise GenerationError("the model was closed while reading the prompt")

    def _state_key(self, prefix: Sequence[int] | None, document_id: str | None) -> StateKey | None:
        if prefix is None or not document_id or not self.profile.sha256:
            return None
        return StateKey.build(
            model_sha256=self.profile.sha256,
            runtime=self._runtime,
            plan=self.plan,
            document_id=document_id,
            tokens=prefix,
        )

    def _stream(
        self,
        prompt: Prompt,
        max_tokens: int,
        cancel: threading.Event | None,
        stops: tuple[str, ...],
        temperature: float,
        repeat_penalty: float,
    ) -> Generator[StreamEvent, None, None]:
        started = time.perf_counter()
        llama_cpp = load_llama_cpp()
        with self._exclusive():
            llama = self._open_llama()
            prepared = yield from self._prepare(prompt, cancel, need_logits=True)
            prefill_seconds = time.perf_counter() - started
            if prepared.cancelled:
                stats = prepared_stats(
                    len(prompt.tokens), prepared, prefill_seconds, None, 0, prefill_seconds
                )
                done = Done("", FinishReason.CANCELLED, stats)
            else:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                scanner = StopScanner(stops)
                pieces: list[str] = []
                first_token: float | None = None
                generated = 0
                reason = FinishReason.LENGTH
                tokens = llama.generate(
                    prompt.tokens,
                    temp=temperature,
                    top_k=40,
                    top_p=0.95,
                    repeat_penalty=repeat_penalty,
                )
                try:
                    while True:
                        try:
                            # Each step decodes the previous token, then samples the next.
                            token = int(next(tokens))
                        except StopIteration:
                            reason = FinishReason.STOP
                            break
                        except RuntimeError as error:
                            if self._abort.raised:  # close() in another thread aborted it
                                self._cache.truncate(int(llama.n_tokens))
                                reason = FinishReason.CANCELLED
                                break
                            self._cache.forget()
                            raise GenerationError(
                                f"llama.cpp failed while answering: {error}"
                            ) from error
                        if first_token is None:
                            first_token = time.perf_counter() - started
                        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                            reason = FinishReason.STOP
                            break
                        generated += 1
                        text, hit = scanner.feed(decoder.decode(llama.detokenize([token])))
                        if text:
                            pieces.append(text)
                            yield TextPiece(text)
                        # Back from the consumer: the model may have been closed meanwhile.
                        if self._llama is None:
                            raise GenerationError("the model was closed while answering")
                        if hit:
                            reason = FinishReason.STOP
                            break
                        if generated >= max_tokens:
                            break
                        if self._stop_requested(cancel):
                            reason = FinishReason.CANCELLED
                            break
                        if llama.n_tokens >= llama.n_ctx():  # no room to decode this token
                            break
                finally:
                    tokens.close()
                if not scanner.matched:
                    tail = scanner.feed(decoder.decode(b"", final=True))[0] + scanner.flush()
                    if tail:
                        pieces.append(tail)
                        yield TextPiece(tail)
                total = time.perf_counter() - started
                stats = prepared_stats(
                    len(prompt.tokens), prepared, prefill_seconds, first_token, generated, total
                )
                done = Done("".join(pieces), reason, stats)
        # Outside the lock: a consumer that stops at Done does not keep the model held.
        yield done
