"""The `LLM` contract: the one seam between longread and whatever runs the model.

In the spirit of simonw/llm, a backend is one small Protocol. `engine.llamacpp.LlamaCppLLM`
implements it in-process with llama.cpp; `tests.fake_llm.FakeLLM` implements it for fast
tests; an OpenAI-compatible client could implement it for a server that already exists.

What lives here: the Protocol, the frozen types it speaks (chat messages, stream events,
generation statistics, the cached-prefix hint) and `drain`, which runs a stream to its end.
What does not: prompts (engine/prompts.py), context planning (engine/planner.py), any model
code or import of llama_cpp.

A stream is an iterator of `PrefillProgress` events (while the prompt is read) and then
`TextPiece`s, and it always ends with exactly one `Done`, also when it was cancelled (between
tokens, or in the middle of a prefill) or ran out of room. Errors are `EngineError`s
(engine/llm_errors.py).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine.llm_errors import GenerationError

if TYPE_CHECKING:
    from engine.kvcache import KVStateStore
    from engine.types import Backend, ContextPlan
    from models.types import ModelProfile


class Role(StrEnum):
    """Who speaks a chat message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


class FinishReason(StrEnum):
    """Why a stream ended."""

    STOP = "stop"  # the model ended its turn, or a stop string appeared
    LENGTH = "length"  # max_tokens reached, or the context is full
    CANCELLED = "cancelled"  # the cancel event was set (honoured mid-prefill and between tokens)


@dataclass(frozen=True)
class GenerationStats:
    """What one call cost, and how much of the prompt was already in the KV cache.

    `reused_tokens + evaluated_tokens == prompt_tokens`. Reused tokens were already in the
    model's KV cache (left there by an earlier call, or loaded from a saved state);
    evaluated tokens were run through the model in this call. `backend_evaluated_tokens` is
    the same count as the backend's own counters report it (llama.cpp's perf counters), None
    where a backend keeps none: it is the proof that reuse happened, not our bookkeeping.
    """

    prompt_tokens: int
    reused_tokens: int
    evaluated_tokens: int
    backend_evaluated_tokens: int | None
    state_loaded: bool  # a saved KV state was loaded from disk for this call
    state_saved: bool  # this call saved the document prefix's KV state to disk
    prefill_seconds: float  # making the KV hold the prompt: loading plus evaluating
    first_token_seconds: float | None  # from the call to the first token; None if none came
    generated_tokens: int
    total_seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generation speed after the prefill (0.0 when nothing was generated)."""
        decode_seconds = self.total_seconds - self.prefill_seconds
        if self.generated_tokens == 0 or decode_seconds <= 0:
            return 0.0
        return self.generated_tokens / decode_seconds


@dataclass(frozen=True)
class PrefillProgress:
    """Prompt tokens in the KV cache so far (`done` of `total`), yielded between prefill
    batches before the first `TextPiece`, so a UI can show a long prefill moving."""

    done: int
    total: int


@dataclass(frozen=True)
class TextPiece:
    """A piece of the answer, as soon as it decodes to whole characters."""

    text: str


@dataclass(frozen=True)
class Done:
    """The last event of every stream: the whole text, why it ended, and what it cost."""

    text: str
    reason: FinishReason
    stats: GenerationStats


StreamEvent = PrefillProgress | TextPiece | Done


@dataclass(frozen=True)
class CachedPrefix:
    """A hint that the first `messages` chat messages are a document prefix worth keeping.

    The backend makes sure its KV cache holds exactly that prefix before it reads the rest:
    already there, loaded from a saved state, or prefilled and then saved under
    `document_id`. Later calls with the same prefix evaluate only what follows it.
    """

    document_id: str
    messages: int

    def __post_init__(self) -> None:
        if self.messages < 1:
            raise ValueError("a cached prefix holds at least one message")


@runtime_checkable
class LLM(Protocol):
    """A chat model that streams, counts tokens exactly, and can keep a document prefilled.

    Implementations serialize generation: one stream at a time per model.
    """

    @property
    def context_size(self) -> int:
        """Tokens the context holds (n_ctx): prompt and answer together."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text, with no chat template and no special tokens."""
        ...

    def count_chat_tokens(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> int:
        """Tokens of the prompt the chat template makes of `messages`: with the reply cue,
        what `stream_chat` evaluates; without it, what `prefill` does."""
        ...

    def render_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text the model's chat template makes of `messages`."""
        ...

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
        """Stream the assistant's reply: `TextPiece`s, then one `Done`.

        `repeat_penalty` overrides the backend's own (summaries need a firmer one than
        answers, which quote the document).

        Raises ContextOverflowError (before any event) when the prompt does not fit.
        Consume the stream to its end or close() it: it holds the model until then.
        """
        ...

    def prefill(
        self,
        messages: Sequence[ChatMessage],
        *,
        document_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationStats:
        """Make the KV cache hold `messages` (no generation prompt), ready to be reused.

        With a `document_id` (and a state store) the prefilled state is saved to disk, or
        loaded from there instead of evaluated. Returns what it cost. When `cancel` is set
        midway it returns early: the cache holds part of the prefix and nothing is saved.
        """
        ...

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        ...


def drain(stream: Iterator[StreamEvent]) -> Done:
    """Run a stream to its end and return its `Done` (for callers that do not stream)."""
    done: Done | None = None
    for event in stream:
        if isinstance(event, Done):
            done = event
    if done is None:
        raise GenerationError("the model's stream ended without a result")
    return done


class LLMRuntime(Protocol):
    """What loads LLMs: the assistant's seam to a backend (llama.cpp, or a fake in tests).

    `count_tokens` must work before any model is loaded, since the count decides the
    context the model is loaded with.
    """

    def detect_backend(self) -> Backend: ...

    def gpu_memory(self) -> tuple[int, int] | None:
        """(free, total) VRAM bytes, or None when there is no GPU or it cannot say."""
        ...

    def count_tokens(self, profile: ModelProfile, text: str) -> int: ...

    def load(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None,
        kv_store: KVStateStore | None,
    ) -> LLM: ...

    def close(self) -> None:
        """Free whatever the runtime holds (the resident model, cached vocabularies).
        Safe to call twice; a later `load` loads again."""
        ...
