"""The settings dialog: model, strategy, context plan limits, answer length and theme.

It edits the settings a person is likely to change from the TUI, writes the changed keys to
the config file (engine.config.save_settings keeps everything else in it) and dismisses
with the settings now in force: the file's values with `LONGREAD_*` variables still on top,
as `load_settings` reads them. It says when a change loads the model again on the next
question (engine.config.needs_reload), and when a variable in the environment overrides a
value just saved. A GGUF can be registered from here; reading its header runs in a thread
worker. Theme changes are previewed at once and undone on cancel.

It does not apply the settings to the assistant: whoever pushed it does, with the result.
Settings it does not show (chunking, retrieval, cache, layout) stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.validation import Integer, Number, ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from engine.assistant import Assistant
from engine.config import (
    Settings,
    changed_values,
    environment_overrides,
    load_settings,
    needs_reload,
    save_settings,
)
from engine.errors import USER_ERRORS, ConfigError
from engine.types import KVCacheType, RopeMethod, Strategy
from models.catalog import ModelEntry

STRATEGIES: tuple[tuple[str, str], ...] = (
    ("auto: the router decides", "auto"),
    ("whole document", Strategy.LONG_CONTEXT.value),
    ("beacons", Strategy.BEACONS.value),
    ("retrieval", Strategy.RAG.value),
)
ROPE_METHODS: tuple[tuple[str, str], ...] = (
    ("YaRN", RopeMethod.YARN.value),
    ("linear", RopeMethod.LINEAR.value),
    ("NTK-aware", RopeMethod.NTK.value),
    ("none: never stretch the window", RopeMethod.NONE.value),
)
KV_TYPES: tuple[tuple[str, str], ...] = (
    ("auto: f16, quantized only when short of memory", "auto"),
    *((kind.value, kind.value) for kind in KVCacheType),
)
PREFERRED_THEMES = ("textual-dark", "textual-light")
LABELS = {
    "model.name": "model",
    "model.threads": "threads",
    "context.rope_method": "RoPE method",
    "context.max_rope_factor": "maximum RoPE factor",
    "context.kv_type": "KV type",
    "context.gpu_layers": "GPU layers",
    "context.memory_budget_mb": "memory budget",
}
"""How a setting is named to the person in notes about reloading."""
FIELD_NAMES = {
    "model": "the model",
    "strategy": "the strategy",
    "rope-method": "the RoPE method",
    "max-rope-factor": "the maximum RoPE factor",
    "kv-type": "the KV type",
    "gpu-layers": "GPU layers",
    "max-answer-tokens": "the answer length",
}


class FieldError(ValueError):
    """A field of the form holds a value that cannot be saved; `field_id` says which, and
    the message says what it must be ("a number from 1 to 32")."""

    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id = field_id


class SettingsScreen(ModalScreen[Settings | None]):
    """Dismisses with the saved Settings, or None when cancelled or nothing changed."""

    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > #dialog {
        width: 96; max-width: 100%; height: 100%; max-height: 44;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SettingsScreen #title { text-style: bold; width: 100%; padding: 0 1; }
    SettingsScreen #fields { height: 1fr; }
    SettingsScreen .row { height: auto; }
    SettingsScreen .row > Label { width: 18; padding: 1 1 0 0; }
    SettingsScreen .row > Select, SettingsScreen .row > Input { width: 1fr; }
    SettingsScreen .row > Button { margin-left: 1; }
    SettingsScreen .hint { color: $text-muted; padding-left: 18; }
    SettingsScreen .error { color: $error; padding-left: 18; display: none; }
    SettingsScreen .error.-shown { display: block; }
    SettingsScreen #note { color: $warning; height: auto; padding: 0 1; }
    SettingsScreen #buttons { height: auto; align: right middle; }
    SettingsScreen #buttons > Button { margin-left: 2; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("escape", "cancel", "Cancel"),
        # priority: ctrl+s must save even while an Input (which has its own keys) has focus.
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    class ModelAdded(Message):
        """A GGUF was registered by the worker."""

        def __init__(self, entry: ModelEntry) -> None:
            super().__init__()
            self.entry = entry

    class ModelAddFailed(Message):
        """Registering a GGUF failed; `error` is written for the person."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, assistant: Assistant) -> None:
        super().__init__()
        self.assistant = assistant
        self._original = assistant.settings
        self._entries: list[ModelEntry] = []
        self._original_theme = ""

    # -- building the form ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        settings = self._original
        context = settings.context
        with Vertical(id="dialog"):
            yield Static("Settings", id="title")
            with VerticalScroll(id="fields"):
                with Horizontal(classes="row"):
                    yield Label("Model")
                    yield Select[str](
                        self._model_options(),
                        id="model",
                        allow_blank=False,
                        value=settings.model.name,
                    )
                with Horizontal(classes="row"):
                    yield Label("")
                    yield Input(placeholder="path to a .gguf file", id="gguf-path")
                    yield Button("Add GGUF…", id="add-model")
                yield Static("Any GGUF you own, registered by path (not copied).", classes="hint")
                with Horizontal(classes="row"):
                    yield Label("Strategy")
                    yield Select[str](
                        STRATEGIES, id="strategy", allow_blank=False, value=settings.router.strategy
                    )
                with Horizontal(classes="row"):
                    yield Label("RoPE method")
                    yield Select[str](
                        ROPE_METHODS,
                        id="rope-method",
                        allow_blank=False,
                        value=context.rope_method.value,
                    )
                yield Static(
                    "How a document longer than the model's window is fitted.", classes="hint"
                )
                yield from self._number_row(
                    "Max RoPE factor",
                    "max-rope-factor",
                    f"{context.max_rope_factor:g}",
                    Number(minimum=1, maximum=32, failure_description="a number from 1 to 32"),
                    "How far the window may be stretched: 1 to 32.",
                )
                with Horizontal(classes="row"):
                    yield Label("KV cache")
                    yield Select[str](
                        KV_TYPES, id="kv-type", allow_blank=False, value=context.kv_type
                    )
                yield from self._number_row(
                    "GPU layers",
                    "gpu-layers",
                    str(context.gpu_layers),
                    Integer(minimum=-1, failure_description="-1, 0 or a number of layers"),
                    "-1: all that fit on a GPU (none on a CPU), else that many.",
                )
                yield from self._number_row(
                    "Answer length",
                    "max-answer-tokens",
                    str(settings.model.max_answer_tokens),
                    Integer(minimum=16, failure_description="a whole number, 16 or more"),
                    "Longest answer, in tokens (16 or more).",
                )
                with Horizontal(classes="row"):
                    yield Label("Theme")
                    # What is on screen now, which ctrl+t may have changed since loading.
                    yield Select[str](
                        [(name, name) for name in self._theme_names()],
                        id="theme",
                        allow_blank=False,
                        value=self.app.theme,
                    )
            yield Static("", id="note")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    def _number_row(
        self, label: str, field_id: str, value: str, validator: Validator, hint: str
    ) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(label)
            yield Input(
                value,
                id=field_id,
                validators=[validator],
                validate_on=["changed", "submitted"],
            )
        yield Static("", id=f"{field_id}-error", classes="error")
        yield Static(hint, classes="hint")

    def on_mount(self) -> None:
        self._original_theme = self.app.theme
        self._select("model").focus()

    def _model_options(self) -> list[tuple[str, str]]:
        try:
            self._entries = self.assistant.models()
        except USER_ERRORS as error:  # a damaged catalog: say so, still offer the current one
            self.notify(str(error), severity="error", title="Models", markup=False)
            self._entries = []
        options = []
        for entry in self._entries:
            label = entry.name + (" (bundled)" if entry.is_default else "")
            options.append((label + (" — file missing" if entry.is_missing else ""), entry.name))
        current = self._original.model.name
        # A path, or a model removed since: kept as it is so saving other fields leaves it.
        if current not in {entry.name for entry in self._entries}:
            options.append((f"{current} (from the settings)", current))
        return options

    def _theme_names(self) -> list[str]:
        available = set(self.app.available_themes)
        rest = sorted(available - set(PREFERRED_THEMES))
        return [name for name in PREFERRED_THEMES if name in available] + rest

    # -- reacting to edits ---------------------------------------------------------------

    def on_select_changed(self, event: Select.Changed) -> None:
        theme = event.value if event.select.id == "theme" else None
        if (
            isinstance(theme, str)
            and theme != self.app.theme
            and theme in self.app.available_themes
        ):
            self.app.theme = theme  # a preview: cancel puts the old one back
        self._refresh_note()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "gguf-path":
            return
        result = event.validation_result
        failed = result is not None and not result.is_valid
        self._show_error(event.input.id or "", _failure(result) if failed else None)
        self._refresh_note()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "gguf-path":
            self._start_add()
        else:
            self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add-model":
            self._start_add()
        elif event.button.id == "save":
            self.action_save()
        elif event.button.id == "cancel":
            self.action_cancel()

    def _show_error(self, field_id: str, message: str | None) -> None:
        error = self.query_one(f"#{field_id}-error", Static)
        error.update(f"Must be {message}." if message else "")
        error.set_class(bool(message), "-shown")

    def _refresh_note(self) -> None:
        try:
            reload = needs_reload(self._original, self._candidate())
        except FieldError:
            reload = []
        note = self.query_one("#note", Static)
        note.update(_reload_note(reload))
        note.display = bool(reload)  # no blank line to steal from the fields at 80x24

    # -- adding a model ------------------------------------------------------------------

    def _start_add(self) -> None:
        field = self.query_one("#gguf-path", Input)
        # Paths dragged in from a file manager arrive quoted.
        text = field.value.strip().strip("'\"")
        if not text:
            self.notify("Type the path of a .gguf file first.", severity="warning")
            field.focus()
            return
        self.query_one("#add-model", Button).disabled = True
        self._add_model(Path(text).expanduser())

    @work(thread=True, exclusive=True, group="settings-add-model")
    def _add_model(self, path: Path) -> None:
        """Register the GGUF (its header is read: blocking); only messages reach the screen."""
        try:
            entry = self.assistant.add_model(path)
        except USER_ERRORS as error:
            self.post_message(self.ModelAddFailed(str(error)))
            return
        self.post_message(self.ModelAdded(entry))

    def on_settings_screen_model_added(self, message: ModelAdded) -> None:
        entry = message.entry
        select = self._select("model")
        chosen = select.value
        select.set_options(self._model_options())
        select.value = entry.name
        self.query_one("#gguf-path", Input).value = ""
        self.query_one("#add-model", Button).disabled = False
        self.notify(
            f"Added {entry.name} ({entry.path}). Save to answer with it"
            + (f" instead of {chosen}." if isinstance(chosen, str) else "."),
            title="Model added",
            markup=False,
        )

    def on_settings_screen_model_add_failed(self, message: ModelAddFailed) -> None:
        self.query_one("#add-model", Button).disabled = False
        self.notify(message.error, severity="error", title="Could not add the model", markup=False)

    # -- saving --------------------------------------------------------------------------

    def _select(self, field_id: str) -> Select[str]:
        return self.query_one(f"#{field_id}", Select)

    def _chosen(self, field_id: str) -> str:
        value = self._select(field_id).value
        if not isinstance(value, str):
            raise FieldError(field_id, f"one of the {field_id.replace('-', ' ')} choices")
        return value

    def _number(self, field_id: str, kind: type[int] | type[float]) -> int | float:
        field = self.query_one(f"#{field_id}", Input)
        result = field.validate(field.value)
        if result is not None and not result.is_valid:
            raise FieldError(field_id, _failure(result))
        try:
            return kind(field.value.strip())
        except ValueError:  # "1e3" passes Integer's check but is not how to write a count
            raise FieldError(field_id, "a whole number, written with digits") from None

    def _candidate(self) -> Settings:
        """The settings the form describes; FieldError names the first field that is wrong."""
        old = self._original
        try:
            model = replace(
                old.model,
                name=self._chosen("model"),
                max_answer_tokens=int(self._number("max-answer-tokens", int)),
            )
            context = replace(
                old.context,
                rope_method=RopeMethod(self._chosen("rope-method")),
                max_rope_factor=float(self._number("max-rope-factor", float)),
                kv_type=self._chosen("kv-type"),
                gpu_layers=int(self._number("gpu-layers", int)),
            )
            router = replace(old.router, strategy=self._chosen("strategy"))
            theme = self._select("theme").value
            ui = replace(old.ui, theme=theme if isinstance(theme, str) else old.ui.theme)
        except FieldError:
            raise
        except ValueError as error:  # a section's own check, as when loading the file
            raise FieldError("model", f"valid: {error}") from error
        return replace(old, model=model, context=context, router=router, ui=ui)

    def action_save(self) -> None:
        try:
            new = self._candidate()
        except FieldError as error:
            if error.field_id in {"max-rope-factor", "gpu-layers", "max-answer-tokens"}:
                self._show_error(error.field_id, str(error))
            self.query_one(f"#{error.field_id}").focus()
            self.notify(
                f"Not saved: {FIELD_NAMES.get(error.field_id, error.field_id)} must be {error}.",
                severity="error",
                title="Settings",
                markup=False,
            )
            return
        changes = changed_values(self._original, new)
        if not changes:
            self.notify("Nothing changed, so nothing was saved.", title="Settings")
            self.dismiss(None)
            return
        try:
            path = save_settings(self._original, changes)
        except ConfigError as error:
            self.notify(str(error), severity="error", title="Not saved", markup=False)
            return
        lines = [f"Saved to {path}."]
        try:
            # Read back so the result is what a restart would see: the file, then LONGREAD_*.
            reread = load_settings(home=self._original.home)
        except ConfigError as error:  # a bad LONGREAD_* variable, not the file just written
            lines.append(f"Reading the settings back failed: {error}")
            reread = new
        saved = _with_changed_keys(self._original, reread, changes)
        overridden = environment_overrides(changes)
        note = _reload_note(needs_reload(self._original, saved))
        if note:
            lines.append(note)
        if overridden:
            lines.append(
                f"{', '.join(overridden)} in the environment"
                f" {'overrides' if len(overridden) == 1 else 'override'} the saved value."
            )
        self.notify(
            "\n".join(lines),
            title="Settings saved",
            severity="warning" if overridden else "information",
            timeout=10 if note or overridden else 5,
            markup=False,
        )
        if saved.ui.theme in self.app.available_themes:
            self.app.theme = saved.ui.theme
        self.dismiss(saved)

    def action_cancel(self) -> None:
        if self._original_theme and self.app.theme != self._original_theme:
            self.app.theme = self._original_theme
        self.dismiss(None)


def _with_changed_keys(
    session: Settings, reread: Settings, changes: Mapping[str, Mapping[str, object]]
) -> Settings:
    """`session` with the changed keys taken from `reread` (file, then environment).

    Keys the person did not change keep their session values, so command-line flags the TUI
    was started with still hold after saving.
    """
    sections = {
        section: replace(
            getattr(session, section),
            **{key: getattr(getattr(reread, section), key) for key in keys},
        )
        for section, keys in changes.items()
    }
    return replace(session, **sections)


def _reload_note(reload: list[str]) -> str:
    """Reloading is automatic (the runtime reuses the model only while the plan computes
    the same way), so the note only warns of the slower answer, and says "may": an auto
    KV type that planned f16 anyway, say, changes nothing."""
    if not reload:
        return ""
    names = ", ".join(LABELS.get(key, key) for key in reload)
    return (
        f"The next question may load the model again to apply the new {names},"
        " so its answer may start slower."
    )


def _failure(result: ValidationResult | None) -> str:
    return "; ".join(result.failure_descriptions) if result is not None else "valid"
