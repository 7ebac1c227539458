"""The router's decision table, fallback and question classifier as literal, table-driven tests.

Each `ROUTE_ROWS` entry is one row of the table in engine/router.py's docstring, applied to a
concrete document: the question, the facts, the strategy expected. The classifier cases use
made-up wording that could be asked of any book, not the dev questions (those are measured in
test_question_types.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from engine.router import classify_question, fallback, route
from engine.types import ContextFacts, ContextFit, QuestionType, Route, Strategy
from models.types import SizeClass

# A tiny model (8k window) on a 30k-token book: scaled x4, about 230 s to read cold on CPU.
TINY_BOOK = ContextFacts(
    document_tokens=30_000,
    window_tokens=8_192,
    fit=ContextFit.SCALED,
    rope_factor=4.0,
    cold_prefill_seconds=230.0,
    latency_budget_seconds=60.0,
    kv_cached=False,
    size_class=SizeClass.TINY,
    beacons_built=False,
    retrieval_window_tokens=3_000,
)
# The same tiny model on a short letter: smaller than what retrieval would show.
TINY_LETTER = replace(
    TINY_BOOK,
    document_tokens=1_500,
    fit=ContextFit.NATIVE,
    rope_factor=1.0,
    cold_prefill_seconds=7.0,
)
# The tiny model on a 6k-token story: native, affordable, larger than the retrieval window.
TINY_STORY = replace(TINY_LETTER, document_tokens=6_000, cold_prefill_seconds=27.0)
# A medium model with a 32k window on a 30k-token novel it reads in 40 s.
MEDIUM_NOVEL = ContextFacts(
    document_tokens=30_000,
    window_tokens=32_768,
    fit=ContextFit.NATIVE,
    rope_factor=1.0,
    cold_prefill_seconds=40.0,
    latency_budget_seconds=60.0,
    kv_cached=False,
    size_class=SizeClass.MEDIUM,
    beacons_built=False,
    retrieval_window_tokens=3_000,
)
MEDIUM_NOVEL_CACHED = replace(MEDIUM_NOVEL, kv_cached=True)
# The medium model on a 60k-token book: scaled x2, affordable on a GPU.
MEDIUM_SCALED = replace(
    MEDIUM_NOVEL, document_tokens=60_000, fit=ContextFit.SCALED, rope_factor=2.0
)
# A large model on a CPU: the novel fits but takes 300 s to read cold.
LARGE_SLOW = replace(MEDIUM_NOVEL, size_class=SizeClass.LARGE, cold_prefill_seconds=300.0)
LARGE_SLOW_BEACONS = replace(LARGE_SLOW, beacons_built=True)
LARGE_SLOW_CACHED = replace(LARGE_SLOW, kv_cached=True)
# A 200k-token book past even the scaled window.
TOO_LONG = replace(
    MEDIUM_NOVEL,
    document_tokens=200_000,
    fit=ContextFit.TOO_LONG,
    rope_factor=4.0,
    cold_prefill_seconds=900.0,
)
TOO_LONG_BEACONS = replace(TOO_LONG, beacons_built=True)
SMALL_CACHED = replace(MEDIUM_NOVEL_CACHED, size_class=SizeClass.SMALL)
TINY_STORY_CACHED = replace(TINY_STORY, kv_cached=True)

LOCATION_Q = "What did the captain keep in the locked drawer?"
REASONING_Q = "Why does the narrator refuse the inheritance?"
COMPARISON_Q = "How do the two sisters differ in their view of marriage?"
GLOBAL_Q = "Summarize the book."

ROUTE_ROWS = [
    # row 2: the document is no larger than the retrieval window
    ("letter-reasoning-tiny", REASONING_Q, TINY_LETTER, Strategy.LONG_CONTEXT),
    ("letter-location-tiny", LOCATION_Q, TINY_LETTER, Strategy.LONG_CONTEXT),
    # rows 3 and 4: too long even scaled; global questions build beacons on first need,
    # reasoning and comparison use them once built, single facts stay with retrieval
    ("too-long-global-beacons", GLOBAL_Q, TOO_LONG_BEACONS, Strategy.BEACONS),
    ("too-long-global-no-beacons", GLOBAL_Q, TOO_LONG, Strategy.BEACONS),
    ("too-long-location", LOCATION_Q, TOO_LONG_BEACONS, Strategy.RAG),
    ("too-long-reasoning-beacons", REASONING_Q, TOO_LONG_BEACONS, Strategy.BEACONS),
    ("too-long-comparison-beacons", COMPARISON_Q, TOO_LONG_BEACONS, Strategy.BEACONS),
    ("too-long-reasoning", REASONING_Q, TOO_LONG, Strategy.RAG),
    ("too-long-comparison", COMPARISON_Q, TOO_LONG, Strategy.RAG),
    # row 5: the document is already read by a capable model
    ("cached-medium-location", LOCATION_Q, MEDIUM_NOVEL_CACHED, Strategy.LONG_CONTEXT),
    ("cached-large-location", LOCATION_Q, LARGE_SLOW_CACHED, Strategy.LONG_CONTEXT),
    # row 6: facts go to retrieval for every size class otherwise
    ("medium-location", LOCATION_Q, MEDIUM_NOVEL, Strategy.RAG),
    ("medium-scaled-location", LOCATION_Q, MEDIUM_SCALED, Strategy.RAG),
    ("cached-small-location", LOCATION_Q, SMALL_CACHED, Strategy.RAG),
    ("cached-tiny-location", LOCATION_Q, TINY_STORY_CACHED, Strategy.RAG),
    ("tiny-story-location", LOCATION_Q, TINY_STORY, Strategy.RAG),
    # row 7: reasoning, comparison, global on a document that fits and is affordable
    ("medium-reasoning", REASONING_Q, MEDIUM_NOVEL, Strategy.LONG_CONTEXT),
    ("medium-comparison", COMPARISON_Q, MEDIUM_NOVEL, Strategy.LONG_CONTEXT),
    ("medium-global", GLOBAL_Q, MEDIUM_NOVEL, Strategy.LONG_CONTEXT),
    ("medium-scaled-reasoning", REASONING_Q, MEDIUM_SCALED, Strategy.LONG_CONTEXT),
    ("tiny-story-reasoning", REASONING_Q, TINY_STORY, Strategy.LONG_CONTEXT),
    ("cached-slow-reasoning", REASONING_Q, LARGE_SLOW_CACHED, Strategy.LONG_CONTEXT),
    # rows 8 and 9: fits, but the cold prefill is over the budget
    ("slow-global-beacons", GLOBAL_Q, LARGE_SLOW_BEACONS, Strategy.BEACONS),
    ("slow-global-no-beacons", GLOBAL_Q, LARGE_SLOW, Strategy.RAG),
    ("slow-reasoning", REASONING_Q, LARGE_SLOW_BEACONS, Strategy.RAG),
    ("slow-comparison", COMPARISON_Q, LARGE_SLOW, Strategy.RAG),
    ("slow-location", LOCATION_Q, LARGE_SLOW, Strategy.RAG),
    # the required tiny-model behaviours on the 30k-token book (over budget, not cached)
    ("tiny-book-location", LOCATION_Q, TINY_BOOK, Strategy.RAG),
    ("tiny-book-hallucination", "What colour was the hero's first horse?", TINY_BOOK, Strategy.RAG),
    ("tiny-book-reasoning", REASONING_Q, TINY_BOOK, Strategy.RAG),
]

ALL_FACTS = [
    TINY_BOOK,
    TINY_LETTER,
    TINY_STORY,
    TINY_STORY_CACHED,
    MEDIUM_NOVEL,
    MEDIUM_NOVEL_CACHED,
    MEDIUM_SCALED,
    LARGE_SLOW,
    LARGE_SLOW_BEACONS,
    LARGE_SLOW_CACHED,
    TOO_LONG,
    TOO_LONG_BEACONS,
    SMALL_CACHED,
]
ALL_QUESTIONS = [LOCATION_Q, REASONING_Q, COMPARISON_Q, GLOBAL_Q]

_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z]")


def assert_one_sentence(reason: str) -> None:
    assert reason.strip(), "a route needs a reason"
    assert reason.endswith("."), reason
    assert "\n" not in reason, reason
    assert not _SENTENCE_BREAK.search(reason), f"more than one sentence: {reason}"


@pytest.mark.parametrize(
    ("question", "facts", "expected"),
    [pytest.param(q, f, e, id=name) for name, q, f, e in ROUTE_ROWS],
)
def test_route_table(question: str, facts: ContextFacts, expected: Strategy) -> None:
    chosen = route(question, facts)
    assert chosen.strategy is expected, chosen.reason
    assert chosen.facts == facts
    assert not chosen.forced
    assert_one_sentence(chosen.reason)
    assert f"{facts.document_tokens:,}-token" in chosen.reason


def test_tiny_model_fact_question_on_30k_book_goes_to_retrieval() -> None:
    chosen = route("Who gave the heroine the silver key?", TINY_BOOK)
    assert chosen.question_type is QuestionType.LOCATION
    assert chosen.strategy is Strategy.RAG
    # The deciding numbers: the window, the scaling, the prefill against the budget.
    assert "8,192-token window" in chosen.reason
    assert "x4" in chosen.reason
    assert "230 s" in chosen.reason and "60 s" in chosen.reason


def test_tiny_model_reasoning_on_short_letter_reads_it_whole() -> None:
    chosen = route("Why does the writer apologise to her brother?", TINY_LETTER)
    assert chosen.question_type is QuestionType.REASONING
    assert chosen.strategy is Strategy.LONG_CONTEXT
    assert "1,500-token" in chosen.reason and "3,000-token retrieval window" in chosen.reason


def test_missing_beacons_reason_says_how_to_build_them() -> None:
    chosen = route(GLOBAL_Q, LARGE_SLOW)
    assert chosen.strategy is Strategy.RAG
    assert "beacon summaries are not built" in chosen.reason
    assert "longread summarize" in chosen.reason


def test_missing_beacons_on_too_long_document_are_built_first() -> None:
    chosen = route(GLOBAL_Q, TOO_LONG)
    assert chosen.strategy is Strategy.BEACONS
    assert "not built yet, so they are built first" in chosen.reason


def test_over_budget_reason_names_prefill_and_budget() -> None:
    chosen = route(REASONING_Q, LARGE_SLOW)
    assert "300 s" in chosen.reason and "60 s budget" in chosen.reason


def test_too_long_reason_cites_lara() -> None:
    assert "+3.68" in route(LOCATION_Q, TOO_LONG).reason


@pytest.mark.parametrize("forced", list(Strategy))
@pytest.mark.parametrize("facts", [TINY_BOOK, MEDIUM_NOVEL, TOO_LONG])
def test_forced_strategy_wins(forced: Strategy, facts: ContextFacts) -> None:
    chosen = route(REASONING_Q, facts, forced=forced)
    assert chosen.strategy is forced
    assert chosen.forced
    assert chosen.question_type is QuestionType.REASONING
    assert chosen.facts == facts
    assert "You asked for" in chosen.reason
    assert_one_sentence(chosen.reason)


@pytest.mark.parametrize("facts", ALL_FACTS)
@pytest.mark.parametrize("question", ALL_QUESTIONS)
def test_every_route_has_a_one_sentence_reason(question: str, facts: ContextFacts) -> None:
    chosen = route(question, facts)
    assert_one_sentence(chosen.reason)
    assert chosen.facts == facts
    follow = fallback(chosen, facts)
    if follow is not None:
        assert_one_sentence(follow.reason)
        assert follow.reason.startswith("Escalated")


# (name, question, facts the first route saw, forced, facts at fallback time, expected)
FALLBACK_ROWS = [
    # the document fits and is affordable: Self-Route's whole-context step
    (
        "fits-affordable-location",
        LOCATION_Q,
        MEDIUM_NOVEL,
        None,
        MEDIUM_NOVEL,
        Strategy.LONG_CONTEXT,
    ),
    ("tiny-story-location", LOCATION_Q, TINY_STORY, None, TINY_STORY, Strategy.LONG_CONTEXT),
    ("scaled-affordable", LOCATION_Q, MEDIUM_SCALED, None, MEDIUM_SCALED, Strategy.LONG_CONTEXT),
    # over budget at first, but the KV state has been cached since
    ("now-cached", REASONING_Q, LARGE_SLOW, None, LARGE_SLOW_CACHED, Strategy.LONG_CONTEXT),
    # not affordable or too long: beacons for a global question when built, else nothing
    ("slow-global-beacons", GLOBAL_Q, LARGE_SLOW, None, LARGE_SLOW_BEACONS, Strategy.BEACONS),
    # a global question on a too-long document went to beacons, not retrieval: no fallback
    ("too-long-global", GLOBAL_Q, TOO_LONG, None, TOO_LONG_BEACONS, None),
    ("slow-global-no-beacons", GLOBAL_Q, LARGE_SLOW, None, LARGE_SLOW, None),
    ("slow-reasoning", REASONING_Q, LARGE_SLOW_BEACONS, None, LARGE_SLOW_BEACONS, None),
    ("too-long-location", LOCATION_Q, TOO_LONG_BEACONS, None, TOO_LONG_BEACONS, None),
    ("tiny-book-location", LOCATION_Q, TINY_BOOK, None, TINY_BOOK, None),
    # never escalate what was not rag, nor what the person chose
    ("long-route", REASONING_Q, MEDIUM_NOVEL, None, MEDIUM_NOVEL, None),
    ("beacons-route", GLOBAL_Q, TOO_LONG_BEACONS, None, TOO_LONG_BEACONS, None),
    ("forced-rag", LOCATION_Q, MEDIUM_NOVEL, Strategy.RAG, MEDIUM_NOVEL, None),
    ("forced-long", LOCATION_Q, MEDIUM_NOVEL, Strategy.LONG_CONTEXT, MEDIUM_NOVEL, None),
]


@pytest.mark.parametrize(
    ("question", "first_facts", "forced", "later_facts", "expected"),
    [pytest.param(q, f1, fo, f2, e, id=name) for name, q, f1, fo, f2, e in FALLBACK_ROWS],
)
def test_fallback_table(
    question: str,
    first_facts: ContextFacts,
    forced: Strategy | None,
    later_facts: ContextFacts,
    expected: Strategy | None,
) -> None:
    first = route(question, first_facts, forced=forced)
    follow = fallback(first, later_facts)
    if expected is None:
        assert follow is None
        return
    assert follow is not None
    assert follow.strategy is expected
    assert follow.question_type is first.question_type
    assert follow.facts == later_facts
    assert not follow.forced
    assert follow.reason.startswith("Escalated")
    assert "declined, was not backed by its passages" in follow.reason
    assert_one_sentence(follow.reason)


def test_fallback_of_a_hand_made_non_rag_route_is_none() -> None:
    for strategy in (Strategy.LONG_CONTEXT, Strategy.BEACONS):
        made = Route(strategy=strategy, question_type=QuestionType.LOCATION, reasons=("x.",))
        assert fallback(made, MEDIUM_NOVEL) is None


CLASSIFY_CASES = [
    # location: a specific detail, including made-up details (hallucination probes)
    ("What did the captain keep in the locked drawer?", QuestionType.LOCATION),
    ("Who opened the door at midnight?", QuestionType.LOCATION),
    ("Where was the treaty signed?", QuestionType.LOCATION),
    ("What was the name of the innkeeper's dog?", QuestionType.LOCATION),
    ("Is the lighthouse mentioned anywhere?", QuestionType.LOCATION),
    ("What did the letter reveal?", QuestionType.LOCATION),
    ("Who was the main suspect in the theft?", QuestionType.LOCATION),
    ("What was made of brass in the workshop?", QuestionType.LOCATION),
    ("What different names did the thief use?", QuestionType.LOCATION),
    ("What happened at the same time as the fire?", QuestionType.LOCATION),
    ("What did the doctor say about the fever?", QuestionType.LOCATION),
    ("How old was the gardener when he died?", QuestionType.LOCATION),
    # reasoning
    ("Why does the narrator refuse the inheritance?", QuestionType.REASONING),
    ("How come the guard let them pass?", QuestionType.REASONING),
    ("What motivates the widow to sell the farm?", QuestionType.REASONING),
    ("What drives the brothers apart?", QuestionType.REASONING),
    ("What does the burnt letter suggest about the uncle?", QuestionType.REASONING),
    ("What does the scene tell us about the mayor?", QuestionType.REASONING),
    ("What is the significance of the broken clock?", QuestionType.REASONING),
    ("What lesson does the boy learn at the fair?", QuestionType.REASONING),
    ("How does the detective conclude that the butler lied?", QuestionType.REASONING),
    ("What is the purpose of the second expedition?", QuestionType.REASONING),
    ("What evidence points to the stepmother?", QuestionType.REASONING),
    ("What would have happened if the ship had sailed?", QuestionType.REASONING),
    # comparison
    ("Compare the two captains.", QuestionType.COMPARISON),
    ("How do the two sisters differ in their view of marriage?", QuestionType.COMPARISON),
    ("What is the difference between the old and the new mill?", QuestionType.COMPARISON),
    ("What do the baker and the priest have in common?", QuestionType.COMPARISON),
    ("Is the second voyage more dangerous than the first?", QuestionType.COMPARISON),
    ("Who is older, the miller or the smith?", QuestionType.COMPARISON),
    ("Who is taller than the giant?", QuestionType.COMPARISON),
    ("Were both the count and the countess at the ball?", QuestionType.COMPARISON),
    ("The city versus the village: which does the author favour?", QuestionType.COMPARISON),
    ("How is the first chapter similar to the last?", QuestionType.COMPARISON),
    # comparison before reasoning
    ("Why do the two brothers differ so much?", QuestionType.COMPARISON),
    # "rather than" is not a comparison; the why decides
    ("Why does she stay rather than flee?", QuestionType.REASONING),
    # global
    ("Summarize the book.", QuestionType.GLOBAL),
    ("Give me a summary of chapter three.", QuestionType.GLOBAL),
    ("What are the main themes?", QuestionType.GLOBAL),
    ("What is this book about?", QuestionType.GLOBAL),
    ("What's the novel about?", QuestionType.GLOBAL),
    ("How does the heroine change over the course of the story?", QuestionType.GLOBAL),
    ("How does the town evolve across the chapters?", QuestionType.GLOBAL),
    ("How does the narrator's view of war develop?", QuestionType.GLOBAL),
    ("What is the overall tone of the report?", QuestionType.GLOBAL),
    ("Describe the plot.", QuestionType.GLOBAL),
    ("What are the key points of the paper?", QuestionType.GLOBAL),
    ("What recurs throughout the whole book?", QuestionType.GLOBAL),
    # global before reasoning, global before comparison
    ("Why does the hero change over the course of the book?", QuestionType.GLOBAL),
    ("How do the sisters differ throughout the novel?", QuestionType.GLOBAL),
    # "how does X change" without a development across the text is not global
    ("How does the potion change him into a beast?", QuestionType.LOCATION),
]


@pytest.mark.parametrize(("question", "expected"), CLASSIFY_CASES)
def test_classify_question(question: str, expected: QuestionType) -> None:
    assert classify_question(question) is expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("", QuestionType.LOCATION),
        ("   ", QuestionType.LOCATION),
        ("?", QuestionType.LOCATION),
        ("why", QuestionType.REASONING),
        ("WHY DID THE BRIDGE FALL?", QuestionType.REASONING),
        ("SUMMARIZE THE REPORT", QuestionType.GLOBAL),
        ("Compare them.   \n\t", QuestionType.COMPARISON),
        ("  what   is  the   book   about  ", QuestionType.GLOBAL),
        ("What\u2019s the story about?", QuestionType.GLOBAL),
        ("Whyever not", QuestionType.LOCATION),  # a word boundary, not a prefix
    ],
)
def test_classify_question_edge_cases(question: str, expected: QuestionType) -> None:
    assert classify_question(question) is expected


def test_routes_empty_question_without_error() -> None:
    chosen = route("", MEDIUM_NOVEL)
    assert chosen.question_type is QuestionType.LOCATION
    assert chosen.strategy is Strategy.RAG
    assert_one_sentence(chosen.reason)
