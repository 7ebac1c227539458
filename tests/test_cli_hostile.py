"""Hostile input through the real CLI: one `add` of several bad files and a good one, and a
damaged library from the first command to `longread repair`.

An unreadable file among good ones runs in a real process that permission bits apply to.
The readers' and the library's own tests cover each case in depth; these check what a
person sees: one line per bad file, the good file still added, exit status 1, no
traceback, a damaged library said as such by every command (the TUI's included) with its
bytes untouched, and `repair` leaving a library that works again.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ingest.library import DATABASE_NAME, Library
from ingest.types import ChunkSettings
from tests.cli_runner import invoke
from tests.conftest import REPO_ROOT
from tests.library_checks import sample_document
from tests.unprivileged import permission_bound, skip_if_setpriv_refused

PAGE = 4096


def _zip_needing_version_6_5(path: Path) -> None:
    """A ZIP whose central directory says it needs ZIP 6.5: zipfile raised
    NotImplementedError from the format sniffer on it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at + 6 : at + 8] = (65).to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_one_add_of_hostile_files_adds_the_good_one_and_names_each_bad_one(
    tmp_path: Path, isolated_home: Path
) -> None:
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)  # opened, it would block `add` forever
    bad_zip = tmp_path / "bundle.zip"
    _zip_needing_version_6_5(bad_zip)
    marked = tmp_path / "marked.html"
    marked.write_text(
        "<html><body><p>Hello world.</p><![foo[ x ]]></body></html>", encoding="utf-8"
    )
    good = tmp_path / "good.txt"
    good.write_text("The lighthouse keeper counted the ships at dawn.\n", encoding="utf-8")

    result = invoke("add", str(pipe), str(bad_zip), str(good))
    assert result.exit_code == 1, result.output
    assert "pipe.txt is not a regular file (a named pipe)" in result.output
    assert "bundle.zip" in result.output and "damaged ZIP archive" in result.output
    assert "✓ good" in result.output
    assert "2 of 3 files could not be added" in result.output

    # Marked sections no longer stop the parser: the page is read for its text.
    result = invoke("add", str(marked))
    assert result.exit_code == 0, result.output
    listed = invoke("list").output
    assert "good" in listed and "marked" in listed


@pytest.fixture
def damaged_home(isolated_home: Path) -> tuple[Path, bytes]:
    """A library of 30 documents with 8 KiB of seeded garbage over pages in its middle."""
    with Library(isolated_home) as library:
        for n in range(30):
            body = f"Book {n} opens. " + f"In part {n} the tide rose over the wall. " * 60
            assert library.save(*sample_document(f"Book {n:02d}", body), ChunkSettings())
    path = isolated_home / DATABASE_NAME
    healthy = path.read_bytes()
    middle = len(healthy) // 2 // PAGE * PAGE
    garbage = random.Random(3).randbytes(2 * PAGE)
    path.write_bytes(healthy[:middle] + garbage + healthy[middle + 2 * PAGE :])
    return isolated_home, path.read_bytes()


@pytest.mark.parametrize(
    "args",
    [["list"], ["search", "Book 01", "tide"], ["show", "Book 02"], ["tui"]],
    ids=["list", "search", "show", "tui"],
)
def test_every_command_on_a_damaged_library_says_so_and_changes_nothing(
    damaged_home: tuple[Path, bytes], args: list[str]
) -> None:
    home, damaged = damaged_home
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: the library file") and result.output.count("\n") == 1
    assert "is damaged" in result.output and "longread repair" in result.output
    assert hashlib.sha256((home / DATABASE_NAME).read_bytes()).digest() == (
        hashlib.sha256(damaged).digest()
    )


def test_adding_to_a_damaged_library_fails_that_file_and_writes_nothing(
    damaged_home: tuple[Path, bytes], tmp_path: Path
) -> None:
    home, damaged = damaged_home
    new = tmp_path / "new.txt"
    new.write_text("A new book about harbours.\n", encoding="utf-8")
    result = invoke("add", str(new))
    assert result.exit_code == 1, result.output
    assert "new.txt: the library file" in result.output and "is damaged" in result.output
    assert (home / DATABASE_NAME).read_bytes() == damaged


def test_repair_keeps_what_reads_and_the_library_works_again(
    damaged_home: tuple[Path, bytes],
) -> None:
    home, damaged = damaged_home
    result = invoke("repair")
    assert result.exit_code == 1, result.output  # documents were lost: a script must notice
    kept = int(result.output.split("Kept ")[1].split(" ")[0])
    lost = result.output.count("  lost: Book ")
    print(f"repair kept {kept} of 30 documents, lost {lost}")
    assert kept + lost == 30 and 0 < lost < 10
    backups = list(home.glob(f"{DATABASE_NAME}.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged

    listed = invoke("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert listed.output.count('"title": "Book ') == kept
    again = invoke("repair")
    assert again.exit_code == 0 and "is not damaged; nothing was changed" in again.output


def test_an_unreadable_file_among_several_is_skipped_and_the_others_added(
    tmp_path: Path,
) -> None:
    """In a real process that permission bits apply to (as root too: see unprivileged.py)."""
    command = permission_bound([sys.executable, str(REPO_ROOT / "main.py")])
    first, locked, second = (tmp_path / f"{name}.txt" for name in ("first", "locked", "second"))
    for n, path in enumerate((first, locked, second)):
        path.write_text(f"Book {n}: the keeper lit the lamp at dusk.\n", encoding="utf-8")
    locked.chmod(0)
    home = tmp_path / "home"
    child = subprocess.run(
        [*command, "--home", str(home), "add", str(first), str(locked), str(second)],
        env=os.environ | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = child.stdout + child.stderr
    skip_if_setpriv_refused(output)
    assert child.returncode == 1, output
    assert "Traceback" not in output
    assert f"locked.txt: {locked} cannot be read: permission denied" in output
    assert "✓ first" in output and "✓ second" in output
    assert "1 of 3 files could not be added" in output
