"""Driving a generator that reports progress to its end, for callers that want its result.

Slow verbs (`Assistant.summarize`, a strategy's `prepare`) yield progress events and return
their result; a caller that shows the events and then needs the result runs them here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

Event = TypeVar("Event")
Result = TypeVar("Result")


def run_to_end(events: Generator[Event, None, Result], show: Callable[[Event], None]) -> Result:
    """Pass every event of `events` to `show`; returns what the generator returned."""
    while True:
        try:
            event = next(events)
        except StopIteration as finished:
            result: Result = finished.value
            return result
        show(event)
