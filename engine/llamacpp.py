"""The `LLM` backend that runs a GGUF model in-process with llama.cpp (llama-cpp-python).

This is the only module that imports `llama_cpp`, and only inside functions, so importing
it (and `longread --help`) costs nothing. It does:

- build the `Llama` from a `ModelProfile` and the planner's `ContextPlan` (n_ctx, RoPE
  scaling, KV cache type, flash attention, GPU layers; `swa_full` for sliding-window
  models), one model resident at a time;
- route llama.cpp's log away from the terminal into the `logging` module and a short
  in-memory tail, which also yields what llama.cpp allocated for the KV cache (and never
  let llama-cpp-python redirect the process's stdout/stderr, which a TUI draws on);
- format chats with the GGUF's own chat template, so the prompt tokens are known exactly;
- stream answers token by token, serialized by a lock, cancellable between tokens and
  between prefill batches, never truncating a prompt that does not fit;
- reuse the longest common token prefix already in the KV cache, explicitly, and report how
  many prompt tokens were reused and evaluated, checked against llama.cpp's own counters;
- keep a document prefix's KV state on disk through `engine.kvcache.KVStateStore`.

What it does not do: choose the plan (engine/planner.py), write prompts (engine/prompts.py),
or run several sequences at once. It drives `Llama.eval` and `Llama.generate` itself rather
than `create_chat_completion`, because that API hides which tokens it evaluated.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import ctypes
import inspect
import io
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.kvcache import KVStateStore, StateKey
from engine.llm import (
    CachedPrefix,
    ChatMessage,
    Done,
    FinishReason,
    GenerationStats,
    StreamEvent,
    TextPiece,
)
from engine.llm_errors import (
    ContextOverflowError,
    EngineBusyError,
    GenerationError,
    ModelLoadError,
)
from engine.types import Backend, ContextPlan, KVCacheType, RopeMethod
from models.types import ModelProfile

log = logging.getLogger(__name__)

GGML_TYPE_IDS: dict[KVCacheType, int] = {
    KVCacheType.F16: 1,  # GGML_TYPE_F16
    KVCacheType.Q8_0: 8,  # GGML_TYPE_Q8_0
    KVCacheType.Q4_0: 2,  # GGML_TYPE_Q4_0
}
"""KV cache element types as llama.cpp's `type_k` / `type_v` take them."""

ROPE_SCALING_LINEAR = 1  # LLAMA_ROPE_SCALING_TYPE_LINEAR
ROPE_SCALING_YARN = 2  # LLAMA_ROPE_SCALING_TYPE_YARN

SEED = 1234
"""A fixed sampling seed: llama-cpp-python reads 0 as "random", and answers at temperature
> 0 should still be reproducible."""

FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""For a GGUF without a chat template (a base model): plain "Role: text" turns."""
FALLBACK_STOPS = ("\nUser:", "\nSystem:")

REPEAT_PENALTY = 1.1
"""llama.cpp's long-standing default. Small models decoding greedily fall into loops ("The
code was written on the logbook." until max_tokens); a mild penalty on the last 64 tokens
breaks them without keeping the model from quoting the document."""

_KV_BUFFER_LINE = re.compile(r"KV buffer size\s*=\s*([0-9.]+)\s*MiB")
_TOKEN_CACHE_SIZE = 4


def _llama_cpp() -> Any:
    """The llama_cpp module, imported on first use (it loads a shared library), with our log
    callback in place before llama.cpp can say anything."""
    import llama_cpp  # the one import of llama_cpp in longread; deferred on purpose

    _LOG.install(llama_cpp)
    return llama_cpp


# -- backend detection --------------------------------------------------------------------


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU (CUDA, Metal...)."""
    return bool(_llama_cpp().llama_supports_gpu_offload())


def detect_backend() -> Backend:
    """The backend this build of llama.cpp runs on: Metal on macOS, else CUDA, else CPU."""
    if not gpu_offload_supported():
        return Backend.CPU
    return Backend.METAL if sys.platform == "darwin" else Backend.CUDA


GGML_DEVICE_TYPE_GPU = 1
"""GGML_BACKEND_DEVICE_TYPE_GPU: a discrete GPU (CPU is 0; integrated GPUs and accelerators
come after, and their numbering has changed between ggml versions, so only 1 counts)."""


def gpu_memory() -> tuple[int, int] | None:
    """(free, total) bytes of VRAM over the GPUs llama.cpp sees, for `engine.memory`.

    Summed: llama.cpp splits layers across every GPU by default. None when there is no
    GPU, or this build of llama-cpp-python cannot say (the device API is reached through its
    internal `_ggml` module, so any failure there means "unknown", never an error).
    """
    _llama_cpp()
    try:
        from llama_cpp._ggml import libggml  # internal: the one handle on ggml's device API

        count = libggml.ggml_backend_dev_count
        get = libggml.ggml_backend_dev_get
        kind = libggml.ggml_backend_dev_type
        memory = libggml.ggml_backend_dev_memory
    except (ImportError, OSError, AttributeError):
        return None
    count.restype, count.argtypes = ctypes.c_size_t, []
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    kind.restype, kind.argtypes = ctypes.c_int, [ctypes.c_void_p]
    memory.restype = None
    memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    free_total = [0, 0]
    found = False
    for index in range(int(count())):
        device = get(index)
        if not device or kind(device) != GGML_DEVICE_TYPE_GPU:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        memory(device, ctypes.byref(free), ctypes.byref(total))
        free_total[0] += int(free.value)
        free_total[1] += int(total.value)
        found = True
    return (free_total[0], free_total[1]) if found else None


def runtime_version() -> str:
    """The llama-cpp-python version: part of every saved KV state's key."""
    return f"llama-cpp-python {_llama_cpp().__version__}"


# -- llama.cpp's log ----------------------------------------------------------------------


LOG_WARN = 3  # GGML_LOG_LEVEL_WARN
LOG_ERROR = 4  # GGML_LOG_LEVEL_ERROR
LOG_CONT = 5  # GGML_LOG_LEVEL_CONT: the rest of the previous line, at its level


@dataclass(frozen=True)
class LogLine:
    """One line of llama.cpp's log, with ggml's level (1 debug ... 4 error)."""

    level: int
    text: str


class _LlamaLog:
    """llama.cpp's log, kept away from the terminal.

    llama-cpp-python installs a callback that prints to stderr; with a Textual UI on screen
    that paints over it (and its level table predates ggml's current enum, so `verbose=False`
    does not even hold back warnings). Ours forwards each line to `logging` at DEBUG, keeps
    the last lines for diagnostics, and lets a caller capture the lines of one step (model
    creation: that is where the "KV buffer size" line and any load error come from).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._partial = ""
        self._level = 0
        self.recent: deque[LogLine] = deque(maxlen=2000)
        self._captures: list[list[LogLine]] = []
        self._callback: Any = None

    def install(self, llama_cpp: Any) -> None:
        if self._callback is not None:
            return

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def callback(level: int, text: bytes | None, user_data: Any) -> None:
            self._receive(level, text)

        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        # llama.cpp keeps a bare function pointer: the ctypes object must outlive it.
        self._callback = callback

    def _receive(self, level: int, text: bytes | None) -> None:
        # An exception escaping a ctypes callback is printed to stderr: nothing may escape.
        try:
            decoded = (text or b"").decode("utf-8", errors="replace")
            with self.lock:
                if level != LOG_CONT:
                    self._level = level
                self._partial += decoded
                if "\n" not in self._partial:
                    return
                *texts, self._partial = self._partial.split("\n")
                lines = [LogLine(self._level, text) for text in texts]
                self.recent.extend(lines)
                for captured in self._captures:
                    captured.extend(lines)
            for line in lines:
                log.debug("llama.cpp: %s", line.text)
        except Exception:  # noqa: BLE001 - see above; losing a log line is harmless
            return

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[LogLine]]:
        """Collect the lines logged inside the block (from any thread)."""
        lines: list[LogLine] = []
        with self.lock:
            self._captures.append(lines)
        try:
            yield lines
        finally:
            with self.lock:
                self._captures.remove(lines)


_LOG = _LlamaLog()


def recent_log_lines() -> list[str]:
    """The last lines llama.cpp logged in this process (for diagnostics and tests)."""
    with _LOG.lock:
        return [line.text for line in _LOG.recent]


def parse_kv_buffer_bytes(lines: Iterable[str]) -> int | None:
    """What llama.cpp allocated for the KV cache, from its "KV buffer size = X MiB" lines.

    Summed: an SWA model has two caches, a partly offloaded one a buffer per device.
    """
    sizes = [float(match.group(1)) for line in lines if (match := _KV_BUFFER_LINE.search(line))]
    if not sizes:
        return None
    return round(sum(sizes) * 2**20)


def _explain(lines: Sequence[LogLine]) -> str:
    """llama.cpp's own words on what failed: its last errors, else its last warnings."""
    for level in (LOG_ERROR, LOG_WARN):
        found = [line.text.strip() for line in lines if line.level == level and line.text.strip()]
        if found:
            return "; ".join(found[-3:])
    return ""


# -- building the Llama -------------------------------------------------------------------


def llama_kwargs(
    profile: ModelProfile,
    plan: ContextPlan,
    threads: int | None = None,
    accepted: Collection[str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments for `llama_cpp.Llama` that carry out `plan` for `profile`.

    `accepted` is the parameter names the installed Llama takes (None: assume all), so an
    option an older version lacks (`swa_full`) is left out rather than passed blind.
    """
    kwargs: dict[str, Any] = {
        "model_path": str(profile.path),
        "n_ctx": plan.n_ctx,
        "n_gpu_layers": plan.gpu_layers,
        "flash_attn": plan.flash_attn,
        "type_k": GGML_TYPE_IDS[plan.kv_type],
        "type_v": GGML_TYPE_IDS[plan.kv_type],
        "seed": SEED,
        # True only stops llama-cpp-python from redirecting the process's stdout/stderr file
        # descriptors during the load (a TUI drawing from another thread would lose frames);
        # llama.cpp's own log goes to our callback, and its Python prints are captured.
        "verbose": True,
    }
    if threads is not None:
        kwargs["n_threads"] = threads
        kwargs["n_threads_batch"] = threads
    if plan.rope_method is RopeMethod.YARN:
        # The scaling type alone is a no-op for these GGUFs: the scale and the original
        # window must be passed too (DESIGN.md, decision 1).
        kwargs["rope_scaling_type"] = ROPE_SCALING_YARN
        kwargs["rope_freq_scale"] = plan.rope_freq_scale
        kwargs["yarn_orig_ctx"] = plan.yarn_orig_ctx
    elif plan.rope_method is RopeMethod.LINEAR:
        kwargs["rope_scaling_type"] = ROPE_SCALING_LINEAR
        kwargs["rope_freq_scale"] = plan.rope_freq_scale
    elif plan.rope_method is RopeMethod.NTK and plan.rope_freq_base:
        kwargs["rope_freq_base"] = plan.rope_freq_base
    if profile.sliding_window and (accepted is None or "swa_full" in accepted):
        # Without a full-size SWA cache llama.cpp cannot truncate it to a common prefix,
        # and every question would prefill the document again.
        kwargs["swa_full"] = True
    return kwargs


def _accepted_parameters(llama_class: Any) -> frozenset[str]:
    return frozenset(inspect.signature(llama_class.__init__).parameters)


# -- counting tokens before a context exists ----------------------------------------------

_vocab_lock = threading.Lock()
_vocabularies: dict[Path, Any] = {}


def count_tokens_with_vocab(profile: ModelProfile, text: str) -> int:
    """Tokens of `text` in the model's own vocabulary, before any context is built.

    Planning needs the exact count to size the context, so it cannot use the model it is
    about to create: a vocab-only load (no weights, no KV) answers in a fraction of a
    second. The resident model is used when it is the same file.
    """
    current = _resident
    if current is not None and current.model_path == profile.path:
        return current.count_tokens(text)
    with _vocab_lock:
        vocabulary = _vocabularies.get(profile.path)
        if vocabulary is None:
            vocabulary = _load_vocabulary(profile.path)
            _vocabularies.clear()  # one vocabulary kept: they are small, but not free
            _vocabularies[profile.path] = vocabulary
        return len(vocabulary.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _release_at_exit() -> None:
    """Free llama.cpp objects while the interpreter can still run their destructors.

    Left to garbage collection at shutdown, a `Llama` is destroyed after llama_cpp's module
    globals are gone, and its `__del__` prints an ignored TypeError on the way out.
    """
    with _vocab_lock:
        for vocabulary in _vocabularies.values():
            vocabulary.close()
        _vocabularies.clear()
    current = _resident
    if current is not None:
        current.close()


atexit.register(_release_at_exit)


def _load_vocabulary(path: Path) -> Any:
    if not path.is_file():
        raise ModelLoadError(path, f"model file {path} does not exist; check the path")
    llama_cpp = _llama_cpp()
    printed = io.StringIO()
    with _LOG.capture() as lines:
        try:
            # verbose=True for the same reason as in LlamaCppLLM._load: False would point the
            # process's stdout at /dev/null while the file loads.
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                vocabulary = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=True)
        except ValueError as error:
            detail = _explain(lines)
            raise ModelLoadError(
                path,
                f"cannot read the vocabulary of {path}: not a GGUF model llama.cpp can load"
                + (f" [llama.cpp: {detail}]" if detail else ""),
            ) from error
    vocabulary.verbose = False
    return vocabulary


# -- the resident model -------------------------------------------------------------------

_registry_lock = threading.RLock()
_resident: LlamaCppLLM | None = None


def resident() -> LlamaCppLLM | None:
    """The model now loaded, if any."""
    return _resident


def get_llm(
    profile: ModelProfile,
    plan: ContextPlan,
    *,
    threads: int | None = None,
    kv_store: KVStateStore | None = None,
) -> LlamaCppLLM:
    """The resident model if it already runs this profile and plan, else a new one.

    Plans that differ only in fields llama.cpp never sees (tokens needed, estimates,
    layout) share the resident model.
    """
    with _registry_lock:
        current = _resident
        if current is not None and current.runs(profile, plan, threads):
            current.kv_store = kv_store
            return current
        return LlamaCppLLM(profile, plan, threads=threads, kv_store=kv_store)


@dataclass(frozen=True)
class _Prompt:
    tokens: list[int]
    prefix_tokens: list[int] | None
    document_id: str | None


@dataclass(frozen=True)
class _Prepared:
    """How the KV cache came to hold a prompt."""

    evaluated: int
    backend_evaluated: int | None
    loaded: bool
    saved: bool
    cancelled: bool


class LlamaCppLLM:
    """A GGUF model in llama.cpp, carrying out one `ContextPlan`. Implements `engine.llm.LLM`.

    Creating one closes the model that was resident before (one model in memory at a time);
    `get_llm` reuses the resident one when it already fits. Raises ModelLoadError, naming the
    file, when the model cannot be loaded or its context cannot be built.
    """

    def __init__(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None = None,
        kv_store: KVStateStore | None = None,
    ) -> None:
        global _resident
        self.profile = profile
        self.plan = plan
        self.threads = threads
        self.kv_store = kv_store
        self.allocated_kv_bytes: int | None = None
        """Bytes llama.cpp allocated for the KV cache, as its log reported them."""
        self.load_log: tuple[str, ...] = ()
        """What llama.cpp logged while loading this model and building its context."""
        self._llama: Any = None
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._closing = threading.Event()
        self._token_cache: OrderedDict[str, list[int]] = OrderedDict()
        self._token_lock = threading.Lock()  # token counts may come from any thread
        with _registry_lock:
            if _resident is not None:
                _resident.close()
            self._load()
            try:
                self._runtime = runtime_version()
                self._vocab = _llama_cpp().llama_model_get_vocab(self._open_llama().model)
                self._formatters, self._template_stops = self._chat_formatters()
                self._warm_up()
            except BaseException:
                self._free()
                raise
            _resident = self

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.profile.path
        if not path.is_file():
            raise ModelLoadError(
                path, f"model file {path} does not exist; check the path or add the model again"
            )
        llama_cpp = _llama_cpp()
        self._kwargs = llama_kwargs(
            self.profile, self.plan, self.threads, _accepted_parameters(llama_cpp.Llama)
        )
        printed = io.StringIO()
        with _LOG.capture() as lines:
            try:
                # verbose=True (see llama_kwargs) makes llama-cpp-python print its own
                # chatter with print(); it goes to the debug log, not the terminal.
                with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                    llama = llama_cpp.Llama(**self._kwargs)
            except ValueError as error:  # what Llama raises when the model or context fails
                raise ModelLoadError(path, self._load_failure(path, str(error), lines)) from error
            finally:
                log.debug("llama-cpp-python printed while loading: %s", printed.getvalue())
        llama.verbose = False  # silences the prints in generate() and friends from now on
        self._llama = llama
        self.load_log = tuple(line.text for line in lines)
        self.allocated_kv_bytes = parse_kv_buffer_bytes(self.load_log)

    def _load_failure(self, path: Path, error: str, lines: Sequence[LogLine]) -> str:
        detail = _explain(lines)
        if "context" in error:
            hint = (
                "llama.cpp could not build a context for this plan"
                f" (n_ctx {self.plan.n_ctx}, KV {self.plan.kv_type}, flash attention"
                f" {'on' if self.plan.flash_attn else 'off'})"
            )
            if "bad_alloc" in detail or "memory" in detail:
                hint += ": not enough memory; plan a smaller context or a quantized KV cache"
        else:
            hint = "the file is not a GGUF model llama.cpp can load (corrupt, truncated?)"
        return f"cannot load model {path}: {hint}" + (f" [llama.cpp: {detail}]" if detail else "")

    def _chat_formatters(self) -> tuple[dict[bool, Any], tuple[str, ...]]:
        """Jinja formatters from the GGUF's chat template, with and without the reply cue."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # deferred with the rest

        llama = self._llama
        template = llama.metadata.get("tokenizer.chat_template")
        eos = self._token_text(llama.token_eos())
        bos = self._token_text(llama.token_bos())
        if template:
            try:
                formatters = {
                    flag: Jinja2ChatFormatter(
                        template=template, eos_token=eos, bos_token=bos, add_generation_prompt=flag
                    )
                    for flag in (True, False)
                }
                return formatters, ()
            except Exception as error:  # noqa: BLE001 - any Jinja error means "unusable"
                log.warning("chat template of %s is unusable (%s)", self.profile.path, error)
        log.info("%s has no usable chat template; using plain turns", self.profile.path.name)
        formatters = {
            flag: Jinja2ChatFormatter(
                template=FALLBACK_TEMPLATE, eos_token=eos, bos_token=bos, add_generation_prompt=flag
            )
            for flag in (True, False)
        }
        return formatters, FALLBACK_STOPS

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._llama.detokenize([token], special=True)).decode("utf-8", "replace")

    def _warm_up(self) -> None:
        """Decode a 2-token and a 1-token batch, then forget them.

        Pages the weights in (so the first answer's timings are honest) and lifts both of
        llama.cpp's perf counters off zero, which `llama_perf_context` reports as 1: from
        here on their differences are exact.
        """
        llama = self._llama
        token = llama.token_bos() if llama.token_bos() >= 0 else llama.token_eos()
        try:
            self._decode(llama, [token, token])
            self._decode(llama, [token])
        finally:
            self._forget(llama)

    # -- the LLM protocol ------------------------------------------------------------------

    @property
    def context_size(self) -> int:
        return int(self.plan.n_ctx)

    @property
    def model_path(self) -> Path:
        return self.profile.path

    def runs(self, profile: ModelProfile, plan: ContextPlan, threads: int | None) -> bool:
        """Whether this open model already carries out `plan` for `profile`."""
        if self._llama is None:
            return False
        return llama_kwargs(profile, plan, threads) == llama_kwargs(
            self.profile, self.plan, self.threads
        )

    def count_tokens(self, text: str) -> int:
        llama = self._open_llama()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_chat_tokens(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> int:
        text = self.render_chat(messages, add_generation_prompt=add_generation_prompt)
        return len(self._chat_tokens(text))

    def render_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        formatter = self._formatters[add_generation_prompt]
        payload = [{"role": message.role.value, "content": message.content} for message in messages]
        try:
            return str(formatter(messages=payload).prompt)
        except Exception as error:  # Jinja raises many types; all of them mean "cannot"
            raise GenerationError(
                f"the chat template of {self.profile.path.name} cannot format these messages:"
                f" {error}"
            ) from error

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 512,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        prefix: CachedPrefix | None = None,
    ) -> Generator[StreamEvent, None, None]:
        # A plain function returning the generator: an oversized prompt raises here, at the
        # call, not at the first next().
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        prompt = self._prompt(messages, prefix)
        self._check_fits(len(prompt.tokens), "the prompt")
        stops = tuple(s for s in (*stop, *self._template_stops) if s)
        return self._stream(prompt, max_tokens, cancel, stops, temperature)

    def prefill(
        self,
        messages: Sequence[ChatMessage],
        *,
        document_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationStats:
        tokens = self._chat_tokens(self.render_chat(messages, add_generation_prompt=False))
        self._check_fits(len(tokens), "the document prefix")
        started = time.perf_counter()
        with self._exclusive():
            llama = self._open_llama()
            prepared = self._prepare(
                llama, _Prompt(tokens, tokens, document_id), cancel, need_logits=False
            )
        elapsed = time.perf_counter() - started
        return self._stats(len(tokens), prepared, elapsed, None, 0, elapsed)

    def close(self) -> None:
        """Free the model (waiting for a stream in another thread to stop between tokens)."""
        global _resident
        with _registry_lock:
            if _resident is self:
                _resident = None
        if self._llama is None:
            return
        self._closing.set()
        if self._owner == threading.get_ident():
            # This thread's own suspended stream holds the lock: it is not inside llama.cpp,
            # and it checks for a closed model before touching it again.
            self._free()
            return
        with self._lock:
            self._free()

    def _free(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    def __enter__(self) -> LlamaCppLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prompts ---------------------------------------------------------------------------

    def _chat_tokens(self, text: str) -> list[int]:
        """Tokens of rendered chat text: special tokens parsed, no BOS added (the template
        writes its own, as llama-cpp-python's chat handlers assume too)."""
        with self._token_lock:
            cached = self._token_cache.get(text)
            if cached is not None:
                self._token_cache.move_to_end(text)
                return cached
        llama = self._open_llama()
        tokens = [int(t) for t in llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)]
        with self._token_lock:
            self._token_cache[text] = tokens
            while len(self._token_cache) > _TOKEN_CACHE_SIZE:
                self._token_cache.popitem(last=False)
        return tokens

    def _prompt(self, messages: Sequence[ChatMessage], prefix: CachedPrefix | None) -> _Prompt:
        full = self.render_chat(messages)
        if prefix is None:
            return _Prompt(self._chat_tokens(full), None, None)
        if prefix.messages > len(messages):
            raise ValueError(f"prefix of {prefix.messages} messages, but only {len(messages)}")
        head = self.render_chat(messages[: prefix.messages], add_generation_prompt=False)
        if not full.startswith(head):
            # The template rewrites earlier turns once more follow: no stable prefix.
            log.warning("chat template does not keep the document prefix; not caching it")
            return _Prompt(self._chat_tokens(full), None, None)
        # Tokenized apart at the message boundary, so the prefix's tokens are the same with
        # any question after them (at ChatML-style boundaries this is also how the whole
        # text tokenizes: a special token always starts a new piece).
        head_tokens = self._chat_tokens(head)
        tail = full[len(head) :]
        tail_tokens = self._chat_tokens(tail) if tail else []
        return _Prompt(head_tokens + tail_tokens, head_tokens, prefix.document_id)

    def _check_fits(self, needed: int, what: str) -> None:
        available = self.context_size
        if needed > available:
            raise ContextOverflowError(
                needed,
                available,
                f"{what} needs {needed:,} tokens but the context holds {available:,}"
                f" (n_ctx of this plan); plan a larger context for this document, or ask"
                f" with retrieval instead of the whole document",
            )

    # -- generation ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the model for one call. A second stream from the same thread would wait for
        itself forever: that is an error instead."""
        me = threading.get_ident()
        if self._owner == me:
            raise EngineBusyError(
                "an earlier answer from this model is still streaming in this thread;"
                " read it to the end or close it first"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _open_llama(self) -> Any:
        llama = self._llama
        if llama is None:
            raise GenerationError(f"the model {self.profile.path.name} has been closed")
        return llama

    def _stream(
        self,
        prompt: _Prompt,
        max_tokens: int,
        cancel: threading.Event | None,
        stops: tuple[str, ...],
        temperature: float,
    ) -> Generator[StreamEvent, None, None]:
        started = time.perf_counter()
        llama_cpp = _llama_cpp()
        with self._exclusive():
            llama = self._open_llama()
            prepared = self._prepare(llama, prompt, cancel, need_logits=True)
            prefill_seconds = time.perf_counter() - started
            if prepared.cancelled:
                stats = self._stats(
                    len(prompt.tokens), prepared, prefill_seconds, None, 0, prefill_seconds
                )
                done = Done("", FinishReason.CANCELLED, stats)
            else:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                scanner = _StopScanner(stops)
                pieces: list[str] = []
                first_token: float | None = None
                generated = 0
                reason = FinishReason.LENGTH
                tokens = llama.generate(
                    prompt.tokens,
                    temp=temperature,
                    top_k=40,
                    top_p=0.95,
                    repeat_penalty=REPEAT_PENALTY,
                )
                try:
                    while True:
                        try:
                            # Each step decodes the previous token, then samples the next.
                            token = int(next(tokens))
                        except StopIteration:
                            reason = FinishReason.STOP
                            break
                        except RuntimeError as error:
                            self._forget(llama)
                            raise GenerationError(
                                f"llama.cpp failed while answering: {error}"
                            ) from error
                        if first_token is None:
                            first_token = time.perf_counter() - started
                        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                            reason = FinishReason.STOP
                            break
                        generated += 1
                        text, hit = scanner.feed(decoder.decode(llama.detokenize([token])))
                        if text:
                            pieces.append(text)
                            yield TextPiece(text)
                        # Back from the consumer: the model may have been closed meanwhile.
                        if self._llama is None:
                            raise GenerationError("the model was closed while answering")
                        if hit:
                            reason = FinishReason.STOP
                            break
                        if generated >= max_tokens:
                            break
                        if self._stop_requested(cancel):
                            reason = FinishReason.CANCELLED
                            break
                        if llama.n_tokens >= llama.n_ctx():  # no room to decode this token
                            break
                finally:
                    tokens.close()
                if not scanner.matched:
                    tail = scanner.feed(decoder.decode(b"", final=True))[0] + scanner.flush()
                    if tail:
                        pieces.append(tail)
                        yield TextPiece(tail)
                total = time.perf_counter() - started
                stats = self._stats(
                    len(prompt.tokens), prepared, prefill_seconds, first_token, generated, total
                )
                done = Done("".join(pieces), reason, stats)
        # Outside the lock: a consumer that stops at Done does not keep the model held.
        yield done

    def _stats(
        self,
        prompt_tokens: int,
        prepared: _Prepared,
        prefill_seconds: float,
        first_token: float | None,
        generated: int,
        total: float,
    ) -> GenerationStats:
        return GenerationStats(
            prompt_tokens=prompt_tokens,
            reused_tokens=prompt_tokens - prepared.evaluated,
            evaluated_tokens=prepared.evaluated,
            backend_evaluated_tokens=prepared.backend_evaluated,
            state_loaded=prepared.loaded,
            state_saved=prepared.saved,
            prefill_seconds=prefill_seconds,
            first_token_seconds=first_token,
            generated_tokens=generated,
            total_seconds=total,
        )

    def _stop_requested(self, cancel: threading.Event | None) -> bool:
        return self._closing.is_set() or (cancel is not None and cancel.is_set())

    # -- the KV cache ----------------------------------------------------------------------

    def _prepare(
        self, llama: Any, prompt: _Prompt, cancel: threading.Event | None, *, need_logits: bool
    ) -> _Prepared:
        """Make the KV cache hold `prompt.tokens`: reuse, load the saved prefix, evaluate."""
        before = self._counters(llama)
        loaded = saved = False
        evaluated = 0
        cancelled = False
        if prompt.prefix_tokens is not None:
            loaded, saved, evaluated, cancelled = self._ensure_prefix(
                llama, prompt.prefix_tokens, prompt.document_id, cancel
            )
        if not cancelled:
            more, cancelled = self._fill(llama, prompt.tokens, cancel, need_logits=need_logits)
            evaluated += more
        after = self._counters(llama)
        backend = None if before is None or after is None else after - before
        return _Prepared(evaluated, backend, loaded, saved, cancelled)

    def _ensure_prefix(
        self,
        llama: Any,
        prefix: list[int],
        document_id: str | None,
        cancel: threading.Event | None,
    ) -> tuple[bool, bool, int, bool]:
        """(loaded, saved, evaluated, cancelled) after making the KV cache start with `prefix`.

        Already there: nothing to do. Else a saved state is loaded if one checks out, else
        the prefix is evaluated and, with a document id and a store, saved.
        """
        key = self._state_key(prefix, document_id)
        store = self.kv_store
        if self._common_prefix(llama, prefix) == len(prefix):
            if key is None or store is None or store.contains(key):
                return False, False, 0, False
            # In memory but not on disk (evicted, or never saved): keep it for next time.
            self._fill(llama, prefix, None, need_logits=False)  # trims to exactly the prefix
            entry = store.save(key, lambda path: self._save_state(llama, path, prefix))
            return False, entry is not None, 0, False
        if key is not None and store is not None:
            entry = store.lookup(key)
            if entry is not None:
                if self._load_state(llama, entry.payload_path, prefix):
                    return True, False, 0, False
                store.discard(key, "llama.cpp refused the saved state")
        evaluated, cancelled = self._fill(llama, prefix, cancel, need_logits=False)
        if cancelled or key is None or store is None:
            return False, False, evaluated, cancelled
        saved = store.save(key, lambda path: self._save_state(llama, path, prefix)) is not None
        return False, saved, evaluated, False

    def _state_key(self, prefix: Sequence[int], document_id: str | None) -> StateKey | None:
        if not document_id or not self.profile.sha256:
            return None
        return StateKey.build(
            model_sha256=self.profile.sha256,
            runtime=self._runtime,
            plan=self.plan,
            document_id=document_id,
            tokens=prefix,
        )

    def _save_state(self, llama: Any, path: Path, tokens: list[int]) -> None:
        """Write the one sequence's tokens and KV cells (no logits) to `path`."""
        llama_cpp = _llama_cpp()
        if llama.n_tokens != len(tokens):
            raise OSError("the KV cache does not hold exactly the prefix")
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(
            llama.ctx, os.fsencode(path), 0, array, len(tokens)
        )
        if not written:
            raise OSError(f"llama.cpp could not write the KV state to {path}")

    def _load_state(self, llama: Any, path: Path, tokens: list[int]) -> bool:
        """Load a verified state file into sequence 0; False (and an empty cache) if refused."""
        llama_cpp = _llama_cpp()
        self._forget(llama)
        capacity = llama.n_ctx()
        array = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        with _LOG.capture() as lines:
            read = llama_cpp.llama_state_seq_load_file(
                llama.ctx, os.fsencode(path), 0, array, capacity, ctypes.byref(count)
            )
        if not read or count.value != len(tokens) or list(array[: count.value]) != tokens:
            log.info("llama.cpp refused the saved KV state %s: %s", path.name, _explain(lines))
            self._forget(llama)
            return False
        llama.input_ids[: len(tokens)] = tokens
        llama.n_tokens = len(tokens)
        # No logits came with the state: the next token must be decoded before sampling.
        # (_fill always decodes at least one token before generating; this keeps Llama's
        # own bookkeeping right too.)
        if hasattr(llama, "_requires_eval"):
            llama._requires_eval = True
        return True

    def _common_prefix(self, llama: Any, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` the KV cache already holds."""
        import numpy as np  # deferred with llama_cpp, which needs it anyway

        held = llama.input_ids[: llama.n_tokens]
        limit = min(len(held), len(tokens))
        differ = np.flatnonzero(held[:limit] != np.asarray(tokens[:limit], dtype=held.dtype))
        return int(differ[0]) if differ.size else limit

    def _fill(
        self,
        llama: Any,
        tokens: list[int],
        cancel: threading.Event | None,
        *,
        need_logits: bool,
    ) -> tuple[int, bool]:
        """Make the KV cache hold exactly `tokens`, evaluating only what it lacks.

        Returns (tokens evaluated, cancelled). With `need_logits` at least the last token is
        evaluated, so sampling starts from fresh logits (what sits in the cache may have
        been followed by an earlier answer, or loaded from disk without logits).
        """
        keep = self._common_prefix(llama, tokens)
        if need_logits:
            keep = max(0, min(keep, len(tokens) - 1))
        if keep < llama.n_tokens:
            keep = self._truncate(llama, keep)
        evaluated = 0
        for start in range(keep, len(tokens), llama.n_batch):
            if self._stop_requested(cancel):
                return evaluated, True
            batch = tokens[start : start + llama.n_batch]
            self._decode(llama, batch)
            evaluated += len(batch)
        return evaluated, False

    def _truncate(self, llama: Any, keep: int) -> int:
        """Drop the cache after `keep` tokens; returns what is kept (0 if it cannot trim)."""
        llama_cpp = _llama_cpp()
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1):
            # Recurrent models cannot drop a tail: start over.
            self._forget(llama)
            return 0
        llama.n_tokens = keep
        if hasattr(llama, "_requires_eval"):
            llama._requires_eval = True
        return keep

    def _forget(self, llama: Any) -> None:
        """Empty the KV cache and Llama's token record."""
        llama_cpp = _llama_cpp()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.reset()

    def _decode(self, llama: Any, batch: list[int]) -> None:
        try:
            llama.eval(batch)
        except RuntimeError as error:
            self._forget(llama)
            raise GenerationError(f"llama.cpp failed to evaluate the prompt: {error}") from error
        # Each batch is synchronized on its own, so llama.cpp's perf counters attribute it
        # (a lone token to n_eval, more to n_p_eval) instead of lumping batches together.
        _llama_cpp().llama_synchronize(llama.ctx)

    def _counters(self, llama: Any) -> int | None:
        """Tokens llama.cpp has decoded in this context, by its perf counters."""
        llama_cpp = _llama_cpp()
        try:
            llama_cpp.llama_synchronize(llama.ctx)
            data = llama_cpp.llama_perf_context(llama.ctx)
        except AttributeError:  # a build without the perf API
            return None
        return int(data.n_p_eval) + int(data.n_eval)


class _StopScanner:
    """Finds stop strings in streamed text, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._pending = ""
        self.matched = False

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to show, whether a stop string was found)."""
        self._pending += text
        if not self._stops:
            out, self._pending = self._pending, ""
            return out, False
        hits = [index for stop in self._stops if (index := self._pending.find(stop)) >= 0]
        if hits:
            out = self._pending[: min(hits)]
            self._pending = ""
            self.matched = True
            return out, True
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), hold, -1):
                if self._pending.endswith(stop[:size]):
                    hold = size
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


class LlamaCppRuntime:
    """The `LLMRuntime` of llama.cpp: the one the product uses."""

    def detect_backend(self) -> Backend:
        return detect_backend()

    def gpu_memory(self) -> tuple[int, int] | None:
        return gpu_memory()

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        return count_tokens_with_vocab(profile, text)

    def load(
        self,
        profile: ModelProfile,
        plan: ContextPlan,
        *,
        threads: int | None,
        kv_store: KVStateStore | None,
    ) -> LlamaCppLLM:
        return get_llm(profile, plan, threads=threads, kv_store=kv_store)


# -- the bare baseline for benchmarks -----------------------------------------------------


def chat_prompt_tokens(
    llm: LlamaCppLLM, messages: Sequence[ChatMessage], prefix: CachedPrefix | None = None
) -> list[int]:
    """The exact tokens `llm.stream_chat(messages, prefix=prefix)` evaluates, so a benchmark
    can feed the very same tokens to a bare `Llama` (`raw_prefill`)."""
    return list(llm._prompt(messages, prefix).tokens)


@dataclass(frozen=True)
class RawPrefill:
    """One prefill on a bare `llama_cpp.Llama`: what it evaluated, how long it took."""

    tokens: int
    seconds: float
    load_seconds: float
    threads_batch: int
    """The threads llama.cpp used for the prefill (llama-cpp-python's default when None
    was asked for: all CPUs)."""


def raw_prefill(
    profile: ModelProfile,
    plan: ContextPlan,
    tokens: Sequence[int],
    threads: int | None = None,
) -> RawPrefill:
    """Evaluate `tokens` on a plain `llama_cpp.Llama(**llama_kwargs(...))` with `Llama.eval`,
    and time it: the baseline that longread's own prefill is compared against.

    Nothing of `LlamaCppLLM` is in the timed path. Outside it, the model gets the same
    warm-up `LlamaCppLLM` gives itself (weights paged in, first decode done), so both sides
    start equally warm; the resident `LlamaCppLLM` is closed first, so only one model is in
    memory. The bare model is freed before returning.
    """
    if not tokens:
        raise ValueError("raw_prefill needs at least one token")
    llama_cpp = _llama_cpp()
    kwargs = llama_kwargs(profile, plan, threads, _accepted_parameters(llama_cpp.Llama))
    with _registry_lock:
        if _resident is not None:
            _resident.close()
    started = time.perf_counter()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        llama = llama_cpp.Llama(**kwargs)
    llama.verbose = False
    try:
        warm = llama.token_bos() if llama.token_bos() >= 0 else llama.token_eos()
        llama.eval([warm, warm])
        llama.eval([warm])
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.reset()
        load_seconds = time.perf_counter() - started
        batch = [int(token) for token in tokens]
        started = time.perf_counter()
        llama.eval(batch)
        llama_cpp.llama_synchronize(llama.ctx)
        seconds = time.perf_counter() - started
        threads_batch = int(llama.n_threads_batch)
    finally:
        llama.close()
    return RawPrefill(len(batch), seconds, load_seconds, threads_batch)
