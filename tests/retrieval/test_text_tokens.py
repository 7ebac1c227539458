from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from retrieval.text_tokens import STOPWORDS, terms, tokenize


def test_numbers_survive_whole() -> None:
    assert tokenize("It cost 1,250 pounds in 2019, about 3.5 times more.") == [
        "cost",
        "1250",
        "pounds",
        "2019",
        "3.5",
        "times",
    ]
    assert tokenize("12,345,678.90") == ["12345678.90"]
    assert tokenize("1,250") == tokenize("1250")


def test_lowercase_punctuation_and_accents() -> None:
    assert tokenize("HARTMAN! Café—naïve; (Marley)") == ["hartman", "cafe", "naive", "marley"]


def test_possessives_and_contractions_leave_the_word() -> None:
    assert tokenize("Hartman’s clerk didn't go; Bob's hat") == [
        "hartman",
        "clerk",
        "go",
        "bob",
        "hat",
    ]


def test_stopwords_are_dropped_but_kept_by_terms() -> None:
    assert tokenize("What is it that they were doing?") == []
    assert terms("What is it?") == ["what", "is", "it"]


def test_empty_text() -> None:
    assert tokenize("") == []
    assert terms("  ... !! ") == []


def test_stopword_list_is_small_and_spares_content_words() -> None:
    assert len(STOPWORDS) < 200
    assert {"time", "day", "first", "christmas", "one"}.isdisjoint(STOPWORDS)


@given(st.text())
def test_tokens_are_lowercase_nonempty_and_have_no_spaces(text: str) -> None:
    for token in tokenize(text):
        assert token
        assert token == token.lower() or not token.isalpha()
        assert not any(c.isspace() for c in token)
        assert token not in STOPWORDS
