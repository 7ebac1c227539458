"""Running a child process that permission bits apply to, even when the tests run as root.

Root ignores permission bits, so a test of an unreadable file or a read-only folder would
prove nothing as root (which CI is). `permission_bound` prefixes a command with setpriv(1)
dropping the two capabilities that let root do so; running as another user instead would
need an interpreter that user can reach, which a venv under /root is not.
"""

from __future__ import annotations

import os
import shutil

import pytest

# The capabilities that let root ignore permission bits.
ROOT_OVERRIDES = "-dac_override,-dac_read_search"


def permission_bound(command: list[str]) -> list[str]:
    """`command` as a process permission bits apply to; skips the test where none can be."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    return [
        setpriv,
        f"--inh-caps={ROOT_OVERRIDES}",
        f"--bounding-set={ROOT_OVERRIDES}",
        "--",
        *command,
    ]


def skip_if_setpriv_refused(output: str) -> None:
    """setpriv may be denied dropping capabilities (some containers): then nothing ran."""
    if output.startswith("setpriv:"):
        pytest.skip(f"setpriv cannot drop capabilities here: {output}")
