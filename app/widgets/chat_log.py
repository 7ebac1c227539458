"""The scrolling log of a conversation, which follows new text only while the reader is at
the bottom.

Textual's anchor keeps a scrolled widget at its end as content grows, until the reader
scrolls away (the anchor is then "released") and again once they come back to the end.
This widget exposes that state as `following` and says when it changes, so the chat can
show a "new text below" marker; it does not know what the text is.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.message import Message


class ChatLog(VerticalScroll):
    """A log anchored to its end; `following` is False while the reader reads further up."""

    class FollowingChanged(Message):
        """The reader left the bottom of the log, or came back to it."""

        def __init__(self, following: bool) -> None:
            super().__init__()
            self.following = following

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._was_following = True

    def on_mount(self) -> None:
        self.anchor()

    @property
    def following(self) -> bool:
        # Textual's own record of the reader scrolling away from an anchored end; geometry
        # (scroll_y against max_scroll_y) lags a layout behind and flickers while text grows.
        return not self._anchor_released

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._say_if_changed()

    def release_anchor(self) -> None:
        super().release_anchor()
        self._say_if_changed()

    def follow(self) -> None:
        """Jump to the newest text and follow it again."""
        self.anchor()
        self._say_if_changed()

    def _say_if_changed(self) -> None:
        if self.following != self._was_following:
            self._was_following = self.following
            self.post_message(self.FollowingChanged(self.following))
