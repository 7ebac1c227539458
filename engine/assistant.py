"""The assistant: the one facade the CLI and the TUI use, and the composition root.

It owns the library, the model catalog, the llama.cpp runtime, the search indexes, the beacon
store and the KV state cache, builds them lazily so a command only pays for what it touches,
and exposes the product's verbs: add, list, show, remove, status; search; models, plan,
route, ask, summarize (build beacons); each document's conversation (remember, history,
export); cache.

Asking is one pipeline for every strategy: the question is resolved once into an
`AskContext` (the document rendered and counted once per model file and document, kept for
follow-ups), the router (engine/router.py) picks a strategy from the context facts, the
strategy prepares (a search) and says what window it needs, the planner sizes the context,
the runtime loads the model (or reuses the resident one when the plan is compatible) and the
strategy streams its answer. A retrieval answer that declines, that its passages do not
back, or whose search barely matched the question escalates once, Self-Route style. It
prints nothing: it returns data and yields events, each slow step with progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from engine.beacon_store import TYPICAL_QUESTION_TOKENS, BeaconStore
from engine.caveats import set_aside_reason
from engine.config import Settings, restart_needed
from engine.errors import USER_ERRORS, EngineError
from engine.facts import measure_facts, planner_settings
from engine.history import Conversations
from engine.kvcache import KVStateStore, StateEntry
from engine.llm import LLM, LLMRuntime
from engine.planner import plan_context
from engine.questions import machine, resolve_question
from engine.rendered import RenderedDocuments
from engine.router import fallback
from engine.router import route as route_question
from engine.status import DocumentPlan, DocumentStatus
from engine.status import document_status as read_document_status
from engine.strategies.base import AskContext, cancelled_answer
from engine.strategies.beacon_build import BeaconProgress, BeaconsBuilt
from engine.strategies.factory import StrategyFactory
from engine.strategies.long_context import long_context_tokens
from engine.types import (
    Answer,
    AnswerDone,
    AnswerEvent,
    ContextFacts,
    ContextPlan,
    Escalated,
    PlanChosen,
    Preparing,
    PrepStage,
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

MEBIBYTE = 1024 * 1024
T = TypeVar("T")


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
        self._beacon_store: BeaconStore | None = None
        self._documents = RenderedDocuments()
        self._making = threading.RLock()
        self._strategies = StrategyFactory(
            lambda: self.searcher, lambda: self.beacon_store, self._settings_now, self._count
        )

    def _made(self, name: str, make: Callable[[], T]) -> T:
        """The attribute `name`, made by `make` once, on first use: the TUI's workers ask at
        once, and two llama.cpp runtimes made side by side crashed loading vocabularies."""
        value = getattr(self, name)
        if value is None:
            with self._making:
                value = getattr(self, name)
                if value is None:
                    value = make()
                    setattr(self, name, value)
        return cast(T, value)

    @property
    def library(self) -> Library:
        return self._made("_library", lambda: Library(self.settings.home))

    @property
    def runtime(self) -> LLMRuntime:
        """llama.cpp unless another runtime was given (tests give a fake)."""

        def make() -> LLMRuntime:
            from engine.llamacpp import LlamaCppRuntime

            return LlamaCppRuntime()

        return self._made("_runtime", make)

    def _count(self, profile: ModelProfile, text: str) -> int:
        return self.runtime.count_tokens(profile, text)

    def _settings_now(self) -> Settings:  # for helpers that must see `reconfigure`'s settings
        return self.settings

    @property
    def catalog(self) -> ModelCatalog:
        return self._made("_catalog", lambda: ModelCatalog(self.settings.home))

    @property
    def kv_store(self) -> KVStateStore:
        cap, home = self.settings.cache.kv_max_mb * MEBIBYTE, self.settings.home
        return self._made("_kv_store", lambda: KVStateStore.under(home, max_bytes=cap))

    @property
    def index_store(self) -> IndexStore:
        """The per-document search indexes (loads the embedder only when it must embed)."""

        def make() -> IndexStore:
            from retrieval.embedders import configured_embedder, exports_dir
            from retrieval.index_store import IndexStore
            from retrieval.windows import ChunkEncoder

            if self._embedder is None:
                wanted = self.settings.retrieval
                exports = exports_dir(self.settings.home, wanted.onnx_dir)
                runtime = wanted.embedder_runtime
                self._embedder = configured_embedder(wanted.embedder, runtime, exports)
            return IndexStore(self.settings.home, ChunkEncoder(self._embedder))

        return self._made("_index_store", make)

    @property
    def searcher(self) -> Searcher:
        from retrieval.hybrid import Searcher

        return self._made("_searcher", lambda: Searcher(self.library, self.index_store))

    @property
    def beacon_store(self) -> BeaconStore:
        """Beacon summaries in the library, keyed by document, model file and settings."""
        return self._made(
            "_beacon_store", lambda: BeaconStore(self.library, self._settings_now, self._count)
        )

    @property
    def conversations(self) -> Conversations:
        """Each document's conversation, kept in the library."""
        return Conversations(self.library)

    def reconfigure(self, settings: Settings) -> None:
        """Answer with new settings from the next question on (the TUI's settings screen);
        the resident model stays until a question needs another plan. What the data dir,
        indexes and caches were built from needs a restart."""
        if restart_needed(self.settings, settings):
            raise EngineError(
                "the data dir, chunking, embedder and cache settings apply from the next start;"
                " restart longread"
            )
        self.settings = settings

    def close(self) -> None:
        """Free the model, the indexes and the library; safe to call twice."""
        if self._runtime is not None:
            self._runtime.close()
        self._documents.clear()
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
        options = ReadOptions(password=password, max_file_bytes=self.settings.ingest.max_file_bytes)
        for path in paths:
            outcome = yield from add_file(self.library, path, self.settings.chunking, options)
            if index and outcome.status is AddStatus.ADDED and outcome.document is not None:
                outcome = yield from self._index_added(path, outcome)
            yield outcome

    def _index_added(
        self, path: Path, outcome: FileOutcome
    ) -> Generator[FileProgress, None, FileOutcome]:
        from retrieval.embedders import EXPORT_PROGRESS_UNIT, export_ahead

        assert outcome.document is not None
        started = time.perf_counter()
        try:
            exporting = export_ahead(self.index_store.encoder.embedder)
            if exporting is not None:  # seconds, once per model: say so, not a stuck bar
                yield FileProgress(path, Stage.EMBEDDING, 0, 1, EXPORT_PROGRESS_UNIT)
                exporting()
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
        self._documents.forget(document.id)
        self._strategies.forget(document.id)
        if self._beacon_store is not None:
            self._beacon_store.forget(document.id)
        if self._searcher is not None:
            self._searcher.forget(document.id)
        self._remove_index(document.id)
        return document

    def document_statuses(self, document_ids: Iterable[str]) -> list[DocumentStatus]:
        """Index, beacons and saved KV state of documents, from files alone (no embedder,
        no model; the KV states read once): cheap enough for a library table."""
        saved = self.kv_store.entries()
        home = self.settings.home
        return [read_document_status(self.library, home, i, saved) for i in document_ids]

    def _remove_index(self, document_id: str) -> None:
        # Deleting the files needs no embedder: avoid loading one just to remove them.
        from retrieval.index_store import remove_index

        remove_index(self.settings.home, document_id)

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
                self._strategies.forget(document_id)
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

    # -- planning, routing and asking --------------------------------------------------

    def ask_context(
        self,
        document_id: str,
        question: str,
        model: str | None = None,
        layout: PromptLayout | None = None,
    ) -> AskContext:
        """Resolve a question once (engine/questions.py): the document rendered and counted
        (kept per model file and document), the model, its profile, backend and memory."""
        return resolve_question(
            self.library,
            self.catalog,
            self.runtime,
            self._documents,
            self.settings,
            document_id=document_id,
            question=question,
            model=model,
            layout=layout,
        )

    def plan(
        self,
        document_id: str,
        model: str | None = None,
        layout: PromptLayout | None = None,
        question: str = "",
    ) -> DocumentPlan:
        """How the whole of a document would run on a model: window, scaling, KV, layout."""
        ask = self.ask_context(document_id, question or "?", model, layout)
        if not question:
            ask = replace(ask, question_tokens=TYPICAL_QUESTION_TOKENS)
        plan = self._plan(ask, long_context_tokens(ask))
        return DocumentPlan(ask.document, ask.model, ask.profile, ask.document_tokens, plan)

    def _plan(self, ask: AskContext, tokens_needed: int) -> ContextPlan:
        settings = planner_settings(self.settings.context, ask.layout)
        return plan_context(ask.profile, tokens_needed, ask.memory_budget, ask.backend, settings)

    def summarize(
        self,
        document_id: str,
        *,
        model: str | None = None,
        rebuild: bool = False,
        cancel: threading.Event | None = None,
    ) -> Generator[BeaconProgress | Preparing, None, BeaconsBuilt]:
        """Build the document's beacon summaries on a model, yielding progress; a stopped
        build resumes where it stopped, and `rebuild` forgets the stored beacons first.
        With every beacon stored, no model is loaded."""
        document = self.library.get(document_id)
        profile = self.catalog.profile(self.catalog.resolve(model or self.settings.model.name))
        rendered = self._documents.get(self.library, document, profile, self.runtime.count_tokens)

        def load(tokens_needed: int) -> Generator[Preparing, None, LLM]:
            backend, budget = machine(self.runtime, self.settings)
            settings = planner_settings(self.settings.context, None)
            plan = plan_context(profile, tokens_needed, budget, backend, settings)
            if not plan.fits:
                raise EngineError(f"beacons of {document.title!r} cannot be built: {plan.reason}")
            llm, _ = yield from self._load(profile, plan)
            return llm

        return (
            yield from self.beacon_store.build(
                document.id, rendered, profile, load, rebuild=rebuild, cancel=cancel
            )
        )

    def context_facts(self, ask: AskContext) -> ContextFacts:
        """What the router weighs: fit, cold prefill time, a saved KV state, model size."""
        whole = self._plan(ask, long_context_tokens(ask))
        built = self.beacon_store.built(ask.document.id, ask.profile)
        return measure_facts(
            ask, whole, self.settings, self.kv_store.entries(), beacons_built=built
        )

    def route(
        self,
        document_id: str,
        question: str,
        *,
        strategy: Strategy | None = None,
        model: str | None = None,
        layout: PromptLayout | None = None,
    ) -> Route:
        """The route a question would take, without loading a model (`ask --explain`)."""
        ask = self.ask_context(document_id, question, model, layout)
        return route_question(ask.question, self.context_facts(ask), forced=strategy)

    def ask(
        self,
        document_id: str,
        question: str,
        *,
        strategy: Strategy | None = None,
        model: str | None = None,
        layout: PromptLayout | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[AnswerEvent, None, None]:
        """Answer a question about a document, streaming events.

        The router picks the strategy (or `strategy` forces one) and says why in the first
        event. A retrieval answer that declines, that its passages do not back, or whose
        search found little of the question (engine/grounding.py) is asked again with the
        whole document when that is feasible within the latency
        budget (Self-Route): an `Escalated` event marks the first answer as an attempt, and
        the final answer records it. Errors the person can fix (a document too long for a
        forced long-context answer) raise EngineError before any token.
        """
        ask = self.ask_context(document_id, question, model, layout)
        facts = self.context_facts(ask)
        route = route_question(ask.question, facts, forced=strategy)
        yield RouteChosen(route)
        first = yield from self._answer_with(route, ask, attempt=1, cancel=cancel)
        why = set_aside_reason(route, first)
        second_route = fallback(route, facts) if why else None
        if second_route is None:
            yield AnswerDone(replace(first, route=route))
            return
        yield Escalated(first, second_route, why)
        second = yield from self._answer_with(second_route, ask, attempt=2, cancel=cancel)
        yield AnswerDone(replace(second, route=second_route, attempts=(first,)))

    def _answer_with(
        self, route: Route, ask: AskContext, *, attempt: int, cancel: threading.Event | None
    ) -> Generator[AnswerEvent, None, Answer]:
        """Prepare, plan, load and answer with one strategy; returns its Answer."""
        strategy = self._strategies.make(route.strategy)
        tokens_needed = yield from strategy.prepare(ask, cancel)
        if cancel is not None and cancel.is_set():  # stopped while searching: load nothing
            return cancelled_answer(ask, route.strategy)
        plan = self._plan(ask, tokens_needed)
        if not plan.fits:
            raise EngineError(
                f"{ask.document.title!r} is {ask.document_tokens:,} tokens long, more than"
                f" {ask.model.name} can read at once: {plan.reason}"
            )
        yield PlanChosen(plan)
        llm, load_seconds = yield from self._load(ask.profile, plan)
        return (
            yield from strategy.answer(
                ask, llm, plan, load_seconds=load_seconds, attempt=attempt, cancel=cancel
            )
        )

    def _load(
        self, profile: ModelProfile, plan: ContextPlan
    ) -> Generator[Preparing, None, tuple[LLM, float]]:
        yield Preparing(PrepStage.MODEL, 0, 1, profile.name)
        started = time.perf_counter()
        threads = self.settings.model.threads or None
        llm = self.runtime.load(profile, plan, threads=threads, kv_store=self.kv_store)
        seconds = time.perf_counter() - started
        yield Preparing(PrepStage.MODEL, 1, 1, profile.name)
        return llm, seconds

    # -- the KV state cache --------------------------------------------------------------

    def cache_entries(self) -> list[StateEntry]:
        return self.kv_store.entries()

    def clear_cache(self, ref: str | None = None) -> int:
        """Delete saved KV states (of one document, or all); returns the bytes freed."""
        document_id = self.resolve(ref).id if ref else None
        return self.kv_store.clear(document_id)
