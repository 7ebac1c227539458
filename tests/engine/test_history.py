"""A document's conversation: turns from answers, their stored payload, the Markdown export,
and the facade keeping them in a real library across a restart."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.errors import USER_ERRORS
from engine.history import (
    UNSAVED,
    HistoryError,
    Turn,
    conversation_markdown,
    decode_turn,
    encode_turn,
    turn_from_answer,
)
from engine.types import (
    Answer,
    AnswerDone,
    Citation,
    QuestionType,
    Route,
    Strategy,
    Timings,
    Verdict,
)
from ingest.errors import DocumentNotFoundError
from ingest.types import StoredTurn
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder
from tests.library_checks import added_id

AT = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
LETTER = "Dear Anna, I left the farm because the well ran dry and the bank would not wait."


def _timings(*, total: float = 3.5, reused: int = 0, loaded: bool = False) -> Timings:
    return Timings(
        load_seconds=0.5,
        prefill_seconds=1.0,
        first_token_seconds=1.2,
        total_seconds=total,
        tokens_per_second=20.0,
        prompt_tokens=900,
        reused_tokens=reused,
        evaluated_tokens=900 - reused,
        generated_tokens=12,
        state_loaded=loaded,
    )


CITATIONS = (
    Citation("doc1", "p. 12", "The key hung on a nail\nbehind the door.", 100, 140, 3),
    Citation("doc1", "Chapter 2", "Anna left in May.", 400, 417),
)
ROUTE = Route(
    strategy=Strategy.LONG_CONTEXT,
    question_type=QuestionType.LOCATION,
    reasons=("the passages missed it, so the whole document was read", "fits natively"),
)


def _answer(**changes: object) -> Answer:
    answer = Answer(
        question="Where did the key hang?",
        text="Behind the kitchen door.",
        strategy=Strategy.LONG_CONTEXT,
        document_ids=("doc1",),
        citations=CITATIONS,
        timings=_timings(),
        verdict=Verdict.ANSWERED,
        route=ROUTE,
    )
    return replace(answer, **changes)  # type: ignore[arg-type]


def _stored(turn: Turn, ordinal: int = 4) -> StoredTurn:
    return StoredTurn(ordinal=ordinal, created_at=turn.created_at, payload=encode_turn(turn))


# -- turns and payloads -------------------------------------------------------------------


def test_a_turn_keeps_what_the_chat_view_redraws() -> None:
    attempt = _answer(strategy=Strategy.RAG, verdict=Verdict.UNANSWERABLE)
    turn = turn_from_answer(_answer(attempts=(attempt,)), AT)
    assert turn == Turn(
        question="Where did the key hang?",
        text="Behind the kitchen door.",
        strategy=Strategy.LONG_CONTEXT,
        escalated=True,
        route_reason="the passages missed it, so the whole document was read",
        citations=CITATIONS,
        verdict=Verdict.ANSWERED,
        caveat=None,
        seconds=3.5,
        state_loaded=False,
        created_at=AT,
        ordinal=UNSAVED,
    )


def test_a_reused_document_or_a_loaded_state_count_as_state_loaded_a_system_prompt_not() -> None:
    cold = turn_from_answer(_answer(timings=_timings()), AT)
    prompt_only = turn_from_answer(_answer(timings=_timings(reused=40)), AT)
    reused = turn_from_answer(_answer(timings=_timings(reused=800)), AT)
    loaded = turn_from_answer(_answer(timings=_timings(loaded=True)), AT)
    flags = (cold.state_loaded, prompt_only.state_loaded, reused.state_loaded, loaded.state_loaded)
    assert flags == (False, False, True, True)


def test_an_answer_without_a_route_has_no_reason() -> None:
    assert turn_from_answer(_answer(route=None), AT).route_reason == ""


def test_a_turn_survives_its_payload_with_citations_route_and_verdict() -> None:
    turn = turn_from_answer(
        _answer(verdict=Verdict.UNANSWERABLE, strategy=Strategy.RAG, question="Ünïcode — ok?"),
        AT,
    )
    back = decode_turn(_stored(turn, ordinal=4))
    assert back == replace(turn, ordinal=4)
    assert back.caveat == "The passages shown to the model do not answer this."
    assert back.citations[0].chunk_ordinal == 3 and back.citations[1].chunk_ordinal is None
    assert back.strategy is Strategy.RAG and back.verdict is Verdict.UNANSWERABLE


def test_the_payload_leaves_place_and_time_to_the_library() -> None:
    data = json.loads(encode_turn(turn_from_answer(_answer(), AT)))
    assert "ordinal" not in data and "created_at" not in data
    assert data["format"] == 1 and data["strategy"] == "long"
    assert data["citations"][0]["location"] == "p. 12"


def test_keys_a_later_version_adds_are_ignored() -> None:
    turn = turn_from_answer(_answer(), AT)
    data = json.loads(encode_turn(turn))
    data["mood"] = "cheerful"
    data["citations"][0]["page_image"] = "p12.png"
    back = decode_turn(StoredTurn(ordinal=0, created_at=AT, payload=json.dumps(data)))
    assert back == replace(turn, ordinal=0)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("not json at all", "Expecting value"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": 1, "question": "q"}', "text is missing"),
        ("FORMAT_9", "newer longread"),
        ("BAD_STRATEGY", "'telepathy' is not a valid Strategy"),
        ("BOOL_AS_NUMBER", "escalated is not bool"),
        ("NO_CAVEAT", "caveat is missing"),
    ],
)
def test_an_unreadable_payload_raises_a_clear_engine_error(payload: str, why: str) -> None:
    good = json.loads(encode_turn(turn_from_answer(_answer(), AT)))
    variants = {
        "FORMAT_9": {**good, "format": 9},
        "BAD_STRATEGY": {**good, "strategy": "telepathy"},
        "BOOL_AS_NUMBER": {**good, "escalated": 1},
        "NO_CAVEAT": {k: v for k, v in good.items() if k != "caveat"},
    }
    if payload in variants:
        payload = json.dumps(variants[payload])
    with pytest.raises(HistoryError) as caught:
        decode_turn(StoredTurn(ordinal=2, created_at=AT, payload=payload))
    message = str(caught.value)
    assert why in message and message.startswith("turn 3 of this conversation")
    assert "clear the conversation" in message
    assert isinstance(caught.value, USER_ERRORS)


def test_a_whole_number_of_seconds_reads_as_seconds() -> None:
    data = json.loads(encode_turn(turn_from_answer(_answer(), AT)))
    data["seconds"] = 4
    back = decode_turn(StoredTurn(ordinal=0, created_at=AT, payload=json.dumps(data)))
    assert back.seconds == 4.0 and isinstance(back.seconds, float)


# -- the Markdown export ------------------------------------------------------------------


def test_the_markdown_export_has_the_title_each_question_answer_and_sources() -> None:
    first = turn_from_answer(_answer(), AT, ordinal=0)
    second = turn_from_answer(
        _answer(question="Who wrote\nthe letter?", text="Anna's father.", citations=()), AT, 1
    )
    markdown = conversation_markdown("The Harbour\nBook", [first, second])
    assert markdown.splitlines()[0] == "# The Harbour Book"
    assert "## 1. Where did the key hang?" in markdown
    assert "## 2. Who wrote the letter?" in markdown
    assert "Behind the kitchen door." in markdown and "Anna's father." in markdown
    assert "- p. 12 — The key hung on a nail behind the door." in markdown
    assert "- Chapter 2 — Anna left in May." in markdown
    # Sources follow their own answer: the second turn had none.
    assert markdown.count("Sources:") == 1
    assert markdown.index("Sources:") < markdown.index("## 2.")


def test_an_empty_conversation_exports_its_title_and_says_so() -> None:
    markdown = conversation_markdown("Walden", [])
    assert markdown.startswith("# Walden\n") and "No questions asked yet" in markdown


# -- through the facade, with a real library ----------------------------------------------


def _assistant(home: Path) -> Assistant:
    settings = load_settings(environ={"LONGREAD_HOME": str(home)})
    llm = FakeLLM(answers=("The well ran dry.",))
    return Assistant(settings, runtime=FakeRuntime(llm=llm), embedder=FakeEmbedder())


def _ask(assistant: Assistant, document_id: str, question: str, **options: object) -> Answer:
    *_, done = assistant.ask(document_id, question, **options)  # type: ignore[arg-type]
    assert isinstance(done, AnswerDone)
    return done.answer


@pytest.fixture
def letter(tmp_path: Path) -> Path:
    path = tmp_path / "letter.txt"
    path.write_text(LETTER, encoding="utf-8")
    return path


def test_a_conversation_survives_a_restart(isolated_home: Path, letter: Path) -> None:
    with _assistant(isolated_home) as assistant:
        document_id = added_id(assistant, letter)
        answer = _ask(assistant, document_id, "Why did the writer leave the farm?")
        first = assistant.conversations.remember(document_id, answer)
        second = assistant.conversations.remember(document_id, _answer(question="And the bank?"))
    assert first is not None and second is not None
    assert (first.ordinal, second.ordinal) == (0, 1)
    assert first.text == answer.text and first.strategy is answer.strategy
    assert first.created_at.tzinfo is not None
    with _assistant(isolated_home) as restarted:
        assert restarted.conversations.turns(document_id) == [first, second]


def test_a_cancelled_answer_is_never_remembered(isolated_home: Path, letter: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with _assistant(isolated_home) as assistant:
        document_id = added_id(assistant, letter)
        answer = _ask(
            assistant, document_id, "Where is the farm?", strategy=Strategy.RAG, cancel=cancel
        )
        assert answer.cancelled
        assert assistant.conversations.remember(document_id, answer) is None
        assert assistant.conversations.remember(document_id, _answer(cancelled=True)) is None
        assert assistant.conversations.turns(document_id) == []


def test_clearing_exporting_and_removing_a_documents_conversation(
    isolated_home: Path, letter: Path, tmp_path: Path
) -> None:
    other_path = tmp_path / "other.txt"
    other_path.write_text("A different letter about the sea.", encoding="utf-8")
    with _assistant(isolated_home) as assistant:
        document_id = added_id(assistant, letter)
        other = added_id(assistant, other_path)
        assistant.conversations.remember(document_id, _answer())
        assistant.conversations.remember(other, _answer(question="What about the sea?"))
        exported = assistant.conversations.export(document_id)
        title = assistant.library.get(document_id).title
        assert exported.splitlines()[0] == f"# {title}"
        assert "## 1. Where did the key hang?" in exported and "p. 12 —" in exported
        assert "What about the sea?" not in exported

        assert assistant.conversations.clear(document_id) == 1
        assert assistant.conversations.turns(document_id) == []
        assert len(assistant.conversations.turns(other)) == 1

        assistant.remove(other)
        assert assistant.library.turns(other) == []
        with pytest.raises(DocumentNotFoundError):
            assistant.conversations.remember(other, _answer())
        with pytest.raises(DocumentNotFoundError):
            assistant.conversations.export(other)
