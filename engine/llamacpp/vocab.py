"""Counting a model's tokens before any context is built: vocab-only loads, one kept.

Planning needs the exact token count to size the context, so it cannot use the model it is
about to create: a vocab-only load (no weights, no KV) answers in a fraction of a second.
`Vocabularies` keeps the last one loaded (they are small, but not free); its owner (the
runtime) closes it. What this module does not do: load weights, or know about the
resident model (the runtime counts with that one when it is the same file).
"""

from __future__ import annotations

import contextlib
import io
import threading
import weakref
from pathlib import Path
from typing import Any

from engine.llamacpp.binding import MODEL_LOADS, load_llama_cpp
from engine.llamacpp.log import LOG, explain
from engine.llm_errors import ModelLoadError
from models.types import ModelProfile


class Vocabularies:
    """Vocab-only models by file, one at a time. Thread-safe; `close()` frees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._vocabulary: Any = None
        self._release: weakref.finalize[Any, Any] | None = None

    def count(self, path: Path, text: str) -> int:
        """Tokens of plain `text` (no special tokens, no BOS) in the vocabulary of `path`."""
        with self._lock:
            if self._vocabulary is None or self._path != path:
                self._drop()
                vocabulary = load_vocabulary(path)
                self._path, self._vocabulary = path, vocabulary
                # Freed at interpreter exit at the latest, while llama_cpp still exists (a
                # Llama collected after its module's globals are gone prints a TypeError).
                self._release = weakref.finalize(self, vocabulary.close)
            tokens = self._vocabulary.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            return len(tokens)

    def close(self) -> None:
        """Free the kept vocabulary (it is loaded again if asked for). Safe to call twice."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        release, self._release = self._release, None
        self._path = self._vocabulary = None
        if release is not None:
            release()  # closes the Llama once; a finalizer never runs twice


def count_tokens_with_vocab(profile: ModelProfile, text: str) -> int:
    """Tokens of `text` in the model's vocabulary, loading it for this one count.

    For one-off counts (benchmarks, scripts). Code that counts often should keep a
    `Vocabularies` (or ask `LlamaCppRuntime.count_tokens`), which loads the file once.
    """
    vocabularies = Vocabularies()
    try:
        return vocabularies.count(profile.path, text)
    finally:
        vocabularies.close()


def load_vocabulary(path: Path) -> Any:
    """A vocab-only `Llama` for `path`; ModelLoadError, naming the file, if it cannot be."""
    if not path.is_file():
        raise ModelLoadError(path, f"model file {path} does not exist; check the path")
    llama_cpp = load_llama_cpp()
    printed = io.StringIO()
    with LOG.capture() as lines:
        try:
            # verbose=True for the same reason as for the full model (params.llama_kwargs):
            # False would point the process's stdout at /dev/null while the file loads.
            with (
                MODEL_LOADS,
                contextlib.redirect_stdout(printed),
                contextlib.redirect_stderr(printed),
            ):
                vocabulary = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=True)
        except ValueError as error:
            detail = explain(lines)
            raise ModelLoadError(
                path,
                f"cannot read the vocabulary of {path}: not a GGUF model llama.cpp can load"
                + (f" [llama.cpp: {detail}]" if detail else ""),
            ) from error
    vocabulary.verbose = False
    return vocabulary
