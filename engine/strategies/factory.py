"""Making the strategy a route names, wired to the facade's search, beacons and settings.

Each question gets a new strategy instance (a strategy keeps what it found in `prepare` for
`answer`). What the strategies share across questions lives here or in the facade: the
searcher, the beacon store, and each document's term rarity (read from its index once).

It does not route, plan or load anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from engine.beacon_store import BeaconStore
from engine.config import Settings
from engine.facts import retrieval_window
from engine.grounding import TermRarity
from engine.strategies.base import AnsweringStrategy
from engine.strategies.beacons import Beacons
from engine.strategies.long_context import LongContext
from engine.types import Strategy
from models.types import ModelProfile

if TYPE_CHECKING:
    from retrieval.hybrid import Searcher
    from retrieval.types import Hit, IndexProgress


class StrategyFactory:
    """Strategies for the facade; `searcher`, `beacons` and `settings` are read when a
    strategy is made, so nothing is built before a question needs it."""

    def __init__(
        self,
        searcher: Callable[[], Searcher],
        beacons: Callable[[], BeaconStore],
        settings: Callable[[], Settings],
        count_tokens: Callable[[ModelProfile, str], int],
    ) -> None:
        self._searcher = searcher
        self._beacons = beacons
        self._settings = settings
        self._count_tokens = count_tokens
        self._rarities: dict[str, TermRarity] = {}

    def make(self, kind: Strategy) -> AnsweringStrategy:
        if kind is Strategy.LONG_CONTEXT:
            return LongContext()
        settings = self._settings()
        if kind is Strategy.BEACONS:
            return Beacons(
                source=self._beacons(),
                indexes=self._indexes,
                search=self._search,
                drill_windows=settings.beacons.drill_windows,
            )
        from engine.strategies.rag import Retrieval

        return Retrieval(
            indexes=self._indexes,
            search=self._search,
            top_k=settings.retrieval.top_k,
            window_tokens=partial(retrieval_window, settings),
            count_tokens=self._count_tokens,
            rarity=self.term_rarity,
        )

    def term_rarity(self, document_id: str) -> TermRarity:
        """How rare each word is in a document, from its loaded index; kept per document."""
        rarity = self._rarities.get(document_id)
        if rarity is None:
            rarity = TermRarity.from_terms(self._searcher().chunk_terms(document_id))
            self._rarities[document_id] = rarity
        return rarity

    def forget(self, document_id: str) -> None:
        """Drop what is kept for a document (removed, or its index rebuilt)."""
        self._rarities.pop(document_id, None)

    def _indexes(self, document_id: str) -> Iterator[IndexProgress]:
        return self._searcher().prepare([document_id])

    def _search(self, query: str, document_id: str, k: int) -> list[Hit]:
        from retrieval.types import SearchMode

        searcher = self._searcher()
        return searcher.search(query, k=k, mode=SearchMode.HYBRID, document_ids=[document_id])
