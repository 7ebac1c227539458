"""The one import of `llama_cpp` in longread, deferred, and what the build says of itself.

`load_llama_cpp()` imports the binding on first use (it loads a shared library), with
longread's log callback in place before llama.cpp can say anything. The rest asks the
build which backend it runs on and how much GPU memory there is. What this module does not
do: load models (engine/llamacpp/model.py, vocab.py).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

from engine.llamacpp.log import LOG
from engine.types import Backend

GGML_DEVICE_TYPE_GPU = 1
"""GGML_BACKEND_DEVICE_TYPE_GPU: a discrete GPU (CPU is 0; integrated GPUs and accelerators
come after, and their numbering has changed between ggml versions, so only 1 counts)."""


MODEL_LOADS = threading.Lock()
"""Held while a `Llama` is built (a model, or a vocabulary alone): one at a time in this
process. Two built side by side (two TUI workers counting tokens at once) crashed with a
segmentation fault inside llama.cpp's model loader, and each load swaps sys.stdout and
sys.stderr for its duration, which only one thread may do at a time."""


def load_llama_cpp() -> Any:
    """The llama_cpp module, imported on first use, with our log callback installed."""
    import llama_cpp  # the one import of llama_cpp in longread; deferred on purpose

    LOG.install(llama_cpp)
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU (CUDA, Metal...)."""
    return bool(load_llama_cpp().llama_supports_gpu_offload())


def detect_backend() -> Backend:
    """The backend this build of llama.cpp runs on: Metal on macOS, else CUDA, else CPU."""
    if not gpu_offload_supported():
        return Backend.CPU
    return Backend.METAL if sys.platform == "darwin" else Backend.CUDA


def gpu_memory() -> tuple[int, int] | None:
    """(free, total) bytes of VRAM over the GPUs llama.cpp sees, for `engine.memory`.

    Summed: llama.cpp splits layers across every GPU by default. None when there is no
    GPU, or this build of llama-cpp-python cannot say (the device API is reached through its
    internal `_ggml` module, so any failure there means "unknown", never an error).
    """
    load_llama_cpp()
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
    return f"llama-cpp-python {load_llama_cpp().__version__}"
