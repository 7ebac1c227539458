"""Sources: `SourceRef`, a place in a document, and `SourcesPanel`, a list of them.

A `SourceRef` is what the TUI needs to show and open a cited or retrieved passage: the
document, its location label, a snippet and the character span in the document's text. It is
built from an answer's `Citation` or a search `Hit`, so the chat's sources and the document
search share one panel and one way of opening a passage. The panel lists refs (location in
bold, the snippet cut to two lines) and posts `SourcesPanel.Opened` when one is chosen; the
host screen opens the passage. It reads no documents and calls no engine.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from engine.types import Citation
from retrieval.types import Hit

NO_SOURCES = "No sources yet"
SNIPPET_CHARS = 240  # a search hit is a whole chunk (~600 tokens); the panel shows two lines
SNIPPET_LINES = 2
FALLBACK_WIDTH = 40  # before the list has a size, snippets are cut for a narrow side panel


@dataclass(frozen=True)
class SourceRef:
    """A place in a document: its location label, a short snippet, and the span
    [`start`, `end`) of the passage as indexes into the document's text."""

    document_id: str
    location: str
    snippet: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"a source span must satisfy 0 <= start <= end, got {self.span}")

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    @classmethod
    def from_citation(cls, citation: Citation) -> SourceRef:
        return cls(
            citation.document_id, citation.location, citation.snippet, citation.start, citation.end
        )

    @classmethod
    def from_hit(cls, hit: Hit) -> SourceRef:
        chunk = hit.chunk
        return cls(hit.document_id, chunk.location, snippet_of(chunk.text), chunk.start, chunk.end)


def snippet_of(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of `text` on one line, at most `limit` characters, cut at a word."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "…"


def clamp_lines(text: str, width: int, lines: int = SNIPPET_LINES) -> list[str]:
    """`text` wrapped to `width` characters, at most `lines` lines, the last ending in '…'
    where text was cut. Wide (CJK) characters count as one: the list re-wraps such a line,
    which costs a third line, not a lost word."""
    width = max(width, 2)
    wrapped = textwrap.wrap(" ".join(text.split()), width) or [""]
    if len(wrapped) <= lines:
        return wrapped
    kept = wrapped[:lines]
    kept[-1] = kept[-1][: width - 1].rstrip() + "…"
    return kept


class SourcesPanel(Vertical):
    """A keyboard-navigable list of sources; Enter or a click posts `Opened`."""

    DEFAULT_CSS = """
    SourcesPanel { height: 1fr; width: 1fr; }
    SourcesPanel > .empty { color: $text-muted; padding: 1 1; height: auto; }
    SourcesPanel > OptionList { height: 1fr; max-height: 100%; }
    """

    class Opened(Message):
        """A source was chosen: the host shows `ref` in its document."""

        def __init__(self, ref: SourceRef, panel: SourcesPanel) -> None:
            super().__init__()
            self.ref = ref
            self.panel = panel

        @property
        def control(self) -> SourcesPanel:
            return self.panel

    def __init__(
        self,
        refs: Iterable[SourceRef] = (),
        *,
        empty_text: str = NO_SOURCES,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.empty_text = empty_text
        self._refs: tuple[SourceRef, ...] = tuple(refs)
        self._rendered_width = 0

    @property
    def refs(self) -> tuple[SourceRef, ...]:
        return self._refs

    @property
    def option_list(self) -> OptionList:
        return self.query_one(OptionList)

    def compose(self) -> ComposeResult:
        yield Static(self.empty_text, classes="empty", markup=False)
        yield OptionList(markup=False)

    def on_mount(self) -> None:
        self._fill()

    def show(self, refs: Iterable[SourceRef]) -> None:
        """Replace the listed sources (an empty list shows the empty text)."""
        self._refs = tuple(refs)
        if self.is_mounted:
            self._fill()

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focus the list, so that the arrow keys and Enter work at once (the panel itself
        is a container and takes no focus)."""
        self.option_list.focus(scroll_visible)
        return self

    def _fill(self) -> None:
        options = self.option_list
        width = self._width()
        self._rendered_width = width
        options.set_options(Option(self._prompt(ref, width)) for ref in self._refs)
        if self._refs:
            options.highlighted = 0
        options.display = bool(self._refs)
        self.query_one(".empty", Static).display = not self._refs

    def _width(self) -> int:
        width = self.option_list.scrollable_content_region.width
        return width - 1 if width > 1 else FALLBACK_WIDTH  # -1: room for a scrollbar

    @staticmethod
    def _prompt(ref: SourceRef, width: int) -> Text:
        location = ref.location.strip() or "passage"
        snippet = "\n".join(clamp_lines(ref.snippet, width))
        return Text.assemble((location, "bold"), "\n", snippet)

    def on_resize(self) -> None:
        # The list gets its new width after this panel's; re-cut the snippets once it has.
        self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        width = self._width()
        if width == self._rendered_width or not self._refs:
            return
        self._rendered_width = width
        options = self.option_list
        for index, ref in enumerate(self._refs):
            options.replace_option_prompt_at_index(index, self._prompt(ref, width))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self._refs):
            self.post_message(self.Opened(self._refs[event.option_index], self))
