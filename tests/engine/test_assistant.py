"""The assistant facade with fakes behind its seams: FakeRuntime for llama.cpp, FakeEmbedder
for sentence-transformers. The library (SQLite), the planner and the GGUF profile are real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import engine.llamacpp
from engine.assistant import Assistant
from engine.config import load_settings
from engine.errors import EngineError
from engine.types import (
    AnswerDone,
    AnswerToken,
    ContextFit,
    PlanChosen,
    PromptLayout,
    RouteChosen,
    Strategy,
)
from ingest.pipeline import AddStatus, FileOutcome, FileProgress, Stage
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder

KEEPER = """# The Lighthouse Keeper

## Arrival

Mara arrived at Gull Rock lighthouse in the spring of 1911.

## The Code

The lamp room was locked with a brass padlock. Its combination was 4719.
"""


def _assistant(home: Path, answers: tuple[str, ...] = ("It was 4719 [The Code].",)) -> Assistant:
    settings = load_settings(environ={"LONGREAD_HOME": str(home)})
    runtime = FakeRuntime(llm=FakeLLM(answers=answers))
    return Assistant(settings, runtime=runtime, embedder=FakeEmbedder())


def _id(assistant: Assistant, ref: str) -> str:
    return assistant.resolve(ref).id


def _add(assistant: Assistant, path: Path) -> tuple[list[FileProgress], FileOutcome]:
    events = list(assistant.add([path]))
    outcome = events[-1]
    assert isinstance(outcome, FileOutcome)
    return [e for e in events if isinstance(e, FileProgress)], outcome


@pytest.fixture
def keeper(tmp_path: Path) -> Path:
    path = tmp_path / "keeper.md"
    path.write_text(KEEPER, encoding="utf-8")
    return path


def test_add_builds_the_search_index_as_an_embedding_stage(
    isolated_home: Path, keeper: Path
) -> None:
    with _assistant(isolated_home) as assistant:
        progress, outcome = _add(assistant, keeper)
        assert outcome.status is AddStatus.ADDED
        assert Stage.EMBEDDING in outcome.stage_seconds
        embedding = [p for p in progress if p.stage is Stage.EMBEDDING]
        assert embedding and embedding[-1].done == embedding[-1].total
        hits = assistant.search("padlock combination", assistant.document_ids([]), k=1)
        assert hits[0].chunk.location == "The Code"


def test_ask_streams_route_plan_tokens_then_a_cited_answer(
    isolated_home: Path, keeper: Path
) -> None:
    with _assistant(isolated_home) as assistant:
        _add(assistant, keeper)
        events = list(assistant.ask(_id(assistant, "keeper"), "What was the combination?"))
    assert isinstance(events[0], RouteChosen)
    assert events[0].route.strategy is Strategy.LONG_CONTEXT
    assert isinstance(events[1], PlanChosen)
    plan = events[1].plan
    assert plan.fits and plan.n_ctx <= plan.n_ctx_train
    assert plan.layout is PromptLayout.QUERY_AWARE, "the tiny default model reads query-aware"
    tokens = [e.text for e in events if isinstance(e, AnswerToken)]
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert "".join(tokens).strip() == done.answer.text == "It was 4719 [The Code]."
    assert [c.location for c in done.answer.citations] == ["The Code"]
    assert "combination was 4719" in done.answer.citations[0].snippet


def test_the_prompt_holds_the_whole_document_with_its_marks(
    isolated_home: Path, keeper: Path
) -> None:
    llm = FakeLLM(answers=("In 1911.",))
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, runtime=FakeRuntime(llm=llm), embedder=FakeEmbedder()) as assistant:
        _add(assistant, keeper)
        list(
            assistant.ask(
                _id(assistant, "keeper"), "When did Mara arrive?", layout=PromptLayout.CACHED
            )
        )
    prompt = llm.prompts[-1]
    assert "[The Code]" in prompt and "combination was 4719" in prompt
    assert prompt.index("combination was 4719") < prompt.index("When did Mara arrive?")
    assert llm.calls[-1].prefix is not None, "the cached layout marks its document prefix"


def test_a_document_too_long_for_any_window_is_refused_with_numbers(
    isolated_home: Path, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 40_000, encoding="utf-8")
    with _assistant(isolated_home) as assistant:
        _add(assistant, huge)
        with pytest.raises(EngineError) as refused:
            list(
                assistant.ask(
                    _id(assistant, "huge"), "What is this?", strategy=Strategy.LONG_CONTEXT
                )
            )
    message = str(refused.value)
    assert "40,0" in message and "32,768" in message and "retrieval" in message


def test_auto_answers_a_document_too_long_for_the_window_from_retrieval(
    isolated_home: Path, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 40_000 + "The lamp was lit at dusk.", encoding="utf-8")
    with _assistant(isolated_home, answers=("At dusk.",)) as assistant:
        _add(assistant, huge)
        events = list(assistant.ask(_id(assistant, "huge"), "When was the lamp lit?"))
    route = events[0]
    assert isinstance(route, RouteChosen) and route.route.strategy is Strategy.RAG
    assert route.route.facts is not None and route.route.facts.fit is ContextFit.TOO_LONG
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.answer.strategy is Strategy.RAG
    assert done.answer.plan is not None and done.answer.plan.n_ctx <= 4096


@pytest.mark.parametrize(
    ("question", "message"), [("   ", "empty"), ("why " * 40_000, "shorten it")]
)
def test_bad_questions_are_refused(
    isolated_home: Path, keeper: Path, question: str, message: str
) -> None:
    with _assistant(isolated_home) as assistant:
        _add(assistant, keeper)
        with pytest.raises(EngineError, match=message):
            list(assistant.ask(_id(assistant, "keeper"), question))


def test_remove_deletes_the_index_too(isolated_home: Path, keeper: Path) -> None:
    with _assistant(isolated_home) as assistant:
        _, outcome = _add(assistant, keeper)
        assert outcome.document is not None
        folder = isolated_home / "indexes" / outcome.document.id
        assert folder.is_dir()
        assistant.remove("keeper")
        assert not folder.exists()
        assert assistant.documents() == []


def test_an_index_built_with_another_embedder_is_reported_and_rebuilt(
    isolated_home: Path, keeper: Path
) -> None:
    with _assistant(isolated_home) as assistant:
        _add(assistant, keeper)
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    other = Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder(name="other"))
    with other:
        ids = other.document_ids([])
        steps = list(other.prepare_indexes(ids))
        assert steps and steps[0].reason and "embedder" in steps[0].reason
        assert list(other.prepare_indexes(ids)) == []  # now current: nothing to do


def test_workers_asking_at_once_share_one_runtime(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []

    class SlowRuntime(FakeRuntime):
        def __init__(self) -> None:
            time.sleep(0.05)  # widen the window two workers could both see "none yet" in
            super().__init__()
            made.append(self)

    monkeypatch.setattr(engine.llamacpp, "LlamaCppRuntime", SlowRuntime)
    assistant = Assistant(load_settings(environ={"LONGREAD_HOME": str(isolated_home)}))
    start = threading.Barrier(6)
    seen: list[object] = []

    def ask_for_runtime() -> None:
        start.wait()
        seen.append(assistant.runtime)

    workers = [threading.Thread(target=ask_for_runtime) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(made) == 1 and all(runtime is made[0] for runtime in seen)
