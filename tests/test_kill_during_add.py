"""`longread add` killed mid-way (SIGKILL) leaves the library intact, and a re-run completes.

The kill lands at several points of adding a large PDF (reading, chunking, or inside the
save transaction); after each, every document in the library must be whole and nothing
orphaned. Then the same command, run again, adds what is missing and skips what is there.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.library_checks import assert_consistent
from tests.pdf_factory import make_pdf, write_pdf

PAGE = "\n".join(
    f"Line {n} of a long report about tides, harbours and the keepers." for n in range(40)
)


def _document_count(home: Path) -> int:
    path = home / "library.sqlite3"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the schema is not created yet
    finally:
        db.close()


def _start_add(home: Path, paths: list[Path]) -> subprocess.Popen[bytes]:
    env = os.environ | {"LONGREAD_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), "add", *map(str, paths)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_killed_add_leaves_the_library_whole_and_a_rerun_completes(
    tmp_path: Path, isolated_home: Path
) -> None:
    first = tmp_path / "first.md"
    first.write_text("# First\n\nA short note that is added before the big report.\n")
    big = write_pdf(tmp_path / "report.pdf", make_pdf([PAGE] * 400, title="Tide Report"))
    last = tmp_path / "last.md"
    last.write_text("# Last\n\nA short note that comes after the big report.\n")
    paths = [first, big, last]

    for delay in (0.0, 0.5, 1.5, 3.0):
        process = _start_add(isolated_home, paths)
        deadline = time.monotonic() + 60
        while _document_count(isolated_home) < 1 and process.poll() is None:
            assert time.monotonic() < deadline, "the first file was never added"
            time.sleep(0.02)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        titles = assert_consistent(isolated_home)
        assert "First" in titles
        print(f"killed after {delay:.1f} s: library holds {sorted(titles)}")

    rerun = _start_add(isolated_home, paths)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    assert sorted(assert_consistent(isolated_home)) == ["First", "Last", "Tide Report"]
    assert b"already in the library" in output
