"""Aborting a `llama_decode` in the middle of a batch, without Python in the hot path.

llama.cpp asks a context's abort callback before every node of the compute graph (about 600
times per batch for a 30-layer model), from its own compute thread. A Python callback would
take the GIL each time: with one busy Python thread elsewhere (a TUI, a PDF being parsed)
prefill fell from ~99 to ~38 tokens/s here, waiting for the GIL rather than computing. So
the callback is a C function that reads a flag byte: libc's `strlen` over a two-byte
buffer returns 0 ("go on") or 1 ("abort"), which is exactly the `bool` llama.cpp reads.
The flag is raised by `close()` directly, and by a watcher thread that polls the caller's
cancel event (20 times a second) while a prefill runs. Aborting then takes milliseconds.

Where libc's `strlen` cannot be found, a Python callback reads the same flag (correct, but
subject to the GIL cost above). What this module does not do: trim the KV cache after an
abort, or tell an abort from an error (engine/llamacpp/cache.py does both).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How often the watcher looks at a cancel event: the worst-case delay before an abort."""


class AbortFlag:
    """The abort flag of one llama.cpp context, and the callback that reads it.

    The ctypes objects (buffer and callback) live as long as this object; keep it as long
    as the context, since llama.cpp holds bare pointers to both.
    """

    def __init__(self, llama_cpp: Any, ctx: Any) -> None:
        self._buffer = (ctypes.c_uint8 * 2)()  # the flag byte, then the NUL strlen stops at
        self._lock = threading.Lock()
        self._sticky = False  # raised for good (the model is closing)
        self._callback = _c_flag_reader(llama_cpp)
        if self._callback is None:
            buffer = self._buffer

            @llama_cpp.ggml_abort_callback  # type: ignore[untyped-decorator]
            def read_flag(data: Any) -> bool:
                return buffer[0] != 0

            self._callback = read_flag
        llama_cpp.llama_set_abort_callback(
            ctx, self._callback, ctypes.cast(self._buffer, ctypes.c_void_p)
        )

    @property
    def raised(self) -> bool:
        return self._buffer[0] != 0

    def raise_for_good(self) -> None:
        """Abort any decode now and from now on (the model is closing)."""
        with self._lock:
            self._sticky = True
            self._buffer[0] = 1

    def lower(self) -> None:
        """Let decodes run again, unless the model is closing."""
        with self._lock:
            if not self._sticky:
                self._buffer[0] = 0

    @contextlib.contextmanager
    def watching(self, cancel: threading.Event | None) -> Iterator[None]:
        """Inside the block, setting `cancel` aborts the running decode within POLL_SECONDS.

        The flag is lowered on entry and on exit, so a stale cancel never aborts the
        decodes of the answer that follows a prefill (those check the event between tokens).
        """
        self.lower()
        finished = threading.Event()
        if cancel is not None:
            watcher = threading.Thread(
                target=self._watch, args=(cancel, finished), name="llama-abort", daemon=True
            )
            watcher.start()
        try:
            yield
        finally:
            with self._lock:
                finished.set()  # under the lock: the watcher cannot raise the flag after this
            self.lower()
            # Not joined: it wakes within POLL_SECONDS, sees `finished`, and ends on its own;
            # joining would add that delay to every prefill.

    def _watch(self, cancel: threading.Event, finished: threading.Event) -> None:
        while not finished.is_set():
            if cancel.wait(POLL_SECONDS):
                with self._lock:
                    if not finished.is_set():
                        self._buffer[0] = 1
                return


def _c_flag_reader(llama_cpp: Any) -> Any | None:
    """libc's strlen as a `ggml_abort_callback`, or None where it cannot be found."""
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        address = ctypes.cast(libc.strlen, ctypes.c_void_p).value
    except (OSError, AttributeError) as error:
        log.info("no C abort callback (%s); using a Python one", error)
        return None
    if not address:
        return None
    return llama_cpp.ggml_abort_callback(address)
