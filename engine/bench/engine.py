"""The engine benchmark: longread's llama.cpp path against a bare llama-cpp-python, side by side.

Three measurements, each a ratio taken within one run (the machine may be shared, so
absolute figures are noisy; alternating the two sides and keeping the best of each is not):

1. Prefill parity: a ~2k-token document in longread's long-context prompt (query-aware
   layout), prefilled by `LlamaCppLLM.stream_chat(max_tokens=1)` on a fresh model, against
   `Llama.eval` of the very same tokens on a plain `llama_cpp.Llama` built with the very same
   arguments (`engine.llamacpp.raw_prefill`). Rounds alternate the two sides; the best of
   each is compared. Goal: longread / raw >= 0.95.
2. Follow-up latency: a ~4k-token document in the cached layout. Time to first token of the
   first question (empty KV store, fresh model: the document is prefilled and its state
   saved) against a follow-up question on the same model (the prefix is reused) and against
   a new model that loads the saved state from the store (what the next session does).
   Goal: at least 20x faster.
3. KV cache bytes: the planner's `kv_cache_bytes` against what llama.cpp allocated (its
   "KV buffer size" log line) for f16, q8_0 and q4_0 at one n_ctx. Goal: within 10%.

The documents are generated here, deterministically (a fictional town, with a few facts to
ask about), and sized with the model's own tokenizer, so nothing external is needed. The KV
store lives in a temporary folder, deleted afterwards.

What it does not do: judge answers (only time to first token counts), print (`report()`
returns the lines), or measure generation speed or GPU offload.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.kvcache import KVStateStore
from engine.llm import ChatMessage, GenerationStats, drain
from engine.planner import PlannerSettings, format_bytes, kv_cache_bytes, plan_context
from engine.prompts import long_context_messages
from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout
from models.types import ModelProfile

Progress = Callable[[str], None]

PROMPT_OVERHEAD_TOKENS = 128
"""Tokens the system prompt, the template and the answer add around document and question,
for sizing the plan before a model is loaded (generous: n_ctx only has to hold them)."""

PARITY_GOAL = 0.95
SPEEDUP_GOAL = 20.0
KV_TOLERANCE = 0.10

TOWN = "Marrowby"
FACTS = (
    ("The mayor of Marrowby is Odile Fenwick, who was elected in the spring of 2019.",
     "Who is the mayor of Marrowby?"),
    ("The clock tower on the market square has exactly 214 steps.",
     "How many steps does the clock tower have?"),
    ("Marrowby was founded in 1683 by salt traders from the coast.",
     "When was Marrowby founded, and by whom?"),
    ("The town's only bridge over the river Lune is painted dark green.",
     "What colour is the bridge over the river Lune?"),
)  # fmt: skip
"""Sentences planted in the filler, with the questions asked about them."""

_PLACES = (
    "the bakery on Tanner Street", "the old grain store", "the chapel by the ford",
    "the schoolhouse", "the weaving shed", "the inn called The Drowsy Heron",
    "the ferry landing", "the allotments behind the mill", "the library", "the fire station",
    "the glasshouse in the park", "the signal box at the station",
)  # fmt: skip
_PEOPLE = (
    "the baker", "the ferryman", "a retired teacher", "the stationmaster", "two fishermen",
    "the librarian", "a group of children", "the innkeeper", "the blacksmith's daughter",
    "the night watchman", "a travelling painter", "the choir",
)  # fmt: skip
_DOINGS = (
    "opens its doors before dawn", "was repainted last summer", "smells of woodsmoke",
    "hosts a quiz every Thursday", "keeps a ledger of every visitor", "floods in wet Aprils",
    "is lit by oil lamps in winter", "has a weathervane shaped like a heron",
    "sells apples from the orchards", "was rebuilt after the storm of 1911",
)  # fmt: skip
_SEASONS = ("In spring", "Every autumn", "On market days", "In the long winters", "At midsummer")
_ACTIVITIES = (
    "gather to mend the nets", "argue about the price of wool", "walk the river path",
    "sing in the square", "trade stories about the salt road", "repair the stone walls",
    "count the swans on the Lune", "bake bread for the whole street",
)  # fmt: skip


def town_document(count: Callable[[str], int], target_tokens: int, seed: int = 7) -> str:
    """A deterministic story of a fictional town, about `target_tokens` long by `count`,
    with the `FACTS` spread through it (a quarter, half, ... of the way in)."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < target_tokens:
        sentences = []
        for _ in range(4):
            if rng.random() < 0.5:
                sentence = f"In {TOWN}, {rng.choice(_PLACES)} {rng.choice(_DOINGS)}."
            else:
                sentence = (
                    f"{rng.choice(_SEASONS)} {rng.choice(_PEOPLE)} {rng.choice(_ACTIVITIES)}"
                    f" near {rng.choice(_PLACES)}."
                )
            sentences.append(sentence)
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += count(paragraph) + 1  # the paragraph break
    for index, (fact, _) in enumerate(FACTS):
        position = len(paragraphs) * (index + 1) // (len(FACTS) + 1)
        paragraphs[position] = f"{paragraphs[position]} {fact}"
    return "\n\n".join(paragraphs)


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefillParity:
    """Prefill of one prompt, alternated between a bare Llama and longread."""

    document_tokens: int
    prompt_tokens: int
    n_ctx: int
    threads_batch: int
    raw_seconds: tuple[float, ...]
    longread_seconds: tuple[float, ...]
    longread_evaluated: tuple[int, ...]

    @property
    def raw_rate(self) -> float:
        return self.prompt_tokens / min(self.raw_seconds)

    @property
    def longread_rate(self) -> float:
        best = min(range(len(self.longread_seconds)), key=self.longread_seconds.__getitem__)
        return self.longread_evaluated[best] / self.longread_seconds[best]

    @property
    def ratio(self) -> float:
        """longread's best rate over the bare run's best: the figure the goal is about."""
        return self.longread_rate / self.raw_rate

    @property
    def round_ratios(self) -> tuple[float, ...]:
        """longread / raw rate within each round, the two runs back to back: a second view
        when the machine's load shifts between rounds."""
        return tuple(
            (evaluated / ours) / (self.prompt_tokens / raw)
            for raw, ours, evaluated in zip(
                self.raw_seconds, self.longread_seconds, self.longread_evaluated, strict=True
            )
        )


@dataclass(frozen=True)
class FollowUpLatency:
    """Time to first token: cold, follow-up on the same model, and a new model's first
    question with the document's state loaded from the store."""

    document_tokens: int
    n_ctx: int
    cold: GenerationStats
    follow_ups: tuple[GenerationStats, ...]
    reloads: tuple[GenerationStats, ...]
    reload_model_seconds: tuple[float, ...]
    state_bytes: int

    @staticmethod
    def _ttft(stats: GenerationStats) -> float:
        return stats.first_token_seconds if stats.first_token_seconds is not None else 0.0

    @property
    def cold_seconds(self) -> float:
        return self._ttft(self.cold)

    @property
    def follow_up_seconds(self) -> float:
        return statistics.median(self._ttft(stats) for stats in self.follow_ups)

    @property
    def reload_seconds(self) -> float:
        return statistics.median(self._ttft(stats) for stats in self.reloads)

    @property
    def follow_up_speedup(self) -> float:
        return self.cold_seconds / self.follow_up_seconds

    @property
    def reload_speedup(self) -> float:
        return self.cold_seconds / self.reload_seconds


@dataclass(frozen=True)
class KVBytes:
    """One KV type's cache size, as planned and as llama.cpp allocated it."""

    kv_type: KVCacheType
    n_ctx: int
    flash_attn: bool
    planned: int
    allocated: int | None  # None: llama.cpp's log did not say

    @property
    def ratio(self) -> float | None:
        return None if self.allocated is None else self.allocated / self.planned


@dataclass(frozen=True)
class EngineBenchmark:
    model: str
    threads: int | None
    parity: PrefillParity
    follow_up: FollowUpLatency
    kv: tuple[KVBytes, ...]

    @property
    def parity_met(self) -> bool:
        return self.parity.ratio >= PARITY_GOAL

    @property
    def speedup_met(self) -> bool:
        slower = min(self.follow_up.follow_up_speedup, self.follow_up.reload_speedup)
        return slower >= SPEEDUP_GOAL

    @property
    def kv_met(self) -> bool:
        return all(
            item.ratio is not None and abs(item.ratio - 1.0) <= KV_TOLERANCE for item in self.kv
        )

    def report(self) -> str:
        parity, follow = self.parity, self.follow_up
        threads = f"{self.threads}" if self.threads is not None else "llama-cpp-python's default"
        lines = [
            f"engine benchmark: {self.model}, CPU, threads {threads}"
            f" ({parity.threads_batch} for prefill)",
            f"  prefill parity: {parity.document_tokens:,}-token document,"
            f" {parity.prompt_tokens:,}-token query-aware prompt, n_ctx {parity.n_ctx:,},"
            f" f16 KV; {_rounds(len(parity.raw_seconds))} alternated, best of each",
            f"    raw llama-cpp-python (Llama.eval)   {parity.raw_rate:7.1f} tokens/s"
            f"  (rounds: {_seconds(parity.raw_seconds)})",
            f"    longread (LlamaCppLLM.stream_chat)  {parity.longread_rate:7.1f} tokens/s"
            f"  (rounds: {_seconds(parity.longread_seconds)})",
            f"    longread / raw: {parity.ratio:.3f} (goal: at least {PARITY_GOAL}):"
            f" {_verdict(self.parity_met)}; per round:"
            f" {' '.join(f'{ratio:.2f}' for ratio in parity.round_ratios)}"
            f" (median {statistics.median(parity.round_ratios):.2f})",
            f"  follow-up questions: {follow.document_tokens:,}-token document, cached layout,"
            f" n_ctx {follow.n_ctx:,}; time to first token",
            f"    cold (empty KV store, fresh model)      {follow.cold_seconds:7.2f} s"
            f"  ({follow.cold.evaluated_tokens:,} tokens evaluated,"
            f" state saved: {format_bytes(follow.state_bytes)})",
            f"    follow-up, prefix in memory            {follow.follow_up_seconds:7.2f} s"
            f"  (median of {len(follow.follow_ups)};"
            f" {_reuse(follow.follow_ups)})  {follow.follow_up_speedup:5.0f}x",
            f"    new model, saved state loaded          {follow.reload_seconds:7.2f} s"
            f"  (median of {len(follow.reloads)}; {_reuse(follow.reloads)};"
            f" model load {statistics.median(follow.reload_model_seconds):.2f} s more)"
            f"  {follow.reload_speedup:5.0f}x",
            f"    speed-up goal: at least {SPEEDUP_GOAL:g}x: {_verdict(self.speedup_met)}",
        ]
        if self.kv:
            lines.append(
                f"  KV cache at n_ctx {self.kv[0].n_ctx:,}: planned (planner.kv_cache_bytes)"
                " vs allocated (llama.cpp's log)"
            )
            for item in self.kv:
                allocated = "not logged" if item.allocated is None else _mib(item.allocated)
                ratio = "-" if item.ratio is None else f"{item.ratio:.3f}"
                flash = "on" if item.flash_attn else "off"
                lines.append(
                    f"    {item.kv_type:<5} flash attention {flash:<3}  planned"
                    f" {_mib(item.planned):>10}  allocated {allocated:>10}"
                    f"  allocated / planned {ratio}"
                )
            lines.append(f"    goal: within {KV_TOLERANCE:.0%}: {_verdict(self.kv_met)}")
        return "\n".join(lines)


def _rounds(count: int) -> str:
    return f"{count} round" if count == 1 else f"{count} rounds"


def _mib(count: int) -> str:
    """MiB to two places, as llama.cpp logs its buffers (format_bytes rounds to whole MiB)."""
    return f"{count / 2**20:.2f} MiB"


def _seconds(values: Sequence[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values) + " s"


def _reuse(stats: Sequence[GenerationStats]) -> str:
    last = stats[-1]
    loaded = ", state loaded" if all(item.state_loaded for item in stats) else ""
    return f"{last.reused_tokens:,} reused, {last.evaluated_tokens:,} evaluated{loaded}"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# -- running ------------------------------------------------------------------------------


def run_engine_benchmark(
    *,
    model_path: Path | None = None,
    threads: int | None = None,
    parity_tokens: int = 2000,
    follow_up_tokens: int = 4000,
    rounds: int = 3,
    kv_n_ctx: int = 4096,
    kv_types: Sequence[KVCacheType] = (KVCacheType.F16, KVCacheType.Q8_0, KVCacheType.Q4_0),
    progress: Progress | None = None,
) -> EngineBenchmark:
    """Run the three measurements on `model_path` (default: the bundled model).

    `parity_tokens` and `follow_up_tokens` size the two documents, `rounds` is how often
    each side of the prefill comparison runs (and how many follow-ups and reloads are
    timed), `kv_n_ctx` is the context the KV sizes are compared at.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    say = progress or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="longread-bench-") as folder:
        home = Path(folder)
        profile = _profile(model_path, home / "cache")
        parity = _prefill_parity(profile, threads, parity_tokens, rounds, say)
        follow_up = _follow_up_latency(profile, threads, follow_up_tokens, rounds, home, say)
        kv = tuple(_kv_bytes(profile, threads, kv_n_ctx, kv_type, say) for kv_type in kv_types)
    return EngineBenchmark(profile.path.name, threads, parity, follow_up, kv)


def _prefill_parity(
    profile: ModelProfile, threads: int | None, size: int, rounds: int, say: Progress
) -> PrefillParity:
    from engine.llamacpp import LlamaCppLLM, chat_prompt_tokens, raw_prefill

    document, messages, plan = _setup(profile, size, FACTS[0][1], PromptLayout.QUERY_AWARE)
    with LlamaCppLLM(profile, plan, threads=threads) as llm:
        tokens = chat_prompt_tokens(llm, messages)
        document_tokens = llm.count_tokens(document)
    raw: list[float] = []
    ours: list[float] = []
    evaluated: list[int] = []
    threads_batch = 0
    for round_ in range(rounds):
        # Alternate which side goes first, so neither always runs on a warmer machine.
        for side in ("raw", "longread") if round_ % 2 == 0 else ("longread", "raw"):
            say(f"prefill parity, round {round_ + 1}/{rounds}: {side}, {len(tokens):,} tokens")
            if side == "raw":
                result = raw_prefill(profile, plan, tokens, threads)
                raw.append(result.seconds)
                threads_batch = result.threads_batch
            else:
                with LlamaCppLLM(profile, plan, threads=threads) as llm:
                    stats = drain(llm.stream_chat(messages, max_tokens=1)).stats
                if stats.prompt_tokens != len(tokens) or stats.reused_tokens:
                    raise RuntimeError(
                        f"longread prefilled {stats.evaluated_tokens} of {stats.prompt_tokens}"
                        f" tokens, the bare run {len(tokens)}: not the same work"
                    )
                ours.append(stats.prefill_seconds)
                evaluated.append(stats.evaluated_tokens)
    return PrefillParity(
        document_tokens=document_tokens,
        prompt_tokens=len(tokens),
        n_ctx=plan.n_ctx,
        threads_batch=threads_batch,
        raw_seconds=tuple(raw),
        longread_seconds=tuple(ours),
        longread_evaluated=tuple(evaluated),
    )


def _follow_up_latency(
    profile: ModelProfile,
    threads: int | None,
    size: int,
    rounds: int,
    home: Path,
    say: Progress,
) -> FollowUpLatency:
    from engine.llamacpp import LlamaCppLLM

    questions = [question for _, question in FACTS]
    document, _, plan = _setup(profile, size, max(questions, key=len), PromptLayout.CACHED)
    document_id = "bench-" + hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]
    store = KVStateStore.under(home)

    def ask(llm: LlamaCppLLM, index: int) -> GenerationStats:
        question = questions[index % len(questions)]
        messages, prefix = long_context_messages(
            document_id, TOWN, document, question, PromptLayout.CACHED
        )
        return drain(llm.stream_chat(messages, max_tokens=1, prefix=prefix)).stats

    say(f"follow-ups: cold question on a {size:,}-token document (full prefill, state saved)")
    llm = LlamaCppLLM(profile, plan, threads=threads, kv_store=store)
    try:
        document_tokens = llm.count_tokens(document)
        cold = ask(llm, 0)
        follow_ups = []
        for index in range(1, rounds + 1):
            say(f"follow-ups: question {index + 1} on the same model (prefix in memory)")
            follow_ups.append(ask(llm, index))
    finally:
        llm.close()
    state_bytes = sum(entry.payload_bytes for entry in store.entries())
    reloads: list[GenerationStats] = []
    load_seconds: list[float] = []
    for index in range(1, rounds + 1):
        say(f"follow-ups: new model {index}/{rounds}, document state loaded from the store")
        started = time.perf_counter()
        with LlamaCppLLM(profile, plan, threads=threads, kv_store=store) as llm:
            load_seconds.append(time.perf_counter() - started)
            reloads.append(ask(llm, index))
    if not cold.state_saved or not all(stats.state_loaded for stats in reloads):
        raise RuntimeError("the document's KV state was not saved and loaded as expected")
    return FollowUpLatency(
        document_tokens=document_tokens,
        n_ctx=plan.n_ctx,
        cold=cold,
        follow_ups=tuple(follow_ups),
        reloads=tuple(reloads),
        reload_model_seconds=tuple(load_seconds),
        state_bytes=state_bytes,
    )


def _kv_bytes(
    profile: ModelProfile, threads: int | None, n_ctx: int, kv_type: KVCacheType, say: Progress
) -> KVBytes:
    from engine.llamacpp import LlamaCppLLM

    say(f"KV cache: {kv_type} at n_ctx {n_ctx:,}")
    # The planner's own plan with the KV type forced: it turns flash attention on for the
    # quantized types, without which llama.cpp refuses a quantized V cache.
    settings = PlannerSettings(kv_type=kv_type, context_granularity=1)
    plan = plan_context(profile, n_ctx, _budget(), Backend.CPU, settings)
    with LlamaCppLLM(profile, plan, threads=threads) as llm:
        allocated = llm.allocated_kv_bytes
    planned = kv_cache_bytes(profile, plan.n_ctx, kv_type)
    return KVBytes(kv_type, plan.n_ctx, plan.flash_attn, planned, allocated)


def _setup(
    profile: ModelProfile, size: int, question: str, layout: PromptLayout
) -> tuple[str, list[ChatMessage], ContextPlan]:
    """The document, the chat asking `question` about it, and the planner's plan (f16 KV,
    the given layout) for that chat."""
    from engine.llamacpp import Vocabularies

    with contextlib.closing(Vocabularies()) as vocabularies:

        def count(text: str) -> int:
            return vocabularies.count(profile.path, text)

        document = town_document(count, size)
        messages, _ = long_context_messages("bench", TOWN, document, question, layout)
        needed = sum(count(message.content) for message in messages) + PROMPT_OVERHEAD_TOKENS
    settings = PlannerSettings(kv_type=KVCacheType.F16, layout=layout)
    return document, messages, plan_context(profile, needed, _budget(), Backend.CPU, settings)


def _budget() -> int:
    """A nominal memory budget: the KV type is forced, so it only has to be large enough;
    a fixed figure keeps the plans the same from run to run."""
    return 64 * 2**30


def _profile(model_path: Path | None, cache_dir: Path) -> ModelProfile:
    from models.catalog import bundled_model_path, load_profile

    return load_profile(model_path if model_path is not None else bundled_model_path(), cache_dir)
