"""Beacon summaries kept in the library, per document, model file and settings.

A set of beacons is keyed by the document, the model file's sha256 and a fingerprint of the
settings that shape them (engine/beacon_plan.py `settings_key`), so another model or other
settings mean other beacons, never silently reused ones. Whether a document's beacons are
built is a SQL count, cheap enough for the router and a library table; the layout (windows
counted in the model's tokens) costs a pass over the text, so the last few are kept.

It is the strategy's `BeaconSource` (engine/strategies/beacons.py) and the facade's helper
for `summarize`; it does not write beacons (engine/strategies/beacon_build.py) or load a
model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from functools import partial

from engine.beacon_plan import BeaconLayout, plan_beacons, settings_key
from engine.config import Settings
from engine.llm import LLM
from engine.rendered import RenderedDocument
from engine.strategies.base import AskContext
from engine.strategies.beacon_build import (
    BeaconProgress,
    BeaconsBuilt,
    build_beacons,
    missing_beacons,
    reused_beacons,
)
from engine.types import Preparing
from ingest.library import Library
from ingest.types import BeaconSetKey, Section, StoredBeacon
from models.types import ModelProfile

LAYOUTS_KEPT = 8

TYPICAL_QUESTION_TOKENS = 32
"""What a question is taken to cost when a document's beacon ratio is chosen (once for all
its questions) and when a plan is shown without a question."""


class BeaconStore:
    """Beacon sets in the library and their layouts. Thread-safe."""

    def __init__(
        self,
        library: Library,
        settings: Callable[[], Settings],
        count_tokens: Callable[[ModelProfile, str], int],
    ) -> None:
        """`settings` gives the settings in force (they may change while the app runs)."""
        self._library = library
        self._settings = settings
        self._count_tokens = count_tokens
        self._lock = threading.Lock()
        self._layouts: OrderedDict[BeaconSetKey, BeaconLayout] = OrderedDict()

    def key(self, document_id: str, profile: ModelProfile) -> BeaconSetKey:
        """The key of the document's beacons on this model with today's settings."""
        settings = self._settings()
        fingerprint = settings_key(
            settings.beacons, profile.context_length, settings.model.max_answer_tokens
        )
        return BeaconSetKey(document_id, profile.sha256, fingerprint)

    def built(self, document_id: str, profile: ModelProfile) -> bool:
        """Whether every window of the document has a beacon for this model and settings."""
        key = self.key(document_id, profile)
        return any(s.key == key and s.complete for s in self._library.beacon_sets(document_id))

    def layout_of(
        self, document_id: str, text: str, sections: Sequence[Section], profile: ModelProfile
    ) -> BeaconLayout:
        """The windows and ratio of the document's beacons on this model (kept in memory)."""
        key = self.key(document_id, profile)
        with self._lock:
            kept = self._layouts.get(key)
            if kept is not None:
                self._layouts.move_to_end(key)
                return kept
        settings = self._settings()
        layout = plan_beacons(
            text,
            sections,
            profile.context_length,
            settings.beacons,
            settings.model.max_answer_tokens,
            TYPICAL_QUESTION_TOKENS,
            partial(self._count_tokens, profile),
        )
        with self._lock:
            self._layouts[key] = layout
            while len(self._layouts) > LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
        return layout

    def build(
        self,
        document_id: str,
        document: RenderedDocument,
        profile: ModelProfile,
        load: Callable[[int], Generator[Preparing, None, LLM]],
        *,
        rebuild: bool = False,
        cancel: threading.Event | None = None,
    ) -> Generator[BeaconProgress | Preparing, None, BeaconsBuilt]:
        """Give every window of the document a beacon on this model, resuming from the
        stored ones (`rebuild` forgets them first). `load(tokens)` loads a model with a
        window of at least `tokens`, yielding its progress; it is not called when every
        beacon is stored already."""
        layout = self.layout_of(document_id, document.text, document.sections, profile)
        key = self.key(document_id, profile)
        if rebuild:
            self.clear(key)
        stored = self.beacons_of(key)
        if missing_beacons(layout, stored) == 0:
            return reused_beacons(layout, stored)
        llm = yield from load(layout.build_tokens)
        save = self.saver_of(key, layout)
        return (yield from build_beacons(llm, document.text, layout, stored, save, cancel))

    def beacons_of(self, key: BeaconSetKey) -> list[StoredBeacon]:
        return self._library.beacons(key)

    def saver_of(self, key: BeaconSetKey, layout: BeaconLayout) -> Callable[[StoredBeacon], None]:
        """Where each new beacon of the set goes (the set is recorded first)."""
        self._library.open_beacon_set(key, len(layout.windows), layout.settings_json())
        return partial(self._library.save_beacon, key)

    def clear(self, key: BeaconSetKey) -> None:
        """Forget a set of beacons (`summarize --rebuild`)."""
        self._library.delete_beacon_set(key)

    def forget(self, document_id: str) -> None:
        """Drop the layouts kept for a document (removed from the library)."""
        with self._lock:
            for key in [k for k in self._layouts if k.document_id == document_id]:
                del self._layouts[key]

    # -- the strategy's BeaconSource ---------------------------------------------------

    def layout(self, ask: AskContext) -> BeaconLayout:
        return self.layout_of(ask.document.id, ask.text, ask.sections, ask.profile)

    def stored(self, ask: AskContext, layout: BeaconLayout) -> list[StoredBeacon]:
        return self.beacons_of(self.key(ask.document.id, ask.profile))

    def saver(self, ask: AskContext, layout: BeaconLayout) -> Callable[[StoredBeacon], None]:
        return self.saver_of(self.key(ask.document.id, ask.profile), layout)
