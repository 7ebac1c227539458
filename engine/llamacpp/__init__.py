"""The llama.cpp backend (llama-cpp-python): the only package that imports `llama_cpp`.

It imports the binding lazily, inside functions, so importing this package (and
`longread --help`) costs nothing. Its modules, each small:

- `binding`: the deferred import, backend detection, GPU memory;
- `log`: llama.cpp's log, routed away from the terminal into `logging` and a short tail;
- `params`: what a `ContextPlan` means as `Llama` arguments, and when a loaded model can
  carry out another plan;
- `vocab`: counting tokens with a vocab-only load, before any context exists;
- `chat`: chat templates and exact prompt tokens; `stops`: stop strings in a stream;
- `abort`: stopping a `llama_decode` mid-batch; `cache`: the KV cache (prefix reuse, saved
  states, batched prefill with progress);
- `model`: `LlamaCppLLM`, the `engine.llm.LLM`; `runtime`: `LlamaCppRuntime`, which owns
  the one resident model; `baseline`: the bare prefill benchmarks compare against.
"""

from engine.llamacpp.baseline import RawPrefill, chat_prompt_tokens, raw_prefill
from engine.llamacpp.binding import (
    detect_backend,
    gpu_memory,
    gpu_offload_supported,
    runtime_version,
)
from engine.llamacpp.log import LogLine, parse_kv_buffer_bytes, recent_log_lines
from engine.llamacpp.model import LlamaCppLLM
from engine.llamacpp.params import (
    GGML_TYPE_IDS,
    REPEAT_PENALTY,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_YARN,
    SEED,
    can_serve,
    llama_kwargs,
)
from engine.llamacpp.runtime import LlamaCppRuntime
from engine.llamacpp.stops import StopScanner
from engine.llamacpp.vocab import Vocabularies, count_tokens_with_vocab

__all__ = [
    "GGML_TYPE_IDS",
    "REPEAT_PENALTY",
    "ROPE_SCALING_LINEAR",
    "ROPE_SCALING_YARN",
    "SEED",
    "LlamaCppLLM",
    "LlamaCppRuntime",
    "LogLine",
    "RawPrefill",
    "StopScanner",
    "Vocabularies",
    "can_serve",
    "chat_prompt_tokens",
    "count_tokens_with_vocab",
    "detect_backend",
    "gpu_memory",
    "gpu_offload_supported",
    "llama_kwargs",
    "parse_kv_buffer_bytes",
    "raw_prefill",
    "recent_log_lines",
    "runtime_version",
]
