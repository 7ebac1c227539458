"""Answering from beacon summaries: whole-book questions on documents beyond the window.

The model reads the document's beacons in order, each labelled with its window's location,
then the question (before and after them, as in every longread prompt). Beacons missing for
this model and settings are built first, with progress (engine/strategies/beacon_build.py):
"built on first need". When the question names specifics, the windows whose beacons match it
best are drilled into: a search restricted to those windows adds their best passages.

Which windows match: a question's terms (BM25's tokenizer) weighed by how few beacons
mention them, log(beacons / beacons with the term), so a name on every page weighs nothing
and a name in one chapter weighs most; a window is a match when its beacons' weight is at
least log 2 (it shares a term that at most half the beacons mention), and the best
`drill_windows` matches are taken. The same rule ranks beacons to keep when they do not all
fit, and picks what an answer rests on when it names no location.

Citations are the windows (and sections and passages) the answer names by location or
number, else the windows whose beacons best match the answer, each with its span.

It does not size windows (engine/beacon_plan.py), store beacons (engine/beacon_store.py) or
load a model.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Protocol

from engine.beacon_plan import DRILL_DOWN_TOKENS, LABEL_TOKENS, BeaconLayout, answer_reserve
from engine.citations import (
    CitationCandidate,
    citation_of,
    cite,
    hit_candidates,
    section_candidates,
)
from engine.llm import LLM, FinishReason
from engine.prompts import beacon_answer_messages, render_beacon, render_passage
from engine.strategies.base import AskContext, StrategyEvents, cancelled_answer, relay
from engine.strategies.beacon_build import (
    BEACON_REPEAT_PENALTY,
    BeaconProgress,
    BeaconsBuilt,
    build_beacons,
    missing_beacons,
    reused_beacons,
)
from engine.strategies.timing import timings_from
from engine.types import (
    Answer,
    Citation,
    ContextPlan,
    Preparing,
    PrepStage,
    SourcesFound,
    Strategy,
)
from ingest.types import StoredBeacon
from retrieval.text_tokens import tokenize
from retrieval.types import Hit, IndexProgress

MATCH_THRESHOLD = math.log(2)
"""A window matches a question when it shares a term at most half the beacons mention."""

SEARCH_DEPTH = 40
"""Chunks searched for drill-down passages, before keeping those inside the chosen windows."""

PASSAGES_PER_WINDOW = 2

BUDGET_SLACK_TOKENS = 16
"""Slack for tokens merging at the joins of separately counted pieces."""


class BeaconSource(Protocol):
    """Where the strategy finds a document's beacon layout and stored beacons, and saves new
    ones (engine/beacon_store.py keeps them in the library)."""

    def layout(self, ask: AskContext) -> BeaconLayout: ...

    def stored(self, ask: AskContext, layout: BeaconLayout) -> list[StoredBeacon]: ...

    def saver(self, ask: AskContext, layout: BeaconLayout) -> Callable[[StoredBeacon], None]: ...


def term_weights(beacons: Sequence[StoredBeacon]) -> dict[str, float]:
    """Each term's weight over the beacons: log(beacons / beacons mentioning it)."""
    mentions = Counter(term for b in beacons for term in set(tokenize(b.text)))
    count = len(beacons)
    return {term: math.log(count / seen) for term, seen in mentions.items()}


def window_scores(text: str, beacons: Sequence[StoredBeacon]) -> list[float]:
    """How strongly each beacon matches `text`: the summed weights of the terms they share."""
    weights = term_weights(beacons)
    asked = set(tokenize(text))
    return [sum(weights.get(t, 0.0) for t in asked & set(tokenize(b.text))) for b in beacons]


def select_windows(text: str, beacons: Sequence[StoredBeacon], limit: int) -> list[int]:
    """The ordinals of at most `limit` beacons that match `text` (score >= log 2), the best
    first chosen, returned in document order; none when `text` names nothing specific."""
    scores = window_scores(text, beacons)
    ranked = sorted(range(len(beacons)), key=lambda i: (-scores[i], i))
    chosen = [i for i in ranked[:limit] if scores[i] >= MATCH_THRESHOLD]
    return sorted(beacons[i].ordinal for i in chosen)


def fit_beacons(
    question: str, beacons: Sequence[StoredBeacon], budget_tokens: int
) -> list[StoredBeacon]:
    """The beacons, in order, that fit `budget_tokens`: all when they fit, else those that
    match the question best (earlier first among equals)."""
    costs = [b.tokens + LABEL_TOKENS for b in beacons]
    if sum(costs) <= budget_tokens:
        return list(beacons)
    scores = window_scores(question, beacons)
    kept: set[int] = set()
    left = budget_tokens
    for i in sorted(range(len(beacons)), key=lambda i: (-scores[i], i)):
        if costs[i] <= left:
            kept.add(i)
            left -= costs[i]
    return [b for i, b in enumerate(beacons) if i in kept]


def passages_in_windows(
    hits: Sequence[Hit], beacons: Sequence[StoredBeacon], ordinals: Sequence[int]
) -> list[Hit]:
    """The hits (in rank order) whose chunk overlaps one of the chosen windows, at most
    `PASSAGES_PER_WINDOW` for each window."""
    spans = {b.ordinal: (b.start, b.end) for b in beacons if b.ordinal in set(ordinals)}
    taken: Counter[int] = Counter()
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: h.rank):
        for ordinal, (start, end) in spans.items():
            if hit.chunk.start < end and hit.chunk.end > start:
                if taken[ordinal] < PASSAGES_PER_WINDOW:
                    taken[ordinal] += 1
                    kept.append(hit)
                break
    return kept


class Beacons:
    """The document's beacon summaries in order, plus passages from the windows a question
    names: whole-book questions on a document too long for the window."""

    kind = Strategy.BEACONS

    def __init__(
        self,
        *,
        source: BeaconSource,
        indexes: Callable[[str], Iterator[IndexProgress]],
        search: Callable[[str, str, int], list[Hit]],
        drill_windows: int,
    ) -> None:
        """`indexes` builds the document's search index where missing (yielding progress),
        `search(question, document_id, k)` ranks its chunks, for the drill-down."""
        self._source = source
        self._indexes = indexes
        self._search = search
        self._drill_windows = drill_windows
        self._layout: BeaconLayout | None = None
        self._stored: list[StoredBeacon] = []

    def prepare(
        self, ask: AskContext, cancel: threading.Event | None
    ) -> Generator[Preparing, None, int]:
        """The window the answer needs, and the window building needs while beacons are
        missing (both within the model's own window)."""
        layout = self._layout = self._source.layout(ask)
        self._stored = self._source.stored(ask, layout)
        have = {b.ordinal: b.tokens for b in self._stored}
        beacon_tokens = sum(
            have.get(w.ordinal, layout.choice.beacon_tokens) + LABEL_TOKENS for w in layout.windows
        )
        needed = beacon_tokens + answer_reserve(ask.question_tokens, ask.max_answer_tokens)
        if missing_beacons(layout, self._stored):
            needed = max(needed, layout.build_tokens)
        return min(needed, layout.context_tokens)
        yield  # a generator: building happens in `answer`, on the loaded model

    def answer(
        self,
        ask: AskContext,
        llm: LLM,
        plan: ContextPlan,
        *,
        load_seconds: float,
        attempt: int,
        cancel: threading.Event | None,
    ) -> StrategyEvents:
        assert self._layout is not None, "prepare comes before answer"
        built = yield from self._build_missing(ask, llm, self._layout, cancel)
        if built.cancelled:
            return cancelled_answer(ask, Strategy.BEACONS)
        beacons = list(built.beacons)
        passages = yield from self._drill_down(ask, beacons, cancel)
        rendered_passages = [
            render_passage(number, hit.chunk.text, hit.chunk.location)
            for number, hit in enumerate(passages, start=1)
        ]
        overhead = llm.count_chat_tokens(beacon_answer_messages(ask.question, [], []))
        budget = plan.n_ctx - overhead - ask.max_answer_tokens - BUDGET_SLACK_TOKENS
        passage_tokens = sum(llm.count_tokens(p) + 2 for p in rendered_passages)
        shown = fit_beacons(ask.question, beacons, max(0, budget - passage_tokens))
        messages = beacon_answer_messages(
            ask.question, [render_beacon(b.location, b.text) for b in shown], rendered_passages
        )
        # The summaries' firmer penalty: a small model otherwise copies beacon after beacon.
        stream = llm.stream_chat(
            messages,
            max_tokens=ask.max_answer_tokens,
            cancel=cancel,
            repeat_penalty=BEACON_REPEAT_PENALTY,
        )
        done = yield from relay(stream, attempt)
        text = done.text.strip()
        return Answer(
            question=ask.question,
            text=text,
            strategy=Strategy.BEACONS,
            document_ids=(ask.document.id,),
            citations=_citations(ask, text, shown, passages),
            timings=timings_from(done.stats, load_seconds),
            plan=plan,
            layout=None,
            cancelled=done.reason is FinishReason.CANCELLED,
        )

    def _build_missing(
        self, ask: AskContext, llm: LLM, layout: BeaconLayout, cancel: threading.Event | None
    ) -> Generator[Preparing, None, BeaconsBuilt]:
        """Build the beacons not stored yet, reporting each window as it is done."""
        if missing_beacons(layout, self._stored) == 0:
            return reused_beacons(layout, self._stored)
        save = self._source.saver(ask, layout)
        building = build_beacons(llm, ask.text, layout, self._stored, save, cancel)
        while True:
            try:
                step: BeaconProgress = next(building)
            except StopIteration as finished:
                return finished.value  # type: ignore[no-any-return]
            yield Preparing(PrepStage.BEACONS, step.done, step.total, "windows")

    def _drill_down(
        self, ask: AskContext, beacons: Sequence[StoredBeacon], cancel: threading.Event | None
    ) -> Generator[Preparing | SourcesFound, None, list[Hit]]:
        """The best passages of the windows the question names (none when it names none),
        within the drill-down's share of the window."""
        chosen = select_windows(ask.question, beacons, self._drill_windows)
        if not chosen:
            return []
        for step in self._indexes(ask.document.id):
            yield Preparing(PrepStage.INDEX, step.done, step.total, "chunks")
            if cancel is not None and cancel.is_set():
                return []
        hits = passages_in_windows(
            self._search(ask.question, ask.document.id, SEARCH_DEPTH), beacons, chosen
        )
        kept: list[Hit] = []
        left = DRILL_DOWN_TOKENS
        for hit in hits:
            cost = hit.chunk.token_count + LABEL_TOKENS
            if cost <= left:
                kept.append(hit)
                left -= cost
        yield SourcesFound(tuple(citation_of(c) for c in hit_candidates(kept)))
        return kept


def _window_candidates(ask: AskContext, beacons: Sequence[StoredBeacon]) -> list[CitationCandidate]:
    return [
        CitationCandidate(
            document_id=ask.document.id,
            location=b.location,
            start=b.start,
            end=b.end,
            text=ask.text[b.start : b.end],
        )
        for b in beacons
    ]


def _citations(
    ask: AskContext, answer: str, shown: Sequence[StoredBeacon], passages: Sequence[Hit]
) -> tuple[Citation, ...]:
    """What the answer names (windows, sections, passages by number), else the windows whose
    beacons best match the answer; each span once, in the order named. Where one named place
    holds another ("Chapter 3" and the two windows inside it; a window "pp. 12–15" and the
    page "p. 13"), only the one inside is kept: the most precise span."""
    windows = _window_candidates(ask, shown)
    candidates = [
        *windows,
        *section_candidates(ask.document.id, ask.text, ask.sections),
        *hit_candidates(passages),
    ]
    named = cite(answer, candidates)
    if not named:
        best = set(select_windows(answer, shown, 3))
        named = [c for c, b in zip(windows, shown, strict=True) if b.ordinal in best]
    spans = {(c.start, c.end) for c in named}
    precise = [
        c
        for c in named
        if not any(c.start <= a and b <= c.end and (a, b) != (c.start, c.end) for a, b in spans)
    ]
    seen: set[tuple[int, int]] = set()
    citations: list[Citation] = []
    for candidate in precise:
        if (candidate.start, candidate.end) not in seen:
            seen.add((candidate.start, candidate.end))
            citations.append(citation_of(candidate))
    return tuple(citations)
