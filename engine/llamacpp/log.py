"""llama.cpp's log, kept away from the terminal, and what longread reads out of it.

llama-cpp-python installs a log callback that prints to stderr; with a Textual UI on screen
that paints over it (and its level table predates ggml's current enum, so `verbose=False`
does not even hold back warnings). `LlamaLog` forwards each line to `logging` at DEBUG,
keeps the last lines for diagnostics, and lets a caller capture the lines of one step
(model creation: that is where the "KV buffer size" line and any load error come from).

llama.cpp has one log callback per process, so there is one `LOG` per process. What this
module does not do: import llama_cpp (engine/llamacpp/binding.py installs the callback).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOG_WARN = 3  # GGML_LOG_LEVEL_WARN
LOG_ERROR = 4  # GGML_LOG_LEVEL_ERROR
LOG_CONT = 5  # GGML_LOG_LEVEL_CONT: the rest of the previous line, at its level

_KV_BUFFER_LINE = re.compile(r"KV buffer size\s*=\s*([0-9.]+)\s*MiB")


@dataclass(frozen=True)
class LogLine:
    """One line of llama.cpp's log, with ggml's level (1 debug ... 4 error)."""

    level: int
    text: str


class LlamaLog:
    """llama.cpp's log lines: forwarded to `logging`, the last 2,000 kept, capturable."""

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


LOG = LlamaLog()


def recent_log_lines() -> list[str]:
    """The last lines llama.cpp logged in this process (for diagnostics and tests)."""
    with LOG.lock:
        return [line.text for line in LOG.recent]


def parse_kv_buffer_bytes(lines: Iterable[str]) -> int | None:
    """What llama.cpp allocated for the KV cache, from its "KV buffer size = X MiB" lines.

    Summed: an SWA model has two caches, a partly offloaded one a buffer per device.
    """
    sizes = [float(match.group(1)) for line in lines if (match := _KV_BUFFER_LINE.search(line))]
    if not sizes:
        return None
    return round(sum(sizes) * 2**20)


def explain(lines: Sequence[LogLine]) -> str:
    """llama.cpp's own words on what failed: its last errors, else its last warnings."""
    for level in (LOG_ERROR, LOG_WARN):
        found = [line.text.strip() for line in lines if line.level == level and line.text.strip()]
        if found:
            return "; ".join(found[-3:])
    return ""
