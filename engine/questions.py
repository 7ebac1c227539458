"""Resolving a question once, into the `AskContext` every strategy reads.

A question is checked (not empty, not longer than the model can read with room for an
answer), and resolved with its document (read, rendered and counted once per model file and
document, through `RenderedDocuments`), the model and its profile, and the machine it will
run on (backend and memory budget). Follow-up questions on the same document pay only for
counting the question.

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
    rendered = documents.get(library, document, profile, runtime.count_tokens)
    question_tokens = runtime.count_tokens(profile, question)
    largest = int(profile.context_length * settings.context.max_rope_factor)
    if 2 * question_tokens + settings.model.max_answer_tokens > largest:
        raise EngineError(
            f"the question is {question_tokens:,} tokens long, more than {entry.name}"
            f" can read at once with room for an answer ({largest:,} tokens at most);"
            " shorten it"
        )
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
