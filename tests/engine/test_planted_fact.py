"""A planted fact, found by the real bundled model through the assistant: passkey accuracy.

The standard passkey form (filler, a 5-digit key at a random depth, "What is the pass key?
The pass key is") at ~800 tokens, six seeded documents. The query-aware layout must find
the key in most of them, and more often than the cached layout does with the same 135M
model (DESIGN decision 2). Figures are printed. Deterministic: seeded documents, greedy
decoding.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.assistant import Assistant
from engine.config import load_settings
from engine.types import AnswerDone, PromptLayout
from ingest.pipeline import FileOutcome

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"
TRIALS = 6


def _passkey_document(rng: random.Random) -> tuple[str, str]:
    key = str(rng.randint(10000, 99999))
    parts = [FILLER] * 30
    parts.insert(
        rng.randint(0, len(parts)), f"The pass key is {key}. Remember it. {key} is the pass key."
    )
    return key, " ".join(parts)


@pytest.mark.model
@pytest.mark.slow
def test_the_query_aware_layout_finds_a_planted_passkey(
    tmp_path: Path, isolated_home: Path
) -> None:
    rng = random.Random(2026)
    found = {PromptLayout.QUERY_AWARE: 0, PromptLayout.CACHED: 0}
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings) as assistant:
        for trial in range(TRIALS):
            key, text = _passkey_document(rng)
            path = tmp_path / f"passkey-{trial}.txt"
            path.write_text(text, encoding="utf-8")
            outcome = list(assistant.add([path], index=False))[-1]
            assert isinstance(outcome, FileOutcome) and outcome.document is not None
            for layout in found:
                events = list(assistant.ask(outcome.document.id, QUESTION, layout=layout))
                done = events[-1]
                assert isinstance(done, AnswerDone)
                found[layout] += key in done.answer.text
    print(
        f"\npasskey at ~800 tokens, {TRIALS} documents: query-aware"
        f" {found[PromptLayout.QUERY_AWARE]}/{TRIALS}, cached {found[PromptLayout.CACHED]}/{TRIALS}"
    )
    assert found[PromptLayout.QUERY_AWARE] >= 4
    assert found[PromptLayout.QUERY_AWARE] > found[PromptLayout.CACHED]
