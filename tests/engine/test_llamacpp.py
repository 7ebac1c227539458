"""The llama.cpp backend: plan -> Llama arguments, streaming, prefix reuse, saved KV states.

Tests marked `model` load the bundled SmolLM2-135M through llama.cpp. They keep contexts
short (prefill runs at a few hundred tokens/s on two CPU threads) and assert on token
counts, from our statistics and from llama.cpp's own perf counters, never on wall-clock
thresholds. The rest run without a model: argument mapping, log parsing, stop strings,
and the FakeLLM other tests lean on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.kvcache import KVStateStore
from engine.llamacpp import (
    GGML_TYPE_IDS,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_YARN,
    LlamaCppLLM,
    LlamaCppRuntime,
    StopScanner,
    can_serve,
    detect_backend,
    gpu_memory,
    gpu_offload_supported,
    llama_kwargs,
    parse_kv_buffer_bytes,
    recent_log_lines,
)
from engine.llm import (
    LLM,
    CachedPrefix,
    ChatMessage,
    Done,
    FinishReason,
    GenerationStats,
    PrefillProgress,
    Role,
    StreamEvent,
    TextPiece,
    drain,
)
from engine.llm_errors import (
    ContextOverflowError,
    EngineBusyError,
    GenerationError,
    ModelLoadError,
)
from engine.planner import kv_cache_bytes
from engine.types import Backend, ContextPlan, KVCacheType, RopeMethod
from models.catalog import bundled_model_path
from models.types import ModelProfile
from tests.fake_llm import FakeLLM
from tests.model_fixtures import hand_plan, smollm2_profile

REPO_ROOT = Path(__file__).resolve().parents[2]

# -- building profiles and plans for the bundled model -------------------------------------


def bundled_model() -> Path:
    """The bundled GGUF, as the product finds it (a missing package fails, never skips)."""
    return bundled_model_path()


def bundled_profile(path: Path | None = None, **changes: object) -> ModelProfile:
    """SmolLM2-135M-Instruct as its GGUF header describes it (built by hand, not read)."""
    # The sha256 is a stand-in: only the KV state keys read it.
    return smollm2_profile(
        path if path is not None else bundled_model(), sha256="5" * 64, **changes
    )


def make_plan(
    n_ctx: int = 2048,
    kv_type: KVCacheType = KVCacheType.F16,
    flash_attn: bool = False,
    rope_method: RopeMethod = RopeMethod.NONE,
    rope_freq_scale: float = 0.0,
    rope_freq_base: float | None = None,
    yarn_orig_ctx: int = 0,
) -> ContextPlan:
    return hand_plan(
        tokens_needed=n_ctx // 2,
        n_ctx=n_ctx,
        rope_method=rope_method,
        rope_freq_scale=rope_freq_scale,
        rope_freq_base=rope_freq_base,
        yarn_orig_ctx=yarn_orig_ctx,
        kv_type=kv_type,
        flash_attn=flash_attn,
    )


def user(text: str) -> ChatMessage:
    return ChatMessage(Role.USER, text)


def system(text: str) -> ChatMessage:
    return ChatMessage(Role.SYSTEM, text)


# -- documents ----------------------------------------------------------------------------

VILLAGE = [
    "The village of Alder Creek sits in a narrow valley between two wooded ridges. Most of"
    " its houses are built from grey stone taken from the old quarry north of the river.",
    "Every spring the farmers plant barley and potatoes on the terraced fields, and in"
    " autumn the whole village gathers for the harvest market in front of the chapel.",
    "The mill by the bridge has been grinding flour for more than two hundred years. Its"
    " wheel was replaced in 1952 after a flood carried the old one downstream.",
    "The school has three classrooms and a small library. Children from the neighbouring"
    " farms walk along the river path to reach it each morning.",
    "In winter the pass to the east is often closed by snow, and the village depends on"
    " the supplies stored in the cellars of the inn during the summer months.",
    "Visitors come mostly for the walking trails, the trout fishing in the upper lakes,"
    " and the view from the ridge above the quarry at sunset.",
]
SECRET = "The secret code is 73915."


def planted_document() -> str:
    """About 250 tokens with the secret in the middle."""
    return "\n\n".join([*VILLAGE[:3], SECRET, *VILLAGE[3:]])


def long_document(rounds: int = 4) -> str:
    """About 250 tokens per round of village history (1,000 tokens for 4 rounds)."""
    parts = []
    for year in range(rounds):
        for index, paragraph in enumerate(VILLAGE):
            parts.append(f"Chronicle {1900 + 10 * year}, entry {index + 1}. {paragraph}")
    return "\n\n".join(parts)


def document_prefix(document: str) -> list[ChatMessage]:
    return [system("Answer questions using only the document."), user(f"Document:\n{document}")]


# -- no model needed ----------------------------------------------------------------------


def test_importing_the_backend_does_not_load_llama_cpp() -> None:
    code = (
        "import sys, engine.llamacpp, engine.kvcache, engine.llm;"
        " print('llama_cpp' in sys.modules, 'numpy' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_unscaled_plan_passes_context_kv_type_and_flash_attention() -> None:
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), make_plan(), threads=None)
    assert kwargs["model_path"] == "/m.gguf"
    assert kwargs["n_ctx"] == 2048
    assert kwargs["n_gpu_layers"] == 0
    assert kwargs["type_k"] == kwargs["type_v"] == 1
    assert kwargs["flash_attn"] is False
    for absent in ("rope_scaling_type", "rope_freq_scale", "rope_freq_base", "yarn_orig_ctx"):
        assert absent not in kwargs
    assert "n_threads" not in kwargs and "swa_full" not in kwargs


@pytest.mark.parametrize(
    ("kv_type", "ggml_id"), [(KVCacheType.F16, 1), (KVCacheType.Q8_0, 8), (KVCacheType.Q4_0, 2)]
)
def test_kv_type_maps_to_ggml_type_ids(kv_type: KVCacheType, ggml_id: int) -> None:
    plan = make_plan(kv_type=kv_type, flash_attn=True)
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), plan)
    assert kwargs["type_k"] == kwargs["type_v"] == ggml_id
    assert kwargs["flash_attn"] is True


def test_yarn_passes_type_scale_and_original_window() -> None:
    plan = make_plan(16384, rope_method=RopeMethod.YARN, rope_freq_scale=0.5, yarn_orig_ctx=8192)
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), plan)
    assert kwargs["rope_scaling_type"] == ROPE_SCALING_YARN
    assert kwargs["rope_freq_scale"] == 0.5
    assert kwargs["yarn_orig_ctx"] == 8192
    assert "rope_freq_base" not in kwargs


def test_linear_passes_type_and_scale() -> None:
    plan = make_plan(16384, rope_method=RopeMethod.LINEAR, rope_freq_scale=0.5)
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), plan)
    assert kwargs["rope_scaling_type"] == ROPE_SCALING_LINEAR
    assert kwargs["rope_freq_scale"] == 0.5
    assert "yarn_orig_ctx" not in kwargs


def test_ntk_passes_only_the_new_base() -> None:
    plan = make_plan(16384, rope_method=RopeMethod.NTK, rope_freq_base=283_000.0)
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), plan)
    assert kwargs["rope_freq_base"] == 283_000.0
    assert "rope_scaling_type" not in kwargs and "rope_freq_scale" not in kwargs


def test_sliding_window_models_get_a_full_swa_cache_where_supported() -> None:
    profile = bundled_profile(Path("/m.gguf"), sliding_window=1024)
    assert llama_kwargs(profile, make_plan())["swa_full"] is True
    assert llama_kwargs(profile, make_plan(), accepted={"swa_full", "n_ctx"})["swa_full"] is True
    assert "swa_full" not in llama_kwargs(profile, make_plan(), accepted={"n_ctx"})


def test_threads_set_both_generation_and_batch_threads() -> None:
    kwargs = llama_kwargs(bundled_profile(Path("/m.gguf")), make_plan(), threads=3)
    assert kwargs["n_threads"] == kwargs["n_threads_batch"] == 3


def test_our_constants_match_the_installed_llama_cpp() -> None:
    import llama_cpp

    assert llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN == ROPE_SCALING_YARN
    assert llama_cpp.LLAMA_ROPE_SCALING_TYPE_LINEAR == ROPE_SCALING_LINEAR
    assert GGML_TYPE_IDS[KVCacheType.F16] == llama_cpp.GGML_TYPE_F16
    assert GGML_TYPE_IDS[KVCacheType.Q8_0] == llama_cpp.GGML_TYPE_Q8_0
    assert GGML_TYPE_IDS[KVCacheType.Q4_0] == llama_cpp.GGML_TYPE_Q4_0
    assert "swa_full" in llama_cpp.Llama.__init__.__code__.co_varnames


def test_backend_detection_agrees_with_the_build() -> None:
    backend = detect_backend()
    vram = gpu_memory()
    if not gpu_offload_supported():
        assert backend is Backend.CPU
        assert vram is None
    else:
        assert backend in (Backend.CUDA, Backend.METAL)
        assert vram is None or 0 <= vram[0] <= vram[1]


def test_kv_buffer_lines_are_summed() -> None:
    lines = [
        "llama_context: n_ctx = 2048",
        "llama_kv_cache:        CPU KV buffer size =    45.00 MiB",
        "llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  1/1 seqs)",
        "llama_kv_cache:      CUDA0 KV buffer size =     3.50 MiB",
    ]
    assert parse_kv_buffer_bytes(lines) == round(48.5 * 2**20)
    assert parse_kv_buffer_bytes(["nothing here"]) is None


def test_stop_scanner_holds_back_a_possible_stop_and_cuts_at_one() -> None:
    scanner = StopScanner(["\nUser:"])
    assert scanner.feed("Hello") == ("Hello", False)
    assert scanner.feed(" there\nUs") == (" there", False)
    assert scanner.feed("er: next") == ("", True)
    assert scanner.matched

    scanner = StopScanner(["END"])
    assert scanner.feed("the EN") == ("the ", False)
    assert scanner.feed("d") == ("ENd", False)
    assert scanner.feed("E") == ("", False)
    assert scanner.flush() == "E"

    assert StopScanner([]).feed("anything") == ("anything", False)


def test_stats_speed_counts_only_the_decode_time() -> None:
    stats = GenerationStats(
        prompt_tokens=100,
        reused_tokens=90,
        evaluated_tokens=10,
        backend_evaluated_tokens=10,
        state_loaded=False,
        state_saved=False,
        prefill_seconds=1.0,
        first_token_seconds=1.1,
        generated_tokens=20,
        total_seconds=3.0,
    )
    assert stats.tokens_per_second == pytest.approx(10.0)
    assert replace(stats, generated_tokens=0).tokens_per_second == 0.0


def test_cached_prefix_needs_at_least_one_message() -> None:
    with pytest.raises(ValueError):
        CachedPrefix("doc", 0)


def test_drain_returns_done_and_insists_on_one() -> None:
    assert drain(iter([TextPiece("a"), Done("a", FinishReason.STOP, _stats())])).text == "a"
    with pytest.raises(GenerationError):
        drain(iter([TextPiece("a")]))


def _stats() -> GenerationStats:
    return GenerationStats(1, 0, 1, None, False, False, 0.0, None, 0, 0.0)


# -- the fake other tests use --------------------------------------------------------------


def test_fake_llm_follows_the_protocol_and_streams_its_script() -> None:
    fake = FakeLLM(answers=["first answer here", "second"])
    assert isinstance(fake, LLM)
    events = list(fake.stream_chat([user("hello there")], max_tokens=10))
    assert events[0] == PrefillProgress(4, 4)  # "<|user|> hello there <|assistant|>"
    assert [e.text for e in events if isinstance(e, TextPiece)] == ["first", " answer", " here"]
    done = events[-1]
    assert isinstance(done, Done) and done.text == "first answer here"
    assert done.reason is FinishReason.STOP and done.stats.generated_tokens == 3
    assert drain(fake.stream_chat([user("again")])).text == "second"
    assert drain(fake.stream_chat([user("and again")])).text == "second"
    assert fake.calls[0].messages == (user("hello there"),)
    assert fake.count_tokens("three little words") == 3


def test_fake_llm_limits_stops_cancels_and_overflows() -> None:
    fake = FakeLLM(answers=["one two three four five"], context_size=20)
    assert drain(fake.stream_chat([user("q")], max_tokens=2)).reason is FinishReason.LENGTH
    assert drain(fake.stream_chat([user("q")], stop=[" three"])).text == "one two"
    cancel = threading.Event()
    stream = fake.stream_chat([user("q")], cancel=cancel)
    assert next(stream) == TextPiece("one")  # the prompt was already held: no prefill
    cancel.set()
    done = drain(stream)
    assert done.reason is FinishReason.CANCELLED and done.text == "one"
    with pytest.raises(ContextOverflowError):
        fake.stream_chat([user("word " * 30)])


def test_fake_llm_imitates_prefix_reuse_and_saved_states() -> None:
    fake = FakeLLM()
    prefix = [system("sys"), user("a long document text")]
    first = drain(fake.stream_chat([*prefix, user("alpha")], prefix=CachedPrefix("d", 2))).stats
    assert first.reused_tokens == 0 and first.state_saved
    second = drain(
        fake.stream_chat([*prefix, user("beta gamma")], prefix=CachedPrefix("d", 2))
    ).stats
    assert second.evaluated_tokens == 3  # "beta", "gamma" and the reply cue
    fake.stream_chat([user("something else")])  # never started: nothing changes
    drain(fake.stream_chat([user("something else")]))
    third = drain(
        fake.stream_chat([*prefix, user("beta gamma")], prefix=CachedPrefix("d", 2))
    ).stats
    held = fake.count_chat_tokens(prefix, add_generation_prompt=False)
    assert third.state_loaded and third.evaluated_tokens == third.prompt_tokens - held == 4


def test_fake_llm_reports_prefill_progress_and_cancels_within_it() -> None:
    fake = FakeLLM()
    prefix = [system("sys"), user("word " * 150)]
    events = list(fake.stream_chat([*prefix, user("q")], prefix=CachedPrefix("d", 2)))
    progress = [e for e in events if isinstance(e, PrefillProgress)]
    total = fake.count_chat_tokens([*prefix, user("q")])
    assert [p.done for p in progress] == [64, 128, total] and {p.total for p in progress} == {total}

    cancel = threading.Event()
    fresh = FakeLLM()
    stream = fresh.stream_chat([*prefix, user("q")], prefix=CachedPrefix("d", 2), cancel=cancel)
    assert next(stream) == PrefillProgress(64, total)
    cancel.set()
    done = drain(stream)
    assert done.reason is FinishReason.CANCELLED and done.text == ""
    assert done.stats.evaluated_tokens == 64 and not done.stats.state_saved
    assert fresh.saved_states == set()  # a document cut short is not saved


def test_fake_llm_scripted_failure_busy_and_close() -> None:
    fake = FakeLLM(fail_with=GenerationError("boom"))
    with pytest.raises(GenerationError, match="boom"):
        drain(fake.stream_chat([user("q")]))
    first = fake.stream_chat([user("q")])
    next(first)  # holds the fake from its first prefill event on
    with pytest.raises(EngineBusyError):
        next(fake.stream_chat([user("q")]))
    first.close()
    fake.close()
    with pytest.raises(GenerationError):
        fake.stream_chat([user("q")])


# -- the real model -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> KVStateStore:
    return KVStateStore(tmp_path / "kvcache")


@pytest.fixture
def llm(store: KVStateStore) -> Iterator[LlamaCppLLM]:
    model = LlamaCppLLM(bundled_profile(), make_plan(2048), kv_store=store)
    yield model
    model.close()


def collect(stream: Iterator[StreamEvent]) -> tuple[list[str], Done]:
    """The text pieces and the Done of a stream, checking the order: progress, text, Done."""
    events = list(stream)
    assert isinstance(events[-1], Done)
    progress = [e for e in events if isinstance(e, PrefillProgress)]
    pieces = [e.text for e in events if isinstance(e, TextPiece)]
    assert events[: len(progress)] == progress  # every progress event before any text
    assert len(progress) + len(pieces) == len(events) - 1
    return pieces, events[-1]


@pytest.mark.model
def test_streams_an_answer_to_a_tiny_chat(llm: LlamaCppLLM) -> None:
    messages = [user("Say hello in one short sentence.")]
    pieces, done = collect(llm.stream_chat(messages, max_tokens=16))
    assert pieces and done.text == "".join(pieces) and done.text.strip()
    assert done.reason in (FinishReason.STOP, FinishReason.LENGTH)
    stats = done.stats
    assert stats.prompt_tokens == llm.count_chat_tokens(messages)
    assert stats.evaluated_tokens == stats.prompt_tokens  # a cold cache
    assert stats.backend_evaluated_tokens == stats.evaluated_tokens
    assert 0 < stats.generated_tokens <= 16
    assert stats.first_token_seconds is not None
    assert stats.prefill_seconds <= stats.first_token_seconds <= stats.total_seconds
    assert "<|im_start|>assistant\n" in llm.render_chat(messages)  # the GGUF's ChatML template
    assert isinstance(llm, LLM)


@pytest.mark.model
def test_answers_a_planted_fact_with_the_question_around_the_document(llm: LlamaCppLLM) -> None:
    question = "What is the secret code?"
    document = planted_document()
    assert 200 <= llm.count_tokens(document) <= 400
    messages = [
        system("Answer the question using the document."),
        user(f"Question: {question}\n\nDocument:\n{document}\n\nQuestion: {question}"),
    ]
    done = drain(llm.stream_chat(messages, max_tokens=24))
    assert "73915" in done.text


@pytest.mark.model
def test_a_second_question_on_the_same_document_evaluates_only_the_question(
    llm: LlamaCppLLM,
) -> None:
    prefix = document_prefix(long_document())
    prefix_tokens = llm.count_chat_tokens(prefix, add_generation_prompt=False)
    assert 900 <= prefix_tokens <= 1400
    hint = CachedPrefix("village", len(prefix))

    cold = drain(llm.stream_chat([*prefix, user("When was the wheel replaced?")], prefix=hint))
    assert cold.stats.evaluated_tokens == cold.stats.prompt_tokens
    assert cold.stats.state_saved

    follow = drain(llm.stream_chat([*prefix, user("What do farmers plant?")], prefix=hint))
    stats = follow.stats
    question_tokens = stats.prompt_tokens - prefix_tokens
    assert 0 < question_tokens < 30
    # The document is reused, and so is the "<|im_start|>user\n" both questions begin with.
    assert stats.reused_tokens >= prefix_tokens
    assert 0 < stats.evaluated_tokens <= question_tokens
    assert stats.evaluated_tokens == stats.prompt_tokens - stats.reused_tokens
    assert stats.backend_evaluated_tokens == stats.evaluated_tokens  # llama.cpp's own count
    assert not stats.state_loaded and not stats.state_saved
    print(
        f"\n[timing] {prefix_tokens}-token document: cold prefill"
        f" {cold.stats.prefill_seconds:.2f} s, follow-up prefill {stats.prefill_seconds:.3f} s"
        f" (first token {cold.stats.first_token_seconds:.2f} s vs"
        f" {stats.first_token_seconds:.3f} s)"
    )


@pytest.mark.model
def test_same_question_again_evaluates_one_token_for_fresh_logits(llm: LlamaCppLLM) -> None:
    messages = [user("Name a colour.")]
    drain(llm.stream_chat(messages, max_tokens=4))
    again = drain(llm.stream_chat(messages, max_tokens=4)).stats
    assert again.evaluated_tokens == again.backend_evaluated_tokens == 1


SAVE_IN_ANOTHER_PROCESS = """
import json, sys
from pathlib import Path
from engine.kvcache import KVStateStore
from engine.llamacpp import LlamaCppLLM
from tests.engine.test_llamacpp import bundled_profile, document_prefix, long_document, make_plan

store = KVStateStore(Path(sys.argv[1]))
with LlamaCppLLM(bundled_profile(), make_plan(2048), kv_store=store) as llm:
    stats = llm.prefill(document_prefix(long_document(2)), document_id="village-2")
print(json.dumps({"evaluated": stats.evaluated_tokens, "saved": stats.state_saved,
                  "seconds": stats.prefill_seconds}))
"""


@pytest.mark.model
def test_a_state_saved_by_another_process_is_loaded_and_only_the_question_evaluated(
    store: KVStateStore,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SAVE_IN_ANOTHER_PROCESS, str(store.root)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # llama.cpp's log went nowhere near the terminal
    saved = json.loads(result.stdout)
    assert saved["saved"] and saved["evaluated"] > 400
    assert [entry.document_id for entry in store.entries()] == ["village-2"]

    prefix = document_prefix(long_document(2))
    with LlamaCppLLM(bundled_profile(), make_plan(2048), kv_store=store) as llm:
        messages = [*prefix, user("What does the mill grind?")]
        done = drain(llm.stream_chat(messages, prefix=CachedPrefix("village-2", len(prefix))))
        prefix_tokens = llm.count_chat_tokens(prefix, add_generation_prompt=False)
    stats = done.stats
    assert stats.state_loaded
    assert stats.prompt_tokens - stats.evaluated_tokens == prefix_tokens == saved["evaluated"]
    assert stats.backend_evaluated_tokens == stats.evaluated_tokens < 30
    assert done.text.strip()
    print(
        f"\n[timing] {prefix_tokens}-token prefix: prefilled in the other process in"
        f" {saved['seconds']:.2f} s; loaded + question here in {stats.prefill_seconds:.3f} s"
    )


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_with_a_valid_manifest(store: KVStateStore) -> None:
    def write_garbage(path: Path) -> None:
        path.write_bytes(b"not a llama.cpp state" * 1000)

    (entry,) = store.entries()
    assert store.save(entry.key, write_garbage) is not None


@pytest.mark.model
@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_state_file_is_detected_deleted_and_rebuilt(
    store: KVStateStore, damage: str
) -> None:
    prefix = document_prefix(planted_document())
    with LlamaCppLLM(bundled_profile(), make_plan(1024), kv_store=store) as llm:
        first = llm.prefill(prefix, document_id="planted")
    assert first.state_saved
    (entry,) = store.entries()
    if damage == "flip":
        _flip_a_byte(entry.payload_path)
    elif damage == "truncate":
        _truncate(entry.payload_path)
    else:
        _garbage_with_a_valid_manifest(store)

    with LlamaCppLLM(bundled_profile(), make_plan(1024), kv_store=store) as llm:
        messages = [*prefix, user("What is the secret code?")]
        done = drain(llm.stream_chat(messages, prefix=CachedPrefix("planted", len(prefix))))
    stats = done.stats
    assert not stats.state_loaded
    assert stats.state_saved  # rebuilt
    assert stats.evaluated_tokens == stats.prompt_tokens
    (rebuilt,) = store.entries()
    assert store.lookup(rebuilt.key) is not None


@pytest.mark.model
def test_a_tiny_cap_keeps_only_the_most_recent_document(tmp_path: Path) -> None:
    with LlamaCppLLM(bundled_profile(), make_plan(1024)) as llm:
        first_prefix = document_prefix(VILLAGE[0])
        second_prefix = document_prefix(VILLAGE[1])
        llm.kv_store = KVStateStore(tmp_path / "probe")
        llm.prefill(first_prefix, document_id="probe")
        (probe,) = llm.kv_store.entries()
        # Room for one state of this size, not two.
        cap = int(probe.payload_bytes * 1.6)
        llm.kv_store = KVStateStore(tmp_path / "kv", max_bytes=cap)
        assert llm.prefill(first_prefix, document_id="one").state_saved
        assert llm.prefill(second_prefix, document_id="two").state_saved
    documents = [entry.document_id for entry in llm.kv_store.entries()]
    assert documents == ["two"]
    assert llm.kv_store.total_bytes() <= cap


@pytest.mark.model
def test_cancelling_stops_between_tokens_and_frees_the_model(llm: LlamaCppLLM) -> None:
    cancel = threading.Event()
    stream = llm.stream_chat(
        [user("Count from one to one hundred in words.")], max_tokens=200, cancel=cancel
    )
    pieces = 0
    done: Done | None = None
    for event in stream:
        if isinstance(event, TextPiece):
            pieces += 1
            cancel.set()  # the stream must notice before decoding another token
        elif isinstance(event, Done):
            done = event
    assert done is not None and done.reason is FinishReason.CANCELLED
    assert pieces == 1 and done.stats.generated_tokens <= 2

    already = threading.Event()
    already.set()
    cancelled = drain(llm.stream_chat([user("Hello")], cancel=already))
    assert cancelled.reason is FinishReason.CANCELLED and cancelled.stats.generated_tokens == 0

    assert drain(llm.stream_chat([user("Hello")], max_tokens=4)).stats.generated_tokens > 0


@pytest.mark.model
def test_cancelling_from_another_thread(llm: LlamaCppLLM) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        done = drain(
            llm.stream_chat(
                [user("Write a long story about a dragon.")], max_tokens=1500, cancel=cancel
            )
        )
    finally:
        timer.cancel()
    assert done.reason is FinishReason.CANCELLED
    assert done.stats.generated_tokens < 1500


@pytest.mark.model
def test_one_thread_cannot_open_a_second_stream_while_one_is_unfinished(llm: LlamaCppLLM) -> None:
    first = llm.stream_chat([user("Say something.")], max_tokens=8)
    next(first)
    with pytest.raises(EngineBusyError):
        next(llm.stream_chat([user("And something else.")], max_tokens=8))
    first.close()
    assert drain(llm.stream_chat([user("Now again.")], max_tokens=4)).text is not None


@pytest.mark.model
def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers(store: KVStateStore) -> None:
    with LlamaCppLLM(bundled_profile(), make_plan(512), kv_store=store) as llm:
        long_text = long_document(1) * 2
        with pytest.raises(ContextOverflowError) as caught:
            llm.stream_chat([user(long_text)])  # raised at the call, before any event
        error = caught.value
        assert error.needed > 512 and error.available == 512
        assert f"{error.needed:,} tokens" in str(error) and "512" in str(error)
        with pytest.raises(ContextOverflowError):
            llm.prefill([user(long_text)], document_id="too-long")
    assert store.entries() == []


@pytest.mark.model
def test_a_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelLoadError) as caught:
        LlamaCppLLM(bundled_profile(missing), make_plan())
    assert str(missing) in str(caught.value) and caught.value.path == missing


@pytest.mark.model
@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_a_corrupt_model_file_is_named(
    tmp_path: Path, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / f"{kind}.gguf"
    if kind == "garbage":
        broken.write_bytes(b"this is not a gguf file" * 100)
    else:
        broken.write_bytes(bundled_model().read_bytes()[: 3 * 2**20])
    with pytest.raises(ModelLoadError) as caught:
        LlamaCppLLM(bundled_profile(broken), make_plan())
    assert str(broken) in str(caught.value)
    assert "cannot load model" in str(caught.value)
    assert capfd.readouterr() == ("", "")  # llama.cpp's complaints stayed off the terminal


@pytest.mark.model
def test_a_plan_llama_cpp_cannot_build_says_why() -> None:
    plan = make_plan(1024, KVCacheType.Q8_0, flash_attn=False)  # quantized V needs flash-attn
    runtime = LlamaCppRuntime()
    with pytest.raises(ModelLoadError) as caught:
        runtime.load(bundled_profile(), plan, threads=None, kv_store=None)
    message = str(caught.value)
    assert "could not build a context" in message and "flash_attn" in message
    assert runtime.resident is None and runtime.loads == 0


@pytest.mark.model
def test_closing_from_another_thread_stops_the_stream_first(llm: LlamaCppLLM) -> None:
    results: list[Done | Exception] = []
    started = threading.Event()

    def answer() -> None:
        try:
            stream = llm.stream_chat([user("Write a long story about a dragon.")], max_tokens=1500)
            for event in stream:
                started.set()
                if isinstance(event, Done):
                    results.append(event)
        except Exception as error:  # noqa: BLE001 - handed to the test thread
            results.append(error)

    worker = threading.Thread(target=answer)
    worker.start()
    assert started.wait(60)
    llm.close()  # waits for the stream to notice between tokens, then frees the model
    worker.join(60)
    (result,) = results
    assert isinstance(result, Done) and result.reason is FinishReason.CANCELLED
    with pytest.raises(GenerationError, match="closed"):
        llm.stream_chat([user("Hello")])


@pytest.mark.model
def test_closing_under_this_threads_own_stream_fails_that_stream_cleanly(
    llm: LlamaCppLLM,
) -> None:
    stream = llm.stream_chat([user("Count to twenty.")], max_tokens=40)
    next(stream)
    llm.close()
    with pytest.raises(GenerationError, match="closed"):
        list(stream)


@pytest.mark.model
def test_llama_cpp_logs_never_reach_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    with LlamaCppLLM(bundled_profile(), make_plan(1024)) as llm:
        drain(llm.stream_chat([user("Hi")], max_tokens=4))
    assert capfd.readouterr() == ("", "")
    assert any("KV buffer size" in line for line in llm.load_log)  # it went to us instead
    assert recent_log_lines()


@pytest.mark.model
@pytest.mark.parametrize(
    ("kv_type", "flash_attn"),
    [(KVCacheType.F16, False), (KVCacheType.Q8_0, True), (KVCacheType.Q4_0, True)],
)
def test_kv_allocation_matches_the_planners_estimate(
    kv_type: KVCacheType, flash_attn: bool
) -> None:
    profile = bundled_profile()
    n_ctx = 2048
    estimate = kv_cache_bytes(profile, n_ctx, kv_type)  # what the planner plans with
    with LlamaCppLLM(profile, make_plan(n_ctx, kv_type, flash_attn)) as llm:
        allocated = llm.allocated_kv_bytes
        assert drain(llm.stream_chat([user("Hi")], max_tokens=2)).stats.generated_tokens > 0
    assert allocated is not None
    print(
        f"\n[kv] {kv_type}: estimate {estimate / 2**20:.2f} MiB, allocated {allocated / 2**20:.2f}"
    )
    assert abs(allocated - estimate) <= 0.10 * estimate


@pytest.mark.model
def test_a_yarn_plan_loads_applies_the_scale_and_generates() -> None:
    plan = make_plan(16384, rope_method=RopeMethod.YARN, rope_freq_scale=0.5, yarn_orig_ctx=8192)
    with LlamaCppLLM(bundled_profile(), plan) as llm:
        assert llm.context_size == 16384
        done = drain(llm.stream_chat([user("Say hello.")], max_tokens=8))
    assert done.stats.generated_tokens > 0
    context_lines = [line for line in llm.load_log if line.startswith("llama_context:")]
    assert any(line.split("=")[-1].strip() == "16384" for line in context_lines if "n_ctx " in line)
    assert any(
        "freq_scale" in line and line.split("=")[-1].strip() == "0.5" for line in context_lines
    )


# -- the runtime: one resident model, reused when it fits -------------------------------


def test_a_resident_model_serves_plans_it_computes_the_same_way() -> None:
    profile = bundled_profile(Path("/m.gguf"))
    big = make_plan(4096)
    assert can_serve((profile, big, 2), (profile, make_plan(2048), 2))  # a smaller window
    assert not can_serve((profile, make_plan(2048), 2), (profile, big, 2))  # a larger one
    assert not can_serve((profile, big, 2), (profile, big, 3))  # other threads
    other = bundled_profile(Path("/other.gguf"))
    assert not can_serve((profile, big, None), (other, big, None))
    for different in (
        make_plan(4096, KVCacheType.Q8_0, flash_attn=True),
        make_plan(4096, flash_attn=True),
        make_plan(4096, rope_method=RopeMethod.LINEAR, rope_freq_scale=0.5),
        make_plan(4096, rope_method=RopeMethod.NTK, rope_freq_base=283_000.0),
        make_plan(4096, rope_method=RopeMethod.YARN, rope_freq_scale=0.5, yarn_orig_ctx=8192),
        replace(big, gpu_layers=4),
    ):
        assert not can_serve((profile, big, None), (profile, different, None))
    assert can_serve((profile, big, None), (profile, replace(big, tokens_needed=7), None))


@pytest.mark.model
def test_the_runtime_reuses_a_compatible_resident_model_and_replaces_another() -> None:
    profile = bundled_profile()
    runtime = LlamaCppRuntime()
    try:
        first = runtime.load(profile, make_plan(1024), threads=None, kv_store=None)
        assert runtime.resident is first and runtime.loads == 1
        # A smaller window, and fields llama.cpp never sees: the resident model serves them.
        smaller = replace(make_plan(512), tokens_needed=7, reason="a retrieval question")
        same = runtime.load(profile, smaller, threads=None, kv_store=None)
        assert same is first and runtime.loads == 1 and runtime.last_load_reused
        assert same.context_size == 1024  # the resident's window, not the plan's
        assert runtime.count_tokens(profile, "hello world") == 2  # counted by the resident

        quantized = make_plan(1024, KVCacheType.Q8_0, flash_attn=True)
        second = runtime.load(profile, quantized, threads=None, kv_store=None)
        assert second is not first and runtime.loads == 2 and not runtime.last_load_reused
        assert first.closed and runtime.resident is second
        with pytest.raises(GenerationError, match="closed"):
            first.count_tokens("hello")

        linear = make_plan(1024, KVCacheType.Q8_0, True, RopeMethod.LINEAR, rope_freq_scale=0.5)
        third = runtime.load(profile, linear, threads=None, kv_store=None)
        assert third is not second and second.closed and runtime.loads == 3
        assert drain(third.stream_chat([user("Hi")], max_tokens=2)).stats.generated_tokens > 0
    finally:
        runtime.close()


@pytest.mark.model
def test_closing_the_runtime_frees_the_resident_model_and_the_vocabulary() -> None:
    profile = bundled_profile()
    runtime = LlamaCppRuntime()
    assert runtime.count_tokens(profile, "hello world") == 2  # a vocab-only load, kept
    llm = runtime.load(profile, make_plan(512), threads=None, kv_store=None)
    runtime.close()
    assert runtime.resident is None and llm.closed
    with pytest.raises(GenerationError, match="closed"):
        llm.stream_chat([user("Hello")])
    runtime.close()  # twice is fine
    # Still usable: counting loads the vocabulary again, loading loads a model again.
    assert runtime.count_tokens(profile, "hello world") == 2
    again = runtime.load(profile, make_plan(512), threads=None, kv_store=None)
    assert again is not llm and runtime.loads == 2
    runtime.close()
    assert again.closed


# -- prefill progress and cancelling a prefill ---------------------------------------------


@pytest.mark.model
def test_prefill_progress_rises_to_the_prompt_and_a_cached_prompt_reports_once(
    llm: LlamaCppLLM,
) -> None:
    messages = [*document_prefix(long_document(3)), user("What does the mill grind?")]
    events = list(llm.stream_chat(messages, max_tokens=4))
    progress = [e for e in events if isinstance(e, PrefillProgress)]
    done = events[-1]
    assert isinstance(done, Done)
    total = done.stats.prompt_tokens
    assert total > 600  # more than one 512-token batch
    assert len(progress) >= 2
    assert all(p.total == total for p in progress)
    dones = [p.done for p in progress]
    assert dones == sorted(dones) and len(set(dones)) == len(dones)
    assert dones[-1] == total
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextPiece))
    assert first_text > events.index(progress[-1])  # all progress before the first text

    # The same prompt again: all of it is in the cache; only its last token is evaluated
    # (for fresh logits), so the one event says the prompt is complete.
    again = [e for e in llm.stream_chat(messages, max_tokens=2) if isinstance(e, PrefillProgress)]
    assert again == [PrefillProgress(total, total)]


@pytest.mark.model
def test_cancel_stops_a_long_prefill_mid_batch_and_saves_nothing(store: KVStateStore) -> None:
    prefix = document_prefix(long_document(12))
    messages = [*prefix, user("When was the wheel of the mill replaced?")]
    hint = CachedPrefix("village-long", len(prefix))
    with LlamaCppLLM(bundled_profile(), make_plan(4096), kv_store=store) as llm:
        total = llm.count_chat_tokens(messages)
        assert 2500 <= total <= 3500
        cancel = threading.Event()
        set_at: list[float] = []

        def cancel_now() -> None:
            set_at.append(time.perf_counter())
            cancel.set()

        timer = threading.Timer(0.5, cancel_now)
        timer.start()
        try:
            events = list(llm.stream_chat(messages, max_tokens=8, cancel=cancel, prefix=hint))
        finally:
            timer.cancel()
        ended = time.perf_counter()
        done = events[-1]
        assert isinstance(done, Done)
        if done.stats.evaluated_tokens == total:
            pytest.skip("this machine prefilled the whole prompt before the cancel came")
        assert set_at, "the stream ended before the cancel was set"
        latency = ended - set_at[0]
        print(f"\n[cancel] {total}-token prefill: stream ended {latency:.3f} s after the cancel")
        assert done.reason is FinishReason.CANCELLED and done.text == ""
        assert latency < 2.0
        progress = [e for e in events if isinstance(e, PrefillProgress)]
        assert all(p.done <= p.total == total for p in progress)
        assert not any(isinstance(e, TextPiece) for e in events)
        assert not done.stats.state_saved
        assert store.entries() == []  # nothing saved for the cut document
        assert done.stats.evaluated_tokens % 512 == 0  # only whole batches count
        assert _cache_agrees_with_llama(llm)

        # Again, cancelled half a second after the first batch is in: the cache keeps the
        # finished batches (and Llama's record agrees), the document is still not saved.
        cancel = threading.Event()
        timer = threading.Timer(0.5, cancel.set)
        events = []
        for event in llm.stream_chat(messages, max_tokens=8, cancel=cancel, prefix=hint):
            events.append(event)
            if isinstance(event, PrefillProgress) and timer.ident is None:  # not started yet
                timer.start()
        timer.cancel()
        done = events[-1]
        assert isinstance(done, Done)
        if done.stats.evaluated_tokens < total:
            assert done.reason is FinishReason.CANCELLED
            kept = [e.done for e in events if isinstance(e, PrefillProgress)]
            assert kept and kept[-1] == done.stats.evaluated_tokens == llm._llama.n_tokens
            print(f"[cancel] second try: {kept[-1]} of {total} tokens kept in the cache")
            assert store.entries() == []
            assert _cache_agrees_with_llama(llm)

        # The model is fine afterwards.
        question = "What is the secret code?"
        planted = [
            system("Answer the question using the document."),
            user(
                f"Question: {question}\n\nDocument:\n{planted_document()}\n\nQuestion: {question}"
            ),
        ]
        answer = drain(llm.stream_chat(planted, max_tokens=24))
        assert answer.reason is not FinishReason.CANCELLED and "73915" in answer.text
        assert answer.stats.backend_evaluated_tokens == answer.stats.evaluated_tokens


@pytest.mark.model
def test_the_python_abort_callback_also_stops_a_prefill(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.llamacpp import abort

    monkeypatch.setattr(abort, "_c_flag_reader", lambda llama_cpp: None)  # no libc strlen
    with LlamaCppLLM(bundled_profile(), make_plan(2048)) as llm:
        cancel = threading.Event()
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        try:
            done = drain(llm.stream_chat([user(long_document(4))], max_tokens=4, cancel=cancel))
        finally:
            timer.cancel()
        assert done.reason is FinishReason.CANCELLED
        assert done.stats.evaluated_tokens < done.stats.prompt_tokens
        assert _cache_agrees_with_llama(llm)
        assert drain(llm.stream_chat([user("Hi")], max_tokens=2)).stats.generated_tokens > 0


def _cache_agrees_with_llama(llm: LlamaCppLLM) -> bool:
    """Whether llama.cpp's KV cache holds exactly the tokens Llama's record says it does."""
    import llama_cpp

    llama = llm._llama
    memory = llama_cpp.llama_get_memory(llama.ctx)
    return bool(llama_cpp.llama_memory_seq_pos_max(memory, 0) + 1 == llama.n_tokens)


def test_vocabularies_load_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads loading a vocabulary at once crashed llama.cpp: loads take turns."""
    import types

    from engine.llamacpp import vocab

    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    class SlowLlama:
        def __init__(self, **kwargs: object) -> None:
            nonlocal inside, most_inside
            with guard:
                inside += 1
                most_inside = max(most_inside, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    fake_binding = types.SimpleNamespace(Llama=SlowLlama)
    monkeypatch.setattr(vocab, "load_llama_cpp", lambda: fake_binding)
    workers = [threading.Thread(target=vocab.load_vocabulary, args=(model_file,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most_inside == 1
