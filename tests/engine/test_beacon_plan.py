"""Sizing beacons: the ratio table (document length, window, reserve), the reading window,
the windows a text is cut into (in order, covering it, labelled), and the settings key.

Pure functions with a word-counting stand-in for the model's tokenizer."""

from __future__ import annotations

import itertools

import pytest

from engine.beacon_plan import (
    LABEL_TOKENS,
    RATIOS,
    answer_reserve,
    build_context_tokens,
    choose_ratio,
    plan_beacons,
    reading_window,
    settings_key,
    split_windows,
    window_count,
    window_location,
)
from engine.config import BeaconSettings
from ingest.types import Section, SectionKind


def words(text: str) -> int:
    return len(text.split())


# (name, document tokens, window tokens, context tokens, reserve, cap, ratio, fits)
RATIO_ROWS = [
    # short documents keep the most detail the beacon cap allows
    ("short-doc-small-windows", 3_000, 512, 8_192, 1_600, 256, 2, True),
    ("cap-forbids-ratio-2", 3_000, 1_024, 8_192, 1_600, 256, 4, True),
    ("cap-forbids-2-and-4", 12_000, 2_048, 8_192, 1_600, 256, 8, True),
    # longer documents compress harder to fit the window
    ("novel-45k", 45_000, 2_048, 8_192, 1_600, 256, 8, True),
    ("novel-80k", 80_000, 2_048, 8_192, 1_600, 256, 16, True),
    ("novel-100k", 100_000, 2_048, 8_192, 1_600, 256, 32, True),
    ("novel-160k", 160_000, 2_048, 8_192, 1_600, 256, 32, True),
    # a bigger reserve (longer answers) pushes the ratio up
    ("novel-80k-big-reserve", 80_000, 2_048, 8_192, 3_000, 256, 32, True),
    # a long-context model keeps more detail of the same book
    ("novel-160k-32k-model", 160_000, 4_096, 32_768, 1_600, 256, 16, True),
    # beyond what even 32 fits: the largest ratio, marked as not fitting
    ("encyclopedia", 2_000_000, 2_048, 8_192, 1_600, 256, 32, False),
]


@pytest.mark.parametrize(
    ("document", "window", "context", "reserve", "cap", "ratio", "fits"),
    [pytest.param(*row[1:], id=row[0]) for row in RATIO_ROWS],
)
def test_ratio_table(
    document: int, window: int, context: int, reserve: int, cap: int, ratio: int, fits: bool
) -> None:
    windows = window_count(document, window)
    choice = choose_ratio(windows, window, context, reserve, cap)
    print(f"{document:,} tokens in {windows} windows of {window:,}: x{choice.ratio}")
    assert (choice.ratio, choice.fits) == (ratio, fits)
    assert choice.beacon_tokens == window // ratio
    assert choice.total_tokens == windows * (choice.beacon_tokens + LABEL_TOKENS)
    if fits:
        assert choice.total_tokens + reserve <= context
        assert choice.beacon_tokens <= cap
        smaller = [r for r in RATIOS if r < ratio]
        for r in smaller:  # every smaller ratio breaks the cap or the window
            beacon = window // r
            assert beacon > cap or windows * (beacon + LABEL_TOKENS) + reserve > context


def test_reading_window_is_a_quarter_of_the_model_window_within_bounds() -> None:
    settings = BeaconSettings()
    assert reading_window(8_192, settings) == 2_048
    assert reading_window(131_072, settings) == 4_096
    assert reading_window(2_048, settings) == 512
    assert reading_window(8_192, BeaconSettings(window_tokens=700)) == 700


def test_reading_window_leaves_room_to_write_the_beacon() -> None:
    settings = BeaconSettings(window_tokens=8_000)
    window = reading_window(8_192, settings)
    beacon = settings.max_beacon_tokens
    assert build_context_tokens(window, settings.recent_tokens, beacon) <= 8_192 + window // 20 + 32


def test_answer_reserve_counts_the_question_twice() -> None:
    assert answer_reserve(40, 300) - answer_reserve(20, 300) == 40
    assert answer_reserve(20, 400) - answer_reserve(20, 300) == 100


def _paragraphs(count: int, words_each: int) -> str:
    return "\n\n".join(" ".join(f"w{p}x{i}" for i in range(words_each)) + "." for p in range(count))


def test_windows_cover_the_text_in_order_without_gaps() -> None:
    text = "Title\n\n" + _paragraphs(40, 30)
    windows = split_windows(text, [], 200, words)
    assert len(windows) >= 6
    assert windows[0].start == 0 and windows[-1].end == len(text)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    assert [w.ordinal for w in windows] == list(range(len(windows)))
    assert all(0 < w.tokens <= 200 for w in windows)
    assert sum(w.tokens for w in windows) == words(text)
    assert [w.location for w in windows[:2]] == ["part 1", "part 2"]


def test_windows_break_at_paragraph_ends() -> None:
    text = _paragraphs(10, 30)
    for window in split_windows(text, [], 100, words):
        piece = text[window.start : window.end].rstrip()
        assert piece.endswith("."), piece[-20:]


def test_an_overlong_paragraph_is_cut_at_sentences_then_words() -> None:
    sentences = " ".join(f"Sentence {i} has exactly six words." for i in range(50))
    long_word_run = " ".join(f"word{i}" for i in range(500))  # no sentence end at all
    text = f"{sentences}\n\n{long_word_run}"
    windows = split_windows(text, [], 60, words)
    assert all(w.tokens <= 60 for w in windows)
    assert windows[-1].end == len(text)
    assert sum(w.tokens for w in windows) == words(text)


def test_an_empty_text_has_no_windows() -> None:
    assert split_windows("", [], 100, words) == []


def _pages(text: str, count: int) -> list[Section]:
    step = len(text) // count
    return [
        Section(
            i,
            str(i + 1),
            SectionKind.PAGE,
            i * step,
            len(text) if i == count - 1 else (i + 1) * step,
        )
        for i in range(count)
    ]


def test_windows_are_labelled_by_the_pages_and_chapters_they_span() -> None:
    text = "x" * 1000
    pages = _pages(text, 10)
    assert window_location(pages, 0, 250, 0) == "pp. 1–3"
    assert window_location(pages, 300, 399, 1) == "p. 4"
    chapters = [
        Section(0, "A Book", SectionKind.FRONT, 0, 100),
        Section(1, "Chapter 1", SectionKind.HEADING, 100, 500),
        Section(2, "Chapter 2", SectionKind.HEADING, 500, 1000),
    ]
    # Front matter is not a place: a window starting in it is named by what follows.
    assert window_location(chapters, 0, 400, 0) == "Chapter 1"
    assert window_location(chapters, 0, 700, 0) == "Chapter 1 – Chapter 2"
    assert window_location(chapters, 0, 80, 0) == "part 1"


def test_plan_beacons_puts_windows_and_ratio_together() -> None:
    text = _paragraphs(200, 40)  # 8,000 words
    settings = BeaconSettings(window_tokens=512, max_beacon_tokens=64)
    layout = plan_beacons(text, [], 4_096, settings, 300, 32, words)
    assert layout.window_tokens == 512
    assert len(layout.windows) >= window_count(words(text), 512)
    assert layout.choice.beacon_tokens <= 64
    assert layout.choice.fits
    assert layout.build_tokens <= 4_096


def test_the_settings_key_changes_with_whatever_shapes_the_beacons() -> None:
    base = settings_key(BeaconSettings(), 8_192, 384)
    assert base == settings_key(BeaconSettings(), 8_192, 384)
    assert base == settings_key(BeaconSettings(drill_windows=5), 8_192, 384), (
        "drill-down is how answers use beacons, not how they are built"
    )
    others = {
        settings_key(BeaconSettings(window_tokens=1_024), 8_192, 384),
        settings_key(BeaconSettings(max_beacon_tokens=128), 8_192, 384),
        settings_key(BeaconSettings(recent_tokens=0), 8_192, 384),
        settings_key(BeaconSettings(), 32_768, 384),
        settings_key(BeaconSettings(), 8_192, 512),
    }
    assert base not in others and len(others) == 5
