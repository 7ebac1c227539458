"""Domain types of the engine: context plans, routes, answers and the events that stream them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models.types import SizeClass


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


class QuestionType(StrEnum):
    """What a question asks for, in LaRA's terms (plus `global`), as the router reads it."""

    LOCATION = "location"  # a specific detail: who, what, when, where, "is X mentioned?"
    REASONING = "reasoning"  # why or how: motives, causes, what something shows
    COMPARISON = "comparison"  # between characters, parts or documents
    GLOBAL = "global"  # the whole text: summarize, themes, how something develops


class ContextFit(StrEnum):
    """How a whole document fits a model's window."""

    NATIVE = "native"  # inside the trained window, unscaled
    SCALED = "scaled"  # only with RoPE scaling (and maybe a quantized KV cache)
    TOO_LONG = "too-long"  # not even with the largest scaling allowed


class Verdict(StrEnum):
    """Whether the model found the answer in what it was shown (Self-Route's signal)."""

    ANSWERED = "answered"
    UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class ContextFacts:
    """What the router knows about a document on a model before choosing a strategy.

    `cold_prefill_seconds` is the planner's estimate for reading the whole document with
    nothing cached; `kv_cached` says a saved KV state of it exists for this model, which
    makes long context cheap for a follow-up.
    """

    document_tokens: int
    window_tokens: int  # the model's trained window
    fit: ContextFit
    rope_factor: float  # of the whole-document plan (1.0 unscaled)
    cold_prefill_seconds: float
    latency_budget_seconds: float
    kv_cached: bool
    size_class: SizeClass
    beacons_built: bool
    retrieval_window_tokens: int  # the window a retrieval answer runs in


@dataclass(frozen=True)
class Route:
    """The strategy picked for a question, the question's type, the facts used, and why.

    `reasons` starts with one sentence a person can read (`reason`); `forced` is true when
    the person chose the strategy (`--mode`), so the router's table was not consulted.
    """

    strategy: Strategy
    question_type: QuestionType
    reasons: tuple[str, ...]
    facts: ContextFacts | None = None
    forced: bool = False

    @property
    def reason(self) -> str:
        """The one sentence that says why."""
        return self.reasons[0] if self.reasons else ""


@dataclass(frozen=True)
class Citation:
    """A place in a document an answer rests on: its location label, a short snippet, and
    the character span (`start`, `end`) of the passage in the document's text, so a UI can
    show and highlight it."""

    document_id: str
    location: str
    snippet: str
    start: int
    end: int
    chunk_ordinal: int | None = None


@dataclass(frozen=True)
class Grounding:
    """Whether an answer's named things, numbers and content words occur in what the model
    was shown: the model-independent "unanswerable" signal (the bundled model never
    declines). `score` is the share of the answer's content terms found, 0..1; `missing`
    the terms not found."""

    supported: bool
    score: float
    missing: tuple[str, ...] = ()


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
    route: Route | None = None
    grounding: Grounding | None = None
    retrieval_confidence: float | None = None
    """How much of the question the best retrieved passage holds, 0..1 (retrieval answers
    only): low means the text probably does not say what the question asks about."""
    attempts: tuple[Answer, ...] = ()
    """Earlier attempts at this question (Self-Route: a retrieval answer that declined or
    was not backed by its passages, or whose search barely matched), oldest first; empty
    when the first answer stood."""

    @property
    def escalated(self) -> bool:
        return bool(self.attempts)


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


class PrepStage(StrEnum):
    """The slow steps before an answer's first token."""

    INDEX = "index"  # building a search index (chunks embedded)
    MODEL = "model"  # loading the model
    PREFILL = "prefill"  # reading the prompt into the KV cache (tokens)
    BEACONS = "beacons"  # writing beacon summaries, a window at a time (windows)


@dataclass(frozen=True)
class Preparing:
    """Progress of a slow step: `done` of `total` units (chunks, tokens; 0 of 1 for a step
    that cannot count, like a model load, then 1 of 1)."""

    stage: PrepStage
    done: int
    total: int
    detail: str = ""


@dataclass(frozen=True)
class AnswerToken:
    """A piece of the answer. `attempt` counts from 1; a token of attempt 2 follows an
    `Escalated` event, and what attempt 1 wrote was an attempt, not the answer."""

    text: str
    attempt: int = 1


@dataclass(frozen=True)
class Escalated:
    """The answer so far (`attempt`) is set aside and the question asked again with
    `route` (Self-Route): the first answer declined, was not backed by its passages, or its
    search found little of the question."""

    attempt: Answer
    route: Route
    reason: str


@dataclass(frozen=True)
class AnswerDone:
    answer: Answer


AnswerEvent = (
    RouteChosen | PlanChosen | Preparing | SourcesFound | AnswerToken | Escalated | AnswerDone
)
