"""Running Python code in a fresh interpreter, with its wall time and its own peak memory.

The peak is the child's own (Linux's VmHWM, read by the child as it ends). `ru_maxrss` of
a child is not: Linux carries the parent's resident size at fork across exec, so a child
of a test process that had loaded models read 1.5 GB before it did anything, and
RUSAGE_CHILDREN is the largest of every child the test session ever had.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Appended to the measured code: prints the peak as the last line of its output.
_REPORT_PEAK = """
import re as _re, resource as _resource, sys as _sys
from pathlib import Path as _Path
_status = _Path("/proc/self/status")
_found = _re.search(r"VmHWM:\\s*(\\d+) kB", _status.read_text()) if _status.exists() else None
if _found:
    _peak_kb = int(_found[1])
else:  # not Linux: ru_maxrss, in bytes on macOS
    _peak_kb = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    _peak_kb //= 1024 if _sys.platform == "darwin" else 1
print(_peak_kb)
"""


@dataclass(frozen=True)
class Measured:
    output: str  # what the code printed, the peak's line left out
    seconds: float
    peak_mb: float


def run_measured(code: str, *args: str, timeout: float) -> Measured:
    """Run `python -c code args` from the repository root; it must exit 0 within `timeout`
    seconds (a hang fails the test rather than stalling it)."""
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-c", code + _REPORT_PEAK, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr
    *lines, peak_kb = finished.stdout.splitlines()
    return Measured("\n".join(lines), seconds, int(peak_kb) / 1024)
