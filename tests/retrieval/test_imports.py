"""Heavy libraries are imported lazily, each by exactly one module, so `longread --help` is fast."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY_OWNERS = {
    "sentence_transformers": "retrieval/dense.py",
    "torch": "retrieval/dense.py",
    "faiss": "retrieval/dense.py",
}
PACKAGES = ["app", "engine", "ingest", "models", "retrieval"]


def test_importing_retrieval_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import retrieval.hybrid, retrieval.index_store, retrieval.embedder, retrieval.dense\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers')"
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
        assert set(importers) <= {owner}, f"{library} imported outside {owner}: {set(importers)}"
        # Indented: inside a function (or an `if TYPE_CHECKING:` block), never at import time.
        assert all(indent for indent in importers.get(owner, [])), (
            f"{library} at top level of {owner}"
        )
