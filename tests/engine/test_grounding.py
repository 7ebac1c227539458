"""assess_answer and retrieval_confidence on hand-made passages: fast, no model, no index."""

from __future__ import annotations

import pytest

from engine.grounding import (
    SUPPORT_THRESHOLD,
    TermKind,
    TermRarity,
    assess_answer,
    content_terms,
    retrieval_confidence,
)

LIGHTHOUSE = (
    "The keeper of the Varn lighthouse, Tobias Mercer, climbed its 117 steps every evening."
    " In 1887 the lamp was fitted with a Fresnel lens made in Paris; the keeper's logbook"
    " gives the lens the serial number FL-2208 and its id 3f2b8c1e-9a4d-4e1b-8c2f-1a2b3c4d5e6f."
    " Mercer fed the gulls three times a day and painted the door blue."
)


def kinds(text: str) -> dict[str, TermKind]:
    return {term.text: term.kind for term in content_terms(text)}


def test_terms_are_named_things_numbers_identifiers_and_content_words() -> None:
    found = kinds("In 1887 the keeper, Mr. Mercer, fitted lens FL-2208 [2] on three days.")
    assert found["Mercer"] is TermKind.NAME  # after a title: not a sentence start
    assert found["1887"] is TermKind.NUMBER
    assert found["three"] is TermKind.NUMBER
    assert found["FL-2208"] is TermKind.IDENTIFIER
    assert found["keeper"] is TermKind.WORD
    assert "2" not in found  # a cited passage number is not a claim
    assert "Mr" not in found and "the" not in found


def test_a_supported_paraphrase_passes() -> None:
    grounding = assess_answer(
        "Tobias Mercer climbed the lighthouse's steps each evening.", [LIGHTHOUSE]
    )
    assert grounding.supported
    assert grounding.score >= SUPPORT_THRESHOLD
    assert "Mercer" not in grounding.missing


def test_possessives_case_and_punctuation_do_not_hide_a_term() -> None:
    grounding = assess_answer("MERCER’S LOGBOOK: the gulls!", [LIGHTHOUSE])
    assert grounding.supported and grounding.score == 1.0 and grounding.missing == ()


def test_an_invented_name_makes_the_answer_unsupported() -> None:
    grounding = assess_answer(
        "The keeper of the lighthouse, Tobias Mercer, was helped by his brother Edmund Hale"
        " who climbed the steps every evening.",
        [LIGHTHOUSE],
    )
    assert not grounding.supported
    assert grounding.missing[:2] == ("Edmund", "Hale")  # named things listed first
    assert grounding.score > SUPPORT_THRESHOLD  # the share alone would have passed it


def test_a_garbled_uuid_is_unsupported_and_the_exact_one_supported() -> None:
    exact = assess_answer("Its id is 3f2b8c1e-9a4d-4e1b-8c2f-1a2b3c4d5e6f.", [LIGHTHOUSE])
    garbled = assess_answer("Its id is 3f2b8c1e-9a4d-4e1b-8c2f-1a2b3c4d5e7f.", [LIGHTHOUSE])
    assert exact.supported and exact.score == 1.0
    assert not garbled.supported
    assert garbled.missing == ("3f2b8c1e-9a4d-4e1b-8c2f-1a2b3c4d5e7f",)


def test_an_identifier_inside_a_longer_one_does_not_count() -> None:
    grounding = assess_answer("The serial number was FL-22.", [LIGHTHOUSE])
    assert not grounding.supported and "FL-22" in grounding.missing


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        ("The lamp was fitted in 1887.", True),
        ("The lamp was fitted in 1888.", False),
        ("He climbed 117 steps.", True),
        ("He climbed 118 steps.", False),
        ("He fed the gulls 3 times a day.", True),  # "three" in the passage
        ("He fed the gulls four times a day.", False),
    ],
)
def test_numbers_must_match_exactly(answer: str, supported: bool) -> None:
    assert assess_answer(answer, [LIGHTHOUSE]).supported is supported


def test_thousands_separators_do_not_matter() -> None:
    assert assess_answer("It cost 1,250 francs.", ["The lens cost 1250 francs."]).supported


def test_an_empty_answer_or_one_without_content_has_nothing_to_check() -> None:
    for answer in ("", "   ", "It is what it was.", "[1]"):
        grounding = assess_answer(answer, [LIGHTHOUSE])
        assert grounding.supported and grounding.score == 1.0 and grounding.missing == ()


def test_no_passages_support_nothing_that_has_content() -> None:
    grounding = assess_answer("Mercer painted the door blue.", [])
    assert not grounding.supported and grounding.score == 0.0


def test_words_repeated_from_the_question_are_neither_found_nor_missing() -> None:
    question = "What did Mercer store in the hidden attic of the lighthouse?"
    echo = assess_answer("Mercer stored it in the hidden attic.", [LIGHTHOUSE], question)
    assert echo.supported and echo.score == 1.0  # it claims nothing the question did not
    invented = assess_answer(
        "Mercer stored a brass telescope in the hidden attic.", [LIGHTHOUSE], question
    )
    assert not invented.supported
    assert set(invented.missing) == {"brass", "telescope"}  # "attic" is the question's word


def test_a_few_unmatched_ordinary_words_are_tolerated() -> None:
    grounding = assess_answer(
        "The keeper Mercer climbed the lighthouse steps every evening and painted the door"
        " blue, gladly.",
        [LIGHTHOUSE],
    )
    assert grounding.supported
    assert grounding.missing == ("gladly",)
    assert 0.8 < grounding.score < 1.0


def test_retrieval_confidence_is_the_best_passage_share_of_the_question() -> None:
    passages = [LIGHTHOUSE, "The gulls of Varn nest on the cliffs."]
    assert retrieval_confidence("Who fitted the Fresnel lens in 1887?", passages) == 1.0
    assert retrieval_confidence("What did Mercer keep in the hidden attic?", passages) < 0.5
    assert retrieval_confidence("What is it?", passages) == 1.0  # nothing to look for
    assert retrieval_confidence("Where do the gulls nest?", []) == 0.0


def test_rare_words_weigh_more_than_common_ones() -> None:
    chunks = [f"The keeper walked to the lighthouse on day {n}." for n in range(20)]
    chunks.append("The keeper found a telescope.")
    rarity = TermRarity.from_texts(chunks)
    assert rarity.chunk_count == 21
    assert rarity.weight("telescope") > rarity.weight("keeper")
    assert rarity.weight("unseen") > rarity.weight("telescope")
    question = "Did the keeper find a telescope in the lighthouse?"
    passages = ["The keeper walked to the lighthouse."]
    plain = retrieval_confidence(question, passages)
    weighted = retrieval_confidence(question, passages, rarity)
    assert weighted < plain  # the passage misses the one rare word, which the weights stress
