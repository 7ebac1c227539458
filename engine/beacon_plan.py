"""Sizing beacon summaries: the windows a document is read in, and the compression ratio.

A document too long for the model's window is read in consecutive windows; for each one the
model writes a beacon, a dense summary at most `window / ratio` tokens long. The ratio is
chosen per document, as Activation Beacon (arXiv 2401.03462) adapts its ratio to the input:
the smallest of 2, 4, 8, 16, 32 such that all beacons, each with its location label, fit
the model's window beside the answer's reserve (instructions, question, answer, and room for
drill-down passages), and no beacon is longer than `max_beacon_tokens`. That second bound
keeps building prefill-bound: on this machine the bundled model decodes a token about four
times slower than it prefills one, so a beacon of window/2 tokens would make generation
cost twice the reading. When even 32 does not fit, 32 is used and the answer keeps the
beacons that fit (engine/strategies/beacons.py).

Windows break at paragraph ends (else sentence ends, else words), end early where a chapter
or heading begins once they are half full, cover the text from its first character to its
last with no gap, and are labelled with the pages or sections they
span ("pp. 12–15", "Chapter 3 – Chapter 5"; "part 4" in a text without sections).

Everything here is pure: token counts come through the function given. It does not call a
model, store beacons or write prompts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from engine.config import BeaconSettings
from ingest.types import Section, SectionKind

RATIOS = (2, 4, 8, 16, 32)
"""The compression ratios Activation Beacon was trained with; the smallest that fits wins."""

LABEL_TOKENS = 12
"""What a beacon's label line ("[pp. 12–15]") and the blank line after it cost."""

ANSWER_OVERHEAD_TOKENS = 128
"""The instructions and chat template around beacons and question in an answer."""

DRILL_DOWN_TOKENS = 1024
"""Room kept in an answer for the passages of the windows a question names."""

WINDOW_OVERHEAD_TOKENS = 160
"""The instructions and chat template around a window while its beacon is written."""

PROMPT_VERSION = 1
"""Bumped when the beacon prompt changes: beacons written by another prompt are not reused."""

_BREAKING_KINDS = (SectionKind.CHAPTER, SectionKind.HEADING, SectionKind.BODY)
_BREAK_MIN_FILL = 0.5
"""A window at least this full ends where a chapter or heading begins."""

_PARAGRAPH_END = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_WORD_END = re.compile(r"\s+")


@dataclass(frozen=True)
class Window:
    """A stretch of the document read at once: `text[start:end]`, `tokens` long (the sum of
    its pieces' counts), labelled `location`. `ordinal` counts from 0."""

    ordinal: int
    start: int
    end: int
    tokens: int
    location: str


@dataclass(frozen=True)
class RatioChoice:
    """The ratio chosen, each beacon's token cap, what all beacons with labels take, and
    whether they fit the window beside the reserve."""

    ratio: int
    beacon_tokens: int
    total_tokens: int
    fits: bool


@dataclass(frozen=True)
class BeaconLayout:
    """How one document's beacons are built on one model: the windows, their size, the
    ratio, and the earlier beacons kept in view. `settings_key` fingerprints what shaped
    them, so other settings or another prompt never reuse them."""

    windows: tuple[Window, ...]
    window_tokens: int
    choice: RatioChoice
    recent_tokens: int
    context_tokens: int
    settings_key: str

    @property
    def build_tokens(self) -> int:
        """The window a model needs to write one beacon (see `build_context_tokens`)."""
        return build_context_tokens(
            self.window_tokens, self.recent_tokens, self.choice.beacon_tokens
        )

    def settings_json(self) -> str:
        """What the beacons were built with, as the library records it."""
        return json.dumps(
            {
                "ratio": self.choice.ratio,
                "beacon_tokens": self.choice.beacon_tokens,
                "window_tokens": self.window_tokens,
                "recent_tokens": self.recent_tokens,
                "windows": len(self.windows),
            }
        )


def reading_window(context_tokens: int, settings: BeaconSettings) -> int:
    """Tokens read per window: the configured size, else a quarter of the model's window
    (at least 512, at most 4,096: Activation Beacon's windows are 1,024 to 2,048), and never
    more than a window that leaves room for the earlier beacons and the one being written."""
    wanted = settings.window_tokens or min(max(context_tokens // 4, 512), 4096)
    room = context_tokens - WINDOW_OVERHEAD_TOKENS - settings.recent_tokens
    room -= settings.max_beacon_tokens
    return max(min(wanted, room), 64)


def build_context_tokens(window_tokens: int, recent_tokens: int, beacon_tokens: int) -> int:
    """The context a window's beacon is written in: instructions, earlier beacons, the
    window (with slack for how its pieces' counts add up) and the beacon."""
    slack = window_tokens // 20 + 32
    return WINDOW_OVERHEAD_TOKENS + recent_tokens + window_tokens + slack + beacon_tokens


def answer_reserve(question_tokens: int, max_answer_tokens: int) -> int:
    """What an answer needs beside the beacons: instructions, the question (it stands
    before and after them), drill-down passages and the answer."""
    return ANSWER_OVERHEAD_TOKENS + 2 * question_tokens + DRILL_DOWN_TOKENS + max_answer_tokens


def window_count(document_tokens: int, window_tokens: int) -> int:
    """Windows a document of this length needs at least."""
    return max(1, math.ceil(document_tokens / window_tokens))


def choose_ratio(
    windows: int,
    window_tokens: int,
    context_tokens: int,
    reserve_tokens: int,
    max_beacon_tokens: int,
) -> RatioChoice:
    """The smallest ratio whose beacons (capped at `max_beacon_tokens` each, a label each)
    fit `context_tokens` beside `reserve_tokens`; else the largest, marked as not fitting."""
    choice: RatioChoice | None = None
    for ratio in RATIOS:
        beacon = max(window_tokens // ratio, 1)
        total = windows * (beacon + LABEL_TOKENS)
        choice = RatioChoice(ratio, beacon, total, total + reserve_tokens <= context_tokens)
        if beacon <= max_beacon_tokens and choice.fits:
            return choice
    assert choice is not None
    return choice


def plan_beacons(
    text: str,
    sections: Sequence[Section],
    context_tokens: int,
    settings: BeaconSettings,
    max_answer_tokens: int,
    question_tokens: int,
    count_tokens: Callable[[str], int],
) -> BeaconLayout:
    """The layout of a document's beacons on a model whose window is `context_tokens`.

    `question_tokens` is a typical question's length: the ratio is chosen once per document,
    not per question, so that every question reuses the same beacons."""
    window_tokens = reading_window(context_tokens, settings)
    windows = split_windows(text, sections, window_tokens, count_tokens)
    reserve = answer_reserve(question_tokens, max_answer_tokens)
    choice = choose_ratio(
        len(windows), window_tokens, context_tokens, reserve, settings.max_beacon_tokens
    )
    return BeaconLayout(
        windows=tuple(windows),
        window_tokens=window_tokens,
        choice=choice,
        recent_tokens=settings.recent_tokens,
        context_tokens=context_tokens,
        settings_key=settings_key(settings, context_tokens, max_answer_tokens),
    )


def settings_key(settings: BeaconSettings, context_tokens: int, max_answer_tokens: int) -> str:
    """A fingerprint of everything that shapes a document's beacons on a model: the prompt,
    the beacon settings, the window they are sized for and the answer's reserve. The same
    document, model file and key always give the same windows and ratio."""
    shaping = {
        "prompt": PROMPT_VERSION,
        "context_tokens": context_tokens,
        "max_answer_tokens": max_answer_tokens,
        **asdict(settings),
    }
    shaping.pop("drill_windows")  # how answers use beacons, not how they are built
    encoded = json.dumps(shaping, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


# -- windows ---------------------------------------------------------------------------


def split_windows(
    text: str,
    sections: Sequence[Section],
    window_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[Window]:
    """The document as consecutive windows of at most about `window_tokens` tokens each,
    covering `text` from its start to its end (empty for an empty text)."""
    pieces = list(_pieces(text, 0, len(text), window_tokens, count_tokens))
    # Chapters and headings (not pages, an accident of layout) are worth ending a window on.
    breaks = {s.start for s in sections if s.kind in _BREAKING_KINDS and s.end > s.start}
    spans: list[tuple[int, int]] = []  # (start, tokens) of each window
    for start, _end, tokens in pieces:
        room = bool(spans) and spans[-1][1] + tokens <= window_tokens
        if room and start in breaks and spans[-1][1] >= window_tokens * _BREAK_MIN_FILL:
            room = False
        if room:
            spans[-1] = (spans[-1][0], spans[-1][1] + tokens)
        else:
            spans.append((start, tokens))
    windows: list[Window] = []
    for ordinal, (start, tokens) in enumerate(spans):
        end = spans[ordinal + 1][0] if ordinal + 1 < len(spans) else len(text)
        start = 0 if ordinal == 0 else start
        location = window_location(sections, start, end, ordinal)
        windows.append(Window(ordinal, start, end, tokens, location))
    return windows


def _pieces(
    text: str, start: int, end: int, limit: int, count_tokens: Callable[[str], int]
) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of consecutive pieces of `text[start:end]` no longer than
    `limit` tokens: paragraphs, else their sentences, else runs of words."""
    for splitter in (_PARAGRAPH_END, _SENTENCE_END, _WORD_END):
        spans = _split(text, start, end, splitter)
        if len(spans) > 1:
            break
    else:
        # One unbreakable run (a long URL): cut it by characters.
        step = max(1, limit * 2)
        for cut in range(start, end, step):
            piece_end = min(cut + step, end)
            yield cut, piece_end, count_tokens(text[cut:piece_end])
        return
    for piece_start, piece_end in spans:
        tokens = count_tokens(text[piece_start:piece_end])
        if tokens <= limit:
            yield piece_start, piece_end, tokens
        else:
            yield from _pieces(text, piece_start, piece_end, limit, count_tokens)


def _split(text: str, start: int, end: int, splitter: re.Pattern[str]) -> list[tuple[int, int]]:
    """`text[start:end]` cut after each match of `splitter` (separators stay with the piece
    before them), so the pieces cover the span exactly."""
    spans: list[tuple[int, int]] = []
    piece_start = start
    for match in splitter.finditer(text, start, end):
        if match.end() < end and match.end() > piece_start:
            spans.append((piece_start, match.end()))
            piece_start = match.end()
    if piece_start < end:
        spans.append((piece_start, end))
    return spans


def window_location(sections: Sequence[Section], start: int, end: int, ordinal: int) -> str:
    """The label of a window: the pages ("pp. 3–5") or the sections ("Chapter 1 – Chapter
    2") it spans; front matter is not a place, so it names only what follows it. A text
    without sections names the window's place ("part 4")."""
    inside = [
        s
        for s in sections
        if s.end > s.start and s.start < end and s.end > start and s.kind is not SectionKind.FRONT
    ]
    if not inside:
        return f"part {ordinal + 1}"
    first, last = inside[0], inside[-1]
    if first.ordinal == last.ordinal:
        return first.citation()
    if first.kind is SectionKind.PAGE and last.kind is SectionKind.PAGE:
        return f"pp. {first.label}–{last.label}"
    return f"{first.citation()} – {last.citation()}"
