"""Engine errors, and the tuple of every error that is the user's to fix rather than a bug.

The CLI and the TUI catch `USER_ERRORS` and show the message as it is; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from ingest.errors import IngestError
from models.errors import ModelError
from retrieval.errors import RetrievalError


class EngineError(Exception):
    """Something the engine cannot do as asked; the message says why and what to do."""


class ConfigError(EngineError):
    """A configuration file, variable or flag that longread cannot use."""


USER_ERRORS: tuple[type[Exception], ...] = (IngestError, ModelError, RetrievalError, EngineError)
