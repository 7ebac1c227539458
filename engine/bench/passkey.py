"""The passkey test: can the model find a 5-digit key hidden in filler past its trained window?

The standard test (Mohtashami & Jaggi, "Landmark Attention"; used by the YaRN and LongLoRA
papers): "The grass is green. The sky is blue. ..." repeated, with "The pass key is 12345.
Remember it. 12345 is the pass key." at a random depth, then "What is the pass key?". Here it
is asked in chat form through longread's own long-context prompt in the query-aware layout
(the question before and after the document, DESIGN.md decision 2), on `LlamaCppLLM`.

Each run draws a fresh key and depth and asks it once per RoPE method, so the methods are
compared on the same prompts:

- `NONE`: unscaled, with n_ctx covering the prompt. The plan is built by hand, because the
  planner would scale a prompt longer than the trained window; llama.cpp then runs past the
  positions the model was trained on.
- `YARN`, `LINEAR`, `NTK`: the planner's own plan for that method (`PlannerSettings`), e.g.
  YaRN with rope_freq_scale = n_ctx_train / n_ctx and yarn_orig_ctx = n_ctx_train.

A run counts as found when the key's five digits appear in the (short) answer. What llama.cpp
reports for freq_base / freq_scale at context creation is kept with each trial, as the proof
that the plan's RoPE values reached it.

What it does not do: assert anything (tests check the prompt and the report; the accuracy is
a figure to read), use the cached layout, or vary the filler. A 13k-token prompt takes about
2.5 minutes to prefill on two CPU threads, so `target_tokens` can be made small for a smoke
run, and `trained_context` can pretend the model's window is smaller so that scaling is
exercised at that size.
"""

from __future__ import annotations

import math
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine.llm import ChatMessage, drain
from engine.planner import PlannerSettings, plan_context
from engine.prompts import long_context_messages
from engine.types import Backend, ContextPlan, KVCacheType, PromptLayout, RopeMethod
from models.types import ModelProfile

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
TASK = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize"
    " it. I will quiz you about the important information there."
)
QUESTION = "What is the pass key? Answer with the number only."
"""The question, asked in the user turn. The classic prompt ends "What is the pass key? The
pass key is" for a base model to complete; in chat form that cue sits in the user's turn, and
the 135M model goes on with prose ("The pass key is a magical item that..."). On the same
five 3k-token prompts (seed 1234, inside the trained window) the classic ending found the
key 0/5, the bare "What is the pass key?" 2/5, and this question 5/5. `CLASSIC_QUESTION`
remains selectable."""
CLASSIC_QUESTION = "What is the pass key? The pass key is"
TITLE = "pass key test"

DEFAULT_METHODS = (RopeMethod.NONE, RopeMethod.YARN)
DEFAULT_SEED = 1234
ANSWER_TOKENS = 12

CHAT_TEMPLATE_TOKENS = 24
"""Tokens the chat template adds around the system and user messages (role markers), for
sizing the filler before a model is loaded; the trials record the exact count."""

METHOD_NAMES = {
    RopeMethod.NONE: "unscaled",
    RopeMethod.YARN: "YaRN",
    RopeMethod.LINEAR: "linear",
    RopeMethod.NTK: "NTK-aware",
}

Progress = Callable[[str], None]

_LOG_ROPE = re.compile(r"\b(freq_base|freq_scale)\s*=\s*([0-9.eE+-]+)")


def key_sentence(key: str) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key."


@dataclass(frozen=True)
class PasskeyDocument:
    """The filler with the key planted `depth` of the way through it."""

    text: str
    key: str
    depth: float  # as requested: 0.0 before all the filler, 1.0 after it
    repetitions: int
    key_offset: int  # where the key sentence starts in `text`

    @property
    def key_position(self) -> float:
        """Where the key sentence starts, as a fraction of the text's length."""
        return self.key_offset / len(self.text)


def build_document(repetitions: int, key: str, depth: float) -> PasskeyDocument:
    """The task line, then `repetitions` filler lines with the key sentence among them."""
    if repetitions < 1:
        raise ValueError(f"repetitions must be at least 1, not {repetitions}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be between 0 and 1, not {depth}")
    at = round(depth * repetitions)
    head = " ".join([TASK, *[FILLER] * at])
    tail = " ".join([FILLER] * (repetitions - at))
    planted = key_sentence(key)
    text = " ".join(part for part in (head, planted, tail) if part)
    return PasskeyDocument(text, key, depth, repetitions, len(head) + 1)


def passkey_messages(document: PasskeyDocument, question: str = QUESTION) -> list[ChatMessage]:
    """longread's long-context chat for the document, query-aware (no cached prefix)."""
    messages, _ = long_context_messages(
        "passkey", TITLE, document.text, question, PromptLayout.QUERY_AWARE
    )
    return messages


def _content_tokens(
    count: Callable[[str], int], document: PasskeyDocument, question: str = QUESTION
) -> int:
    return sum(count(message.content) for message in passkey_messages(document, question))


def repetitions_for(
    count: Callable[[str], int], target_tokens: int, question: str = QUESTION
) -> int:
    """How many filler lines make the whole chat prompt about `target_tokens` long.

    `count` counts plain-text tokens (the model's vocabulary); the template's role markers
    are added as an estimate, since no model is loaded yet.
    """
    one = _content_tokens(count, build_document(1, "12345", 0.5), question)
    eleven = _content_tokens(count, build_document(11, "12345", 0.5), question)
    per_line = (eleven - one) / 10
    fixed = one - per_line + CHAT_TEMPLATE_TOKENS
    return max(1, round((target_tokens - fixed) / per_line))


@dataclass(frozen=True)
class PasskeyTrial:
    """One prompt asked with one RoPE method."""

    run: int
    method: RopeMethod  # what was asked for
    plan: ContextPlan  # what ran (its rope_method is NONE when the prompt fit unscaled)
    key: str
    depth: float
    key_position: float
    prompt_tokens: int
    answer: str
    found: bool
    prefill_seconds: float
    llama_rope: str  # llama.cpp's own freq_base / freq_scale lines at context creation

    @property
    def rope_description(self) -> str:
        plan = self.plan
        if plan.rope_method is RopeMethod.NONE:
            return "unscaled"
        if plan.rope_method is RopeMethod.NTK:
            return f"NTK-aware, rope_freq_base {plan.rope_freq_base:,.0f}"
        text = f"{METHOD_NAMES[plan.rope_method]}, rope_freq_scale {plan.rope_freq_scale:.4g}"
        if plan.yarn_orig_ctx:
            text += f", yarn_orig_ctx {plan.yarn_orig_ctx}"
        return text


@dataclass(frozen=True)
class PasskeyBenchmark:
    model: str
    n_ctx_train: int
    target_tokens: int
    threads: int | None
    seed: int
    question: str
    methods: tuple[RopeMethod, ...]
    trials: tuple[PasskeyTrial, ...]

    @property
    def runs(self) -> int:
        return len({trial.run for trial in self.trials})

    def accuracy(self, method: RopeMethod) -> tuple[int, int]:
        """(keys found, runs) for one method."""
        mine = [trial for trial in self.trials if trial.method is method]
        return sum(trial.found for trial in mine), len(mine)

    def recovered(self, method: RopeMethod) -> tuple[int, int]:
        """(runs where `method` found the key and the unscaled run missed it, runs)."""
        by_run: dict[tuple[int, RopeMethod], bool] = {
            (trial.run, trial.method): trial.found for trial in self.trials
        }
        runs = sorted({trial.run for trial in self.trials})
        count = sum(
            1
            for run in runs
            if by_run.get((run, method)) and by_run.get((run, RopeMethod.NONE)) is False
        )
        return count, len(runs)

    @property
    def recovery_goal(self) -> int:
        """Runs a scaling method must win over unscaled: two thirds (2 of 3)."""
        return math.ceil(2 * self.runs / 3)

    def report(self) -> str:
        trained = f"trained window {self.n_ctx_train:,}"
        threads = "llama.cpp default" if self.threads is None else str(self.threads)
        lines = [
            f"passkey benchmark: {self.model} ({trained}), ~{self.target_tokens:,}-token"
            f" prompts, {self.runs} runs, seed {self.seed}, threads {threads}",
            f"  chat form, query-aware layout (the question before and after the document):"
            f" {self.question!r}",
        ]
        for trial in self.trials:
            mark = "found" if trial.found else "MISSED"
            lines.append(
                f"  run {trial.run} {METHOD_NAMES[trial.method]:<9} key {trial.key} at"
                f" {trial.key_position:.0%}: {mark:<6} {trial.answer!r}"
                f" ({trial.prompt_tokens:,} tokens, n_ctx {trial.plan.n_ctx:,},"
                f" {trial.rope_description}; llama.cpp: {trial.llama_rope};"
                f" prefill {trial.prefill_seconds:.0f} s)"
            )
        accuracy = ", ".join(
            f"{METHOD_NAMES[method]} {found}/{total}"
            for method in self.methods
            for found, total in [self.accuracy(method)]
        )
        lines.append(f"  accuracy: {accuracy}")
        if RopeMethod.NONE in self.methods:
            for method in self.methods:
                if method is RopeMethod.NONE:
                    continue
                name = METHOD_NAMES[method]
                if all(
                    trial.plan.rope_method is RopeMethod.NONE
                    for trial in self.trials
                    if trial.method is method
                ):
                    lines.append(
                        f"  {name}: the prompts fit the trained window, so nothing was scaled"
                    )
                    continue
                count, runs = self.recovered(method)
                needed = self.recovery_goal
                verdict = "met" if count >= needed else "not met"
                lines.append(
                    f"  {name} found the key in {count} of {runs} runs where unscaled missed"
                    f" it (goal: at least {needed} of {runs}): {verdict}"
                )
        return "\n".join(lines)


def run_passkey_benchmark(
    target_tokens: int = 13000,
    runs: int = 3,
    methods: Sequence[RopeMethod] = DEFAULT_METHODS,
    seed: int = DEFAULT_SEED,
    *,
    model_path: Path | None = None,
    threads: int | None = None,
    trained_context: int | None = None,
    question: str = QUESTION,
    progress: Progress | None = None,
) -> PasskeyBenchmark:
    """Ask `runs` passkey prompts of about `target_tokens` tokens with each RoPE method.

    `trained_context` pretends the model was trained on that window (so a small smoke run
    still exercises scaling); None uses the model's own. The default model is the bundled
    one. `question` is what the user turn asks, before and after the document.
    """
    from engine.llamacpp import LlamaCppLLM, Vocabularies  # loads llama.cpp

    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    if not methods:
        raise ValueError("name at least one RoPE method")
    say = progress or (lambda _: None)
    profile = _profile(model_path)
    if trained_context is not None:
        profile = replace(profile, context_length=trained_context)

    vocabularies = Vocabularies()  # one vocabulary load for every count; freed with it

    def count(text: str) -> int:
        return vocabularies.count(profile.path, text)

    repetitions = repetitions_for(count, target_tokens, question)
    rng = random.Random(seed)
    trials: list[PasskeyTrial] = []
    for run in range(1, runs + 1):
        key = str(rng.randint(10000, 99999))
        depth = round(rng.uniform(0.05, 0.95), 2)
        document = build_document(repetitions, key, depth)
        messages = passkey_messages(document, question)
        estimate = _content_tokens(count, document, question) + CHAT_TEMPLATE_TOKENS
        for method in methods:
            plan = plan_for(profile, estimate + ANSWER_TOKENS, method)
            say(
                f"run {run}/{runs}, {METHOD_NAMES[method]}: key {key} at depth {depth:.0%},"
                f" ~{estimate:,} tokens, n_ctx {plan.n_ctx:,}; prefilling"
            )
            with LlamaCppLLM(profile, plan, threads=threads) as llm:
                prompt_tokens = llm.count_chat_tokens(messages)
                started = time.perf_counter()
                done = drain(llm.stream_chat(messages, max_tokens=ANSWER_TOKENS))
                elapsed = time.perf_counter() - started
                rope_lines = _llama_rope(llm.load_log)
            answer = done.text.strip()
            found = key in answer
            say(f"  {'found' if found else 'missed'}: {answer!r} ({elapsed:.0f} s)")
            trials.append(
                PasskeyTrial(
                    run=run,
                    method=method,
                    plan=plan,
                    key=key,
                    depth=depth,
                    key_position=document.key_position,
                    prompt_tokens=prompt_tokens,
                    answer=answer,
                    found=found,
                    prefill_seconds=done.stats.prefill_seconds,
                    llama_rope=rope_lines,
                )
            )
    return PasskeyBenchmark(
        model=profile.path.name,
        n_ctx_train=profile.context_length,
        target_tokens=target_tokens,
        threads=threads,
        seed=seed,
        question=question,
        methods=tuple(methods),
        trials=tuple(trials),
    )


def plan_for(profile: ModelProfile, tokens_needed: int, method: RopeMethod) -> ContextPlan:
    """The plan a trial runs: the planner's for a scaling method, and for NONE the same
    window with the model's own RoPE, past the trained window if need be."""
    # f16 KV for every method, so only the RoPE differs; the factor ceiling is raised so a
    # long target still gets a plan (this is a test of scaling, not of the product's limits).
    factor = max(4.0, tokens_needed / profile.context_length + 1.0)
    scaled = RopeMethod.YARN if method is RopeMethod.NONE else method
    settings = PlannerSettings(
        rope_method=scaled,
        max_rope_factor=factor,
        kv_type=KVCacheType.F16,
        layout=PromptLayout.QUERY_AWARE,
    )
    # The budget is nominal: the KV type is fixed, and a fixed budget keeps runs comparable.
    plan = plan_context(profile, tokens_needed, 64 * 2**30, Backend.CPU, settings)
    if method is not RopeMethod.NONE:
        return plan
    return replace(
        plan,
        rope_method=RopeMethod.NONE,
        rope_factor=1.0,
        rope_freq_scale=0.0,
        rope_freq_base=None,
        yarn_orig_ctx=0,
        fits=True,
        reason=f"unscaled at n_ctx {plan.n_ctx:,}, past the trained {profile.context_length:,}",
    )


def _llama_rope(load_log: Sequence[str]) -> str:
    """llama.cpp's own report of the RoPE it runs: "freq_base 100000, freq_scale 0.5"."""
    found: dict[str, str] = {}
    for line in load_log:
        for name, value in _LOG_ROPE.findall(line):
            found.setdefault(name, value)
    return ", ".join(f"{name} {value}" for name, value in found.items()) or "not logged"


def _profile(model_path: Path | None) -> ModelProfile:
    from models.catalog import bundled_model_path, load_profile

    path = model_path if model_path is not None else bundled_model_path()
    with tempfile.TemporaryDirectory(prefix="longread-bench-") as cache:
        return load_profile(path, Path(cache))
