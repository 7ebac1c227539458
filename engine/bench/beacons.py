"""Beacon build benchmark: what building beacon summaries costs, against plain prefill.

The opening of a book (A Christmas Carol, the first 40,000 characters by default: about 10k
tokens, five windows at the automatic size) is added to a throwaway data dir and its beacons
are built with `Assistant.summarize` (`run_beacon_build_benchmark`), at the product's own
automatic window by default (a quarter of the model's window: 2,048 tokens for the bundled
8k model) or at a window size given. Then, on the very model that built them (same load,
same plan), the first-pass prompt of every window (the writer's instructions, the earlier
beacons it had in view and the window: token for token what the build read first) is
prefilled again with one token out and no beacon written. The build's evaluated tokens at
that plain rate are its prefill-equivalent, and build / prefill says where the time went:
at most 2.0 the build is prefill-bound (what `max_beacon_tokens` is meant to keep, see
engine/beacon_plan.py); above it, writing the beacons dominates. The generation share is
the build's seconds less that equivalent; the build's own streams' timings (reading vs
writing, recorded through a wrapper around the model) are reported beside it as a second
view.

What it does not do: judge the beacons' quality (engine/bench/beacon_qa.py answers
questions from them), separate the model load from anything but the build seconds, compare
ratios or window sizes against each other, run more than once (a run takes minutes on a
CPU), assert the goal, print (`report()` returns the text), or touch the person's library:
their data dir is only read for its settings (`config.toml`, `LONGREAD_*`) and registered
model names.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.assistant import Assistant
from engine.beacon_plan import BeaconLayout
from engine.bench.scratch import (
    CORPUS_DIR,
    Progress,
    add_document,
    build_beacons,
    quiet,
    scratch_settings,
)
from engine.llm import (
    LLM,
    CachedPrefix,
    ChatMessage,
    Done,
    GenerationStats,
    LLMRuntime,
    StreamEvent,
    drain,
)
from engine.strategies.beacon_build import (
    BEACON_REPEAT_PENALTY,
    recent_beacons,
    writer_messages,
)
from engine.types import Backend, ContextPlan
from ingest.types import StoredBeacon

if TYPE_CHECKING:
    from engine.kvcache import KVStateStore
    from models.types import ModelProfile

DEFAULT_BUILD_DOCUMENT = CORPUS_DIR / "books" / "A Christmas Carol.txt"
DEFAULT_MAX_CHARS = 40_000
"""About 10k tokens of the default book: five windows at the bundled model's automatic size."""
DEFAULT_WINDOW_TOKENS = 0
"""0: the product's own automatic window, a quarter of the model's (2,048 tokens at 8k)."""

PREFILL_BOUND_GOAL = 2.0
"""Build seconds over the prefill of the same prompts: at most this, reading dominates (a
build at exactly 2.0 spends as long writing beacons as reading windows)."""


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeaconBuildBenchmark:
    """One build of a document's beacons, and the plain prefill of the same prompts.

    `build_*` figures are the build's own: its seconds (model load excluded), and summed
    over every beacon it asked the model for (`writes`: one per window, plus one per beacon
    written again with its window alone in view), the prompt tokens, those evaluated rather
    than found in the KV cache, the seconds spent reading them and the seconds spent
    writing. `plain_*` are the side run's: each window's first-pass prompt, one token out.
    """

    document: str
    characters: int
    document_tokens: int
    model: str
    threads: int | None
    n_ctx: int
    windows: int
    window_tokens: int
    ratio: int
    beacon_tokens: int
    recent_tokens: int
    build_seconds: float
    writes: int
    build_prompt_tokens: int
    build_evaluated_tokens: int
    build_prefill_seconds: float
    build_decode_seconds: float
    generated_tokens: int
    beacon_lengths: tuple[int, ...]
    plain_seconds: float
    plain_prompt_tokens: int
    plain_evaluated_tokens: int
    goal: float = PREFILL_BOUND_GOAL

    @property
    def rewrites(self) -> int:
        """Beacons written a second time, with the window alone in view."""
        return self.writes - self.windows

    @property
    def prefill_rate(self) -> float:
        """Tokens evaluated per second in the plain run (0.0 when it took no time). Per
        evaluated token, not per prompt token: the two runs find different amounts of their
        prompts already in the KV cache (a rewrite in between breaks the shared opening)."""
        return self.plain_evaluated_tokens / self.plain_seconds if self.plain_seconds > 0 else 0.0

    @property
    def prefill_equivalent_seconds(self) -> float:
        """What evaluating the build's prompt tokens takes at the plain run's rate."""
        rate = self.prefill_rate
        return self.build_evaluated_tokens / rate if rate > 0 else 0.0

    @property
    def build_over_prefill(self) -> float:
        """Build seconds over the prefill-equivalent: the figure the goal is about."""
        equivalent = self.prefill_equivalent_seconds
        return self.build_seconds / equivalent if equivalent > 0 else float("inf")

    @property
    def generation_seconds(self) -> float:
        """The build's seconds less its prefill-equivalent: writing the beacons, estimated
        from the side run (never below zero, the two runs' noise aside)."""
        return max(self.build_seconds - self.prefill_equivalent_seconds, 0.0)

    @property
    def generation_share(self) -> float:
        """The estimated share of the build spent writing (see `generation_seconds`)."""
        return self.generation_seconds / self.build_seconds if self.build_seconds > 0 else 0.0

    @property
    def decode_share(self) -> float:
        """The share of the build its own streams spent writing, as they timed it."""
        return self.build_decode_seconds / self.build_seconds if self.build_seconds > 0 else 0.0

    @property
    def generation_rate(self) -> float:
        """Tokens written per second of writing, as the build's streams timed it."""
        seconds = self.build_decode_seconds
        return self.generated_tokens / seconds if seconds > 0 else 0.0

    @property
    def beacons_at_cap(self) -> int:
        """Beacons that reached their token cap: the model was cut off, not done."""
        return sum(length >= self.beacon_tokens for length in self.beacon_lengths)

    @property
    def prefill_bound(self) -> bool:
        return self.build_over_prefill <= self.goal

    def report(self) -> str:
        threads = f"{self.threads}" if self.threads else "llama.cpp's default"
        lengths = self.beacon_lengths
        mean_beacon = sum(lengths) / len(lengths) if lengths else 0.0
        verdict = (
            "met: reading dominates, the build is prefill-bound"
            if self.prefill_bound
            else "NOT met: generation dominates"
        )
        return "\n".join(
            [
                f"beacon build benchmark: {self.document}, first {self.characters:,} characters"
                f" ({self.document_tokens:,} tokens); {self.model}, CPU threads {threads},"
                f" n_ctx {self.n_ctx:,}",
                f"  layout: {self.windows} windows of up to {self.window_tokens:,} tokens,"
                f" ratio {self.ratio} (beacons capped at {self.beacon_tokens:,} tokens),"
                f" up to {self.recent_tokens:,} tokens of earlier beacons in view",
                f"  build: {self.build_seconds:.1f} s (model load excluded); {self.writes}"
                f" beacons written ({self.rewrites} again, with the window alone);"
                f" {self.build_prompt_tokens:,} prompt tokens read"
                f" ({self.build_evaluated_tokens:,} evaluated), {self.generated_tokens:,}"
                " tokens generated",
                f"    beacons kept: mean {mean_beacon:.0f} tokens, {self.beacons_at_cap} of"
                f" {len(lengths)} at the cap",
                f"    as its streams timed it: reading {self.build_prefill_seconds:.1f} s,"
                f" writing {self.build_decode_seconds:.1f} s ({self.decode_share:.0%} of the"
                f" build, {self.generation_rate:.1f} tokens/s)",
                "  plain prefill of the same windows' first-pass prompts, no beacon written:"
                f" {self.plain_seconds:.1f} s for {self.plain_prompt_tokens:,} prompt tokens"
                f" ({self.plain_evaluated_tokens:,} evaluated, {self.prefill_rate:.0f} tokens/s)",
                f"  prefill-equivalent of the build's {self.build_evaluated_tokens:,} evaluated"
                f" tokens: {self.prefill_equivalent_seconds:.1f} s",
                f"  build / prefill: {self.build_over_prefill:.2f}; generation took about"
                f" {self.generation_share:.0%} of the build ({self.generation_seconds:.1f} s)",
                f"  goal: build / prefill at most {self.goal:g} (prefill-bound): {verdict}",
            ]
        )


# -- running -------------------------------------------------------------------------------


def run_beacon_build_benchmark(
    *,
    document: Path = DEFAULT_BUILD_DOCUMENT,
    max_chars: int = DEFAULT_MAX_CHARS,
    home: Path | None = None,
    config_path: Path | None = None,
    model: str | None = None,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    progress: Progress | None = None,
) -> BeaconBuildBenchmark:
    """Build the beacons of the first `max_chars` characters of `document`, `window_tokens`
    a window (0: the automatic window), then prefill the same prompts plainly on the same
    model (module docstring). The result carries the window size the layout used, never 0.

    `home` and `config_path` name the person's data dir and config file, read only for
    their settings and model names (None: as the CLI finds them); `model` is a registered
    name or a .gguf path (None: the configured model). A few minutes on two cores.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    say = progress or quiet
    text = document.read_text(encoding="utf-8")[:max_chars]
    with tempfile.TemporaryDirectory(prefix="longread-bench-beacons-") as folder:
        scratch = Path(folder)
        path = scratch / "source" / f"{document.stem}.txt"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        settings = scratch_settings(
            scratch / "home", home, config_path, model, {"window_tokens": window_tokens}
        )
        runtime = _RecordingRuntime(_llama_runtime())
        with Assistant(settings, runtime=runtime) as assistant:
            # No search index: the build does not search, and the embedder would load torch.
            added = add_document(assistant, path, say, index=False)
            context = assistant.ask_context(added.id, "?")
            say(f"building beacons of {path.name} ({context.document_tokens:,} tokens)")
            built = build_beacons(assistant, added.id, path.name, say)
            recorder = runtime.last
            if recorder is None:  # every beacon was stored already: impossible in a fresh dir
                raise RuntimeError("the beacon build loaded no model")
            streams = recorder.streams
            if sum(stats.prompt_tokens for stats in streams) != built.prompt_tokens:
                raise RuntimeError(
                    f"the build counted {built.prompt_tokens:,} prompt tokens, its streams"
                    f" {sum(stats.prompt_tokens for stats in streams):,}: a stream went unseen"
                )
            layout = built.layout
            say(f"prefilling the same {len(layout.windows)} prompts, no beacon written")
            plain_seconds, plain_prompt, plain_evaluated = _plain_prefill(
                recorder.inner, context.text, layout, built.beacons
            )
            return BeaconBuildBenchmark(
                document=document.name,
                characters=len(text),
                document_tokens=context.document_tokens,
                model=context.profile.path.name,
                threads=settings.model.threads or None,
                n_ctx=recorder.context_size,
                windows=len(layout.windows),
                window_tokens=layout.window_tokens,
                ratio=layout.choice.ratio,
                beacon_tokens=layout.choice.beacon_tokens,
                recent_tokens=layout.recent_tokens,
                build_seconds=built.seconds,
                writes=len(streams),
                build_prompt_tokens=built.prompt_tokens,
                build_evaluated_tokens=sum(stats.evaluated_tokens for stats in streams),
                build_prefill_seconds=sum(stats.prefill_seconds for stats in streams),
                build_decode_seconds=sum(
                    stats.total_seconds - stats.prefill_seconds for stats in streams
                ),
                generated_tokens=built.generated_tokens,
                beacon_lengths=tuple(beacon.tokens for beacon in built.beacons),
                plain_seconds=plain_seconds,
                plain_prompt_tokens=plain_prompt,
                plain_evaluated_tokens=plain_evaluated,
            )


def _plain_prefill(
    llm: LLM, text: str, layout: BeaconLayout, beacons: Sequence[StoredBeacon]
) -> tuple[float, int, int]:
    """Prefill each window's first-pass prompt as the build wrote it, one token out:
    (seconds, prompt tokens, evaluated tokens). The prompts come from the build's own
    `writer_messages`; the earlier beacons in view are
    the stored ones, the very beacons the build had written by then. One after another, as
    in the build, so the KV cache reuses the same shared openings (the instructions) as
    it did there."""
    seconds = 0.0
    prompt_tokens = evaluated_tokens = 0
    for index, window in enumerate(layout.windows):
        recent = recent_beacons(beacons[:index], layout.recent_tokens)
        messages = writer_messages(layout, window, text[window.start : window.end], recent)
        stream = llm.stream_chat(messages, max_tokens=1, repeat_penalty=BEACON_REPEAT_PENALTY)
        stats = drain(stream).stats
        # The prefill alone: the one token generated afterwards is not reading.
        seconds += stats.prefill_seconds
        prompt_tokens += stats.prompt_tokens
        evaluated_tokens += stats.evaluated_tokens
    return seconds, prompt_tokens, evaluated_tokens


class _RecordingLLM:
    """A model that keeps the statistics of every stream it ran, so the build's own split
    of reading and writing is known (BeaconsBuilt sums only tokens). The rest delegates."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.streams: list[GenerationStats] = []

    @property
    def context_size(self) -> int:
        return self.inner.context_size

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_chat_tokens(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> int:
        return self.inner.count_chat_tokens(messages, add_generation_prompt=add_generation_prompt)

    def render_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        return self.inner.render_chat(messages, add_generation_prompt=add_generation_prompt)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        prefix: CachedPrefix | None = None,
        repeat_penalty: float | None = None,
    ) -> Generator[StreamEvent, None, None]:
        # Called now, not at the first next(): a prompt too long raises here, as it does
        # from the model itself.
        stream = self.inner.stream_chat(
            messages,
            max_tokens=max_tokens,
            cancel=cancel,
            stop=stop,
            temperature=temperature,
            prefix=prefix,
            repeat_penalty=repeat_penalty,
        )
        return self._recorded(stream)

    def _recorded(
        self, stream: Generator[StreamEvent, None, None]
    ) -> Generator[StreamEvent, None, None]:
        try:
            for event in stream:
                if isinstance(event, Done):
                    self.streams.append(event.stats)
                yield event
        finally:
            stream.close()  # a consumer that stops early frees the model, as it would

    def prefill(
        self,
        messages: Sequence[ChatMessage],
        *,
        document_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationStats:
        return self.inner.prefill(messages, document_id=document_id, cancel=cancel)

    def close(self) -> None:
        self.inner.close()


class _RecordingRuntime:
    """The assistant's runtime, wrapping each model it hands out in a `_RecordingLLM` and
    keeping the last, so the plain prefill runs on the very model and plan that built the
    beacons, and the build's streams can be read afterwards."""

    def __init__(self, inner: LLMRuntime) -> None:
        self._inner = inner
        self.last: _RecordingLLM | None = None

    def detect_backend(self) -> Backend:
        return self._inner.detect_backend()

    def gpu_memory(self) -> tuple[int, int] | None:
        return self._inner.gpu_memory()

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        return self._inner.count_tokens(profile, text)

    def load(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None,
        kv_store: KVStateStore | None,
    ) -> LLM:
        inner = self._inner.load(profile, plan, threads=threads, kv_store=kv_store)
        self.last = _RecordingLLM(inner)
        return self.last

    def close(self) -> None:
        self.last = None
        self._inner.close()


def _llama_runtime() -> LLMRuntime:
    # Imported here: importing the benchmark must not load llama.cpp (the CLI lists them).
    from engine.llamacpp import LlamaCppRuntime

    return LlamaCppRuntime()


__all__ = [
    "DEFAULT_BUILD_DOCUMENT",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_WINDOW_TOKENS",
    "PREFILL_BOUND_GOAL",
    "BeaconBuildBenchmark",
    "run_beacon_build_benchmark",
]
