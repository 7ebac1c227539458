"""What a library table shows per document, found cheaply: search index, beacons, saved KV
state; a document's context plan on a model (`DocumentPlan`) and a short label for it.

Cheap means files and SQLite only: no embedder, no model, no token counting, so a table
can be refreshed whenever the library changes. The index check therefore reads the index
manifest and compares what can be compared without the embedder: the index format version,
the chunk settings and the chunk count. It does not compare the embedder's id, which is a
fingerprint of the embedder's model files (reading them takes longer than a table can
wait): an index built with another embedder shows as indexed here, and the first search
rebuilds it, saying why (retrieval/index_store.py).

It does not build, load or repair anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.kvcache import StateEntry
from engine.types import ContextPlan, RopeMethod
from ingest.library import Library
from ingest.types import Document
from models.catalog import ModelEntry
from models.types import ModelProfile

ROPE_NAMES = {RopeMethod.YARN: "YaRN", RopeMethod.LINEAR: "linear", RopeMethod.NTK: "NTK"}
"""RoPE scaling methods as people write them."""


@dataclass(frozen=True)
class DocumentPlan:
    """A document's context plan on one model, with the token counts behind it."""

    document: Document
    model: ModelEntry
    profile: ModelProfile
    document_tokens: int
    plan: ContextPlan


@dataclass(frozen=True)
class DocumentStatus:
    """What has been prepared for a document: a search index that today's settings can use
    (as far as `index_built` checks), beacon summaries, a saved KV state on any model."""

    document_id: str
    indexed: bool
    beacons_built: bool
    kv_saved: bool


def document_status(
    library: Library, home: Path, document_id: str, saved: Iterable[StateEntry]
) -> DocumentStatus:
    """The document's status; `saved` is the KV state store's entries, read once by the
    caller so a whole table costs one pass over them. Raises DocumentNotFoundError for an
    id the library does not hold."""
    return DocumentStatus(
        document_id=document_id,
        indexed=index_built(library, home, document_id),
        beacons_built=beacons_built(library, document_id),
        kv_saved=any(entry.document_id == document_id for entry in saved),
    )


def index_built(library: Library, home: Path, document_id: str) -> bool:
    """Whether the document's index folder has a readable manifest with today's index format,
    the document's chunk settings and its chunk count (the embedder is not checked)."""
    # Imported here: retrieval.index_store brings numpy, which the rest of this module and
    # `longread --help` do not need.
    from retrieval.index_store import FORMAT_VERSION, INDEXES_DIR_NAME, MANIFEST_NAME

    document = library.get(document_id)
    settings = library.chunk_settings(document_id)
    path = home / INDEXES_DIR_NAME / document_id / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    expected = {
        "format_version": FORMAT_VERSION,
        "chunk_max_tokens": settings.max_tokens,
        "chunk_overlap": settings.overlap,
        "chunk_count": document.chunk_count,
    }
    # `type(...) is int`: JSON's true must not pass for 1.
    return all(
        type(manifest.get(key)) is int and manifest[key] == value for key, value in expected.items()
    )


def beacons_built(library: Library, document_id: str) -> bool:
    """Whether a complete set of the document's beacon summaries exists, on any model and
    settings (the router asks about its own model and settings: engine/beacon_store.py)."""
    return any(beacon_set.complete for beacon_set in library.beacon_sets(document_id))


def plan_summary(plan: ContextPlan) -> str:
    """A short label for a plan: "fits", "fits with YaRN ×2", or "too long: retrieval"."""
    if not plan.fits:
        return "too long: retrieval"
    if plan.rope_method is RopeMethod.NONE:
        return "fits"
    # Two decimals at most, and no trailing ".0": ×2, ×2.5, ×3.33.
    factor = f"{round(plan.rope_factor, 2):g}"
    return f"fits with {ROPE_NAMES[plan.rope_method]} ×{factor}"
