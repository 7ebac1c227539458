"""Beacon summaries with fakes: the drill-down's window selection (a table), fitting beacons
to a budget, building one window at a time (resume, the story so far, copies written again,
cancel), and the library's beacon sets (migration 4, completeness, cascade on removal).

The model is FakeLLM (a token per word); the library is the real SQLite one."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.beacon_plan import LABEL_TOKENS, BeaconLayout, plan_beacons
from engine.config import BeaconSettings
from engine.generators import run_to_end
from engine.llm import ChatMessage
from engine.strategies.beacon_build import (
    BeaconProgress,
    BeaconsBuilt,
    build_beacons,
    copied_from_story,
    drawn_from,
    missing_beacons,
    recent_beacons,
)
from engine.strategies.beacons import fit_beacons, passages_in_windows, select_windows
from ingest.library import Library
from ingest.types import BeaconSetKey, Chunk, ChunkSettings, Document, StoredBeacon
from retrieval.types import Hit
from tests.fake_llm import FakeLLM
from tests.library_checks import sample_document


def beacon(ordinal: int, text: str, start: int | None = None, tokens: int = 10) -> StoredBeacon:
    first = ordinal * 100 if start is None else start
    return StoredBeacon(ordinal, first, first + 100, f"part {ordinal + 1}", text, tokens)


STORY = [
    beacon(0, "Mara comes from the harbour to Gull Rock and reads the keeper's logbook."),
    beacon(1, "Mara mends the lamp after a storm; the harbour's supply boat brings glass."),
    beacon(2, "Mara finds a brass padlock on the lamp room and a code in the logbook."),
    beacon(3, "Mara meets Tobias Wren, the old keeper, in the harbour tavern."),
]

# (name, question, limit, expected window ordinals)
SELECTION_ROWS = [
    ("names-one-window", "What did the supply boat bring?", 2, [1]),
    ("a-name-on-every-window-names-none", "How does Mara change?", 2, []),
    ("three-of-four-is-not-specific", "What happened at the harbour?", 2, []),
    ("half-of-the-windows-is-specific", "Where is the lamp?", 2, [1, 2]),
    ("half-again", "What is in the logbook?", 2, [0, 2]),
    ("two-specifics-in-document-order", "Did Tobias Wren see the padlock?", 2, [2, 3]),
    ("limit-keeps-the-strongest", "Did Tobias Wren see the padlock?", 1, [3]),
    ("no-content-words", "What was it?", 2, []),
    ("no-drill-down-asked", "What did the supply boat bring?", 0, []),
]


@pytest.mark.parametrize(
    ("question", "limit", "expected"),
    [pytest.param(q, limit, e, id=name) for name, q, limit, e in SELECTION_ROWS],
)
def test_drill_down_window_selection(question: str, limit: int, expected: list[int]) -> None:
    assert select_windows(question, STORY, limit) == expected


def test_all_beacons_are_kept_when_they_fit() -> None:
    budget = sum(b.tokens + LABEL_TOKENS for b in STORY)
    assert fit_beacons("anything", STORY, budget) == STORY


def test_beacons_that_do_not_fit_keep_the_best_matches_in_order() -> None:
    budget = 2 * (10 + LABEL_TOKENS)
    kept = fit_beacons("Did Tobias Wren see the padlock?", STORY, budget)
    assert [b.ordinal for b in kept] == [2, 3]


def _hit(rank: int, start: int, end: int) -> Hit:
    chunk = Chunk(rank, f"chunk {rank}", start, end, "", 2, 0)
    return Hit(document_id="d", ordinal=rank, score=1.0 / rank, rank=rank, chunk=chunk)


def test_drill_down_keeps_passages_inside_the_chosen_windows() -> None:
    hits = [_hit(1, 0, 50), _hit(2, 120, 180), _hit(3, 150, 199), _hit(4, 110, 130)]
    hits += [_hit(5, 390, 420)]
    kept = passages_in_windows(hits, STORY, [1, 3])
    # Window 1 is 100-200: at most two passages, best ranks first; window 3 (300-400) one.
    assert [h.rank for h in kept] == [2, 3, 5]


# -- building ----------------------------------------------------------------------------


def _story_text(paragraphs: int = 16) -> str:
    # Words of their own in each paragraph (letters: BM25's terms split "keeper3" in two).
    tags = [chr(ord("a") + p) * 2 for p in range(paragraphs)]
    return "\n\n".join(
        f"Keeper{t} lit lamp{t} at dusk{t} and wrote log{t} before bed{t} in room{t}." for t in tags
    )


def summary_of_passage(messages: Sequence[ChatMessage]) -> str:
    """A fake beacon: the first words of the passage the prompt holds."""
    passage = messages[-1].content.split("Passage (", 1)[1].split("\n", 1)[1]
    return " ".join(passage.split()[:6])


def _layout(text: str, window_tokens: int = 64) -> BeaconLayout:
    settings = BeaconSettings(window_tokens=window_tokens, max_beacon_tokens=16, recent_tokens=40)
    return plan_beacons(text, [], 4_096, settings, 100, 16, lambda t: len(t.split()))


def _run(
    llm: FakeLLM,
    text: str,
    layout: BeaconLayout,
    stored: Sequence[StoredBeacon] = (),
    cancel: threading.Event | None = None,
) -> tuple[list[BeaconProgress], BeaconsBuilt, list[StoredBeacon]]:
    saved: list[StoredBeacon] = []
    building = build_beacons(llm, text, layout, stored, saved.append, cancel)
    progress: list[BeaconProgress] = []
    return progress, run_to_end(building, progress.append), saved


def test_every_window_gets_a_beacon_saved_as_it_is_written() -> None:
    text = _story_text()
    layout = _layout(text)
    llm = FakeLLM(answers=summary_of_passage)
    progress, built, saved = _run(llm, text, layout)
    windows = layout.windows
    assert len(windows) >= 3
    assert (built.built, built.reused, built.cancelled) == (len(windows), 0, False)
    assert saved == list(built.beacons)
    assert [b.ordinal for b in saved] == list(range(len(windows)))
    assert [(b.start, b.end) for b in saved] == [(w.start, w.end) for w in windows]
    assert all(b.text and b.tokens == len(b.text.split()) for b in saved)
    assert progress[-1].done == progress[-1].total == len(windows)
    assert progress[-1].seconds_left == 0
    assert built.prompt_tokens > sum(w.tokens for w in windows)
    assert all(call.repeat_penalty is not None for call in llm.calls)


def test_each_window_is_read_with_the_story_so_far() -> None:
    text = _story_text()
    layout = _layout(text)
    llm = FakeLLM(answers=summary_of_passage)
    _, built, _ = _run(llm, text, layout)
    first, second = llm.prompts[0], llm.prompts[1]
    assert "Story so far" not in first
    assert "Story so far" in second and built.beacons[0].text in second


def test_a_rerun_reuses_what_was_stored_and_builds_the_rest() -> None:
    text = _story_text()
    layout = _layout(text)
    _, first, _ = _run(FakeLLM(answers=summary_of_passage), text, layout)
    kept = list(first.beacons[:2])
    llm = FakeLLM(answers=summary_of_passage)
    _, second, saved = _run(llm, text, layout, stored=kept)
    total = len(first.beacons)
    assert (second.reused, second.built) == (2, total - 2)
    assert [b.ordinal for b in saved] == list(range(2, total))
    assert len(llm.calls) == total - 2
    assert missing_beacons(layout, second.beacons) == 0
    assert missing_beacons(layout, kept) == total - 2


def test_a_beacon_copied_from_the_story_so_far_is_written_again_without_it() -> None:
    text = _story_text()
    layout = _layout(text)

    def copier(messages: Sequence[ChatMessage]) -> str:
        prompt = messages[-1].content
        if "Story so far" in prompt:  # copy the earlier beacon, as a small model does
            return prompt.split("Story so far:\n", 1)[1].split("\n", 2)[1]
        return summary_of_passage(messages)

    llm = FakeLLM(answers=copier)
    _, built, _ = _run(llm, text, layout)
    for window, written in zip(layout.windows, built.beacons, strict=True):
        assert drawn_from(written.text, text[window.start : window.end]) >= 0.5
    windows = len(built.beacons)
    assert len(llm.calls) == 1 + 2 * (windows - 1), "one retry per window after the first"


def test_a_window_the_model_says_nothing_about_gets_its_opening_words() -> None:
    text = _story_text()
    layout = _layout(text)
    _, built, _ = _run(FakeLLM(answers=("",)), text, layout)
    for window, written in zip(layout.windows, built.beacons, strict=True):
        assert text[window.start : window.end].split()[:3] == written.text.split()[:3]


def test_cancel_keeps_the_beacons_written_and_stops() -> None:
    text = _story_text()
    layout = _layout(text)
    cancel = threading.Event()
    count = 0

    def cancelling(messages: Sequence[ChatMessage]) -> str:
        nonlocal count
        count += 1
        if count == 2:
            cancel.set()  # seen between the words of the second beacon
        return summary_of_passage(messages) + " and more words to stream"

    _, built, saved = _run(FakeLLM(answers=cancelling), text, layout, cancel=cancel)
    assert built.cancelled
    assert [b.ordinal for b in saved] == [0]
    assert built.built == 1


def test_recent_beacons_are_the_latest_that_fit() -> None:
    assert recent_beacons(STORY, 2 * (10 + LABEL_TOKENS)) == STORY[2:]
    assert recent_beacons(STORY, 0) == []


def test_a_copy_is_told_from_a_loose_summary() -> None:
    window = "Mara lit the lamp at dusk and wrote in the logbook."
    story = "Tobias sailed to the harbour and sold his boat."
    assert copied_from_story("Tobias sailed and sold his boat.", window, story)
    assert not copied_from_story("Mara lit the lamp; Tobias sailed.", window, story)
    assert not copied_from_story("A ghost haunted the castle.", window, story), "loose, no copy"
    assert not copied_from_story("", window, story)


def test_drawn_from_measures_words_taken_from_the_window() -> None:
    window = "Mara lit the lamp at dusk and wrote in the logbook."
    assert drawn_from("Mara lit the lamp.", window) == 1.0
    assert drawn_from("Tobias sailed away.", window) == 0.0
    assert drawn_from("", window) == 0.0


# -- the library's beacon sets -------------------------------------------------------------


def _saved_document(library: Library) -> Document:
    document, extracted, chunks = sample_document("Gull Rock", "Mara kept the light. " * 40)
    library.save(document, extracted, chunks, ChunkSettings())
    return document


def test_beacon_sets_are_kept_per_document_model_and_settings(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        document = _saved_document(library)
        key = BeaconSetKey(document.id, "model-a", "settings-1")
        other = BeaconSetKey(document.id, "model-b", "settings-1")
        library.open_beacon_set(key, 2, '{"ratio": 8}')
        library.save_beacon(key, beacon(0, "first"))
        [record] = library.beacon_sets(document.id)
        assert (record.key, record.stored, record.complete) == (key, 1, False)
        library.save_beacon(key, beacon(1, "second"))
        library.open_beacon_set(key, 2, '{"ratio": 8}')  # reopening keeps what is there
        assert [b.text for b in library.beacons(key)] == ["first", "second"]
        assert library.beacon_sets(document.id)[0].complete
        assert library.beacons(other) == [], "another model's beacons are other beacons"
        library.open_beacon_set(key, 3, "{}")  # a damaged set (other windows) starts over
        assert library.beacons(key) == []
        library.save_beacon(key, beacon(0, "again"))
        library.remove(document.id)
        assert library.beacon_sets(document.id) == []
        assert library.beacons(key) == []


def test_saving_into_a_set_that_was_never_opened_fails(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        document = _saved_document(library)
        with pytest.raises(sqlite3.IntegrityError):
            library.save_beacon(BeaconSetKey(document.id, "m", "s"), beacon(0, "orphan"))


def test_a_version_3_library_migrates_to_4(tmp_path: Path) -> None:
    with Library(tmp_path) as library:
        _saved_document(library)
    db = sqlite3.connect(tmp_path / "library.sqlite3")
    db.executescript("DROP TABLE beacons; DROP TABLE beacon_sets; PRAGMA user_version = 3;")
    db.close()
    with Library(tmp_path) as library:
        assert library.schema_version == 4
        [document] = library.documents()
        key = BeaconSetKey(document.id, "m", "s")
        library.open_beacon_set(key, 1, "{}")
        library.save_beacon(key, beacon(0, "kept"))
        assert re.fullmatch("kept", library.beacons(key)[0].text)
