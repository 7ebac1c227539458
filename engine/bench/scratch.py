"""What the beacon benchmarks share: a throwaway data dir set up like the person's, a book
added to it, and its beacons built with progress.

`scratch_settings` takes the person's settings (config file, `LONGREAD_*`) and model with
the data dir moved to a scratch folder; `add_document` adds a file through the assistant;
`build_beacons` builds a document's beacons, saying how far it got every few seconds.

What it does not do: create or delete the scratch folder (the benchmarks own it, as a
temporary directory), time or score anything, or write to the person's library: their
data dir is only read for its settings and registered model names.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.assistant import Assistant
from engine.config import Settings, load_settings
from engine.generators import run_to_end
from engine.strategies.beacon_build import BeaconProgress, BeaconsBuilt
from engine.types import Preparing
from ingest.pipeline import AddStatus, FileOutcome
from ingest.types import Document
from models.catalog import ModelCatalog

Progress = Callable[[str], None]

CORPUS_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpus"

_PROGRESS_EVERY_SECONDS = 5.0
"""Progress lines during a build, at most this often (a book has about a hundred windows)."""


def scratch_settings(
    scratch_home: Path,
    home: Path | None,
    config_path: Path | None,
    model: str | None,
    beacons: dict[str, Any],
) -> Settings:
    """The person's settings (config file, environment) with the data dir moved to the
    scratch folder and the beacon settings overridden. The model is resolved in the
    person's catalog and handed on as a file path, which the scratch catalog resolves
    without knowing the person's registered names."""
    settings = load_settings(config_path=config_path, home=home, overrides={"beacons": beacons})
    entry = ModelCatalog(settings.home).resolve(model or settings.model.name)
    model_settings = dataclasses.replace(settings.model, name=str(entry.path))
    return dataclasses.replace(settings, home=scratch_home, model=model_settings)


def add_document(assistant: Assistant, path: Path, say: Progress, *, index: bool) -> Document:
    """Add `path` to the assistant's library (and its search index with `index`); anything
    but a clean add is an error."""
    say(f"adding {path.name}" + (" and indexing it for search" if index else ""))
    outcome: FileOutcome | None = None
    for event in assistant.add([path], index=index):
        if isinstance(event, FileOutcome):
            outcome = event
    if outcome is None or outcome.status is not AddStatus.ADDED or outcome.document is None:
        error = outcome.error if outcome is not None else "no outcome"
        raise RuntimeError(f"benchmark file {path} could not be added: {error}")
    if outcome.warning:
        raise RuntimeError(f"benchmark file {path} was added with a warning: {outcome.warning}")
    return outcome.document


def build_beacons(assistant: Assistant, document_id: str, name: str, say: Progress) -> BeaconsBuilt:
    """Build the document's beacons, saying how far it got every few seconds."""
    last = 0.0

    def show(event: BeaconProgress | Preparing) -> None:
        nonlocal last
        now = time.perf_counter()
        if isinstance(event, BeaconProgress) and now - last >= _PROGRESS_EVERY_SECONDS:
            left = f", about {event.seconds_left:.0f} s left" if event.seconds_left else ""
            say(f"  {name}: {event.done}/{event.total} windows{left}")
            last = now

    built = run_to_end(assistant.summarize(document_id), show)
    if built.cancelled or len(built.beacons) != len(built.layout.windows):
        raise RuntimeError(
            f"the beacons of {name} were not all built ({len(built.beacons)} of"
            f" {len(built.layout.windows)})"
        )
    return built


def quiet(message: str) -> None:
    """A progress callback that says nothing."""
    del message


__all__ = [
    "CORPUS_DIR",
    "Progress",
    "add_document",
    "build_beacons",
    "quiet",
    "scratch_settings",
]
