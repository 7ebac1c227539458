"""Cancel events for thread workers, collected so that quitting the app stops them all.

Textual's thread workers cannot be killed and the interpreter waits for them at exit, so a
prefill or an index build that is not told to stop would keep the process alive for minutes.
Every worker that calls the engine takes an event from here and passes it on as `cancel`.
"""

from __future__ import annotations

import threading

from textual.app import App


class CancelRegistry:
    """The cancel events of running work; `cancel_all` sets every one of them."""

    def __init__(self) -> None:
        self._events: list[threading.Event] = []
        self._lock = threading.Lock()

    def new(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events = [e for e in self._events if not e.is_set()]
            self._events.append(event)
        return event

    def cancel_all(self) -> None:
        with self._lock:
            for event in self._events:
                event.set()
            self._events.clear()


def cancel_event(app: App[object]) -> threading.Event:
    """A cancel event set when `app` quits (a plain one when the app keeps no registry)."""
    registry = getattr(app, "cancels", None)
    return registry.new() if isinstance(registry, CancelRegistry) else threading.Event()
