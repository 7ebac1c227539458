"""FakeLLM: a deterministic stand-in for the `engine.llm.LLM` protocol, for fast unit tests.

It goes through the same seam as the real backend, so code under test cannot tell the
difference except in speed and wit: it answers from a script (a list of answers used in
turn, the last one repeated, or a function of the messages), counts a token per
whitespace-separated word, reports its "prefill" as `PrefillProgress` events (one per
`PREFILL_STEP` evaluated words, and a final one; none when nothing is evaluated), streams an
answer a word at a time, honours `max_tokens`, stop strings and the cancel event between
progress events and between words, raises `ContextOverflowError` for prompts
longer than its context, and imitates prefix reuse and saved document states closely
enough for statistics-reading code to be tested. Every call is recorded.

What it does not do: load anything, sleep (unless `delay` is set), or vary its answers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace

from engine.errors import EngineError
from engine.kvcache import KVStateStore
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
from engine.types import Backend, ContextPlan
from models.types import ModelProfile

Script = Sequence[str] | Callable[[Sequence[ChatMessage]], str]

PREFILL_STEP = 64
"""Words per fake prefill batch: a `PrefillProgress` after each."""


@dataclass
class FakeCall:
    """One recorded stream_chat or prefill call."""

    kind: str  # "stream" or "prefill"
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    prefix: CachedPrefix | None = None
    repeat_penalty: float | None = None
    document_id: str | None = None
    stats: GenerationStats | None = None
    reason: FinishReason | None = None


@dataclass
class FakeLLM:
    """A scripted `LLM`. `answers` is used in turn (the last one repeats) or called.

    `fail_with` makes the next stream (or prefill) raise that error when it starts, once.
    `delay` sleeps that many seconds per streamed word (for cancellation tests).
    """

    answers: Script = ("This is a fake answer.",)
    context_size: int = 8192
    delay: float = 0.0
    fail_with: EngineError | None = None
    calls: list[FakeCall] = field(default_factory=list)
    closed: bool = False
    saved_states: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    _held: list[str] = field(default_factory=list)
    _answer_index: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _owner: int | None = None

    # -- the LLM protocol ------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_chat_tokens(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> int:
        return len(self.render_chat(messages, add_generation_prompt=add_generation_prompt).split())

    def render_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        text = "".join(f"<|{m.role.value}|> {m.content}\n" for m in messages)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")

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
        self._check_open()
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        tokens = self.render_chat(messages).split()
        self._check_fits(len(tokens))
        call = FakeCall(
            "stream",
            tuple(messages),
            max_tokens,
            tuple(stop),
            temperature,
            prefix=prefix,
            repeat_penalty=repeat_penalty,
        )
        self.calls.append(call)
        return self._stream(call, tokens, cancel)

    def prefill(
        self,
        messages: Sequence[ChatMessage],
        *,
        document_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationStats:
        self._check_open()
        tokens = self.render_chat(messages, add_generation_prompt=False).split()
        self._check_fits(len(tokens))
        call = FakeCall("prefill", tuple(messages), document_id=document_id)
        self.calls.append(call)
        self._raise_scripted_failure()
        started = time.perf_counter()
        with self._exclusive():
            evaluated, loaded, saved = self._take(tokens, tokens, document_id)
        elapsed = time.perf_counter() - started
        call.stats = _stats(len(tokens), evaluated, loaded, saved, elapsed, 0, elapsed)
        return call.stats

    def close(self) -> None:
        self.closed = True

    # -- helpers for tests -----------------------------------------------------------------

    @property
    def prompts(self) -> list[str]:
        """The rendered prompt of every stream_chat call, in order."""
        return [self.render_chat(c.messages) for c in self.calls if c.kind == "stream"]

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialize like the real backend: other threads wait, this thread gets an error."""
        if self._owner == threading.get_ident():
            raise EngineBusyError("an earlier fake answer is still streaming in this thread")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    def _check_open(self) -> None:
        if self.closed:
            raise GenerationError("the fake model has been closed")

    def _check_fits(self, needed: int) -> None:
        if needed > self.context_size:
            raise ContextOverflowError(
                needed,
                self.context_size,
                f"the prompt needs {needed:,} tokens but the context holds {self.context_size:,}",
            )

    def _raise_scripted_failure(self) -> None:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error

    def _next_answer(self, messages: Sequence[ChatMessage]) -> str:
        if callable(self.answers):
            return self.answers(messages)
        answers = list(self.answers)
        answer = answers[min(self._answer_index, len(answers) - 1)]
        self._answer_index += 1
        return answer

    def _take(
        self, tokens: list[str], prefix: list[str] | None, document_id: str | None
    ) -> tuple[int, bool, bool]:
        """Imitate the KV cache: (tokens evaluated, state loaded, state saved)."""
        loaded = saved = False
        evaluated = 0
        if prefix is not None and self._held[: len(prefix)] != prefix:
            state = (document_id, tuple(prefix)) if document_id else None
            if state is not None and state in self.saved_states:
                loaded = True
            else:
                evaluated += len(prefix) - _common(self._held, prefix)
                if state is not None:
                    self.saved_states.add(state)
                    saved = True
            self._held = list(prefix)
        evaluated += len(tokens) - _common(self._held, tokens)
        self._held = list(tokens)
        return evaluated, loaded, saved

    def _stream(
        self, call: FakeCall, tokens: list[str], cancel: threading.Event | None
    ) -> Generator[StreamEvent, None, None]:
        started = time.perf_counter()
        self._raise_scripted_failure()
        prefix_tokens = None
        if call.prefix is not None:
            head = self.render_chat(
                call.messages[: call.prefix.messages], add_generation_prompt=False
            )
            prefix_tokens = head.split()
        with self._exclusive():
            document_id = call.prefix.document_id if call.prefix else None
            evaluated, loaded, saved = self._take(tokens, prefix_tokens, document_id)
            reused = len(tokens) - evaluated
            in_cache = reused
            while evaluated and in_cache < len(tokens):
                if cancel is not None and cancel.is_set():
                    break
                in_cache = min(in_cache + PREFILL_STEP, len(tokens))
                yield PrefillProgress(in_cache, len(tokens))
            if in_cache < len(tokens):  # cancelled during the prefill
                # Like the real backend: the cache keeps the finished batches, and a
                # document prefix cut short is not saved.
                self._held = tokens[:in_cache]
                if saved and document_id and prefix_tokens and in_cache < len(prefix_tokens):
                    self.saved_states.discard((document_id, tuple(prefix_tokens)))
                    saved = False
                elapsed = time.perf_counter() - started
                stats = _stats(len(tokens), in_cache - reused, loaded, saved, elapsed, 0, elapsed)
                call.stats, call.reason = stats, FinishReason.CANCELLED
                final = Done("", FinishReason.CANCELLED, stats)
            else:
                final = yield from self._answer(
                    call, tokens, cancel, started, evaluated, loaded, saved
                )
        yield final

    def _answer(
        self,
        call: FakeCall,
        tokens: list[str],
        cancel: threading.Event | None,
        started: float,
        evaluated: int,
        loaded: bool,
        saved: bool,
    ) -> Generator[StreamEvent, None, Done]:
        """Stream the scripted answer a word at a time; the `Done` to end with."""
        prefill = time.perf_counter() - started
        answer = self._next_answer(call.messages)
        cut = _first_stop(answer, call.stop)
        words = _pieces(answer[:cut] if cut is not None else answer)
        reason = FinishReason.STOP
        if cut is None and len(words) > call.max_tokens:
            words, reason = words[: call.max_tokens], FinishReason.LENGTH
        emitted: list[str] = []
        first: float | None = None
        for word in words:
            if cancel is not None and cancel.is_set():
                reason = FinishReason.CANCELLED
                break
            if self.delay:
                time.sleep(self.delay)
            if first is None:
                first = time.perf_counter() - started
            emitted.append(word)
            self._held.append(word)
            yield TextPiece(word)
        total = time.perf_counter() - started
        stats = _stats(len(tokens), evaluated, loaded, saved, prefill, len(emitted), total)
        stats = replace(stats, first_token_seconds=first)
        call.stats, call.reason = stats, reason
        return Done("".join(emitted), reason, stats)


def _common(held: Sequence[str], tokens: Sequence[str]) -> int:
    count = 0
    for a, b in zip(held, tokens, strict=False):
        if a != b:
            break
        count += 1
    return count


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [index for stop in stops if stop and (index := text.find(stop)) >= 0]
    return min(hits) if hits else None


def _pieces(text: str) -> list[str]:
    """Split into words that keep their leading whitespace, so "".join gives the text back."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if char.isspace() and current.strip():
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces


def _stats(
    prompt: int,
    evaluated: int,
    loaded: bool,
    saved: bool,
    prefill: float,
    generated: int,
    total: float,
) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=prompt,
        reused_tokens=prompt - evaluated,
        evaluated_tokens=evaluated,
        backend_evaluated_tokens=None,
        state_loaded=loaded,
        state_saved=saved,
        prefill_seconds=prefill,
        first_token_seconds=None,
        generated_tokens=generated,
        total_seconds=total,
    )


@dataclass
class FakeRuntime:
    """An `LLMRuntime` that hands out one FakeLLM and counts a token per word."""

    llm: FakeLLM = field(default_factory=FakeLLM)
    backend: Backend = Backend.CPU
    loads: list[ContextPlan] = field(default_factory=list)

    def detect_backend(self) -> Backend:
        return self.backend

    def gpu_memory(self) -> tuple[int, int] | None:
        return None

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        return len(text.split())

    def load(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None,
        kv_store: KVStateStore | None,
    ) -> FakeLLM:
        self.loads.append(plan)
        self.llm.context_size = plan.n_ctx
        return self.llm

    def close(self) -> None:
        self.llm.close()
