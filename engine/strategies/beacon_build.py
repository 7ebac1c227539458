"""Building beacon summaries: one window at a time, each beacon saved as soon as it is written.

For each window of a `BeaconLayout` (engine/beacon_plan.py) the model reads the latest
earlier beacons (as many as `recent_tokens` holds: the thread of the story) and the window,
and writes a summary of at most the layout's beacon tokens. Each beacon goes to `save` the
moment it is written, so a kill or a cancel loses at most the window being read; beacons
already stored for a window (same place, same span) are reused, so a re-run resumes. A
beacon that took most of its words from the earlier beacons rather than its window (a small
model copying the story so far) is written again with the window alone in view; a model
that writes nothing for a window gets the window's opening words as its beacon, so no part
of the document goes missing from the stream.

Progress comes as `BeaconProgress` after every window: windows done, beacons built and
reused, tokens read and written per second, and the time left at this run's pace.

It does not choose windows or ratios (engine/beacon_plan.py), store anything itself (the
caller's `save` does), load a model, or answer questions (engine/strategies/beacons.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

from engine.beacon_plan import LABEL_TOKENS, BeaconLayout, Window
from engine.llm import LLM, ChatMessage, FinishReason, StreamEvent, drain
from engine.prompts import beacon_writer_messages, render_beacon
from ingest.types import StoredBeacon
from retrieval.text_tokens import tokenize

BEACON_REPEAT_PENALTY = 1.2
"""Firmer than answers' 1.1: measured on the bundled model, 1.1 let a summary repeat its
first sentences until the token cap; 1.2 kept it moving through the passage."""

WORDS_PER_TOKEN = 0.7
"""English words per token, to turn a beacon's token cap into the words the prompt asks for
(a little under the cap, so the summary ends on its own before it is cut)."""

_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True)
class BeaconProgress:
    """Where a build stands: `done` of `total` windows have a beacon, `built` of them in this
    run and `reused` from before; `tokens_per_second` counts tokens read and written in this
    run; `seconds_left` is the rest at this run's pace (None until a window is built)."""

    done: int
    total: int
    built: int
    reused: int
    tokens_per_second: float
    seconds_left: float | None


@dataclass(frozen=True)
class BeaconsBuilt:
    """The outcome of a build: the beacons in window order (all of them unless `cancelled`),
    how many were built and reused, and what building cost in this run."""

    layout: BeaconLayout
    beacons: tuple[StoredBeacon, ...]
    built: int
    reused: int
    cancelled: bool
    seconds: float
    prompt_tokens: int
    generated_tokens: int


def recent_beacons(earlier: Sequence[StoredBeacon], budget_tokens: int) -> list[StoredBeacon]:
    """The latest of `earlier` whose tokens (labels included) fit `budget_tokens`, in order."""
    kept: list[StoredBeacon] = []
    left = budget_tokens
    for beacon in reversed(earlier):
        cost = beacon.tokens + LABEL_TOKENS
        if cost > left:
            break
        kept.append(beacon)
        left -= cost
    return kept[::-1]


def _matches(beacon: StoredBeacon | None, window: Window) -> bool:
    return beacon is not None and (beacon.start, beacon.end) == (window.start, window.end)


def missing_beacons(layout: BeaconLayout, stored: Sequence[StoredBeacon]) -> int:
    """How many windows of `layout` have no matching stored beacon."""
    by_ordinal = {b.ordinal: b for b in stored}
    return sum(not _matches(by_ordinal.get(w.ordinal), w) for w in layout.windows)


def reused_beacons(layout: BeaconLayout, stored: Sequence[StoredBeacon]) -> BeaconsBuilt:
    """The outcome of a build that found every beacon stored: nothing built, nothing spent."""
    beacons = tuple(sorted(stored, key=lambda b: b.ordinal))
    return BeaconsBuilt(layout, beacons, 0, len(beacons), False, 0.0, 0, 0)


def build_beacons(
    llm: LLM,
    text: str,
    layout: BeaconLayout,
    stored: Sequence[StoredBeacon],
    save: Callable[[StoredBeacon], None],
    cancel: threading.Event | None = None,
) -> Generator[BeaconProgress, None, BeaconsBuilt]:
    """Give every window of `layout` a beacon, reusing `stored` ones that match a window
    and saving each new one through `save`; yields progress, returns the outcome."""
    started = time.perf_counter()
    reusable = {b.ordinal: b for b in stored}
    beacons: list[StoredBeacon] = []
    built = reused = prompt_tokens = generated_tokens = 0
    build_seconds = 0.0
    total = len(layout.windows)
    cancelled = False
    for window in layout.windows:
        old = reusable.get(window.ordinal)
        if old is not None and _matches(old, window):
            beacons.append(old)
            reused += 1
            continue
        if built == 0:  # the first progress: what was already there
            yield _progress(len(beacons), total, built, reused, 0, 0.0)
        window_started = time.perf_counter()
        window_text = text[window.start : window.end]
        written = ""
        # With the story so far in view, and again without it if the summary was copied
        # from there (`copied_from_story`); the one drawn more from the window is kept.
        for recent in (recent_beacons(beacons, layout.recent_tokens), []):
            done = drain(_write(llm, layout, window, window_text, recent, cancel))
            prompt_tokens += done.stats.prompt_tokens
            generated_tokens += done.stats.generated_tokens
            if done.reason is FinishReason.CANCELLED:
                break
            if drawn_from(done.text, window_text) >= drawn_from(written, window_text):
                written = done.text
            story = " ".join(b.text for b in recent)
            if not recent or not copied_from_story(written, window_text, story):
                break
        if done.reason is FinishReason.CANCELLED:
            cancelled = True
            break
        beacon = _beacon(llm, text, window, written, layout.choice.beacon_tokens)
        save(beacon)
        beacons.append(beacon)
        built += 1
        build_seconds += time.perf_counter() - window_started
        rate = (prompt_tokens + generated_tokens) / build_seconds if build_seconds else 0.0
        left = total - len(beacons)
        yield _progress(len(beacons), total, built, reused, rate, build_seconds / built * left)
    if built == 0 and not cancelled:  # nothing to build: say so once
        yield _progress(len(beacons), total, 0, reused, 0.0, 0.0)
    return BeaconsBuilt(
        layout=layout,
        beacons=tuple(beacons),
        built=built,
        reused=reused,
        cancelled=cancelled,
        seconds=time.perf_counter() - started,
        prompt_tokens=prompt_tokens,
        generated_tokens=generated_tokens,
    )


def drawn_from(summary: str, window_text: str) -> float:
    """The share of the summary's words (BM25's terms) found in the window it summarizes;
    0.0 for a summary with none."""
    said = set(tokenize(summary))
    if not said:
        return 0.0
    return len(said & set(tokenize(window_text))) / len(said)


def copied_from_story(summary: str, window_text: str, story: str) -> bool:
    """Whether more of the summary's words come from the story so far (and not the window)
    than from the window: the summary retold earlier beacons instead of this window.

    Measured on the bundled model over A Christmas Carol: such copies took 0.04 to 0.24 of
    their words from their window. A summary that is merely loose (a small model's long
    summaries drift into words of neither) is not a copy: writing it again without the
    story would only double the cost of building."""
    said = set(tokenize(summary))
    in_window = said & set(tokenize(window_text))
    only_in_story = (said & set(tokenize(story))) - in_window
    return len(only_in_story) > len(in_window)


def writer_messages(
    layout: BeaconLayout, window: Window, window_text: str, recent: Sequence[StoredBeacon]
) -> list[ChatMessage]:
    """The prompt that writes one window's beacon, the `recent` beacons in view (the
    benchmark prefills the very same prompts)."""
    return beacon_writer_messages(
        [render_beacon(b.location, b.text) for b in recent],
        window.location,
        window_text,
        max(8, int(layout.choice.beacon_tokens * WORDS_PER_TOKEN)),
    )


def _write(
    llm: LLM,
    layout: BeaconLayout,
    window: Window,
    window_text: str,
    recent: Sequence[StoredBeacon],
    cancel: threading.Event | None,
) -> Iterator[StreamEvent]:
    """The model's stream writing one window's beacon, the `recent` beacons in view."""
    return llm.stream_chat(
        writer_messages(layout, window, window_text, recent),
        max_tokens=layout.choice.beacon_tokens,
        cancel=cancel,
        repeat_penalty=BEACON_REPEAT_PENALTY,
    )


def _progress(
    done: int, total: int, built: int, reused: int, rate: float, seconds_left: float
) -> BeaconProgress:
    return BeaconProgress(done, total, built, reused, rate, seconds_left if built else None)


def _beacon(llm: LLM, text: str, window: Window, written: str, cap_tokens: int) -> StoredBeacon:
    """The stored beacon of a window from what the model wrote: blank lines folded; the
    window's opening words when the model wrote nothing."""
    summary = _BLANK_LINES.sub("\n", written).strip()
    if not summary:
        opening = " ".join(text[window.start : window.end].split()[: int(cap_tokens * 0.6)])
        summary = opening or "(an empty stretch of the document)"
    return StoredBeacon(
        ordinal=window.ordinal,
        start=window.start,
        end=window.end,
        location=window.location,
        text=summary,
        tokens=llm.count_tokens(summary),
    )
