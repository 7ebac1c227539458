"""Domain types of the engine: context plans, routes, answers and the events that stream them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Backend(StrEnum):
    """Where llama.cpp runs the model."""

    CPU = "cpu"
    CUDA = "cuda"
    METAL = "metal"


class RopeMethod(StrEnum):
    """How positions past the trained window are made to fit (none inside it)."""

    NONE = "none"
    YARN = "yarn"
    LINEAR = "linear"
    NTK = "ntk"


class KVCacheType(StrEnum):
    """Element type of the KV cache. Quantized V needs flash attention in llama.cpp."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"

    @property
    def bytes_per_element(self) -> float:
        return {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}[self.value]


class PromptLayout(StrEnum):
    """Where the question stands relative to the document in a long-context prompt."""

    CACHED = "cached"  # system, document, question: the document's KV is reused
    QUERY_AWARE = "query-aware"  # question before and after the document: read in its light


@dataclass(frozen=True)
class ContextPlan:
    """How to run one document's prompt on one model: the planner's verdict.

    `rope_freq_scale`, `rope_freq_base` and `yarn_orig_ctx` are the exact values handed to
    llama.cpp (0 / None mean "the model's own"). `fits` is false when even the largest
    allowed scaling and the smallest KV type cannot hold `tokens_needed`; `reason` says why
    in one line either way.
    """

    tokens_needed: int
    n_ctx: int
    n_ctx_train: int
    rope_method: RopeMethod
    rope_factor: float
    rope_freq_scale: float
    rope_freq_base: float | None
    yarn_orig_ctx: int
    kv_type: KVCacheType
    flash_attn: bool
    gpu_layers: int
    backend: Backend
    kv_bytes: int
    prefill_seconds: float
    fits: bool
    reason: str
    layout: PromptLayout
    layout_reason: str


class Strategy(StrEnum):
    """How a question is answered (see DESIGN.md's table)."""

    LONG_CONTEXT = "long"
    BEACONS = "beacons"
    RAG = "rag"


class AskMode(StrEnum):
    """What `ask` was told: a strategy, or `auto` to let the router choose."""

    AUTO = "auto"
    LONG = "long"
    RAG = "rag"


class Verdict(StrEnum):
    """Whether the model found the answer in what it was shown (Self-Route's signal)."""

    ANSWERED = "answered"
    UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class Route:
    """The strategy picked for a question, and why."""

    strategy: Strategy
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Citation:
    """A place in a document an answer rests on: its location label and a short snippet."""

    document_id: str
    location: str
    snippet: str
    chunk_ordinal: int | None = None


@dataclass(frozen=True)
class Timings:
    """Where an answer's time went. `load` is the model load (0 when it was resident)."""

    load_seconds: float
    prefill_seconds: float
    first_token_seconds: float | None
    total_seconds: float
    tokens_per_second: float
    prompt_tokens: int
    reused_tokens: int
    evaluated_tokens: int
    generated_tokens: int
    state_loaded: bool


@dataclass(frozen=True)
class Answer:
    """A finished answer with everything needed to show or script it."""

    question: str
    text: str
    strategy: Strategy
    document_ids: tuple[str, ...]
    citations: tuple[Citation, ...]
    timings: Timings
    verdict: Verdict = Verdict.ANSWERED
    plan: ContextPlan | None = None
    layout: PromptLayout | None = None
    cancelled: bool = False


@dataclass(frozen=True)
class RouteChosen:
    route: Route


@dataclass(frozen=True)
class PlanChosen:
    plan: ContextPlan


@dataclass(frozen=True)
class SourcesFound:
    """The passages given to the model (RAG) before it starts answering."""

    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class AnswerToken:
    text: str


@dataclass(frozen=True)
class AnswerDone:
    answer: Answer


AnswerEvent = RouteChosen | PlanChosen | SourcesFound | AnswerToken | AnswerDone
