"""The passage screen: a source shown in its document, the cited span marked and centred.

The document text is shown read-only in a soft-wrapping `PassageView` (a `TextArea`). The
span [`start`, `end`) of the `SourceRef` is marked, selected (so it can be copied at once)
and scrolled into view when the screen opens; `n`/`p` step through the other sources of the
same answer, Escape or `q` go back. Character offsets are Python `str` indexes into the
document's text; `location_of` turns one into the TextArea's (row, column).

It does not fetch text or search: the host passes the text and the refs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Region
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea
from textual.widgets.text_area import Location, Selection

from app.widgets.sources import SourceRef

# A book is shown from this many characters before the span to this many after it, cut at
# line breaks. The whole text would do, but a TextArea soft-wraps all of it on every resize:
# measured here, a 2 MB book took 1.0 s to open and 0.4 s per resize; 40 kB is instant.
REGION_CHARS = 20_000
# How far past the cut to look for a line break (then a space) to cut at: normalized text
# keeps a paragraph on one line, and a paragraph can be long.
SNAP_CHARS = 2_000
CONTEXT_LINES = 2  # wrapped lines shown above a span too tall to centre

# Characters `str.splitlines` (and so the TextArea) breaks lines at, other than "\n".
_OTHER_BREAKS = re.compile(r"\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def view_text(text: str) -> str:
    """`text` with every line break made a single "\\n", keeping every index in place.

    The TextArea splits lines with `str.splitlines` and joins them with the first newline it
    sees, so a "\\r\\n", a lone "\\r" or a "\\u2028" would shift every location after it. A lone
    break becomes "\\n" and the "\\r" of "\\r\\n" a space: same length, same offsets.
    """
    return _OTHER_BREAKS.sub("\n", text).replace("\r\n", " \n")


def location_of(text: str, index: int) -> Location:
    """The (row, column) of `index` in `text`, whose only line break is "\\n"."""
    if not 0 <= index <= len(text):
        raise ValueError(f"index {index} is outside the text (0..{len(text)})")
    row = text.count("\n", 0, index)
    return (row, index - (text.rfind("\n", 0, index) + 1))


def region_around(text: str, start: int, end: int, context: int | None) -> tuple[int, int]:
    """The span of `text` to show for [start, end): `context` characters either side, cut at
    a line break (else a space) near the cut; the whole text when `context` is None."""
    if context is None:
        return (0, len(text))
    low = max(0, start - context)
    if low > 0:
        cut = text.rfind("\n", max(0, low - SNAP_CHARS), low)
        if cut == -1:
            cut = text.rfind(" ", max(0, low - SNAP_CHARS), low)
        low = cut + 1 if cut != -1 else low
    high = min(len(text), end + context)
    if high < len(text):
        cut = text.find("\n", high, high + SNAP_CHARS)
        if cut == -1:
            cut = text.find(" ", high, high + SNAP_CHARS)
        high = cut if cut != -1 else high
    return (low, high)


class PassageView(TextArea):
    """A read-only, soft-wrapping TextArea that marks one span (`cited`) for as long as it
    is shown, whatever the cursor does, and can scroll it to the middle of the view."""

    COMPONENT_CLASSES = TextArea.COMPONENT_CLASSES | {"passage-view--cited"}
    DEFAULT_CSS = """
    PassageView { height: 1fr; }
    PassageView > .passage-view--cited { background: $warning 35%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", read_only=True, soft_wrap=True, highlight_cursor_line=False, id=id)
        self.cited: Selection | None = None
        self._revealed = False

    def mark(self, start: Location, end: Location) -> None:
        """Mark and select [start, end), and centre it once the view has a size."""
        self.cited = Selection(start, end)
        self.selection = Selection(start, end)
        self.notify_style_update()  # drop rendered lines: the line cache knows no `cited`
        self._revealed = False
        self.call_after_refresh(self.reveal)

    def get_line(self, line_index: int) -> Text:
        line = super().get_line(line_index)
        if self.cited is not None:
            (top, left), (bottom, right) = self.cited
            if top <= line_index <= bottom:
                style = self.get_component_rich_style("passage-view--cited")
                first = left if line_index == top else 0
                last = right if line_index == bottom else len(line)
                line.stylize(style, first, last)
        return line

    def reveal(self) -> None:
        """Scroll the marked span to the middle of the view; a span taller than the view
        starts near the top, so its beginning is what a person sees first."""
        if self.cited is None or not self.scrollable_content_region.height:
            return
        start, end = self.cited
        top = self.wrapped_document.location_to_offset(start).y
        bottom = self.wrapped_document.location_to_offset(end).y
        height = self.scrollable_content_region.height
        if bottom - top + 1 <= height:
            self.scroll_to_region(
                Region(0, top, 1, bottom - top + 1), center=True, animate=False, force=True
            )
        else:
            self.scroll_to(y=max(0, top - CONTEXT_LINES), animate=False, force=True)
        self._revealed = True

    def on_resize(self) -> None:
        # The first size is known only after layout; the text is rewrapped after this
        # handler, so centre after the refresh that follows.
        if not self._revealed:
            self.call_after_refresh(self.reveal)


class PassageScreen(Screen[None]):
    """A source in its document: a header with title and location, then the text with the
    cited span marked, selected and centred."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("escape,q", "close", "Back"),
        Binding("n", "step(1)", "Next source"),
        Binding("p", "step(-1)", "Previous source"),
        Binding("c", "centre", "Back to the passage"),
    ]

    DEFAULT_CSS = """
    PassageScreen { layout: vertical; }
    PassageScreen > #passage-title {
        height: 1; padding: 0 1; background: $boost; text-style: bold;
        text-overflow: ellipsis; text-wrap: nowrap;
    }
    PassageScreen > #passage-extent {
        height: 1; padding: 0 1; color: $text-muted; text-overflow: ellipsis; text-wrap: nowrap;
    }
    """

    def __init__(
        self,
        title: str,
        text: str,
        ref: SourceRef,
        *,
        refs: Sequence[SourceRef] = (),
        context: int | None = REGION_CHARS,
    ) -> None:
        """`refs` are the sources `n`/`p` step through (those of `ref`'s document are kept;
        `ref` is added if missing). `context` is how much text to show either side of the
        span (None: the whole text)."""
        super().__init__()
        self.document_title = title
        self.document_text = text
        self.context = context
        same = [r for r in refs if r.document_id == ref.document_id]
        self.refs: tuple[SourceRef, ...] = tuple(same if ref in same else [ref, *same])
        self.ref = ref
        self.shown_span: tuple[int, int] = (0, 0)
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield Static(id="passage-title", markup=False)
        yield Static(id="passage-extent", markup=False)
        yield PassageView(id="passage")
        yield Footer()

    def on_mount(self) -> None:
        self.show_ref(self.ref)
        self.view.focus()

    @property
    def view(self) -> PassageView:
        return self.query_one(PassageView)

    def show_ref(self, ref: SourceRef) -> None:
        """Show `ref`: load the region of text around it (when it changes) and mark it."""
        text = self.document_text
        start, end = min(ref.start, len(text)), min(ref.end, len(text))  # a stale ref: clamp
        self.ref = ref
        low, high = region_around(text, start, end, self.context)
        shown = view_text(text[low:high])
        view = self.view
        if (low, high) != self.shown_span or not self._loaded:
            self.shown_span = (low, high)
            self._loaded = True
            view.load_text(shown)
        view.mark(location_of(shown, start - low), location_of(shown, end - low))
        self._update_header()

    def _update_header(self) -> None:
        location = self.ref.location.strip() or "passage"
        position = ""
        if len(self.refs) > 1:
            position = f" · source {self.refs.index(self.ref) + 1} of {len(self.refs)}"
        self.query_one("#passage-title", Static).update(
            f"{self.document_title} — {location}{position}"
        )
        low, high = self.shown_span
        total = len(self.document_text)
        if (low, high) == (0, total):
            extent = f"the whole document, {total:,} characters"
        else:
            extent = f"characters {low:,}–{high:,} of {total:,}: the passage and the text around it"
        self.query_one("#passage-extent", Static).update(extent)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # n/p mean nothing with a single source: keep them out of the footer.
        return len(self.refs) > 1 if action == "step" else True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        if len(self.refs) > 1:
            index = (self.refs.index(self.ref) + delta) % len(self.refs)
            self.show_ref(self.refs[index])

    def action_centre(self) -> None:
        cited = self.view.cited
        if cited is not None:
            self.view.selection = cited
            self.view.reveal()
