"""Errors raised while reading GGUF files and keeping the model catalog, written for the user.

Every message names the file (or the model name) and, where there is one, says the fix, so the
CLI and the TUI can show it as it is. Programming mistakes are not wrapped here: they stay plain
Python exceptions with their tracebacks.
"""

from __future__ import annotations


class ModelError(Exception):
    """A model file or the model catalog cannot be used as asked; the message is for the user."""


class ModelNotFoundError(ModelError):
    """No file at the path, no model by that name, or the bundled model is not installed."""


class CorruptModelError(ModelError):
    """The file is not a GGUF file, or is cut short (an interrupted download), or is damaged."""


class UnsupportedModelError(ModelError):
    """A well-formed GGUF that longread cannot use: too old, big-endian, or not a language model."""


class CatalogError(ModelError):
    """A request the catalog refuses (a taken name, removing the default) or a damaged catalog."""
