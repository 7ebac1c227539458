"""The Textual app: the factory that `longread`, `longread tui` and the tests share.

`create_app` wires an `Assistant` (the engine facade) into `LongreadApp`, which opens on the
library screen. The app owns what every screen shares: the facade, the theme, a registry of
cancel events so that quitting stops any running work at once, and a command palette that
offers every action the current screen binds. It holds no engine logic: screens call the
facade from thread workers and turn its data and events into widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from app.cancel import CancelRegistry
from app.screens.help import HelpScreen
from app.screens.library import LibraryScreen
from engine.assistant import Assistant
from engine.config import Settings

LIGHT_THEME = "textual-light"
DARK_THEME = "textual-dark"


class LongreadApp(App[None]):
    """longread's reading room: a library of documents and a chat with each."""

    CSS_PATH = "app.tcss"
    TITLE = "longread"
    SUB_TITLE = "ask your books and PDFs, offline"
    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
    ]

    def __init__(self, assistant: Assistant) -> None:
        super().__init__()
        self.assistant = assistant
        self.cancels = CancelRegistry()

    @property
    def settings(self) -> Settings:
        return self.assistant.settings

    def on_mount(self) -> None:
        theme = self.settings.ui.theme
        self.theme = theme if theme in self.available_themes else DARK_THEME
        self.push_screen(LibraryScreen(self.assistant))

    async def action_quit(self) -> None:
        self.cancels.cancel_all()  # before exiting: the interpreter waits for workers
        self.exit()

    def on_unmount(self) -> None:
        self.cancels.cancel_all()

    # -- app-wide actions ----------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.theme == DARK_THEME else DARK_THEME

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every action the screen binds (with its key), then Textual's own commands."""
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            yield SystemCommand(
                binding.description,
                binding.tooltip or f"key: {active.binding.key_display or key}",
                partial(self.run_action, binding.action, active.node),
            )
        yield from super().get_system_commands(screen)


def create_app(settings: Settings | None = None, assistant: Assistant | None = None) -> LongreadApp:
    """The app over `assistant` (or a new one for `settings`); the caller closes the facade."""
    if assistant is None:
        from engine.config import load_settings

        assistant = Assistant(settings or load_settings())
    return LongreadApp(assistant)


def run_tui(settings: Settings) -> None:
    """Run the TUI until the person quits, then free the model and the library.

    The library is read once before the app starts, so a damaged or read-only one raises
    its clear error here, for the CLI to print, rather than inside the app's first frame.
    """
    with Assistant(settings) as assistant:
        assistant.documents()
        create_app(assistant=assistant).run()


def default_export_dir() -> Path:
    """Where conversations are exported: the folder longread was started from."""
    return Path.cwd()
