"""Resolving a question once, into the `AskContext` every strategy reads.

A question is checked (not empty; short enough that the model's window holds it twice,
as prompts repeat it, beside the text it is answered from and the answer: `check_fits`), and
resolved with its document (read, rendered and counted once per model file and
document, through `RenderedDocuments`), the model and its profile, and the machine it will
run on (backend and memory budget). Follow-up questions on the same document pay only for
counting the question.

The check comes before anything else is read, so a question too long for every strategy
is reported as such, not as passages too long for retrieval or a document too long for the
plan. It is against the model's trained window, the most a retrieval answer uses, so a
question that passes leaves every strategy room to read.

It does not route, plan or load anything.
"""

from __future__ import annotations

from engine.config import Settings
from engine.errors import EngineError
from engine.llm import LLMRuntime
from engine.memory import planning_budget
from engine.rendered import RenderedDocuments
from engine.strategies.base import AskContext
from engine.types import Backend, PromptLayout
from ingest.library import Library
from models.catalog import ModelCatalog
from models.types import ModelProfile

PROMPT_OVERHEAD_TOKENS = 96
"""Tokens the chat template and instructions add (as engine/strategies/ reserve them)."""

READING_SHARE = 4
"""At least 1/READING_SHARE of the window stays for the text read: passages, beacons or the
document. A question that leaves less would be answered from next to nothing."""


def machine(runtime: LLMRuntime, settings: Settings) -> tuple[Backend, int]:
    """The backend llama.cpp runs on, and the memory a context may take there."""
    backend = runtime.detect_backend()
    memory = settings.context.memory_budget_mb
    return backend, planning_budget(backend, memory, runtime.gpu_memory)


def resolve_question(
    library: Library,
    catalog: ModelCatalog,
    runtime: LLMRuntime,
    documents: RenderedDocuments,
    settings: Settings,
    *,
    document_id: str,
    question: str,
    model: str | None,
    layout: PromptLayout | None,
) -> AskContext:
    """The question on the document and model, resolved (see the module docstring).
    Raises EngineError for an empty question or one too long for the model."""
    question = question.strip()
    if not question:
        raise EngineError("the question is empty; ask something about the document")
    document = library.get(document_id)
    entry = catalog.resolve(model or settings.model.name)
    profile = catalog.profile(entry)
    question_tokens = runtime.count_tokens(profile, question)
    check_fits(question, question_tokens, profile, settings.model.max_answer_tokens)
    rendered = documents.get(library, document, profile, runtime.count_tokens)
    backend, memory_budget = machine(runtime, settings)
    return AskContext(
        document=document,
        text=rendered.text,
        sections=rendered.sections,
        rendered=rendered.rendered,
        document_tokens=rendered.tokens,
        model=entry,
        profile=profile,
        backend=backend,
        memory_budget=memory_budget,
        question=question,
        question_tokens=question_tokens,
        max_answer_tokens=settings.model.max_answer_tokens,
        layout=layout,
    )


def question_limit(profile: ModelProfile, max_answer_tokens: int) -> int:
    """The most tokens a question may have on this model (0 or less: none fits)."""
    window = profile.context_length
    reserved = window // READING_SHARE + PROMPT_OVERHEAD_TOKENS + max_answer_tokens
    return (window - reserved) // 2  # prompts hold the question twice


def check_fits(question: str, question_tokens: int, profile: ModelProfile, max_answer: int) -> None:
    """EngineError when the question (of `question_tokens`) is too long for the model's
    window with the text it reads and a `max_answer`-token answer, saying how long it may
    be; or when the answer length alone leaves no room for a question."""
    limit = question_limit(profile, max_answer)
    if question_tokens <= limit:
        return
    window = profile.context_length
    if limit < 1:
        raise EngineError(
            f"the model's window is {window:,} tokens, too small for {max_answer:,}-token"
            " answers beside a question and the text it reads: lower [model] max_answer_tokens"
            " in the config, or use a model with a longer window"
        )
    # Characters per token of this very question, so the advice is in a unit people count.
    chars = len(question) * limit // max(question_tokens, 1)
    raise EngineError(
        f"the question is {question_tokens:,} tokens; the model's window is {window:,}, which"
        f" must hold it twice with the text it reads and the answer: shorten it to at most"
        f" {limit:,} tokens (about {chars:,} characters)"
    )
