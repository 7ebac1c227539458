"""Picking files to add: what typed or pasted text names, the path field, the directory
tree and the list of files waiting to be added.

Pure path handling (`split_paths`, `resolve_paths`) is kept apart from the widgets so that it
is tested without Textual. Nothing here reads a file's content; the add-files screen hands
the chosen paths to the facade.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DirectoryTree, Input, OptionList

from ingest.sniff import READABLE

# Which files of a folder are picked when the whole folder is added. The bytes, not the
# extension, still decide how a file is read; this only keeps a folder's images and
# spreadsheets out of the list.
FOLDER_SUFFIXES = frozenset(
    {".pdf", ".epub", ".txt", ".text", ".md", ".markdown", ".html", ".htm", ".xhtml"}
)


def split_paths(text: str) -> list[str]:
    """The paths in typed or pasted text: one per line.

    A line that starts with a quote or holds an escaped space is split as a shell would,
    because that is what terminals write when files are dropped on them ('a b.pdf' 'c.pdf').
    file:// URIs (what some file managers copy) become paths.
    """
    paths: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        parts = [line]
        if line[0] in "'\"" or "\\ " in line:
            try:
                parts = shlex.split(line)
            except ValueError:  # an unbalanced quote: keep the line as it was typed
                parts = [line]
        paths.extend(_from_uri(part) for part in parts)
    return paths


def _from_uri(text: str) -> str:
    return unquote(urlparse(text).path) if text.startswith("file://") else text


def resolve_paths(typed: Sequence[str], cwd: Path) -> tuple[list[Path], list[str]]:
    """The files to add for what was typed, and a message for each entry that gives none.

    "~" is expanded and relative paths are taken from `cwd`. A folder stands for the files
    directly in it whose extension longread reads (`FOLDER_SUFFIXES`), in name order.
    Blocking (it stats and lists): call it from a thread.
    """
    found: list[Path] = []
    problems: list[str] = []
    for text in typed:
        path = Path(text).expanduser()
        path = path if path.is_absolute() else cwd / path
        try:
            if path.is_dir():
                files = sorted(
                    entry
                    for entry in path.iterdir()
                    if entry.suffix.lower() in FOLDER_SUFFIXES
                    and not entry.name.startswith(".")
                    and entry.is_file()
                )
                if not files:
                    problems.append(f"{path} holds no files longread reads ({READABLE}).")
                found.extend(files)
            elif path.exists():
                found.append(path)
            else:
                problems.append(f"{path} does not exist.")
        except OSError as error:
            problems.append(f"{path} cannot be read: {error.strerror or error}.")
    return found, problems


class PathInput(Input):
    """The path field: Tab accepts the completion, a paste of several paths adds them all."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("tab", "complete", "Complete path", show=False),
    ]

    class PathsPasted(Message):
        """Several paths were pasted at once; they go to the pending list as they are."""

        def __init__(self, paths: list[str]) -> None:
            super().__init__()
            self.paths = paths

    def action_complete(self) -> None:
        before = self.value
        if self.cursor_at_end:
            self.action_cursor_right()  # accepts the suggestion, when there is one
        if self.value == before:
            # Nothing to complete: Tab keeps its usual meaning.
            self.screen.focus_next()

    def _on_paste(self, event: events.Paste) -> None:
        paths = split_paths(event.text)
        if len(paths) > 1:
            # Input keeps only the first line of a paste; these must not be lost.
            event.prevent_default()
            event.stop()
            self.post_message(self.PathsPasted(paths))


class FileTree(DirectoryTree):
    """The browser: Enter on a file adds it, `a` adds the highlighted file or folder."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("a", "screen.add_highlighted", "Add file/folder"),
    ]

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if not path.name.startswith(".")]


class PendingList(OptionList):
    """The files waiting to be added; Delete removes the highlighted one."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("delete,backspace", "screen.remove_pending", "Remove"),
    ]
