"""Pilot tests of the settings dialog over a real Assistant with fakes behind its seams:
saving writes config.toml and dismisses with the settings in force (with a note when the
model will load again, or when the environment overrides a saved value); a bad value is
refused and nothing written; escape cancels (and undoes a theme preview); a GGUF added from
the dialog appears in the model list, a corrupt one is an error notification."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widgets import Button, Input, Select, Static

from app.screens.settings import SettingsScreen
from engine.assistant import Assistant
from engine.config import Settings
from tests.app.harness import NoteTakingApp, fake_assistant, wait_for
from tests.gguf_factory import GARBAGE, gguf_bytes, llama_metadata, write_gguf


class Host(NoteTakingApp):
    """Pushes the dialog at once; records what it dismisses with and every notification."""

    def __init__(self, assistant: Assistant) -> None:
        super().__init__()
        self.assistant = assistant
        self.results: list[Settings | None] = []

    def on_mount(self) -> None:
        self.push_screen(SettingsScreen(self.assistant), self.results.append)


def _config(home: Path) -> dict[str, object]:
    return tomllib.loads((home / "config.toml").read_text(encoding="utf-8"))


def test_saving_writes_the_file_and_dismisses_with_the_new_settings(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SettingsScreen)
            screen.query_one("#max-answer-tokens", Input).value = "200"
            screen.query_one("#kv-type", Select).value = "q8_0"
            await pilot.pause()
            # The dialog warns before saving, too.
            assert "KV type" in str(screen.query_one("#note", Static).render())
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(app.results))

        saved = app.results[0]
        assert saved is not None
        assert saved.model.max_answer_tokens == 200 and saved.context.kv_type == "q8_0"
        assert saved.router.strategy == "auto"  # untouched
        assert _config(isolated_home) == {
            "model": {"max_answer_tokens": 200},
            "context": {"kv_type": "q8_0"},
        }
        severity, message = app.notes[-1].severity, app.notes[-1].message
        assert severity == "information"
        assert f"Saved to {isolated_home / 'config.toml'}" in message
        assert "load the model again" in message and "KV type" in message

    asyncio.run(scenario())


def test_a_change_that_applies_at_once_has_no_reload_note(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            app.screen.query_one("#strategy", Select).value = "rag"
            await pilot.pause()
            await pilot.click("#save")
            await wait_for(pilot, lambda: bool(app.results))

        saved = app.results[0]
        assert saved is not None and saved.router.strategy == "rag"
        assert _config(isolated_home) == {"router": {"strategy": "rag"}}
        assert "load the model again" not in app.notes[-1].message

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("#max-rope-factor", "40", "a number from 1 to 32"),
        ("#max-rope-factor", "lots", "a number from 1 to 32"),
        ("#max-answer-tokens", "8", "16 or more"),
        ("#gpu-layers", "-3", "-1, 0 or a number of layers"),
    ],
)
def test_an_invalid_value_is_refused_and_nothing_is_written(
    isolated_home: Path, field: str, value: str, expected: str
) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            screen.query_one("#kv-type", Select).value = "q4_0"  # a valid change beside it
            screen.query_one(field, Input).value = value
            await pilot.pause()
            error = screen.query_one(f"{field}-error", Static)
            assert error.display and expected in str(error.render())
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.screen is screen  # still open
            assert screen.focused is screen.query_one(field, Input)
        assert app.results == []
        assert not (isolated_home / "config.toml").exists()
        severity, message = app.notes[-1].severity, app.notes[-1].message
        assert severity == "error" and "Not saved" in message and expected in message

    asyncio.run(scenario())


def test_escape_cancels_and_undoes_the_theme_preview(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            assert app.theme == "textual-dark"
            app.screen.query_one("#theme", Select).value = "textual-light"
            await pilot.pause()
            assert app.theme == "textual-light"  # previewed at once
            await pilot.press("escape")
            await wait_for(pilot, lambda: bool(app.results))
            assert app.theme == "textual-dark"
        assert app.results == [None]
        assert not (isolated_home / "config.toml").exists()

    asyncio.run(scenario())


def test_a_saved_theme_is_written_and_kept(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            options = app.screen.query_one("#theme", Select)._options
            assert [value for _, value in options][:2] == ["textual-dark", "textual-light"]
            app.screen.query_one("#theme", Select).value = "textual-light"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(app.results))
            assert app.theme == "textual-light"
        saved = app.results[0]
        assert saved is not None and saved.ui.theme == "textual-light"
        assert _config(isolated_home) == {"ui": {"theme": "textual-light"}}

    asyncio.run(scenario())


def test_nothing_changed_writes_nothing(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(app.results))
        assert app.results == [None]
        assert not (isolated_home / "config.toml").exists()

    asyncio.run(scenario())


def test_an_environment_variable_that_overrides_a_saved_value_is_named(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assistant = fake_assistant(isolated_home)  # started without the variable
    monkeypatch.setenv("LONGREAD_MODEL_MAX_ANSWER_TOKENS", "100")

    async def scenario() -> None:
        app = Host(assistant)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            app.screen.query_one("#max-answer-tokens", Input).value = "200"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(app.results))
        saved = app.results[0]
        assert saved is not None and saved.model.max_answer_tokens == 100  # the variable wins
        assert _config(isolated_home) == {"model": {"max_answer_tokens": 200}}
        severity, message = app.notes[-1].severity, app.notes[-1].message
        assert severity == "warning" and "LONGREAD_MODEL_MAX_ANSWER_TOKENS" in message

    asyncio.run(scenario())


def _model_values(select: Select[str]) -> list[str]:
    return [value for _, value in select._options if isinstance(value, str)]


def test_adding_a_gguf_lists_and_selects_it(tmp_path: Path, isolated_home: Path) -> None:
    model = write_gguf(tmp_path / "models" / "Tiny-Llama.gguf", gguf_bytes(llama_metadata()))

    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            select = app.screen.query_one("#model", Select)
            assert "Tiny-Llama" not in _model_values(select)
            app.screen.query_one("#gguf-path", Input).value = f"'{model}'"  # as dragged in
            await pilot.click("#add-model")
            await wait_for(pilot, lambda: select.value == "Tiny-Llama")
            assert "Tiny-Llama" in _model_values(select)
            assert app.screen.query_one("#gguf-path", Input).value == ""
            assert not app.screen.query_one("#add-model", Button).disabled
            assert any("Added Tiny-Llama" in note.message for note in app.notes)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: bool(app.results))
        saved = app.results[0]
        assert saved is not None and saved.model.name == "Tiny-Llama"
        assert [entry.name for entry in app.assistant.models() if entry.is_registered] == [
            "Tiny-Llama"
        ]
        assert "model" in app.notes[-1].message and "load the model again" in app.notes[-1].message

    asyncio.run(scenario())


def test_adding_a_corrupt_gguf_is_an_error_notification(
    tmp_path: Path, isolated_home: Path
) -> None:
    broken = write_gguf(tmp_path / "broken.gguf", GARBAGE)

    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            select = app.screen.query_one("#model", Select)
            before = (_model_values(select), select.value)
            field = app.screen.query_one("#gguf-path", Input)
            field.value = str(broken)
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: bool(app.errors()))
            assert (_model_values(select), select.value) == before
            assert not app.screen.query_one("#add-model", Button).disabled
        message = app.errors()[0].message
        assert str(broken) in message
        assert app.results == []
        assert not any(entry.is_registered for entry in app.assistant.models())

    asyncio.run(scenario())


def test_it_fits_and_scrolls_at_80_by_24(isolated_home: Path) -> None:
    async def scenario() -> None:
        app = Host(fake_assistant(isolated_home))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen_region = Region(0, 0, 80, 24)
            for button in ("#save", "#cancel"):
                region = app.screen.query_one(button, Button).region
                assert region.area and screen_region.contains_region(region), button
            theme = app.screen.query_one("#theme", Select)
            theme.focus()  # focusing scrolls the field into view (after a layout or two)
            await wait_for(
                pilot,
                lambda: bool(theme.region.area) and screen_region.contains_region(theme.region),
            )

    asyncio.run(scenario())
