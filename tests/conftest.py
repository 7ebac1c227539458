"""Shared fixtures: an isolated data dir per test, and the shared corpus with its skip rule.

The corpus lives beside the checkout at ../shared/corpus. Where it is absent, corpus tests
skip with a visible reason; when CI is set they must run, so its absence is a failure.
"""

from __future__ import annotations

import os

# As main.py does for the product: OpenMP threads sleep rather than spin while waiting, so
# llama.cpp and torch do not starve each other on CI's two cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


def corpus_path() -> Path:
    """The corpus folder, or a skip (a failure under CI) saying why it is not there."""
    if CORPUS_DIR.is_dir():
        return CORPUS_DIR
    reason = f"shared corpus not found at {CORPUS_DIR}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: corpus tests must run in CI")
    pytest.skip(reason)


@pytest.fixture
def corpus() -> Path:
    return corpus_path()


ONNX_DIR_VARIABLE = "LONGREAD_RETRIEVAL_ONNX_DIR"


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder for the embedder's ONNX export across the session's data dirs.

    Every test gets a fresh data dir, and the export (~10 s, with torch) would otherwise be
    redone in each that embeds; `[retrieval] onnx_dir` is the product's own setting for
    keeping exports elsewhere. Tests of the export itself pass their own folder.
    """
    folder = tmp_path_factory.mktemp("onnx-exports")
    previous = os.environ.get(ONNX_DIR_VARIABLE)
    os.environ[ONNX_DIR_VARIABLE] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(ONNX_DIR_VARIABLE, None)
    else:
        os.environ[ONNX_DIR_VARIABLE] = previous


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point LONGREAD_HOME at a fresh folder so no test touches a person's library."""
    home = tmp_path / "longread-home"
    monkeypatch.setenv("LONGREAD_HOME", str(home))
    yield home
