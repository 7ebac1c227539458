"""The assistant: the one facade the CLI and the TUI use, and the composition root.

It owns the library, the model catalog and the KV state cache, builds them lazily so a
command only pays for what it touches, and exposes the product's verbs: add, list, show,
remove; models, plan, ask, cache. It prints nothing: it returns data and yields events.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Settings
from engine.errors import USER_ERRORS, EngineError
from engine.kvcache import KVStateStore, StateEntry
from engine.llm import LLM, LLMRuntime
from engine.planner import PlannerSettings, plan_context
from engine.prompts import render_document
from engine.strategies.long_context import LongContextQuestion, answer_with_document
from engine.types import (
    AnswerEvent,
    AskMode,
    Backend,
    ContextPlan,
    KVCacheType,
    PlanChosen,
    PromptLayout,
    Route,
    RouteChosen,
    Strategy,
)
from ingest.library import Library
from ingest.pipeline import AddStatus, FileOutcome, FileProgress, Stage, add_file
from ingest.types import Document, ReadOptions, Section
from models.catalog import ModelCatalog, ModelEntry
from models.types import ModelProfile

if TYPE_CHECKING:
    from retrieval.embedder import Embedder
    from retrieval.hybrid import Searcher
    from retrieval.index_store import IndexStore
    from retrieval.types import Hit, IndexProgress, SearchMode

# Tokens the chat template and instructions add around a document and question.
PROMPT_OVERHEAD_TOKENS = 96
# Tokens of a passage's label ("[3] Title, p. 17") and the blank line after it.
PASSAGE_LABEL_TOKENS = 24
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class DocumentPlan:
    """A document's context plan on one model, with the token counts behind it."""

    document: Document
    model: ModelEntry
    profile: ModelProfile
    document_tokens: int
    plan: ContextPlan


class Assistant:
    """longread's verbs over one data dir. Create one per process; close it when done."""

    def __init__(
        self,
        settings: Settings,
        runtime: LLMRuntime | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`runtime` and `embedder` default to llama.cpp and the configured sentence-
        transformers model; tests pass fakes through the same seams."""
        self.settings = settings
        self._runtime = runtime
        self._embedder = embedder
        self._library: Library | None = None
        self._catalog: ModelCatalog | None = None
        self._kv_store: KVStateStore | None = None
        self._index_store: IndexStore | None = None
        self._searcher: Searcher | None = None

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = Library(self.settings.home)
        return self._library

    @property
    def runtime(self) -> LLMRuntime:
        """llama.cpp unless another runtime was given (tests give a fake)."""
        if self._runtime is None:
            from engine.llamacpp import LlamaCppRuntime

            self._runtime = LlamaCppRuntime()
        return self._runtime

    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self._catalog = ModelCatalog(self.settings.home)
        return self._catalog

    @property
    def kv_store(self) -> KVStateStore:
        if self._kv_store is None:
            cap = self.settings.cache.kv_max_mb * MEBIBYTE
            self._kv_store = KVStateStore.under(self.settings.home, max_bytes=cap)
        return self._kv_store

    @property
    def index_store(self) -> IndexStore:
        """The per-document search indexes (loads the embedder only when it must embed)."""
        if self._index_store is None:
            from retrieval.dense import SentenceTransformerEmbedder
            from retrieval.index_store import IndexStore
            from retrieval.windows import ChunkEncoder

            configured = self.settings.retrieval.embedder
            if self._embedder is None:
                self._embedder = (
                    SentenceTransformerEmbedder.bundled()
                    if configured == "bundled"
                    else SentenceTransformerEmbedder(Path(configured).expanduser())
                )
            self._index_store = IndexStore(self.settings.home, ChunkEncoder(self._embedder))
        return self._index_store

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            from retrieval.hybrid import Searcher

            self._searcher = Searcher(self.library, self.index_store)
        return self._searcher

    def close(self) -> None:
        if self._index_store is not None:
            self._index_store.close()
            self._index_store = None
            self._searcher = None
        if self._library is not None:
            self._library.close()
            self._library = None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the library -------------------------------------------------------------------

    def add(
        self, paths: Iterable[Path], password: str | None = None, index: bool = True
    ) -> Iterator[FileProgress | FileOutcome]:
        """Add files one after another, yielding each one's progress and then its outcome.

        After a file is saved its search index is built (the "embedding" stage). A failed
        file does not stop the others; its outcome carries the reason. An index that cannot
        be built leaves the document added, with a warning (`longread reindex` retries).
        """
        options = ReadOptions(password=password)
        for path in paths:
            outcome = yield from add_file(self.library, path, self.settings.chunking, options)
            if index and outcome.status is AddStatus.ADDED and outcome.document is not None:
                outcome = yield from self._index_added(path, outcome)
            yield outcome

    def _index_added(
        self, path: Path, outcome: FileOutcome
    ) -> Generator[FileProgress, None, FileOutcome]:
        assert outcome.document is not None
        started = time.perf_counter()
        try:
            for step in self.index_store.ensure(self.library, outcome.document.id):
                yield FileProgress(path, Stage.EMBEDDING, step.done, step.total, "chunks")
        except USER_ERRORS as error:
            return replace(outcome, warning=f"not indexed for search: {error}")
        seconds = {**outcome.stage_seconds, Stage.EMBEDDING: time.perf_counter() - started}
        return replace(outcome, stage_seconds=seconds)

    def documents(self) -> list[Document]:
        return self.library.documents()

    def resolve(self, ref: str) -> Document:
        """The document an id prefix or title fragment names (errors list near matches)."""
        return self.library.resolve(ref)

    def outline(self, ref: str) -> tuple[Document, list[Section]]:
        document = self.resolve(ref)
        return document, self.library.sections(document.id)

    def remove(self, ref: str) -> Document:
        document = self.resolve(ref)
        self.library.remove(document.id)
        self.kv_store.clear(document.id)
        if self._searcher is not None:
            self._searcher.forget(document.id)
        self._remove_index(document.id)
        return document

    def _remove_index(self, document_id: str) -> None:
        # Deleting the folder needs no embedder: avoid loading one just to remove files.
        from retrieval.index_store import INDEXES_DIR_NAME

        shutil.rmtree(self.settings.home / INDEXES_DIR_NAME / document_id, ignore_errors=True)

    # -- search ------------------------------------------------------------------------

    def document_ids(self, refs: Sequence[str]) -> list[str]:
        """Ids of the documents the refs name; no refs means the whole library."""
        if not refs:
            return [d.id for d in self.documents()]
        return list(dict.fromkeys(self.resolve(ref).id for ref in refs))

    def prepare_indexes(
        self, document_ids: Sequence[str], rebuild: bool = False
    ) -> Iterator[IndexProgress]:
        """Build the indexes these documents lack (or all of them, with `rebuild`).

        The first event of each rebuild carries the reason (no index yet, settings changed).
        """
        if rebuild:
            for document_id in document_ids:
                self.searcher.forget(document_id)
                yield from self.index_store.build(self.library, document_id, reason="asked to")
        yield from self.searcher.prepare(document_ids)

    def search(
        self,
        query: str,
        document_ids: Sequence[str],
        k: int = 5,
        mode: SearchMode | None = None,
    ) -> list[Hit]:
        """Ranked chunks for `query`; indexes that are missing or stale are built first."""
        from retrieval.types import SearchMode

        for _ in self.prepare_indexes(document_ids):
            pass
        return self.searcher.search(
            query, k=k, mode=mode or SearchMode.HYBRID, document_ids=document_ids
        )

    # -- models ------------------------------------------------------------------------

    def models(self) -> list[ModelEntry]:
        return self.catalog.entries()

    def model_profile(self, entry: ModelEntry) -> ModelProfile:
        return self.catalog.profile(entry)

    def add_model(self, path: Path, name: str | None = None) -> ModelEntry:
        return self.catalog.add(path, name)

    def remove_model(self, name: str) -> ModelEntry:
        return self.catalog.remove(name)

    # -- planning and asking -----------------------------------------------------------

    def plan(
        self,
        ref: str,
        model: str | None = None,
        layout: PromptLayout | None = None,
        question: str = "",
    ) -> DocumentPlan:
        """How the whole of a document would run on a model: window, scaling, KV, layout."""
        document = self.resolve(ref)
        entry = self.catalog.resolve(model or self.settings.model.name)
        profile = self.catalog.profile(entry)
        rendered = render_document(
            self.library.text(document.id), self.library.sections(document.id)
        )
        count = self.runtime.count_tokens
        document_tokens = count(profile, f"Document: {document.title}\n\n{rendered}")
        question_tokens = count(profile, question) if question else 32
        if question_tokens > profile.context_length * self.settings.context.max_rope_factor:
            raise EngineError(
                f"the question is {question_tokens:,} tokens long, more than {entry.name}"
                f" can read at once ({profile.context_length:,} tokens); shorten it"
            )
        needed = (
            document_tokens
            + 2 * question_tokens
            + PROMPT_OVERHEAD_TOKENS
            + self.settings.model.max_answer_tokens
        )
        backend = self.runtime.detect_backend()
        budget = self._memory_budget(backend)
        plan = plan_context(profile, needed, budget, backend, self._planner_settings(layout))
        return DocumentPlan(document, entry, profile, document_tokens, plan)

    def _memory_budget(self, backend: Backend) -> int:
        """Bytes the plan may use: configured, else free VRAM on a GPU, else free RAM."""
        from engine.memory import memory_budget

        if self.settings.context.memory_budget_mb:
            return self.settings.context.memory_budget_mb * MEBIBYTE
        vram = self.runtime.gpu_memory() if backend is not Backend.CPU else None
        if vram is None:
            # No VRAM figure: plan within RAM (unified memory on Metal; a safe floor on CUDA).
            return memory_budget(Backend.CPU).bytes
        return memory_budget(backend, *vram).bytes

    def _planner_settings(self, layout: PromptLayout | None) -> PlannerSettings:
        context = self.settings.context
        configured = None if context.layout == "auto" else PromptLayout(context.layout)
        return PlannerSettings(
            rope_method=context.rope_method,
            max_rope_factor=context.max_rope_factor,
            kv_type=None if context.kv_type == "auto" else KVCacheType(context.kv_type),
            layout=layout or configured,
        )

    def ask(
        self,
        ref: str,
        question: str,
        *,
        mode: AskMode = AskMode.AUTO,
        model: str | None = None,
        layout: PromptLayout | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[AnswerEvent, None, None]:
        """Answer a question about a document, streaming events.

        `long` reads the whole document (raising EngineError before any event when it cannot
        fit even with scaling and a quantized KV cache: nothing is silently truncated);
        `rag` reads the passages hybrid search finds; `auto` takes `long` when the document
        fits and `rag` otherwise.
        """
        if not question.strip():
            raise EngineError("the question is empty; ask something about the document")
        question = question.strip()
        if mode is AskMode.RAG:
            yield from self._ask_rag(ref, question, model, ("asked for retrieval",), cancel)
            return
        planned = self.plan(ref, model, layout, question)
        plan, document = planned.plan, planned.document
        if not plan.fits:
            if mode is AskMode.AUTO:
                why = f"{document.title!r} does not fit the window: {plan.reason}"
                yield from self._ask_rag(ref, question, model, (why,), cancel)
                return
            raise EngineError(
                f"{document.title!r} is {planned.document_tokens:,} tokens long, more than"
                f" {planned.model.name} can read at once: {plan.reason}"
            )
        yield RouteChosen(Route(Strategy.LONG_CONTEXT, (plan.reason, plan.layout_reason)))
        yield PlanChosen(plan)
        llm, load_seconds = self._load(planned.profile, plan)
        request = LongContextQuestion(
            document=document,
            text=self.library.text(document.id),
            sections=self.library.sections(document.id),
            question=question,
            layout=plan.layout,
            max_answer_tokens=self.settings.model.max_answer_tokens,
        )
        yield from answer_with_document(llm, request, plan, load_seconds, cancel)

    def _rag_tokens_needed(self, profile: ModelProfile, question: str, hits: Sequence[Hit]) -> int:
        """The window a RAG answer needs: the passages that fit the configured cap, the
        question (twice), instructions and the answer. A small window prefills fast."""
        cap = min(self.settings.retrieval.rag_context_tokens, profile.context_length)
        fixed = (
            2 * self.runtime.count_tokens(profile, question)
            + PROMPT_OVERHEAD_TOKENS
            + self.settings.model.max_answer_tokens
        )
        needed = fixed
        for hit in hits:
            passage = self.runtime.count_tokens(profile, hit.chunk.text) + PASSAGE_LABEL_TOKENS
            if needed + passage <= cap:
                needed += passage
        return min(max(needed, fixed), cap)

    def _load(self, profile: ModelProfile, plan: ContextPlan) -> tuple[LLM, float]:
        started = time.perf_counter()
        threads = self.settings.model.threads or None
        llm = self.runtime.load(profile, plan, threads=threads, kv_store=self.kv_store)
        return llm, time.perf_counter() - started

    def _ask_rag(
        self,
        ref: str,
        question: str,
        model: str | None,
        reasons: tuple[str, ...],
        cancel: threading.Event | None,
    ) -> Generator[AnswerEvent, None, None]:
        """Answer from the passages hybrid search finds, in a window of its own."""
        from engine.strategies.rag import answer_with_passages, passage_budget

        document = self.resolve(ref)
        entry = self.catalog.resolve(model or self.settings.model.name)
        profile = self.catalog.profile(entry)
        hits = self.search(question, [document.id], k=self.settings.retrieval.top_k)
        needed = self._rag_tokens_needed(profile, question, hits)
        backend = self.runtime.detect_backend()
        plan = plan_context(
            profile, needed, self._memory_budget(backend), backend, self._planner_settings(None)
        )
        yield RouteChosen(Route(Strategy.RAG, reasons))
        yield PlanChosen(plan)
        llm, load_seconds = self._load(profile, plan)
        max_answer = self.settings.model.max_answer_tokens
        yield from answer_with_passages(
            llm,
            question,
            hits,
            plan,
            titles={document.id: document.title},
            budget_tokens=passage_budget(llm, question, plan.n_ctx, max_answer),
            max_answer_tokens=max_answer,
            load_seconds=load_seconds,
            cancel=cancel,
        )

    # -- the KV state cache --------------------------------------------------------------

    def cache_entries(self) -> list[StateEntry]:
        return self.kv_store.entries()

    def clear_cache(self, ref: str | None = None) -> int:
        """Delete saved KV states (of one document, or all); returns the bytes freed."""
        document_id = self.resolve(ref).id if ref else None
        return self.kv_store.clear(document_id)
