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
location label or passage number), else every passage it was shown.

It does not search (the caller passes the hits), choose the budget (the caller derives it
from the plan, see `passage_budget`), load the model, or fall back by itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from engine.citations import SNIPPET_CHARS
from engine.llm import LLM, Done, FinishReason, TextPiece
from engine.prompts import PASSAGE_SEPARATOR, UNANSWERABLE, rag_messages, render_passage
from engine.strategies.timing import timings_from
from engine.types import (
    Answer,
    AnswerDone,
    AnswerToken,
    Citation,
    ContextPlan,
    SourcesFound,
    Strategy,
    Verdict,
)
from retrieval.types import Hit

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

_PASSAGE_NUMBER = re.compile(r"\[(\d+)\]|\bpassages?\s+(\d+)", re.IGNORECASE)
_PAGE_RANGE = re.compile(r"^pp?\.\s*(?P<first>\S+?)(?:\s*[–-]\s*(?P<last>\S+))?$")
# Ranges wider than this are not expanded page by page (a chunk spans a few pages at most).
_MAX_EXPANDED_PAGES = 20


def _location_patterns(location: str) -> list[re.Pattern[str]]:
    """Ways an answer may name a chunk's location: "p. 17" for "pp. 17–18", "Chapter 3"."""
    location = location.strip()
    if not location:
        return []
    page = _PAGE_RANGE.match(location)
    if page:
        first, last = page["first"], page["last"]
        labels = [first] if last is None else [first, last]
        if last is not None and first.isdigit() and last.isdigit():
            low, high = int(first), int(last)
            if 0 <= high - low <= _MAX_EXPANDED_PAGES:
                labels = [str(number) for number in range(low, high + 1)]
        # "p. 17", "p.17", "page 17", "pp. 17-18"; not "p. 170", not "p. 17.5"
        return [
            re.compile(rf"\b(?:pp?\.|pages?)\s*{re.escape(label)}(?!\w)(?!\.\d)", re.IGNORECASE)
            for label in labels
        ]
    names = [location]
    short = location.split(":", 1)[0].strip()
    if short and short != location:
        names.append(short)  # "Stave Two" for "Stave Two: The First of the Three Spirits"
    # A numbered label ("Chapter 3") is safe to match in any case; a heading made of words
    # ("The Keeper") must match as written, or every "the keeper" in the prose would cite it.
    flags = re.IGNORECASE if any(char.isdigit() for char in location) else 0
    return [re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", flags) for name in names]


def cited_passages(answer: str, shown: Sequence[Hit]) -> list[Hit]:
    """The passages (in rank order) the answer names by location or by number in `shown`,
    the passages in the order the prompt showed them (number 1 first)."""
    numbers = {int(a or b) for a, b in _PASSAGE_NUMBER.findall(answer)}
    cited = [
        hit
        for number, hit in enumerate(shown, start=1)
        if number in numbers
        or any(p.search(answer) for p in _location_patterns(hit.chunk.location))
    ]
    return _by_rank(cited)


# -- answering -----------------------------------------------------------------------------


def _rendered(hit: Hit, number: int, title: str | None) -> str:
    return render_passage(number, hit.chunk.text, hit.chunk.location, title)


def _snippet(text: str) -> str:
    body = " ".join(text.split())
    return body if len(body) <= SNIPPET_CHARS else body[: SNIPPET_CHARS - 1].rstrip() + "…"


def citation_of(hit: Hit) -> Citation:
    """The citation of a retrieved chunk: its location label and the start of its text."""
    return Citation(
        document_id=hit.document_id,
        location=hit.chunk.location,
        snippet=_snippet(hit.chunk.text),
        chunk_ordinal=hit.chunk.ordinal,
    )


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
    cancel: threading.Event | None = None,
) -> Iterator[SourcesFound | AnswerToken | AnswerDone]:
    """Yield the passages used (`SourcesFound`), the answer's tokens, then the `Answer`.

    With no hits, or none that fit the budget, the model is not called: the answer says so,
    with verdict UNANSWERABLE.
    """
    # Titles tell passages apart only when they come from more than one document.
    several = len({hit.document_id for hit in hits}) > 1
    shown_titles = {h.document_id: titles.get(h.document_id, h.document_id[:12]) for h in hits}
    label_titles = shown_titles if several else None
    packed = pack_passages(hits, budget_tokens, llm.count_tokens, titles=label_titles)
    yield SourcesFound(tuple(citation_of(hit) for hit in packed))
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
    done: Done | None = None
    for event in llm.stream_chat(
        rag_messages(question, passages), max_tokens=max_answer_tokens, cancel=cancel
    ):
        if isinstance(event, TextPiece):
            yield AnswerToken(event.text)
        else:
            done = event
    assert done is not None, "an LLM stream always ends with Done"
    text = done.text.strip()
    verdict = parse_verdict(text)
    # An answer that says the passages do not hold it rests on none of them.
    if verdict is Verdict.UNANSWERABLE:
        cited: list[Hit] = []
    else:
        cited = cited_passages(text, shown) or list(packed)
    stats = done.stats
    yield AnswerDone(
        Answer(
            question=question,
            text=text,
            strategy=Strategy.RAG,
            document_ids=_unique([hit.document_id for hit in packed]),
            citations=tuple(citation_of(hit) for hit in cited),
            timings=timings_from(stats, load_seconds),
            verdict=verdict,
            plan=plan,
            layout=None,
            cancelled=done.reason is FinishReason.CANCELLED,
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
