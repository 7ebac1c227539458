"""Beacons through the facade, with fakes behind its seams (FakeRuntime for llama.cpp,
FakeEmbedder for sentence-transformers); library, planner, router, store and profile are
real. Covers `summarize` (build, reuse without a model, rebuild), building on first need when
a question asks for beacons, the prompt and citations of a beacon answer, the router's
"beacons built" fact, and other settings meaning other beacons."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.generators import run_to_end
from engine.llm import ChatMessage
from engine.types import (
    AnswerDone,
    AnswerEvent,
    Preparing,
    PrepStage,
    Strategy,
)
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder
from tests.library_checks import added_id

CHAPTERS = 6


def summary_or_answer(messages: Sequence[ChatMessage]) -> str:
    """A beacon names the first words of its passage; an answer cites the third part."""
    prompt = messages[-1].content
    if "Passage (" in prompt:
        passage = prompt.split("Passage (", 1)[1].split("\n", 1)[1]
        return " ".join(passage.split()[:8])
    return "The keeper changes his mind about the sea [Chapter 3]."


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A Markdown book of six chapters, about 2,400 words, each chapter its own words."""
    parts = []
    for number in range(1, CHAPTERS + 1):
        tag = chr(ord("a") + number) * 3
        body = " ".join(
            f"Keeper{tag} watched wave{tag} number {i} break on rock{tag}." for i in range(50)
        )
        parts.append(f"## Chapter {number}\n\n{body}")
    path = tmp_path / "keeper.md"
    path.write_text("# The Keeper\n\n" + "\n\n".join(parts), encoding="utf-8")
    return path


def _assistant(home: Path, llm: FakeLLM, **beacons: int) -> tuple[Assistant, FakeRuntime]:
    overrides = {"beacons": {"window_tokens": 256, "max_beacon_tokens": 24, **beacons}}
    settings = load_settings(environ={"LONGREAD_HOME": str(home)}, overrides=overrides)
    runtime = FakeRuntime(llm=llm)
    return Assistant(settings, runtime=runtime, embedder=FakeEmbedder()), runtime


def _ignore(event: object) -> None:
    """Progress events the test does not look at."""


def test_summarize_builds_once_and_then_reuses_without_a_model(
    isolated_home: Path, book: Path
) -> None:
    assistant, runtime = _assistant(isolated_home, FakeLLM(answers=summary_or_answer))
    with assistant:
        document_id = added_id(assistant, book, index=False)
        assert not assistant.document_statuses([document_id])[0].beacons_built
        first = run_to_end(assistant.summarize(document_id), _ignore)
        loads = len(runtime.loads)
        again = run_to_end(assistant.summarize(document_id), _ignore)
        status = assistant.document_statuses([document_id])[0]
        text = assistant.library.text(document_id)
    windows = first.layout.windows
    assert len(windows) >= 6
    assert (first.built, first.reused) == (len(windows), 0)
    assert (again.built, again.reused) == (0, len(windows))
    assert again.beacons == first.beacons
    assert len(runtime.loads) == loads == 1, "reusing every beacon loads no model"
    assert runtime.loads[0].n_ctx >= first.layout.build_tokens
    assert status.beacons_built
    assert first.beacons[0].start == 0 and first.beacons[-1].end == len(text)
    # Windows are labelled by the chapters they span, and end where a chapter begins.
    assert all("Chapter" in b.location and "–" not in b.location for b in first.beacons[1:])


def test_rebuild_forgets_the_stored_beacons(isolated_home: Path, book: Path) -> None:
    assistant, _ = _assistant(isolated_home, FakeLLM(answers=summary_or_answer))
    with assistant:
        document_id = added_id(assistant, book, index=False)
        run_to_end(assistant.summarize(document_id), _ignore)
        rebuilt = run_to_end(assistant.summarize(document_id, rebuild=True), _ignore)
    assert rebuilt.reused == 0 and rebuilt.built == len(rebuilt.layout.windows)


def test_other_settings_mean_other_beacons(isolated_home: Path, book: Path) -> None:
    first, _ = _assistant(isolated_home, FakeLLM(answers=summary_or_answer))
    with first:
        document_id = added_id(first, book, index=False)
        run_to_end(first.summarize(document_id), _ignore)
        assert first.route(document_id, "Summarize the book.").facts.beacons_built  # type: ignore[union-attr]
    other, _ = _assistant(isolated_home, FakeLLM(answers=summary_or_answer), max_beacon_tokens=48)
    with other:
        facts = other.route(document_id, "Summarize the book.").facts
        assert facts is not None and not facts.beacons_built
        built = run_to_end(other.summarize(document_id), _ignore)
        assert built.reused == 0, "beacons of other settings are never reused"
        assert len(other.library.beacon_sets(document_id)) == 2


def test_a_beacon_question_builds_what_is_missing_then_answers(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=summary_or_answer)
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events: list[AnswerEvent] = list(
            assistant.ask(document_id, "How does the keeper change?", strategy=Strategy.BEACONS)
        )
        text = assistant.library.text(document_id)
        sections = assistant.library.sections(document_id)
        [stored] = assistant.library.beacon_sets(document_id)
    building = [e for e in events if isinstance(e, Preparing) and e.stage is PrepStage.BEACONS]
    assert building and building[-1].done == building[-1].total == stored.window_count
    done = events[-1]
    assert isinstance(done, AnswerDone)
    answer = done.answer
    assert answer.strategy is Strategy.BEACONS and not answer.cancelled
    # The prompt holds every beacon, labelled, in document order, and the question twice.
    prompt = llm.calls[-1].messages[-1].content
    labels = [f"[Chapter {n}]" for n in range(1, CHAPTERS + 1)]
    positions = [prompt.index(label) for label in labels]
    assert positions == sorted(positions)
    assert prompt.count("How does the keeper change?") == 2
    # The answer named Chapter 3: the windows inside it are cited, each with its span, and
    # not the whole chapter besides (the most precise places win).
    chapter_3, chapter_4 = (next(s for s in sections if s.label == f"Chapter {n}") for n in (3, 4))
    assert [c.location for c in answer.citations] == ["Chapter 3", "Chapter 3"]
    for cited in answer.citations:  # windows end where the next chapter begins
        assert chapter_3.start <= cited.start < cited.end <= chapter_4.start
        assert text[cited.start : cited.end].strip()


def test_a_question_naming_specifics_drills_into_its_window(
    isolated_home: Path, book: Path
) -> None:
    llm = FakeLLM(answers=summary_or_answer)
    assistant, _ = _assistant(isolated_home, llm)
    with assistant:
        document_id = added_id(assistant, book)
        events = list(
            assistant.ask(
                document_id, "What did Keeperddd watch break on rockddd?", strategy=Strategy.BEACONS
            )
        )
    prompt = llm.prompts[-1]
    assert "Passages from the parts that match the question" in prompt
    passages = prompt.split("Passages from the parts that match the question", 1)[1]
    assert "rockddd" in passages
    done = events[-1]
    assert isinstance(done, AnswerDone)


def test_a_global_question_on_a_document_too_long_for_the_window_goes_to_beacons(
    isolated_home: Path, tmp_path: Path
) -> None:
    long_book = tmp_path / "long.txt"
    paragraph = " ".join(f"word{i}" for i in range(200))
    long_book.write_text("\n\n".join([paragraph] * 180), encoding="utf-8")  # 36,000 words
    assistant, runtime = _assistant(isolated_home, FakeLLM(answers=summary_or_answer))
    with assistant:
        document_id = added_id(assistant, long_book, index=False)
        route = assistant.route(document_id, "Summarize the book.")
    assert route.strategy is Strategy.BEACONS
    assert "built first" in route.reason
    assert runtime.loads == []


def test_stopping_a_build_keeps_what_was_written(isolated_home: Path, book: Path) -> None:
    cancel = threading.Event()
    count = 0

    def stops_on_the_third(messages: Sequence[ChatMessage]) -> str:
        nonlocal count
        count += 1
        if count == 3:
            cancel.set()
        return summary_or_answer(messages) + " more words to stream"

    assistant, _ = _assistant(isolated_home, FakeLLM(answers=stops_on_the_third))
    with assistant:
        document_id = added_id(assistant, book, index=False)
        events = list(
            assistant.ask(
                document_id, "Summarize the book.", strategy=Strategy.BEACONS, cancel=cancel
            )
        )
        [stored] = assistant.library.beacon_sets(document_id)
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.answer.cancelled
    assert stored.stored == 2 and not stored.complete
