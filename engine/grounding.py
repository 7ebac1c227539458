"""Evidence that an answer rests on its text, without asking the model: the "unanswerable"
signal for a model that never declines (Self-Route, arXiv 2407.16833, needs one).

`assess_answer` checks an answer's content terms against the passages the model was shown:
named things (capitalized words inside a sentence), numbers, identifiers (UUIDs, codes such as
"A-113") and other content words. The share found, weighted so that a missing name, number or
identifier costs more than a missing word, is the `Grounding.score`; a missing name, number or
identifier makes the answer unsupported whatever the score, since an invented name or a
garbled code is the hallucination that matters most.

`retrieval_confidence` looks at the search alone, before any answer: the share of the
question's content terms (weighted by their rarity in the document) that the top passages
hold. LaRA's hallucination questions ask about a made-up detail of a real character, and the
made-up detail is usually a word the document never uses near that character.

Measured on LaRA's 32k books with the bundled 135M model (the figures are printed by
tests/engine/test_grounding_lara.py): retrieval confidence flags 10 of 11
hallucination questions and 2 of 15 location ones; answer grounding flags about 4 in 9 of
either kind, because the model copies passage text back for a made-up detail (supported) and
invents the detail a location question asks for (unsupported). So grounding says "this
answer is wrong, escalate", not "the text does not say"; only the search says that.

What it does not do: call a model, search, judge meaning (a passage that says the opposite
of the answer with the same words passes: this is term overlap, not entailment), or know
synonyms ("rides" and "riding" match by a crude suffix rule, "horse" and "steed" do not).
It knows English only, like retrieval/text_tokens.py, whose tokenizer and stopwords it uses.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.types import Grounding
from retrieval.text_tokens import STOPWORDS, terms, tokenize

SUPPORT_THRESHOLD = 0.5
"""Least weighted share of an answer's terms found in the passages for it to be supported.

Measured with the bundled 135M model on LaRA's 32k books (RAG answers of at most 48 tokens
over ~1,500 tokens of labelled passages, 56 answers over three runs): scores fell at 0.43
and below (invented details, 0.0 for "blue" as a favourite colour) or at 0.50 and up (text
copied or paraphrased from the passages), none between; 0.5 sits in that gap. Answers with
a missing name or number are unsupported whatever their score."""

CONFIDENCE_THRESHOLD = 0.35
"""Below this `retrieval_confidence` the search counts as not having found the question.

Measured on LaRA's 32k books with rarity weights and the passages a RAG answer is shown
(hybrid search, ~1,500 tokens): 10 of 11 hallucination questions scored 0.12 to 0.31 (the
eleventh 0.47), 13 of 15 location questions 0.37 to 1.0 (the other two 0.13 and 0.15,
questions that paraphrase the book). Few questions: the margin either side is thin."""

# Weights of a term in the score: an invented name, number or code is what makes an answer
# wrong, a word the passages put differently ("walked" for "strolled") usually is not.
STRONG_WEIGHT = 3.0
WORD_WEIGHT = 1.0


class TermKind(StrEnum):
    """What kind of content an answer's term is; the first three are "strong"."""

    IDENTIFIER = "identifier"  # letters and digits mixed, or three digit groups: UUIDs, codes
    NUMBER = "number"
    NAME = "name"  # a capitalized word that does not start a sentence
    WORD = "word"  # any other content word


STRONG_KINDS = frozenset({TermKind.IDENTIFIER, TermKind.NUMBER, TermKind.NAME})


@dataclass(frozen=True)
class Term:
    """One content term of an answer: as written (`text`), its matching key, and its kind."""

    text: str
    key: str
    kind: TermKind

    @property
    def weight(self) -> float:
        return STRONG_WEIGHT if self.kind in STRONG_KINDS else WORD_WEIGHT


# -- finding terms -------------------------------------------------------------------------

# "[2]": a passage number the model cites, not a number it claims.
_CITATION_MARK = re.compile(r"\[\d+\]")
# Alphanumeric pieces joined by "-" or "_" with a letter and a digit somewhere ("A-113",
# "3f2b8c1e-...-9d"), or three or more digit groups ("555-01-2368"); tried before words and
# numbers so a UUID stays one term and one wrong character in it is a miss.
_IDENTIFIER = re.compile(
    r"(?<![\w-])(?:"
    r"(?=[\w-]*[^\W\d_])(?=[\w-]*\d)[^\W_]+(?:[-_][^\W_]+)*"
    r"|\d+(?:-\d+){2,}"
    r")(?![\w-])"
)
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$", re.IGNORECASE)
# Words (letters only) and numbers ("1,250", "3.5"), as text_tokens reads them.
_WORD_OR_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
# Titles before a name: "Dr. Hawthorne" is one name, and the period is not a sentence end.
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "st", "sir", "prof", "rev", "jr", "sr", "mt"})
# Words a model uses to talk about its sources rather than about the document's content.
_META_WORDS = frozenset(
    {"passage", "passages", "text", "document", "according", "mentioned", "mentions"}
    | {"answer", "question"}
)
_SENTENCE_END = frozenset(".!?\n")
_OPENERS = frozenset("\"'“‘([*_`>#-–— \t\r")
# Small numbers are as often written as words; "three" in a passage supports "3".
_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(_SMALL_NUMBERS.split())}


def _fold(text: str) -> str:
    """Lowercase without accents: the key terms are matched by."""
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _stem(word: str) -> str:
    """A crude English stem, so "rode"/"rides", "vegetarians"/"vegetarian" share a key.

    Deliberately blunt (no dictionary): a wrong merge only makes the check more lenient on
    ordinary words, never on names, numbers or identifiers, which are matched exactly.
    """
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + keep
            break
    return word[:-1] if len(word) >= 3 and word.endswith("e") else word


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` opens a sentence (so its capital says nothing)."""
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    if i < 0 or text[i] == "\n" or "\n" in text[i:start]:
        return True
    if text[i] not in _SENTENCE_END:
        return False
    before = re.search(r"(\w+)\.$", text[: i + 1])
    return not (text[i] == "." and before is not None and before.group(1).lower() in _TITLES)


def _number_key(token: str) -> str:
    return terms(token)[0] if terms(token) else token


def content_terms(text: str) -> list[Term]:
    """The distinct content terms of `text`, in order of first appearance.

    Stopwords, single letters, passage numbers ("[2]"), titles ("Dr.") and words about the
    sources ("passage", "according") are left out.
    """
    text = _CITATION_MARK.sub(" ", text)
    found: dict[tuple[TermKind, str], Term] = {}

    def keep(term: Term) -> None:
        found.setdefault((term.kind, term.key), term)

    for match in _IDENTIFIER.finditer(text):
        raw = match.group()
        ordinal = _ORDINAL.match(raw)
        if ordinal:
            keep(Term(raw, ordinal.group(1), TermKind.NUMBER))
        else:
            keep(Term(raw, _fold(raw), TermKind.IDENTIFIER))
    text = _IDENTIFIER.sub(lambda m: " " * len(m.group()), text)

    for match in _WORD_OR_NUMBER.finditer(text):
        raw = match.group()
        if raw[0].isdigit():
            keep(Term(raw, _number_key(raw), TermKind.NUMBER))
            continue
        key = _fold(raw)
        if key in STOPWORDS or key in _META_WORDS or key in _TITLES or len(key) < 2:
            continue
        if key in _NUMBER_WORDS:
            keep(Term(raw, _NUMBER_WORDS[key], TermKind.NUMBER))
        elif raw[0].isupper() and not _starts_sentence(text, match.start()):
            keep(Term(raw, key, TermKind.NAME))
        else:
            keep(Term(raw, _stem(key), TermKind.WORD))
    return list(found.values())


# -- what the passages hold ----------------------------------------------------------------


@dataclass(frozen=True)
class _Vocabulary:
    """The passages' terms in the forms answers are matched against."""

    folded_text: str  # for identifiers, matched as whole tokens
    words: frozenset[str]  # folded words, for names
    stems: frozenset[str]  # stemmed words, for other content words
    numbers: frozenset[str]  # number keys, digits and number words alike

    @classmethod
    def of(cls, texts: Iterable[str]) -> _Vocabulary:
        folded = _fold("\n".join(texts))
        # Without the identifiers, so the digits of a UUID do not pass for numbers.
        words = terms(_IDENTIFIER.sub(" ", folded))
        numbers = {w for w in words if w[0].isdigit()}
        numbers |= {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
        numbers |= {m.group(1) for m in re.finditer(r"\b(\d+)(?:st|nd|rd|th)\b", folded)}
        return cls(folded, frozenset(words), frozenset(_stem(w) for w in words), frozenset(numbers))

    def holds(self, term: Term) -> bool:
        if term.kind is TermKind.IDENTIFIER:
            pattern = rf"(?<![\w-]){re.escape(term.key)}(?![\w-])"
            return re.search(pattern, self.folded_text) is not None
        if term.kind is TermKind.NUMBER:
            return term.key in self.numbers
        if term.kind is TermKind.NAME:
            return term.key in self.words or _stem(term.key) in self.stems
        return term.key in self.stems


# -- the verdict on an answer --------------------------------------------------------------


def _question_keys(question: str) -> frozenset[str]:
    """Every key a question's words can take in an answer: as a name, a word or a stem
    (a name asked about may come back lowercased, a verb in another form)."""
    words = tokenize(question)
    keys = {term.key for term in content_terms(question)}
    return frozenset(keys | set(words) | {_stem(word) for word in words})


def assess_answer(answer: str, passages: Sequence[str], question: str = "") -> Grounding:
    """How far `answer`'s content terms occur in `passages` (the text the model was shown).

    Pass the passages as rendered for the model, labels included, so a location the answer
    cites ("Stave Two") is found. Terms that the question also uses are left out of the
    check, neither found nor missing: an answer that repeats the question ("Hartman rode a
    horse named Bess") claims only what it adds ("Bess"), and whether the question's own
    premise is in the document is `retrieval_confidence`'s to judge, not the answer's.

    An answer with nothing to check (empty, stopwords only, or only the question's words) is
    supported with score 1.0: there is no claim to refute. `missing` lists the terms not
    found, as the answer wrote them, names, numbers and identifiers first.
    """
    asked = _question_keys(question)
    checked = [term for term in content_terms(answer) if term.key not in asked]
    if not checked:
        return Grounding(supported=True, score=1.0, missing=())
    vocabulary = _Vocabulary.of(passages)
    missing = [term for term in checked if not vocabulary.holds(term)]
    total = sum(term.weight for term in checked)
    score = 1.0 - sum(term.weight for term in missing) / total
    strong_missing = any(term.kind in STRONG_KINDS for term in missing)
    ordered = sorted(missing, key=lambda term: term.kind not in STRONG_KINDS)
    return Grounding(
        supported=score >= SUPPORT_THRESHOLD and not strong_missing,
        score=round(score, 4),
        missing=tuple(term.text for term in ordered),
    )


# -- the search's own evidence ---------------------------------------------------------------


@dataclass(frozen=True)
class TermRarity:
    """How rare each term is in one document (or the documents searched): the inverse
    document frequency over its chunks, as BM25 weighs it (Lucene's form, never negative).

    Built once per document from its chunks' texts, or from the terms an index already holds.
    """

    chunk_count: int
    document_frequency: Mapping[str, int]

    @classmethod
    def from_terms(cls, chunk_terms: Iterable[Iterable[str]]) -> TermRarity:
        frequency: Counter[str] = Counter()
        count = 0
        for chunk in chunk_terms:
            frequency.update(set(chunk))
            count += 1
        return cls(count, dict(frequency))

    @classmethod
    def from_texts(cls, chunk_texts: Iterable[str]) -> TermRarity:
        return cls.from_terms(tokenize(text) for text in chunk_texts)

    def weight(self, term: str) -> float:
        """The idf of `term`: high for a word in few chunks, highest for one in none."""
        seen = self.document_frequency.get(term, 0)
        return float(math.log(1.0 + (self.chunk_count - seen + 0.5) / (seen + 0.5)))


def retrieval_confidence(
    question: str, passages: Sequence[str], rarity: TermRarity | None = None
) -> float:
    """How much of the question the best single passage holds, 0..1 (1.0 for a question
    without content terms: nothing to look for, so no evidence against it).

    Each of the question's content terms weighs its rarity in the document (`rarity`; equal
    weights without it), and the score is the largest share of that weight one passage
    holds. A question about a real detail of the text finds most of its rare words together
    in one passage; a made-up detail about a real character (LaRA's hallucination questions)
    finds the character and common words, but not the invented thing, or not beside them.
    A rare word matters more than "time" or "house", which most chunks hold.
    """
    asked = list(dict.fromkeys(tokenize(question)))
    if not asked:
        return 1.0
    weights = {term: rarity.weight(term) if rarity is not None else 1.0 for term in asked}
    total = sum(weights.values())
    best = 0.0
    for passage in passages:
        held = set(tokenize(passage))
        best = max(best, sum(weight for term, weight in weights.items() if term in held))
    return round(best / total, 4) if total > 0 else 1.0
