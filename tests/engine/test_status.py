"""Per-document status for the library table (from files only: no embedder, no model, no
token counting), and the short label of a context plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from engine.assistant import Assistant
from engine.config import load_settings
from engine.kvcache import StateKey
from engine.planner import PlannerSettings, plan_context
from engine.status import DocumentStatus, plan_summary
from engine.types import Backend, RopeMethod
from ingest.errors import DocumentNotFoundError
from models.types import ModelProfile
from retrieval.index_store import INDEXES_DIR_NAME, MANIFEST_NAME
from tests.fake_llm import FakeLLM, FakeRuntime
from tests.fakes import FakeEmbedder
from tests.library_checks import added_id
from tests.model_fixtures import hand_plan, smollm2_profile

LETTER = "Dear Anna, I left the farm because the well ran dry and the bank would not wait."
PLENTY = 64 * 2**30


class UntouchableEmbedder:
    """An embedder that fails the test if anything asks it anything."""

    @property
    def id(self) -> str:
        raise AssertionError("the embedder's id was read")

    @property
    def dimension(self) -> int:
        raise AssertionError("the embedder's dimension was read")

    @property
    def max_tokens(self) -> int:
        raise AssertionError("the embedder's window was read")

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        raise AssertionError("the embedder was asked to tokenize")

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        raise AssertionError("the embedder was asked to embed")


def _write_state(path: Path) -> None:
    path.write_bytes(b"kv" * 100)


class CountingRuntime(FakeRuntime):
    """A FakeRuntime that records every text it was asked to count."""

    def __init__(self) -> None:
        super().__init__(llm=FakeLLM())
        self.counted: list[str] = []

    def count_tokens(self, profile: ModelProfile, text: str) -> int:
        self.counted.append(text)
        return super().count_tokens(profile, text)


@pytest.fixture
def letter(tmp_path: Path) -> Path:
    path = tmp_path / "letter.txt"
    path.write_text(LETTER, encoding="utf-8")
    return path


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("Notes on the harbour, the tide and the gulls.", encoding="utf-8")
    return path


# -- document status ----------------------------------------------------------------------


def test_status_follows_the_index_and_saved_states_of_each_document(
    isolated_home: Path, letter: Path, notes: Path
) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder()) as assistant:
        indexed = added_id(assistant, letter)
        bare = added_id(assistant, notes, index=False)
        assert assistant.document_statuses([indexed])[0] == DocumentStatus(
            indexed, True, False, False
        )
        assert assistant.document_statuses([bare])[0] == DocumentStatus(bare, False, False, False)

        key = StateKey.build(
            model_sha256="f" * 64,
            runtime="test",
            plan=hand_plan(),
            document_id=bare,
            tokens=[1, 2, 3],
        )
        assert assistant.kv_store.save(key, _write_state)
        assert assistant.document_statuses([bare])[0].kv_saved
        assert not assistant.document_statuses([indexed])[0].kv_saved

        assistant.clear_cache(bare)
        assert not assistant.document_statuses([bare])[0].kv_saved


def test_status_reads_no_embedder_loads_no_model_and_counts_no_tokens(
    isolated_home: Path, letter: Path
) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder()) as assistant:
        document_id = added_id(assistant, letter)
    runtime = CountingRuntime()
    # A restart: this assistant's embedder fails the test if anything touches it.
    with Assistant(settings, runtime=runtime, embedder=UntouchableEmbedder()) as restarted:
        status = restarted.document_statuses([document_id])[0]
    assert status.indexed
    assert runtime.loads == [] and runtime.counted == []


def _manifest(home: Path, document_id: str) -> Path:
    return home / INDEXES_DIR_NAME / document_id / MANIFEST_NAME


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda m: {**m, "chunk_overlap": m["chunk_overlap"] + 1}, id="chunking"),
        pytest.param(lambda m: {**m, "chunk_count": m["chunk_count"] + 1}, id="chunk-count"),
        pytest.param(lambda m: {**m, "format_version": 999}, id="format"),
        pytest.param(lambda m: {**m, "format_version": True}, id="true-is-not-1"),
        pytest.param(lambda m: [m], id="not-an-object"),
    ],
)
def test_an_index_that_no_longer_matches_is_not_counted(
    isolated_home: Path, letter: Path, spoil: Callable[[dict[str, Any]], object]
) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder()) as assistant:
        document_id = added_id(assistant, letter)
        path = _manifest(isolated_home, document_id)
        manifest = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(spoil(manifest)), encoding="utf-8")
        assert not assistant.document_statuses([document_id])[0].indexed


def test_a_damaged_or_missing_manifest_is_not_an_index(isolated_home: Path, letter: Path) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    with Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder()) as assistant:
        document_id = added_id(assistant, letter)
        path = _manifest(isolated_home, document_id)
        path.write_text('{"format_version": 1, "chunk_', encoding="utf-8")
        assert not assistant.document_statuses([document_id])[0].indexed
        path.unlink()
        assert not assistant.document_statuses([document_id])[0].indexed


def test_status_of_an_unknown_document_says_so(isolated_home: Path) -> None:
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    assistant = Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder())
    with assistant, pytest.raises(DocumentNotFoundError):
        assistant.document_statuses(["0" * 64])[0]


# -- plan labels --------------------------------------------------------------------------


def test_an_unscaled_plan_that_fits_just_fits() -> None:
    assert plan_summary(hand_plan()) == "fits"


@pytest.mark.parametrize(
    ("method", "factor", "label"),
    [
        (RopeMethod.YARN, 2.0, "fits with YaRN ×2"),
        (RopeMethod.LINEAR, 1.5, "fits with linear ×1.5"),
        (RopeMethod.NTK, 4.0, "fits with NTK ×4"),
        (RopeMethod.YARN, 13_312 / 8192, "fits with YaRN ×1.62"),
    ],
)
def test_a_scaled_plan_names_its_method_and_factor(
    method: RopeMethod, factor: float, label: str
) -> None:
    assert plan_summary(hand_plan(rope_method=method, rope_factor=factor)) == label


def test_a_plan_that_does_not_fit_points_to_retrieval() -> None:
    scaled = hand_plan(rope_method=RopeMethod.YARN, rope_factor=4.0, fits=False)
    assert plan_summary(scaled) == "too long: retrieval"
    assert plan_summary(hand_plan(fits=False)) == "too long: retrieval"


def test_labels_of_the_planners_own_plans() -> None:
    smol = smollm2_profile(file_size=98_000_000)
    short = plan_context(smol, 3_000, PLENTY, Backend.CPU)
    doubled = plan_context(smol, 16_384, PLENTY, Backend.CPU)
    linear = plan_context(
        smol, 16_384, PLENTY, Backend.CPU, PlannerSettings(rope_method=RopeMethod.LINEAR)
    )
    huge = plan_context(smol, 500_000, PLENTY, Backend.CPU)
    assert plan_summary(short) == "fits"
    assert plan_summary(doubled) == "fits with YaRN ×2"
    assert plan_summary(linear) == "fits with linear ×2"
    assert plan_summary(huge) == "too long: retrieval"
