"""The answering pipeline through the facade, with fakes behind its seams (FakeRuntime for
llama.cpp, FakeEmbedder for sentence-transformers); library, planner, router and profile are
real. Covers routing, Self-Route escalation, and never paying twice for a document."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.types import (
    AnswerDone,
    AnswerToken,
    Escalated,
    Preparing,
    PrepStage,
    PromptLayout,
    QuestionType,
    RouteChosen,
    Strategy,
    Verdict,
)
from models.types import ModelProfile
from retrieval.index_store import IndexStore
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder
from tests.library_checks import added_id

FILLER = (
    "The tide came in over the rocks and went out again, and the gulls cried over the"
    " harbour while the fishing boats rocked at their moorings. "
)
FACT = "The lamp room key hung on a nail behind the kitchen door."
LETTER = "Dear Anna, I left the farm because the well ran dry and the bank would not wait."


class CountingRuntime(FakeRuntime):
    """A FakeRuntime that records every text it was asked to count."""

    def __init__(self, llm: FakeLLM) -> None:
        super().__init__(llm=llm)
        self.counted: list[str] = []

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        self.counted.append(text)
        return super().count_tokens(profile, text)


def _assistant(home: Path, llm: FakeLLM) -> tuple[Assistant, CountingRuntime]:
    settings = load_settings(environ={"LONGREAD_HOME": str(home)})
    runtime = CountingRuntime(llm)
    return Assistant(settings, runtime=runtime, embedder=FakeEmbedder()), runtime


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """About 5,000 words: past the 4,096-token retrieval window, inside the 8k window."""
    path = tmp_path / "harbour.txt"
    middle = FILLER * 120
    path.write_text(f"{FILLER * 120}\n\n{FACT}\n\n{middle}", encoding="utf-8")
    return path


@pytest.fixture
def letter(tmp_path: Path) -> Path:
    path = tmp_path / "letter.txt"
    path.write_text(LETTER, encoding="utf-8")
    return path


def test_a_fact_question_on_a_book_goes_to_retrieval_and_a_reasoning_one_reads_it_whole(
    isolated_home: Path, book: Path
) -> None:
    assistant, _ = _assistant(isolated_home, FakeLLM(answers=("On a nail.",)))
    with assistant:
        document_id = added_id(assistant, book)
        fact = assistant.route(document_id, "Where did the lamp room key hang?")
        why = assistant.route(document_id, "Why did the gulls cry over the harbour?")
    assert (fact.strategy, fact.question_type) == (Strategy.RAG, QuestionType.LOCATION)
    assert (why.strategy, why.question_type) == (Strategy.LONG_CONTEXT, QuestionType.REASONING)
    assert fact.facts is not None and fact.facts.document_tokens > 4096
    assert fact.reason and why.reason


def test_explaining_a_route_loads_no_model(isolated_home: Path, letter: Path) -> None:
    assistant, runtime = _assistant(isolated_home, FakeLLM())
    with assistant:
        route = assistant.route(added_id(assistant, letter), "Why did the writer leave the farm?")
    assert route.strategy is Strategy.LONG_CONTEXT and runtime.loads == []


def test_a_declined_retrieval_answer_escalates_to_the_whole_document(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=("Unanswerable.", "Behind the kitchen door."))
    assistant, runtime = _assistant(isolated_home, llm)
    with assistant:
        events = list(assistant.ask(added_id(assistant, book), "Where did the lamp room key hang?"))
    route = events[0]
    assert isinstance(route, RouteChosen) and route.route.strategy is Strategy.RAG
    escalated = [e for e in events if isinstance(e, Escalated)]
    assert len(escalated) == 1 and escalated[0].route.strategy is Strategy.LONG_CONTEXT
    assert escalated[0].attempt.verdict is Verdict.UNANSWERABLE
    assert escalated[0].reason == "the model found no answer in the passages"
    # The declined attempt's words were held back; the second attempt's tokens stream.
    tokens = [e for e in events if isinstance(e, AnswerToken)]
    assert {t.attempt for t in tokens} == {2}
    assert "".join(t.text for t in tokens).strip() == "Behind the kitchen door."
    done = events[-1]
    assert isinstance(done, AnswerDone)
    answer = done.answer
    assert answer.strategy is Strategy.LONG_CONTEXT and answer.escalated
    assert [a.strategy for a in answer.attempts] == [Strategy.RAG]
    assert answer.route is not None and answer.route.strategy is Strategy.LONG_CONTEXT
    assert len(llm.prompts) == 2 and FACT in llm.prompts[1]
    assert len(runtime.loads) == 2


def test_an_answer_its_passages_do_not_support_escalates_too(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=("Zebediah Quillfeather kept it in 1874.", "Behind the kitchen door."))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        events = list(assistant.ask(added_id(assistant, book), "Where did the lamp room key hang?"))
    done = events[-1]
    assert isinstance(done, AnswerDone)
    first = done.answer.attempts[0]
    assert first.verdict is Verdict.ANSWERED
    assert first.grounding is not None and not first.grounding.supported
    # The unsupported attempt streamed (it did not open with a verdict) and is marked.
    attempts = [e.attempt for e in events if isinstance(e, AnswerToken)]
    assert attempts[0] == 1 and attempts[-1] == 2
    escalated = next(e for e in events if isinstance(e, Escalated))
    assert "Zebediah" in escalated.reason, "the words the passages lack are named"


def test_a_supported_retrieval_answer_stands(isolated_home: Path, book: Path) -> None:
    llm = FakeLLM(answers=("The key hung on a nail behind the kitchen door.",))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events = list(assistant.ask(document_id, "Where did the lamp room key hang?"))
        text = assistant.library.text(document_id)
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert done.answer.strategy is Strategy.RAG and not done.answer.escalated
    assert done.answer.grounding is not None and done.answer.grounding.supported
    assert not any(isinstance(e, Escalated) for e in events)
    spans = [text[c.start : c.end] for c in done.answer.citations]
    assert any(FACT in span for span in spans), "citations carry the passage's span"


def test_forced_retrieval_that_declines_does_not_escalate_when_forced(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=("Unanswerable.",))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events = list(
            assistant.ask(document_id, "Where did the lamp room key hang?", strategy=Strategy.RAG)
        )
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert done.answer.strategy is Strategy.RAG and not done.answer.escalated
    assert done.answer.verdict is Verdict.UNANSWERABLE


@pytest.mark.corpus
def test_a_follow_up_on_a_real_book_does_not_re_read_or_re_count_it(
    isolated_home: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = corpus / "books" / "The Strange Case Of Dr. Jekyll And Mr. Hyde.txt"
    assistant, runtime = _assistant(isolated_home, FakeLLM(answers=("A door.",)))
    with assistant:
        *_, outcome = assistant.add([book], index=False)
        document = getattr(outcome, "document", None)
        assert document is not None
        reads: list[str] = []
        original = type(assistant.library).text

        def counting_text(library: object, doc_id: str) -> str:
            reads.append(doc_id)
            return original(library, doc_id)  # type: ignore[arg-type]

        monkeypatch.setattr(type(assistant.library), "text", counting_text)

        def ask(question: str) -> None:
            events = assistant.ask(
                document.id, question, strategy=Strategy.LONG_CONTEXT, layout=PromptLayout.CACHED
            )
            assert isinstance(list(events)[-1], AnswerDone)

        ask("Why did Jekyll make the will?")
        first = len(runtime.counted)
        ask("Who is Mr. Utterson?")
        follow_up = runtime.counted[first:]
    book_counts = [text for text in runtime.counted[:first] if len(text) > 100_000]
    print(f"first question: {first} counts, the book once ({len(book_counts)})")
    assert len(book_counts) == 1, "the book is counted once"
    assert follow_up == ["Who is Mr. Utterson?"], "a follow-up counts only its question"
    assert len(reads) == 1, "the book's text is read from the library once"


def test_search_indexes_stay_loaded_across_questions(
    isolated_home: Path, book: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = FakeLLM(answers=("The key hung on a nail behind the kitchen door.",))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        loads: list[str] = []
        original = IndexStore.load

        def counting_load(self: IndexStore, library: object, doc_id: str) -> object:
            loads.append(doc_id)
            return original(self, library, doc_id)  # type: ignore[arg-type]

        monkeypatch.setattr(IndexStore, "load", counting_load)
        for question in ("Where did the lamp room key hang?", "What hung behind the door?"):
            events = list(assistant.ask(document_id, question, strategy=Strategy.RAG))
            assert isinstance(events[-1], AnswerDone)
    assert len(loads) <= 1, f"the index was read {len(loads)} times for two questions"


def test_slow_steps_report_progress_before_the_answer(isolated_home: Path, book: Path) -> None:
    llm = FakeLLM(answers=("The key hung on a nail behind the kitchen door.",))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        assistant.clear_cache()
        events = list(assistant.ask(document_id, "Where did the key hang?", strategy=Strategy.RAG))
    stages = [e.stage for e in events if isinstance(e, Preparing)]
    assert PrepStage.MODEL in stages and PrepStage.PREFILL in stages
    first_token = next(i for i, e in enumerate(events) if isinstance(e, AnswerToken))
    last_prepare = max(i for i, e in enumerate(events) if isinstance(e, Preparing))
    assert last_prepare < first_token


def test_a_question_the_search_barely_matches_escalates_even_with_a_grounded_answer(
    isolated_home: Path, book: Path
) -> None:
    """LaRA's hallucination questions ask about a made-up detail: the search finds little of
    the question, so the first answer is set aside however well it copies its passages."""
    llm = FakeLLM(answers=("The tide came in over the rocks.", "The text does not say."))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events = list(assistant.ask(document_id, "What was the name of the keeper's parrot?"))
    done = events[-1]
    assert isinstance(done, AnswerDone)
    first = done.answer.attempts[0]
    assert first.grounding is not None and first.grounding.supported
    assert first.retrieval_confidence is not None and first.retrieval_confidence < 0.35
    escalated = next(e for e in events if isinstance(e, Escalated))
    assert escalated.reason.startswith("the search found little of the question")
    assert done.answer.strategy is Strategy.LONG_CONTEXT


def test_a_question_the_search_matches_well_has_high_confidence(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=("The key hung on a nail behind the kitchen door.",))
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events = list(assistant.ask(document_id, "Where was the lamp room key kept?"))
    done = events[-1]
    assert isinstance(done, AnswerDone) and not done.answer.escalated
    assert done.answer.retrieval_confidence is not None
    assert done.answer.retrieval_confidence >= 0.35


def test_a_question_cancelled_while_searching_loads_no_model(
    isolated_home: Path, book: Path
) -> None:
    assistant, runtime = _assistant(isolated_home, FakeLLM())
    cancel = threading.Event()
    cancel.set()
    with assistant:
        document_id = added_id(assistant, book)
        events = list(
            assistant.ask(
                document_id, "Where did the key hang?", strategy=Strategy.RAG, cancel=cancel
            )
        )
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.answer.cancelled and not done.answer.text
    assert runtime.loads == [] and not done.answer.escalated
