"""Answering from retrieved chunks: pack them into a budget, order them, ask, judge the reply.

The hits of a search (retrieval/hybrid.py) are packed greedily in rank order into the token
budget left by the instructions, the question and the answer; the packed passages are then
laid out "lost in the middle" style (Liu et al., 2023): the strongest at the start and the
end of the prompt, the weakest in the middle. Each passage carries a number and its location
label (and its document's title when the hits come from several documents), so the model can
cite it and the answer can be traced back.

The model is told to reply exactly "unanswerable" when the passages do not hold the answer
(the Self-Route prompt, arXiv 2407.16833); `parse_verdict` reads that reply, so the caller can
fall back to a long-context strategy. The answer's citations are the passages it names (by
location label or passage number), else every passage it was shown; its grounding says
whether the passages contain what the answer names (engine/grounding.py), the signal that
does not depend on the model declining honestly.

`Retrieval` is the strategy (engine/strategies/base.py): it searches through functions the
facade hands it, sizes the window to the passages found, and answers with
`answer_with_passages`. Nothing here loads a model, owns an index, or falls back by itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from dataclasses import replace

from engine.citations import (
    citation_of,
    cite,
    front_section_ordinals,
    hit_candidate,
    hit_candidates,
)
from engine.grounding import TermRarity, assess_answer, retrieval_confidence
from engine.llm import LLM, Done, FinishReason
from engine.prompts import PASSAGE_SEPARATOR, UNANSWERABLE, rag_messages, render_passage
from engine.strategies.base import AskContext, StrategyEvents, relay
from engine.strategies.timing import timings_from
from engine.types import (
    Answer,
    AnswerDone,
    AnswerToken,
    Citation,
    ContextPlan,
    Preparing,
    PrepStage,
    SourcesFound,
    Strategy,
    Verdict,
)
from models.types import ModelProfile
from retrieval.types import Hit, IndexProgress

NOTHING_FOUND = (
    "Nothing relevant to the question was found in the documents searched, so there is"
    " nothing to answer from."
)
NOTHING_FITS = (
    "The passages found are too long for the model's context, so there is nothing to answer"
    " from; try a model with a longer context, or a long-context question."
)

# The rendered passages are counted one by one, but the model reads them joined: a few
# tokens can merge or split at the joins, and chat templates differ. This slack keeps the
# real prompt inside n_ctx whatever the template does.
BUDGET_SLACK_TOKENS = 16


def passage_budget(llm: LLM, question: str, n_ctx: int, max_answer_tokens: int) -> int:
    """Tokens left for passages in a context of `n_ctx` once the instructions, the question
    (twice, see engine/prompts.py) and the answer are counted; never negative."""
    overhead = llm.count_chat_tokens(rag_messages(question, []))
    return max(0, n_ctx - overhead - max_answer_tokens - BUDGET_SLACK_TOKENS)


def _by_rank(hits: Sequence[Hit]) -> list[Hit]:
    # Stable: hits of equal rank (from separate searches) keep the caller's order.
    return sorted(hits, key=lambda hit: hit.rank)


def pack_passages(
    hits: Sequence[Hit],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    *,
    titles: Mapping[str, str] | None = None,
) -> list[Hit]:
    """The hits, in rank order, whose rendered passages together fit `budget_tokens`.

    Greedy: a hit that does not fit in what is left is skipped, and smaller later ones may
    still fit. Each passage is counted as rendered (label, text and the separator after it)
    with the widest number label it could get, so numbering them after packing never takes
    the total over the budget. With `titles`, labels carry the document's title.
    """
    ordered = _by_rank(hits)
    widest = len(ordered)
    packed: list[Hit] = []
    left = budget_tokens
    for hit in ordered:
        title = titles.get(hit.document_id) if titles is not None else None
        cost = count_tokens(_rendered(hit, widest, title) + PASSAGE_SEPARATOR)
        if cost <= left:
            packed.append(hit)
            left -= cost
    return packed


def order_for_attention(hits: Sequence[Hit]) -> list[Hit]:
    """Strongest at both ends, weakest in the middle: ranks 1, 3, 5, ..., 6, 4, 2.

    Models recall the start and the end of a long prompt best (lost in the middle), so rank
    1 goes first, rank 2 last, rank 3 second, rank 4 second to last, and so on.
    """
    ordered = _by_rank(hits)
    return ordered[0::2] + ordered[1::2][::-1]


# -- the verdict ---------------------------------------------------------------------------

# Markdown and quoting a model may wrap its one word in: **Unanswerable**, "unanswerable".
_DECORATION = re.compile(r"[*_`\"“”‘’'#>\[\]()]")
_LEAD_LABEL = re.compile(r"^\s*(?:final\s+)?(?:answer|response|reply|verdict)\s*:\s*")
_SENTENCE_BREAK = re.compile(r"[.!?;:,\n—–]|\s-\s")
# A first sentence that says the question itself cannot be answered: "Unanswerable",
# "The question is unanswerable", "This is unanswerable from the passages". A sentence about
# something else ("The riddle was unanswerable") is part of a real answer.
_UNANSWERABLE_FIRST = re.compile(
    rf"^(?:(?:the|this|that|it)\s+)?(?:question\s+|query\s+|answer\s+)?"
    rf"(?:is\s+|was\s+|seems\s+|appears\s+)?(?:to\s+be\s+)?{UNANSWERABLE}\b"
)


def parse_verdict(answer: str) -> Verdict:
    """UNANSWERABLE when the reply says the passages do not hold the answer, else ANSWERED.

    It counts when the reply starts with the word ("Unanswerable.", "**UNANSWERABLE**",
    "Answer: unanswerable, the passages ..."), when its first sentence says the question is
    unanswerable, or when any sentence is the word alone (a model that explains first and
    then gives the word). The word inside a longer sentence of a real answer ("Darcy thought
    the riddle unanswerable (p. 3)") does not count.
    """
    text = _DECORATION.sub("", answer.lower())
    text = _LEAD_LABEL.sub("", text)
    sentences = [part.strip() for part in _SENTENCE_BREAK.split(text)]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        return Verdict.ANSWERED
    if _UNANSWERABLE_FIRST.match(sentences[0]):
        return Verdict.UNANSWERABLE
    if any(sentence == UNANSWERABLE for sentence in sentences):
        return Verdict.UNANSWERABLE
    return Verdict.ANSWERED


# -- which passages an answer cites --------------------------------------------------------


def _cited(
    answer: str, shown: Sequence[Hit], front_sections: Mapping[str, Collection[int]] | None
) -> list[Hit]:
    """The passages (in rank order) the answer names by location or by number in `shown`,
    the passages in the order the prompt showed them (number 1 first). Front matter is
    named by number only: its label is the book's title, which answers repeat."""
    candidates = hit_candidates(shown, front_sections)
    named = {candidate.number for candidate in cite(answer, candidates)}
    return _by_rank([hit for number, hit in enumerate(shown, start=1) if number in named])


# -- answering -----------------------------------------------------------------------------


def _rendered(hit: Hit, number: int, title: str | None) -> str:
    return render_passage(number, hit.chunk.text, hit.chunk.location, title)


def _citation(hit: Hit) -> Citation:
    return citation_of(hit_candidate(hit))


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def answer_with_passages(
    llm: LLM,
    question: str,
    hits: Sequence[Hit],
    plan: ContextPlan,
    *,
    titles: Mapping[str, str],
    budget_tokens: int,
    max_answer_tokens: int,
    load_seconds: float = 0.0,
    attempt: int = 1,
    front_sections: Mapping[str, Collection[int]] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[SourcesFound | Preparing | AnswerToken | AnswerDone]:
    """Yield the passages used (`SourcesFound`), prefill progress, the answer's tokens
    (of `attempt`), then the `Answer`, with its grounding in the passages shown.

    With no hits, or none that fit the budget, the model is not called: the answer says so,
    with verdict UNANSWERABLE. A reply that opens with the verdict ("Unanswerable.") is not
    streamed as tokens: the caller shows the verdict, or asks again (Self-Route), and a
    person never reads "unanswerable" followed by another answer as if it were one.
    """
    # Titles tell passages apart only when they come from more than one document.
    several = len({hit.document_id for hit in hits}) > 1
    shown_titles = {h.document_id: titles.get(h.document_id, h.document_id[:12]) for h in hits}
    label_titles = shown_titles if several else None
    packed = pack_passages(hits, budget_tokens, llm.count_tokens, titles=label_titles)
    yield SourcesFound(tuple(_citation(hit) for hit in packed))
    if not packed:
        yield AnswerDone(
            _no_answer(question, NOTHING_FITS if hits else NOTHING_FOUND, plan, load_seconds)
        )
        return

    shown = order_for_attention(packed)
    passages = [
        _rendered(hit, number, label_titles[hit.document_id] if label_titles else None)
        for number, hit in enumerate(shown, start=1)
    ]
    stream = llm.stream_chat(
        rag_messages(question, passages), max_tokens=max_answer_tokens, cancel=cancel
    )
    done = yield from _hold_back_verdict(relay(stream, attempt))
    text = done.text.strip()
    verdict = parse_verdict(text)
    # An answer that says the passages do not hold it rests on none of them, and needs no
    # check against them.
    grounding = None
    if verdict is Verdict.UNANSWERABLE:
        cited: list[Hit] = []
    else:
        cited = _cited(text, shown, front_sections) or list(packed)
        # The passages as shown, labels included: an answer that cites "Stave Two" names a
        # label it was given, not an invented thing.
        grounding = assess_answer(text, passages, question)
    stats = done.stats
    yield AnswerDone(
        Answer(
            question=question,
            text=text,
            strategy=Strategy.RAG,
            document_ids=_unique([hit.document_id for hit in packed]),
            citations=tuple(_citation(hit) for hit in cited),
            timings=timings_from(stats, load_seconds),
            verdict=verdict,
            plan=plan,
            layout=None,
            cancelled=done.reason is FinishReason.CANCELLED,
            grounding=grounding,
        )
    )


def _no_answer(question: str, text: str, plan: ContextPlan, load_seconds: float) -> Answer:
    return Answer(
        question=question,
        text=text,
        strategy=Strategy.RAG,
        document_ids=(),
        citations=(),
        timings=timings_from(None, load_seconds),
        verdict=Verdict.UNANSWERABLE,
        plan=plan,
        layout=None,
    )


# Enough characters to tell whether a reply opens with the verdict ("**Unanswerable**.").
_VERDICT_PROBE_CHARS = len(UNANSWERABLE) + 8


def _hold_back_verdict(
    events: Generator[AnswerToken | Preparing, None, Done],
) -> Generator[AnswerToken | Preparing, None, Done]:
    """Pass the events on, but hold the first tokens until it is clear the reply does not
    open with the verdict; a reply that does is not streamed at all."""
    held: list[AnswerToken] = []
    deciding, silent = True, False
    while True:
        try:
            event = next(events)
        except StopIteration as finished:
            done: Done = finished.value
            if deciding and parse_verdict(done.text) is Verdict.ANSWERED:
                yield from held
            return done
        if not isinstance(event, AnswerToken) or not deciding:
            if not silent:
                yield event
            continue
        held.append(event)
        so_far = "".join(token.text for token in held).strip()
        if len(so_far) < _VERDICT_PROBE_CHARS and not _SENTENCE_BREAK.search(so_far):
            continue
        deciding = False
        silent = parse_verdict(so_far) is Verdict.UNANSWERABLE
        if not silent:
            yield from held


# Tokens of a passage's label ("[3] Title, p. 17") and the blank line after it.
PASSAGE_LABEL_TOKENS = 24
# Tokens the chat template and the instructions add around the passages and question.
PROMPT_OVERHEAD_TOKENS = 96


class Retrieval:
    """The passages hybrid search finds: facts, "is X mentioned?", weak models, documents
    far beyond the window. Searching happens in `prepare`, before a model is chosen, so the
    window is sized to the passages found."""

    kind = Strategy.RAG

    def __init__(
        self,
        *,
        indexes: Callable[[str], Iterator[IndexProgress]],
        search: Callable[[str, str, int], list[Hit]],
        top_k: int,
        window_tokens: Callable[[ModelProfile], int],
        count_tokens: Callable[[ModelProfile, str], int],
        rarity: Callable[[str], TermRarity],
    ) -> None:
        """`indexes` builds a document's index where it is missing or stale (yielding
        progress); `search(question, document_id, k)` ranks its chunks; `window_tokens` is
        the window a retrieval answer uses on a model (a long question widens it, see
        `_tokens_needed`); `rarity` weighs a document's terms for `retrieval_confidence`."""
        self._indexes = indexes
        self._search = search
        self._rarity = rarity
        self._top_k = top_k
        self._window_tokens = window_tokens
        self._count_tokens = count_tokens
        self._hits: list[Hit] = []

    def prepare(
        self, ask: AskContext, cancel: threading.Event | None
    ) -> Generator[Preparing, None, int]:
        for step in self._indexes(ask.document.id):
            yield Preparing(PrepStage.INDEX, step.done, step.total, "chunks")
            if cancel is not None and cancel.is_set():
                break
        self._hits = self._search(ask.question, ask.document.id, self._top_k)
        return self._tokens_needed(ask)

    def _tokens_needed(self, ask: AskContext) -> int:
        """The passages that fit the retrieval window, the question (twice), instructions
        and the answer: a small window prefills fast.

        A long question would crowd the passages out of the configured window, and the
        answer would then be "nothing fits", blaming passages that are not the problem: the
        window grows (up to the model's trained one) so that passages keep at least half the
        configured window. Short questions are unaffected.
        """
        fixed = 2 * ask.question_tokens + PROMPT_OVERHEAD_TOKENS + ask.max_answer_tokens
        configured = self._window_tokens(ask.profile)
        cap = max(configured, min(fixed + configured // 2, ask.profile.context_length))
        needed = fixed
        for hit in self._hits:
            passage = self._count_tokens(ask.profile, hit.chunk.text) + PASSAGE_LABEL_TOKENS
            if needed + passage <= cap:
                needed += passage
        return min(max(needed, fixed), cap)

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
        events = answer_with_passages(
            llm,
            ask.question,
            self._hits,
            plan,
            titles={ask.document.id: ask.document.title},
            budget_tokens=passage_budget(llm, ask.question, plan.n_ctx, ask.max_answer_tokens),
            max_answer_tokens=ask.max_answer_tokens,
            load_seconds=load_seconds,
            attempt=attempt,
            front_sections={ask.document.id: front_section_ordinals(ask.sections)},
            cancel=cancel,
        )
        for event in events:
            if isinstance(event, AnswerDone):
                texts = [hit.chunk.text for hit in self._hits]
                confidence = retrieval_confidence(
                    ask.question, texts, self._rarity(ask.document.id)
                )
                return replace(event.answer, retrieval_confidence=confidence)
            yield event
        raise AssertionError("answer_with_passages always ends with AnswerDone")
