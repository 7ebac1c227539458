"""A dialog asking for the password of one encrypted PDF.

It only collects the password; it does not try it. The add-files screen re-runs the file
with it and, when the password turns out wrong, opens this dialog again with `wrong=True`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label


class PasswordScreen(ModalScreen[str | None]):
    """Dismisses with the password typed, or None on Cancel or Escape."""

    DEFAULT_CSS = """
    PasswordScreen { align: center middle; }
    PasswordScreen > Vertical {
        width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    PasswordScreen Label { width: 100%; margin-bottom: 1; }
    PasswordScreen #wrong { color: $error; text-style: bold; }
    PasswordScreen Input { margin-bottom: 1; }
    PasswordScreen Horizontal { height: auto; align: right middle; }
    PasswordScreen Button { margin-left: 2; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, file_name: str, wrong: bool = False) -> None:
        """`file_name` is shown as it is (no markup); `wrong` says the last try failed."""
        super().__init__()
        self.file_name = file_name
        self.wrong = wrong

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.wrong:
                yield Label("That password is wrong. Try again.", id="wrong")
            yield Label(
                f"{self.file_name} is password-protected. Type the password that opens it.",
                markup=False,
            )
            yield Input(placeholder="password", password=True, id="password")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#password", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        password = self.query_one("#password", Input).value
        # An empty password was already tried when the file was read (many PDFs open
        # with one), so sending it again could only fail.
        if password:
            self.dismiss(password)
        else:
            self.notify("Type the password first, or press Escape to skip this file.")
