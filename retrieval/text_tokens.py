"""The BM25 tokenizer: lowercase words and numbers, accents folded, English stopwords dropped.

"Hartman’s 1,250 coins in 2019 weighed 3.5 kg" becomes
["hartman", "1250", "coins", "2019", "weighed", "3.5", "kg"]: numbers survive whole (thousands
separators dropped so "1,250" matches "1250"; decimals kept), possessive and contraction
endings split off and dropped as stopwords. It does no stemming and knows only English
stopwords; it is BM25's ruler, not the embedder's (which has its own word pieces).
"""

from __future__ import annotations

import re
import unicodedata

# A number with optional thousands groups and decimals ("1,250.75", "3.5", "2019"), or a run
# of letters. Underscores and apostrophes end a word, so "Hartman’s" gives "hartman" + "s".
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_THOUSANDS = re.compile(r",(?=\d{3}(?:\D|$))")

# Small on purpose: function words, pronouns, auxiliaries and the question words every query
# starts with, plus the fragments left by splitting "n't", "'s", "'ll". Content words
# ("time", "day", "first") are never here, since in a book they are exactly what is asked about.
_STOPWORD_LIST = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up upon very was we
    were what when where which while who whom whose why will with would you your yours yourself
    yourselves s t d ll m re ve don doesn didn isn wasn weren aren hasn haven hadn couldn
    wouldn shouldn
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_LIST.split())


def _fold(text: str) -> str:
    """Lowercase and strip accents, so "Café" and "cafe" are one term."""
    # NFKD first: compatibility forms ("ﬁ", "𝕬") decompose to letters that casefold then lowers.
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def terms(text: str) -> list[str]:
    """Every token of `text`, stopwords included, in order."""
    found = []
    for match in _TOKEN.finditer(_fold(text)):
        token = match.group()
        if token[0].isdigit():
            token = _THOUSANDS.sub("", token).rstrip(".,")
        found.append(token)
    return found


def tokenize(text: str) -> list[str]:
    """The terms BM25 scores: `terms(text)` without stopwords. May be empty."""
    return [t for t in terms(text) if t not in STOPWORDS]
