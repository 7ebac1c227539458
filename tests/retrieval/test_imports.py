"""Heavy libraries are imported lazily, each by the few modules that own it, so `longread --help`
is fast and `longread search` never loads torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

HEAVY_OWNERS = {
    "sentence_transformers": {"retrieval/dense.py"},
    "torch": {"retrieval/dense.py"},  # the ONNX export's tracing included (write_onnx)
    "transformers": {"retrieval/dense.py"},
    "faiss": {"retrieval/dense.py"},
    "onnxruntime": {"retrieval/onnx_embedder.py", "retrieval/onnx_export.py"},
    "onnx": set(),  # used through torch.onnx and ONNX Runtime's quantizer only
}
TORCH_FAMILY = ("torch", "transformers", "sentence_transformers")
PACKAGES = ["app", "engine", "ingest", "models", "retrieval"]


def test_importing_retrieval_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import retrieval.hybrid, retrieval.index_store, retrieval.embedder, retrieval.dense\n"
        "import retrieval.embedders, retrieval.onnx_embedder, retrieval.onnx_export\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers',"
        " 'onnxruntime', 'onnx')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_each_heavy_library_has_one_importer_and_imports_it_inside_a_function() -> None:
    sources = [p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")]
    sources.append(REPO_ROOT / "main.py")
    for library, owner in HEAVY_OWNERS.items():
        pattern = re.compile(rf"^(\s*)(?:import|from) {library}\b", re.MULTILINE)
        importers = {}
        for path in sources:
            if path.is_file():
                found = pattern.findall(path.read_text(encoding="utf-8"))
                if found:
                    importers[path.relative_to(REPO_ROOT).as_posix()] = found
        assert set(importers) <= owner, f"{library} imported outside {owner}: {set(importers)}"
        # Indented: inside a function (or an `if TYPE_CHECKING:` block), never at import time.
        for importer, indents in importers.items():
            assert all(indents), f"{library} at top level of {importer}"


# Runs the CLI in this process and says, at exit, which of the torch family it imported.
_CLI_REPORTING_IMPORTS = (
    "import atexit, sys\n"
    f"family = {TORCH_FAMILY!r}\n"
    "atexit.register(lambda: print('imported:', [m for m in family if m in sys.modules]))\n"
    "sys.argv = ['longread', *sys.argv[1:]]\n"
    "import main\n"
    "main.cli()\n"
)


@pytest.mark.embedder
@pytest.mark.slow
def test_a_hybrid_search_as_a_whole_process_never_imports_torch(tmp_path: Path) -> None:
    book = tmp_path / "lighthouse.txt"
    book.write_text(
        "The keeper of the lighthouse trimmed the lamp each evening at dusk.\n\n"
        "In the harbour below, the fishing boats came home with herring and mackerel.\n\n"
        "A storm in November broke the great lens, and the keeper wrote to the board.\n",
        encoding="utf-8",
    )
    added = _longread("add", str(book))
    assert added.returncode == 0, added.stderr
    found = _longread("search", "lighthouse", "who fixed the broken lens?", "-k", "2")
    assert found.returncode == 0, found.stderr
    assert "lens" in found.stdout
    assert "imported: []" in found.stdout, found.stdout


def _longread(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`longread ARGUMENTS` in a child (the data dir and ONNX export folder come from the
    environment the fixtures set), reporting its torch-family imports on stdout."""
    command = [sys.executable, "-c", _CLI_REPORTING_IMPORTS, *arguments]
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
