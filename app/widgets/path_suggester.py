"""Completing a typed file path from the filesystem, for the add-files path input.

`complete_path` is the pure part: given what a person typed ("~/Doc", "books/dick"), it
returns that text with its last component completed to the first matching entry (in sorted
order), plus "/" when the entry is a folder. `PathSuggester` hands it to Textual's `Input`,
which shows the rest greyed out and accepts it with the right arrow. It never changes what
was typed (a "~" stays a "~"), because the Input only shows a suggestion that extends the
value. It does not check that a file is readable or of a supported format: adding does.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from textual.suggester import Suggester

SEPARATOR = "/"


def complete_path(typed: str, cwd: Path | None = None) -> str | None:
    """`typed` extended to the first entry its last component starts, or None.

    "~" and "~user" are expanded to find the folder but kept in the result. A relative path
    is looked up under `cwd` (the process's working folder by default). Dotfiles are left
    out unless the typed component itself starts with ".", as a shell does. None when
    nothing matches, the folder cannot be listed, or the entry is already complete.
    """
    if not typed:
        return None
    # On the string, not a Path: Path("books/") drops the "/" that says "inside books".
    expanded = os.path.expanduser(typed)  # noqa: PTH111
    folder_part, separator, prefix = expanded.rpartition(SEPARATOR)
    # "/us" splits into ("", "/", "us"): the folder is the root, not the cwd.
    folder = Path(folder_part or SEPARATOR) if separator else Path()
    if not folder.is_absolute():
        folder = (cwd or Path.cwd()) / folder
    try:
        with os.scandir(folder) as entries:
            names = {
                entry.name: _is_folder(entry)
                for entry in entries
                if entry.name.startswith(prefix)
                and (prefix.startswith(".") or not entry.name.startswith("."))
            }
    except OSError:
        return None
    if not names:
        return None
    name = min(names)
    rest = name[len(prefix) :] + (SEPARATOR if names[name] else "")
    return typed + rest if rest else None


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a link to a folder completes like one
    except OSError:
        return False


class PathSuggester(Suggester):
    """Suggests the completion of the path typed so far (see `complete_path`)."""

    def __init__(self, cwd: Path | None = None) -> None:
        # No cache: the filesystem changes under us (a download finishes, a folder appears).
        # Case-sensitive: the suggestion must extend the typed text exactly, and most
        # filesystems here tell "Books" from "books".
        super().__init__(use_cache=False, case_sensitive=True)
        self._cwd = cwd

    async def get_suggestion(self, value: str) -> str | None:
        # Listing a folder can block (a network mount, a sleeping disk): not on the UI loop.
        return await asyncio.to_thread(complete_path, value, self._cwd)
