"""Sources in the TUI: the sources panel, the passage screen and the document search, driven
by Textual's Pilot in a tiny host app. The search runs a real `Assistant` (library, indexes,
hybrid search) with FakeRuntime and FakeEmbedder behind its seams.

pytest-asyncio is not a dependency, so each test runs its scenario with `asyncio.run`.
Conditions that depend on a worker thread or a refresh are awaited in bounded loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from textual.app import ComposeResult
from textual.document._document import Document as TextDocument
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static

from app.screens.passage import (
    PassageScreen,
    PassageView,
    location_of,
    region_around,
    view_text,
)
from app.widgets.document_search import DocumentSearch
from app.widgets.sources import NO_SOURCES, SourceRef, SourcesPanel, clamp_lines, snippet_of
from engine.assistant import Assistant
from engine.config import load_settings
from engine.errors import EngineError
from engine.types import Citation
from ingest.types import Chunk
from retrieval.types import Hit, IndexProgress
from tests.app.harness import NoteTakingApp
from tests.fake_llm import FakeRuntime
from tests.fakes import FakeEmbedder

SIZE = (100, 30)


class Host(NoteTakingApp):
    """Mounts one widget and records what reaches the app: opened sources, notifications,
    and any Input.Submitted that escaped the widget."""

    def __init__(self, make: Callable[[], Widget]) -> None:
        super().__init__()
        self._make = make
        self.opened: list[SourceRef] = []
        self.submitted: list[str] = []

    def compose(self) -> ComposeResult:
        yield self._make()

    def on_sources_panel_opened(self, message: SourcesPanel.Opened) -> None:
        self.opened.append(message.ref)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submitted.append(event.value)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], rounds: int = 200) -> bool:
    """Pause until `condition` holds, at most `rounds` short pauses (about 4 s)."""
    for _ in range(rounds):
        if condition():
            return True
        await pilot.pause(0.02)
    return condition()


REFS = (
    SourceRef("doc", "p. 3", "The keeper climbed the stairs at dusk to light the lamp.", 10, 60),
    SourceRef("doc", "p. 17", "A ship ran aground on the northern reef in the storm.", 300, 350),
    SourceRef("doc", "Chapter 4", "The key hung on a nail by the kitchen door. " * 6, 900, 1200),
)


# -- SourceRef and the panel -------------------------------------------------------------------


def test_a_source_ref_comes_from_a_citation_or_a_hit() -> None:
    citation = Citation("doc", "p. 2", "a snippet", 5, 40, chunk_ordinal=1)
    assert SourceRef.from_citation(citation) == SourceRef("doc", "p. 2", "a snippet", 5, 40)

    chunk = Chunk(3, "word " * 200, 1000, 2000, "Chapter 2", 200, 1)
    ref = SourceRef.from_hit(Hit("doc", 3, 0.5, 1, chunk))
    assert (ref.document_id, ref.location, ref.span) == ("doc", "Chapter 2", (1000, 2000))
    assert len(ref.snippet) <= 240
    assert ref.snippet.endswith("…")
    assert ref.snippet.startswith("word word")

    with pytest.raises(ValueError):
        SourceRef("doc", "p. 1", "", 10, 5)


def test_snippets_are_cut_at_words_and_to_two_lines() -> None:
    assert snippet_of("short  text\nhere") == "short text here"
    cut = snippet_of("alpha beta gamma delta", limit=12)
    assert cut == "alpha beta…"
    lines = clamp_lines("one two three four five six seven eight nine ten", 10)
    assert len(lines) == 2
    assert lines[-1].endswith("…")
    assert all(len(line) <= 10 for line in lines)
    assert clamp_lines("one two", 10) == ["one two"]


def test_the_panel_lists_sources_and_enter_opens_the_highlighted_one() -> None:
    async def scenario() -> None:
        app = Host(lambda: SourcesPanel(id="sources"))
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one(SourcesPanel)
            empty = panel.query_one(".empty", Static)
            assert empty.display and str(empty.content) == NO_SOURCES
            assert not panel.option_list.display

            panel.show(REFS)
            await pilot.pause()
            options = panel.option_list
            assert options.display and not empty.display
            assert options.option_count == 3
            first = options.get_option_at_index(0).prompt
            assert str(first).startswith("p. 3\nThe keeper climbed")
            assert str(options.get_option_at_index(2).prompt).count("\n") == 2  # 2 lines

            panel.focus()
            await pilot.press("down", "enter")
            assert await wait_for(pilot, lambda: len(app.opened) == 1)
            assert app.opened == [REFS[1]]

            panel.show(())
            await pilot.pause()
            assert empty.display and not options.display

    run(scenario)


def test_clicking_a_source_opens_it() -> None:
    async def scenario() -> None:
        app = Host(lambda: SourcesPanel(REFS))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            # Each entry is a location line and up to two snippet lines: row 4 is the second.
            await pilot.click(OptionList, offset=(4, 1 + 3))
            assert await wait_for(pilot, lambda: len(app.opened) == 1)
            assert app.opened == [REFS[1]]

    run(scenario)


# -- offsets and regions ------------------------------------------------------------------------


def test_location_of_agrees_with_the_text_area_line_model() -> None:
    raw = "first line\r\nsecond\u2028third\rfourth\n\nsixth line\x0cseventh\n"
    text = view_text(raw)
    assert len(text) == len(raw)
    document = TextDocument(text)
    assert document.text == text  # the TextArea holds exactly these characters
    for index in range(len(text) + 1):
        assert location_of(text, index) == document.get_location_from_index(index)


def test_a_region_keeps_the_span_and_cuts_at_line_breaks() -> None:
    text = "".join(f"line {i:05d} of the book\n" for i in range(5000))
    start = text.index("line 02500")
    end = start + 40
    low, high = region_around(text, start, end, 1000)
    assert low <= start and end <= high
    assert low == 0 or text[low - 1] == "\n"
    assert high == len(text) or text[high] == "\n"
    assert high - low < 2 * 1000 + 40 + 2 * 30
    assert region_around(text, start, end, None) == (0, len(text))
    one_line = "word " * 10_000  # no line breaks at all: cut at spaces
    low, high = region_around(one_line, 25_000, 25_010, 100)
    assert one_line[low - 1] == " " and one_line[high] == " "


# -- the passage screen -------------------------------------------------------------------------


def long_text(lines: int = 2000) -> str:
    return "".join(
        f"Line {i}: the tide came in over the rocks and the gulls cried over the harbour.\n"
        for i in range(lines)
    )


def span_visible(view: PassageView) -> bool:
    if view.cited is None:
        return False
    top = view.wrapped_document.location_to_offset(view.cited.start).y
    height = view.scrollable_content_region.height
    return height > 0 and view.scroll_y <= top < view.scroll_y + height


async def open_passage(pilot: Pilot[None], screen: PassageScreen) -> PassageView:
    await pilot.app.push_screen(screen)
    view = screen.query_one(PassageView)
    assert await wait_for(pilot, lambda: span_visible(view))
    return view


@pytest.mark.parametrize("context", [None, 20_000, 300])
def test_the_passage_screen_selects_and_centres_a_span_deep_in_a_long_text(
    context: int | None,
) -> None:
    text = long_text()
    start = text.index("Line 1500:") + 12  # mid-line
    end = text.index("Line 1503:") + 7  # three lines down, mid-line too
    ref = SourceRef("doc", "p. 150", "the tide", start, end)

    async def scenario() -> None:
        app = Host(lambda: Static("host"))
        async with app.run_test(size=SIZE) as pilot:
            screen = PassageScreen("Harbour", text, ref, context=context)
            view = await open_passage(pilot, screen)
            assert view.selected_text == text[start:end]
            assert view.read_only and view.soft_wrap
            if context is None:
                assert view.scroll_y > 1000  # scrolled far down, not left at the top
            assert view.cited is not None
            top = view.wrapped_document.location_to_offset(view.cited.start).y
            middle = view.scroll_y + view.scrollable_content_region.height // 2
            if context != 300:  # 300 characters either side is too little text to centre in
                assert abs(top - middle) <= 3  # centred, not merely on screen
            title = str(screen.query_one("#passage-title", Static).content)
            assert "Harbour" in title and "p. 150" in title
            extent = str(screen.query_one("#passage-extent", Static).content)
            assert ("whole document" in extent) == (context is None or context >= len(text))

    run(scenario)


def test_a_span_that_starts_mid_line_is_selected_exactly() -> None:
    text = "Title\n\nThe lamp room key hung on a nail.\r\nBehind the door\u2028was the stair.\n"
    start = text.index("key")
    end = text.index("the stair") + len("the stair")
    ref = SourceRef("doc", "Chapter 1", "key", start, end)

    async def scenario() -> None:
        app = Host(lambda: Static("host"))
        async with app.run_test(size=SIZE) as pilot:
            view = await open_passage(pilot, PassageScreen("Keeper", text, ref))
            assert view.selected_text == view_text(text)[start:end]
            assert view.selected_text.startswith("key hung on a nail. \nBehind the door\n")
            assert view.cited is not None
            assert view.cited.start == (2, text.index("key") - text.index("The lamp"))

    run(scenario)


def test_a_span_past_the_end_of_the_text_opens_at_the_end_without_a_crash() -> None:
    text = long_text(30)
    ref = SourceRef("doc", "p. 9", "", len(text) + 50, len(text) + 80)  # a stale ref

    async def scenario() -> None:
        app = Host(lambda: Static("host"))
        async with app.run_test(size=SIZE) as pilot:
            view = await open_passage(pilot, PassageScreen("Harbour", text, ref))
            assert view.selected_text == ""
            assert view.cited is not None and view.cited.start == location_of(text, len(text))

    run(scenario)


def test_the_cited_span_stays_marked_when_the_cursor_moves_and_q_closes() -> None:
    text = long_text(50)
    start, end = text.index("Line 30:"), text.index("Line 31:")
    ref = SourceRef("doc", "p. 3", "", start, end)

    async def scenario() -> None:
        app = Host(lambda: Static("host"))
        async with app.run_test(size=SIZE) as pilot:
            screen = PassageScreen("Harbour", text, ref)
            view = await open_passage(pilot, screen)
            await pilot.press("down")
            assert view.selected_text == ""  # the selection went with the cursor...
            style = view.get_component_rich_style("passage-view--cited")
            line = view.get_line(30)
            assert any(span.style == style for span in line.spans)  # ...the mark did not
            assert not any(span.style == style for span in view.get_line(29).spans)
            await pilot.press("c")
            assert view.selected_text == text[start:end]
            await pilot.press("q")
            assert await wait_for(pilot, lambda: app.screen is not screen)

    run(scenario)


def test_n_and_p_step_through_the_sources_of_the_same_document() -> None:
    text = long_text(3000)
    refs = [
        SourceRef("doc", f"p. {n}", "", text.index(f"Line {n}:"), text.index(f"Line {n + 1}:"))
        for n in (100, 1500, 2900)
    ]
    elsewhere = SourceRef("other", "p. 1", "", 0, 5)

    async def scenario() -> None:
        app = Host(lambda: Static("host"))
        async with app.run_test(size=SIZE) as pilot:
            screen = PassageScreen("Harbour", text, refs[0], refs=[*refs, elsewhere])
            view = await open_passage(pilot, screen)
            assert screen.refs == tuple(refs)
            for expected in (refs[1], refs[2], refs[0]):
                await pilot.press("n")
                assert screen.ref == expected
                assert await wait_for(pilot, lambda: span_visible(view))
                assert view.selected_text == text[expected.start : expected.end]
            await pilot.press("p")
            assert screen.ref == refs[2]
            assert view.selected_text == text[refs[2].start : refs[2].end]
            assert "source 3 of 3" in str(screen.query_one("#passage-title", Static).content)

    run(scenario)


# -- the document search ------------------------------------------------------------------------

FILLER = (
    "The tide came in over the rocks and went out again, and the gulls cried over the"
    " harbour while the fishing boats rocked at their moorings. "
)
FACT = "The lamp room key hung on a brass nail behind the kitchen door."


@pytest.fixture
def searchable(isolated_home: Path, tmp_path: Path) -> Iterator[tuple[Assistant, str]]:
    path = tmp_path / "harbour.txt"
    path.write_text(f"{FILLER * 60}\n\n{FACT}\n\n{FILLER * 60}", encoding="utf-8")
    settings = load_settings(environ={"LONGREAD_HOME": str(isolated_home)})
    assistant = Assistant(settings, runtime=FakeRuntime(), embedder=FakeEmbedder())
    *_, outcome = assistant.add([path])
    document = getattr(outcome, "document", None)
    assert document is not None
    yield assistant, document.id
    assistant.close()


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


def test_searching_lists_the_planted_passage_first_and_opens_it(
    searchable: tuple[Assistant, str],
) -> None:
    assistant, document_id = searchable
    text = assistant.library.text(document_id)

    async def scenario() -> None:
        app = Host(lambda: DocumentSearch(assistant, document_id))
        async with app.run_test(size=SIZE) as pilot:
            search = app.query_one(DocumentSearch)
            search.focus()
            await type_text(pilot, "brass nail kitchen")
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: not search.searching)
            refs = search.results.refs
            assert refs, search.status
            assert search.status == f"{len(refs)} passages" if len(refs) > 1 else "1 passage"
            assert FACT in text[refs[0].start : refs[0].end]
            assert app.submitted == []  # the query did not reach the host's own inputs

            search.results.focus()
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: len(app.opened) == 1)
            opened = app.opened[0]
            assert opened == refs[0] and opened.document_id == document_id
            assert FACT in text[opened.start : opened.end]

    run(scenario)


def test_a_query_with_no_words_finds_nothing_and_says_so(
    searchable: tuple[Assistant, str],
) -> None:
    assistant, document_id = searchable

    async def scenario() -> None:
        app = Host(lambda: DocumentSearch(assistant, document_id))
        async with app.run_test(size=SIZE) as pilot:
            search = app.query_one(DocumentSearch)
            search.search("?!")
            assert await wait_for(pilot, lambda: not search.searching)
            assert search.status == "no matches"
            assert not search.results.refs

    run(scenario)


class BrokenAssistant:
    """Stands in for the facade where its search fails with an error for the user."""

    def prepare_indexes(self, document_ids: list[str]) -> Iterator[IndexProgress]:
        yield IndexProgress(document_ids[0], 1, 2)

    def search(self, query: str, document_ids: list[str], k: int = 5) -> list[Hit]:
        raise EngineError("the search index cannot be read; run `longread reindex`")


class GatedAssistant:
    """Stands in for the facade with a search that waits until the test lets it finish,
    and answers each query with one hit whose location names the query."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.started: list[str] = []

    def gate(self, query: str) -> threading.Event:
        return self.gates.setdefault(query, threading.Event())

    def prepare_indexes(self, document_ids: list[str]) -> Iterator[IndexProgress]:
        return iter(())

    def search(self, query: str, document_ids: list[str], k: int = 5) -> list[Hit]:
        self.started.append(query)
        assert self.gate(query).wait(5), "the test never released this search"
        chunk = Chunk(0, f"text for {query}", 0, 10, f"found by {query}", 3, 0)
        return [Hit(document_ids[0], 0, 1.0, 1, chunk)]


def test_a_new_query_supersedes_one_still_running() -> None:
    async def scenario() -> None:
        gated = GatedAssistant()
        app = Host(lambda: DocumentSearch(cast(Assistant, gated), "doc"))
        async with app.run_test(size=SIZE) as pilot:
            search = app.query_one(DocumentSearch)
            search.search("first")
            assert await wait_for(pilot, lambda: gated.started == ["first"])
            assert search.searching and search.status == "searching…"
            search.search("second")
            gated.gate("first").set()
            assert await wait_for(pilot, lambda: gated.started == ["first", "second"])
            await pilot.pause()
            assert search.searching  # the first search's results were not shown
            assert not search.results.refs
            gated.gate("second").set()
            assert await wait_for(pilot, lambda: not search.searching)
            assert [ref.location for ref in search.results.refs] == ["found by second"]
            assert search.status == "1 passage"

    run(scenario)


def test_an_engine_error_becomes_a_notification_not_a_crash() -> None:
    async def scenario() -> None:
        assistant = cast(Assistant, BrokenAssistant())
        app = Host(lambda: DocumentSearch(assistant, "doc"))
        async with app.run_test(size=SIZE) as pilot:
            search = app.query_one(DocumentSearch)
            search.search("lamp")
            assert await wait_for(pilot, lambda: not search.searching)
            assert search.status == "search failed"
            assert [(n.message, n.severity) for n in app.notes] == [
                ("the search index cannot be read; run `longread reindex`", "error")
            ]
            assert app.is_running

    run(scenario)
