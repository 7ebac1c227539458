"""The router: a question and a document's context facts in, a `Route` out, as pure functions.

`classify_question(question)` reads a question's type from its wording alone (LaRA's
location / reasoning / comparison, plus global) with case-insensitive word rules, no model.
`route(question, facts, forced)` picks the cheapest strategy that can answer it well and says
why in one sentence with the deciding numbers. `fallback(route, facts)` is Self-Route's second
step: where to send a retrieval answer that declined, was not backed by its passages, or
whose search found little of the question.

What it does not do: no I/O, no model, no planning (the caller measures the facts: the
planner's fit and prefill estimate, the KV cache store, the beacon store), and no judging of
answers (the caller decides that an answer declined and then calls `fallback`).

The decision table, first matching row wins. "Fits" is fit native or scaled; "affordable" is
a cached KV state of the document, or a cold prefill within the latency budget. Figures from
`../shared/notes/routing.md` (LaRA arXiv 2502.09977, Self-Route arXiv 2407.16833, Activation
Beacon arXiv 2401.03462):

| # | when                                   | question type        | strategy          | why |
|---|----------------------------------------|----------------------|-------------------|-----|
| 1 | the person forced a strategy           | any                  | that one          | a   |
| 2 | native, document <= retrieval window   | any                  | long              | b   |
| 3 | too long even scaled                   | global               | beacons           | c   |
| 4 | too long even scaled, beacons built    | reas., comp.         | beacons           | d   |
| 4b| too long even scaled                   | loc., reas., comp.   | rag               | d   |
| 5 | fits, KV cached, medium or large model | location             | long              | e   |
| 6 | fits, affordable                       | location             | rag               | f   |
| 7 | fits, affordable                       | reas., comp., global | long              | g   |
| 8 | fits, not affordable                   | global               | beacons, else rag | h   |
| 9 | fits, not affordable                   | loc., reas., comp.   | rag               | i   |

a. The person's choice (`--mode`); the table is not consulted.
b. Retrieval would show nearly all of the document anyway; reading it whole costs no more.
c. A global question needs the whole text; beacon summaries cover it in order (Activation
   Beacon's adaptive ratio, done in text), where retrieval sees a few chunks only. Beacons
   not built yet are built first, once (the reason says so; `longread summarize` builds them
   ahead).
d. LaRA: at 128k, retrieval beats long context by 3.68 points on average; but reasoning and
   comparison often need more than a few passages, so once beacons exist (their cost is
   paid) they answer those with the whole text's thread plus the passages of the windows
   the question names. A location question (one fact) stays with retrieval.
e. The document is already read, so long context costs only the question; LaRA: single-fact
   (location) questions are about even, and a medium or large model reads them well.
f. LaRA: single facts are about even, retrieval is best at hallucination detection (whose
   questions read like location questions), and it is cheaper; weak models gain most
   (secondary: +38.12 vs +6.48 points at 128k).
g. LaRA: long context wins reasoning and comparison when the document fits (at 32k it is
   +2.40 points on average); a global question needs the whole text.
h. As row 3, for a cold prefill longer than the person will wait.
i. Self-Route: retrieval answers at a fraction of the tokens; since the cold read is over
   budget, `fallback` can escalate it to long context only once a KV state is cached.

Size class only enters row 5: a tiny model's fact questions go to retrieval (row 6) even when
cached, since LaRA found weak models gain most from retrieval; its reasoning over a document
that fits and is affordable reads the whole document (row 7, e.g. a 1.5k-token letter).

`fallback` rows, first match wins: a route that is not rag, or that the person forced, is
never escalated; a document that fits and is affordable escalates to long context (Self-Route
step 2: the declined questions get the whole context); a global question with beacons built
escalates to beacons; otherwise there is nowhere better to go (None).

Question types, first matching rule wins; the order is deliberate. Global comes first: a
whole-text marker ("over the course of the book") widens any question to the whole text,
which decides the route when the text is too long. Comparison comes before reasoning, since
"why do X and Y differ" needs both sides more than it needs a why. Everything else is
location: LaRA's hallucination questions are phrased as location questions, so wording
cannot separate them, and retrieval is the right first step for both.
"""

from __future__ import annotations

import re

from engine.types import ContextFacts, ContextFit, QuestionType, Route, Strategy
from models.types import SizeClass

_WHOLE_TEXT = (
    r"(?:book|story|novel|novella|text|document|report|paper|article|work|narrative"
    r"|series|play|essay|memoir|thesis|chapters)"
)
"""Nouns that name the whole text a person is reading, for the global rules."""

_GLOBAL_RULES: tuple[str, ...] = (
    r"\bsummar(?:y|ies|ise|ize|ised|ized|ising|izing)\b",
    r"\boverview\b",
    r"\b(?:main|central|major|key|recurring|overall|chief) "
    r"(?:themes?|ideas?|points?|arguments?|messages?|characters?|takeaways?|findings?"
    r"|conclusions?|events?|plot)\b",
    r"\bthemes\b",
    r"\btheme of (?:the|this) " + _WHOLE_TEXT + r"\b",
    r"\boverall\b",
    r"\bthroughout\b",
    r"\bover the course of\b",
    r"\b(?:whole|entire) " + _WHOLE_TEXT + r"\b",
    r"\bas a whole\b",
    r"\bfrom (?:the )?beginning to (?:the )?end\b",
    r"\bwhat(?:'s| is| was) (?:this|the) " + _WHOLE_TEXT + r" about\b",
    r"\bwhat happens in (?:this|the) " + _WHOLE_TEXT + r"\b",
    r"\bplot\b",
    r"\b(?:story|character|narrative) arcs?\b",
    r"\barc of\b",
    r"\bgist\b",
    r"\btl;?dr\b",
    r"\boutline\b",
    # "How does X change?" asks for a development across the text; with a trailing
    # "over / across / through ..." or at the question's end, not "how does the drug change him".
    r"\bhow (?:does|do|did|has|have|is|are|was|were) (?:.{1,80}? )?"
    r"(?:change|changes|changed|changing|develop|develops|developed|developing"
    r"|evolve|evolves|evolved|evolving|grow|grows|grew|growing|transform|transforms"
    r"|transformed|mature|matures|matured|shift|shifts|shifted)"
    r"(?:\s+(?:over|across|through|throughout|during|from|between|in the course)\b"
    r"|\s*[?.!]*\s*$)",
)

_COMPARISON_RULES: tuple[str, ...] = (
    r"\bcompar(?:e|es|ed|ing|ison|isons|able)\b",
    r"\bcontrast(?:s|ed|ing)?\b",
    # Not bare "different": "what different names did X use?" asks for a list.
    r"\bdiffer(?:s|ed|ing|ently|ence|ences)?\b|\bdifferent (?:from|than|to)\b",
    r"\bdistinguish(?:es|ed)?\b",
    r"\bsimilar(?:ity|ities)?\b",
    r"\bresembl(?:e|es|ed|ance)\b",
    r"\balike\b",
    r"\bunlike\b",
    r"\bin common\b",
    r"\bversus\b|\bvs\.?(?=\s)",
    r"\bthe same (?!time\b)\w+(?: \w+)? as\b",
    r"\bboth\b.{1,80}?\band\b",
    # A choice between two named sides: "who is older, the miller or the smith?"
    r"\b(?:who|which)\b[^,?]*, (?:the )?\w+(?: \w+){0,2} or (?:the )?\w+(?: \w+){0,2}\s*\??$",
    # "more X than", "older than"; "rather than" and "other than" are not comparisons.
    r"\b(?:more|less|fewer|better|worse)\b.{0,60}?(?<!rather )(?<!other )\bthan\b",
    r"\b(?!rather\b|other\b)\w+er than\b",
)

_REASONING_RULES: tuple[str, ...] = (
    r"\bwhy\b",
    r"\bhow come\b",
    r"\breason(?:s|ing|ed)?\b",
    r"\bmotiv(?:e|es|ation|ations|ated|ates|ating)\b",
    # One word may stand between ("what event led"), but not an auxiliary: "what was made
    # of ..." asks for a fact.
    r"\bwhat (?:(?!(?:is|was|were|are|has|had|have|be|been|it)\b)\w+ )?"
    r"(?:compels|compelled|drives|drove|leads|led|causes|caused|makes|made"
    r"|prompts|prompted|pushes|pushed|forces|forced|inspires|inspired|convinces|convinced"
    r"|persuades|persuaded|motivates|motivated|allows|allowed|enables|enabled"
    r"|prevents|prevented|explains|explained)\b",
    # The verb ("makes him suspect that"), not the noun ("who was the main suspect?").
    r"\bsuspect(?:s|ed|ing)? that\b|\bto suspect\b",
    r"\b(?:tell|tells|told|say|says|said) (?:us|the reader|readers|you) about\b",
    # "What does X suggest / reveal / indicate (about Y)" asks for an inference; "what did
    # the letter reveal?" asks for its content, a location question.
    r"\b(?:suggest(?:s|ed)?|reveal(?:s|ed)?|indicate(?:s|d)?|show(?:s|ed)?) about\b",
    r"\bwhat (?:does|do|might|could|may) .{1,80}? (?:suggest|reveal|indicate|signal)\b",
    r"\bimpl(?:y|ies|ied|ication|ications)\b",
    r"\blessons?\b",
    r"\bmoral\b",
    r"\bsignifican(?:ce|t)\b",
    r"\bsignif(?:y|ies|ied)\b",
    r"\bsymboli[sz](?:e|es|ed)\b|\bsymbol(?:s|ic)?\b",
    r"\bevidence\b",
    r"\bpurpose\b",
    r"\bconsequences?\b",
    r"\b(?:effect|impact) (?:of|on|does|did|do)\b",
    r"\bexplain(?:s|ed)?\b",
    r"\binterpret(?:s|ed|ation)?\b",
    r"\bwhat (?:would|might|could) have\b",
    r"\bwhat if\b",
    r"\bwhat role\b",
    r"\bhow (?:does|do|did|can|could|would|might) (?:.{1,60}? )?"
    r"(?:reason|justify|explain|conclude|deduce|infer|prove|know|determine|figure out"
    r"|realize|realise|account for|persuade|convince)\b",
)


def _compile(rules: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(rule) for rule in rules)


_ORDERED_RULES: tuple[tuple[QuestionType, tuple[re.Pattern[str], ...]], ...] = (
    (QuestionType.GLOBAL, _compile(_GLOBAL_RULES)),
    (QuestionType.COMPARISON, _compile(_COMPARISON_RULES)),
    (QuestionType.REASONING, _compile(_REASONING_RULES)),
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def _normalize(question: str) -> str:
    # Typographic apostrophes ("what’s") and runs of whitespace would defeat the rules.
    return " ".join(question.translate(_APOSTROPHES).lower().split())


def classify_question(question: str) -> QuestionType:
    """The question's type by its wording; location when no rule speaks (or it is empty)."""
    text = _normalize(question)
    for question_type, patterns in _ORDERED_RULES:
        if any(pattern.search(text) for pattern in patterns):
            return question_type
    return QuestionType.LOCATION


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _fits(facts: ContextFacts) -> bool:
    return facts.fit in (ContextFit.NATIVE, ContextFit.SCALED)


def _affordable(facts: ContextFacts) -> bool:
    return facts.kv_cached or facts.cold_prefill_seconds <= facts.latency_budget_seconds


def _document(facts: ContextFacts) -> str:
    """The document against the window, e.g. "a 30,000-token document (8,192-token window,
    RoPE x4)"."""
    if facts.fit is ContextFit.NATIVE:
        scale = "unscaled"
    elif facts.fit is ContextFit.SCALED:
        scale = f"RoPE x{facts.rope_factor:g}"
    else:
        scale = "too long even scaled"
    return (
        f"a {facts.document_tokens:,}-token document "
        f"({facts.window_tokens:,}-token window, {scale})"
    )


def _cost(facts: ContextFacts) -> str:
    """What reading the whole document would cost now."""
    if facts.kv_cached:
        return "its KV state is cached, so reading it whole costs only the question"
    relation = "within" if facts.cold_prefill_seconds <= facts.latency_budget_seconds else "over"
    return (
        f"reading it cold takes about {_seconds(facts.cold_prefill_seconds)}, {relation} the "
        f"{_seconds(facts.latency_budget_seconds)} budget"
    )


_WEAK = (SizeClass.TINY, SizeClass.SMALL)
"""Where LaRA's gain from retrieval is largest (secondary: +38.12 vs +6.48 points at 128k)."""


_NO_BEACONS = (
    "its beacon summaries are not built (building them costs more than reading it whole once;"
    " `longread summarize` builds them ahead)"
)


def _decide(question_type: QuestionType, facts: ContextFacts) -> tuple[Strategy, str]:
    """Rows 2 to 9 of the table in the module docstring, in order."""
    kind = question_type.value
    on = f"a {kind} question on {_document(facts)}"
    if facts.fit is ContextFit.NATIVE and facts.document_tokens <= facts.retrieval_window_tokens:
        return Strategy.LONG_CONTEXT, (
            f"Long context: {_document(facts)} is no larger than the "
            f"{facts.retrieval_window_tokens:,}-token retrieval window, so retrieval would "
            "show nearly all of it and reading it whole costs no more."
        )

    if facts.fit is ContextFit.TOO_LONG:
        if question_type is QuestionType.GLOBAL:
            if facts.beacons_built:
                return Strategy.BEACONS, (
                    f"Beacons: {on} needs the whole text, and its beacon summaries cover all "
                    "of it in order."
                )
            return Strategy.BEACONS, (
                f"Beacons: {on} needs the whole text, which retrieval cannot show; its beacon "
                "summaries are not built yet, so they are built first, once (a summary per "
                "window, kept for every later question)."
            )
        if question_type is not QuestionType.LOCATION and facts.beacons_built:
            return Strategy.BEACONS, (
                f"Beacons: {on}; its beacon summaries are built, and carry the thread of the "
                "whole text that a few retrieved passages lack, with passages from the parts "
                "the question names."
            )
        return Strategy.RAG, (
            f"Retrieval: {on}, where retrieval beats long context (LaRA: +3.68 points at 128k)."
        )

    if _affordable(facts):
        size = facts.size_class
        if question_type is QuestionType.LOCATION:
            if facts.kv_cached and size in (SizeClass.MEDIUM, SizeClass.LARGE):
                return Strategy.LONG_CONTEXT, (
                    f"Long context: {on}; {_cost(facts)}, and a {size.value} model finds "
                    "single facts in it as well as retrieval does (LaRA)."
                )
            gains = (
                f"costs less, and helps a {size.value} model most"
                if size in _WEAK
                else "and costs less"
            )
            return Strategy.RAG, (
                f"Retrieval: {on}; {_cost(facts)}, but retrieval finds single facts as well, "
                f"is best at noticing what the text does not say, {gains} (LaRA)."
            )
        why_long = (
            "a global question needs the whole text, which long context reads in full"
            if question_type is QuestionType.GLOBAL
            else "long context wins reasoning and comparison when the document fits (LaRA)"
        )
        return Strategy.LONG_CONTEXT, f"Long context: {on}; {_cost(facts)}, and {why_long}."

    if question_type is QuestionType.GLOBAL:
        if facts.beacons_built:
            return Strategy.BEACONS, (
                f"Beacons: {on}; {_cost(facts)}, and its beacon summaries cover the whole "
                "text at a fraction of the tokens."
            )
        return Strategy.RAG, (
            f"Retrieval: {on}; {_cost(facts)}, and {_NO_BEACONS}, so the answer rests on a "
            "few passages."
        )
    return Strategy.RAG, (
        f"Retrieval: {on}; {_cost(facts)}, so retrieval answers first and escalates if it "
        "declines (Self-Route)."
    )


def route(question: str, facts: ContextFacts, forced: Strategy | None = None) -> Route:
    """The strategy for `question` on the document `facts` describe, with a one-sentence
    reason; `forced` (the person's `--mode`) wins over the table."""
    question_type = classify_question(question)
    if forced is not None:
        return Route(
            strategy=forced,
            question_type=question_type,
            reasons=(
                (
                    f"You asked for {forced.value} on {_document(facts)}, so the router's table "
                    "was not consulted."
                ),
            ),
            facts=facts,
            forced=True,
        )
    strategy, reason = _decide(question_type, facts)
    return Route(strategy=strategy, question_type=question_type, reasons=(reason,), facts=facts)


_DECLINED = (
    "the retrieval answer declined, was not backed by its passages, or the search found"
    " little of the question"
)


def fallback(route: Route, facts: ContextFacts) -> Route | None:
    """Self-Route's second step for a retrieval answer that declined or was not backed by
    its passages: long context if the document fits and is affordable, else beacons for a
    global question when they are built, else None.

    A route that was not rag is never escalated (long context and beacons already saw the
    whole text), nor one the person forced: they chose retrieval, and a silent switch to a
    minutes-long prefill would overrule them.
    """
    if route.strategy is not Strategy.RAG or route.forced:
        return None
    if _fits(facts) and _affordable(facts):
        return Route(
            strategy=Strategy.LONG_CONTEXT,
            question_type=route.question_type,
            reasons=(
                (
                    f"Escalated to long context (Self-Route): {_DECLINED}, and "
                    f"{_document(facts)} can be read whole; {_cost(facts)}."
                ),
            ),
            facts=facts,
        )
    if route.question_type is QuestionType.GLOBAL and facts.beacons_built:
        return Route(
            strategy=Strategy.BEACONS,
            question_type=route.question_type,
            reasons=(
                (
                    f"Escalated to beacons: {_DECLINED}, and the beacon summaries cover the whole "
                    f"of {_document(facts)}."
                ),
            ),
            facts=facts,
        )
    return None
