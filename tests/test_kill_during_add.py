"""`longread add` killed mid-way (SIGKILL) leaves the library intact, and a re-run completes.

The kill lands at several points of adding a large PDF (reading, chunking, or inside the
save transaction); after each, every document in the library must be whole and nothing
orphaned. Then the same command, run again, adds what is missing and skips what is there.
"""

from __future__ import annotations

import os
import signal
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


def _wait_for_first(process: subprocess.Popen[bytes]) -> None:
    """Block until the process reports the first file (added, or already there)."""
    assert process.stdout is not None
    for line in process.stdout:
        if b"first.md" in line or b"First" in line:
            return
    raise AssertionError("the process ended without reporting the first file")


def _seconds_after_first_added(home: Path, paths: list[Path]) -> float:
    """Run `add` to the end; how long it ran after the first file was in the library."""
    process = _start_add(home, paths)
    _wait_for_first(process)
    first_done = time.monotonic()
    process.communicate(timeout=300)
    assert process.returncode == 0
    return time.monotonic() - first_done


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

    # How long the big file takes once the first is in, measured here, so that the kills
    # land at known fractions of it: early in reading, mid-way, and in the last moments
    # (chunking and the save transaction).
    reference_home = tmp_path / "reference-home"
    process_time = _seconds_after_first_added(reference_home, paths)
    for fraction in (0.0, 0.3, 0.7, 0.9, 0.95, 0.98):
        process = _start_add(isolated_home, paths)
        _wait_for_first(process)
        time.sleep(process_time * fraction)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        titles = assert_consistent(isolated_home)
        assert "First" in titles
        print(f"killed at {fraction:.0%} of the big file: library holds {sorted(titles)}")

    rerun = _start_add(isolated_home, paths)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    assert sorted(assert_consistent(isolated_home)) == ["First", "Last", "Tide Report"]
    assert b"already in the library" in output
