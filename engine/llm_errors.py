"""Errors of the LLM seam: a model that will not load, a prompt that will not fit, a stream
that cannot go on.

All are `EngineError`s, so the CLI and the TUI show their messages as they are (they are in
`engine.errors.USER_ERRORS` through their base). Each message names the file, the numbers
or the fix. What these errors are not for: a saved KV state that is stale or corrupt is a
cache miss (deleted and rebuilt), never an error.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import EngineError


class ModelLoadError(EngineError):
    """The GGUF file is missing, unreadable, corrupt, or llama.cpp could not build a context."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


class ContextOverflowError(EngineError):
    """A prompt needs more tokens than the context holds. Never silently truncated."""

    def __init__(self, needed: int, available: int, message: str) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class GenerationError(EngineError):
    """Generation could not start or go on: llama.cpp failed, or the model was closed."""


class EngineBusyError(GenerationError):
    """The calling thread already holds an unfinished stream on the same model."""
