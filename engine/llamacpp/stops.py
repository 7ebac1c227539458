"""Stop strings in streamed text: cut the answer at the first one, show nothing of it.

Pure string work, no model. A piece that might be the start of a stop string is held back
until the next piece settles it, so a stop string split across tokens never leaks out.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
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
