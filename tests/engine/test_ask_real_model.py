"""The answering pipeline on the real bundled model (llama.cpp) and the real library: model
reuse across strategies, prefill progress, and routes on a real document. The embedder is
the FakeEmbedder (its own tests cover the real one); short documents only, CI has 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.llamacpp import LlamaCppRuntime
from engine.types import AnswerDone, Preparing, PrepStage, Strategy
from tests.fakes import FakeEmbedder

pytestmark = [pytest.mark.model]

SECTIONS = [
    (
        "Arrival",
        "Mara arrived at Gull Rock lighthouse in the spring of 1911. The previous keeper,"
        " Tobias Wren, had left a logbook on the desk and a kettle on the stove.",
    ),
    (
        "The Storm",
        "In October a storm broke the lamp's outer glass. Mara repaired it with glass from"
        " the supply boat, which came every second Tuesday from the harbour at Penmore.",
    ),
    (
        "The Code",
        "The lamp room was locked with a brass padlock. Its combination was 4719, written"
        " inside the cover of the logbook so that no keeper would forget it.",
    ),
    (
        "Winter",
        "In winter the gulls left the rock, and Mara read the logbook from cover to cover,"
        " learning how Tobias had kept the lamp burning through forty winters.",
    ),
]


@pytest.fixture
def keeper(tmp_path: Path) -> Path:
    path = tmp_path / "keeper.md"
    body = "\n\n".join(f"## {title}\n\n{(text + ' ') * 3}" for title, text in SECTIONS)
    path.write_text(f"# The Lighthouse Keeper\n\n{body}\n", encoding="utf-8")
    return path


def test_a_retrieval_question_after_a_long_one_reuses_the_loaded_model(
    isolated_home: Path, keeper: Path
) -> None:
    environ = {
        "LONGREAD_HOME": str(isolated_home),
        "LONGREAD_MODEL_MAX_ANSWER_TOKENS": "32",
        "LONGREAD_RETRIEVAL_TOP_K": "2",
        "LONGREAD_CHUNKING_MAX_TOKENS": "64",
        "LONGREAD_CHUNKING_OVERLAP": "8",
    }
    runtime = LlamaCppRuntime()
    settings = load_settings(environ=environ)
    with Assistant(settings, runtime=runtime, embedder=FakeEmbedder()) as assistant:
        *_, outcome = assistant.add([keeper])
        document = getattr(outcome, "document", None)
        assert document is not None and document.chunk_count >= 4

        long_events = list(assistant.ask(document.id, "Why did Mara read the logbook in winter?"))
        long_done = long_events[-1]
        assert isinstance(long_done, AnswerDone)
        assert long_done.answer.strategy is Strategy.LONG_CONTEXT
        prefill = [
            e for e in long_events if isinstance(e, Preparing) and e.stage is PrepStage.PREFILL
        ]
        assert prefill and prefill[-1].done == prefill[-1].total
        assert [e.done for e in prefill] == sorted(e.done for e in prefill)
        assert runtime.loads == 1

        rag_events = list(
            assistant.ask(document.id, "What was the combination?", strategy=Strategy.RAG)
        )
        rag_done = rag_events[-1]
        assert isinstance(rag_done, AnswerDone)
        assert rag_done.answer.strategy is Strategy.RAG and rag_done.answer.text
        rag_plan, long_plan = rag_done.answer.plan, long_done.answer.plan
        assert rag_plan is not None and long_plan is not None
        print(f"long n_ctx {long_plan.n_ctx}, rag n_ctx {rag_plan.n_ctx}")
        assert rag_plan.n_ctx <= long_plan.n_ctx, "the retrieval window fits the loaded one"
        assert runtime.loads == 1, "a compatible plan reuses the resident model"
        assert rag_done.answer.timings.load_seconds < long_done.answer.timings.load_seconds
