"""One question and its answer in the chat: the question, a route badge, the answer as
Markdown (streamed while it is written), and a footer with time, reuse and caveats.

Streaming appends fragments through Textual's `MarkdownStream`, which parses only what is
new; the finished answer is rendered once in full, so a long answer costs linear work, not a
re-render per token. The block holds no engine logic: it shows an `Answer` or a saved `Turn`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from engine.caveats import answer_caveat
from engine.history import Turn, prefill_reused
from engine.types import Answer, Route, Strategy

STRATEGY_LABELS = {
    Strategy.LONG_CONTEXT: "whole document",
    Strategy.BEACONS: "beacons",
    Strategy.RAG: "retrieval",
}


def badge_text(strategy: Strategy, escalated: bool) -> str:
    """The route as a person reads it: 'retrieval', or 'whole document · escalated'."""
    label = STRATEGY_LABELS[strategy]
    return f"{label} · escalated" if escalated else label


def answer_footer(seconds: float, state_loaded: bool) -> str:
    reuse = " · saved state reused" if state_loaded else ""
    return f"{seconds:.1f} s{reuse}"


class AnswerBlock(Vertical):
    """A question, its route badge, its answer and the answer's footer."""

    DEFAULT_CSS = """
    AnswerBlock { height: auto; margin: 0 0 1 0; }
    AnswerBlock .question {
        background: $boost; color: $text; padding: 0 1; text-style: bold; width: 100%;
    }
    AnswerBlock > Horizontal { height: 1; width: 100%; }
    AnswerBlock .badge { background: $primary; color: $text; padding: 0 1; }
    AnswerBlock .badge.escalated { background: $warning; color: $text; }
    AnswerBlock .status { color: $text-muted; padding: 0 1; }
    AnswerBlock Markdown { margin: 0; padding: 0 1; }
    AnswerBlock .footer { color: $text-muted; padding: 0 1; height: auto; }
    AnswerBlock .caveat { color: $warning; padding: 0 1; height: auto; }
    AnswerBlock.set-aside Markdown { color: $text-muted; }
    AnswerBlock.cancelled .footer { color: $error; }
    """

    def __init__(self, question: str, turn: Turn | None = None) -> None:
        super().__init__()
        self.question = question
        self.text = turn.text if turn is not None else ""
        self.answer: Answer | None = None
        self._turn = turn
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Static(self.question, classes="question", markup=False)
        with Horizontal():
            yield Label("", classes="badge")
            yield Label("", classes="status")
        yield Markdown(self.text)
        yield Static("", classes="caveat")
        yield Static("", classes="footer")

    def on_mount(self) -> None:
        self.query_one(".badge", Label).display = False
        self.query_one(".caveat", Static).display = False
        if self._turn is not None:
            self._show_turn(self._turn)

    # -- while the answer is written -----------------------------------------------------

    def show_route(self, route: Route, escalated: bool = False) -> None:
        badge = self.query_one(".badge", Label)
        badge.update(badge_text(route.strategy, escalated))
        badge.tooltip = route.reason
        badge.set_class(escalated, "escalated")
        badge.display = True

    def show_status(self, status: str) -> None:
        self.query_one(".status", Label).update(status)

    async def append(self, fragment: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        self.text += fragment
        await self._stream.write(fragment)

    async def finish(self, answer: Answer) -> None:
        """Settle on the final answer: one full render, the badge, time and caveats."""
        self.answer = answer
        await self._stop_stream()
        self.text = answer.text
        await self.query_one(Markdown).update(answer.text or "_(no answer)_")
        self.show_status("")
        if answer.route is not None:
            self.show_route(answer.route, escalated=answer.escalated)
        self._show_caveat(answer_caveat(answer))
        footer = answer_footer(answer.timings.total_seconds, prefill_reused(answer.timings))
        self.set_class(answer.cancelled, "cancelled")
        if answer.cancelled:
            footer = f"cancelled after {footer} · not saved"
        self.query_one(".footer", Static).update(footer)

    async def set_aside(self, attempt: Answer, reason: str) -> None:
        """This block held a first attempt that the assistant set aside (Self-Route)."""
        await self.finish(attempt)
        self.add_class("set-aside")
        self._show_caveat(f"Set aside: {reason}. Asking again with more of the document.")

    async def _stop_stream(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None

    def _show_caveat(self, caveat: str | None) -> None:
        widget = self.query_one(".caveat", Static)
        widget.update(caveat or "")
        widget.display = caveat is not None

    def _show_turn(self, turn: Turn) -> None:
        badge = self.query_one(".badge", Label)
        badge.update(badge_text(turn.strategy, turn.escalated))
        badge.tooltip = turn.route_reason
        badge.set_class(turn.escalated, "escalated")
        badge.display = True
        self._show_caveat(turn.caveat)
        self.query_one(".footer", Static).update(answer_footer(turn.seconds, turn.state_loaded))
