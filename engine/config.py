"""Settings: frozen dataclasses loaded from TOML, the environment and CLI flags.

Precedence is defaults < config file < `LONGREAD_*` environment < CLI flags. The file is
`config.toml` in the data dir (or `--config`); its tables are the sections below, and an
unknown table or key is an error that lists the known ones, never silently ignored. The
environment names a key as `LONGREAD_<SECTION>_<KEY>` (`LONGREAD_CHUNKING_MAX_TOKENS=800`);
the data dir itself is `LONGREAD_HOME`, else the platform's user data dir.

Values are checked against each field's type, never coerced across kinds
(engine/setting_values.py: `600.5` is not a whole number). The data dir is made when
settings load, private to its owner (engine/home.py).

`save_settings` writes changed keys back into the file (the TUI's settings screen uses it),
keeping every other table and key, and refuses a value that would not load. `needs_reload`
names the changes that take effect only when the model is loaded again.

It does not read documents or models, and does not decide what a setting means beyond
checking its range.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from engine.errors import ConfigError
from engine.home import default_home, ensure_home
from engine.setting_values import setting_value
from engine.toml_writer import toml_document, write_atomic
from engine.types import KVCacheType, PromptLayout, RopeMethod, Strategy
from ingest.types import ChunkSettings

CONFIG_FILE_NAME = "config.toml"
ENV_PREFIX = "LONGREAD_"
_ENVIRONMENT = "the environment"


@dataclass(frozen=True)
class IngestSettings:
    """What `add` will read."""

    max_file_mb: int = 512  # the biggest file read, in MiB; a bigger one is refused unread

    def __post_init__(self) -> None:
        if self.max_file_mb < 1:
            raise ValueError(f"max_file_mb must be at least 1, got {self.max_file_mb}")

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024


@dataclass(frozen=True)
class ModelSettings:
    """Which GGUF answers, and how it runs."""

    name: str = "default"  # a name from `longread models`, or a path to a .gguf file
    threads: int = 0  # 0: llama.cpp's choice (the physical cores)
    max_answer_tokens: int = 384

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (automatic) or more, got {self.threads}")
        if self.max_answer_tokens < 16:
            raise ValueError(f"max_answer_tokens must be at least 16, got {self.max_answer_tokens}")


@dataclass(frozen=True)
class ContextSettings:
    """How a document is fitted into the model's window (see engine/planner.py)."""

    rope_method: RopeMethod = RopeMethod.YARN  # used past the trained window
    max_rope_factor: float = 4.0
    kv_type: str = "auto"  # auto, f16, q8_0 or q4_0
    layout: str = "auto"  # auto, cached or query-aware
    memory_budget_mb: int = 0  # 0: what the machine has free
    gpu_layers: int = -1  # -1: all that fit on a GPU backend (0 on CPU); else that many

    def __post_init__(self) -> None:
        if self.gpu_layers < -1:
            raise ValueError(f"gpu_layers must be -1 (automatic) or more, got {self.gpu_layers}")
        for key, value, kind in (
            ("kv_type", self.kv_type, KVCacheType),
            ("layout", self.layout, PromptLayout),
        ):
            choices = ["auto", *(member.value for member in kind)]
            if value not in choices:
                raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        if not 1.0 <= self.max_rope_factor <= 32.0:
            raise ValueError(
                f"max_rope_factor must be between 1 and 32, got {self.max_rope_factor}"
            )


# retrieval.embedders.EmbedderRuntime's values, spelled out so reading settings stays free
# of the retrieval package's imports (a test keeps the two the same).
EMBEDDER_RUNTIMES = ("onnx", "onnx-int8", "torch")


@dataclass(frozen=True)
class RetrievalSettings:
    """Search indexes and answers from retrieved passages."""

    embedder: str = "bundled"  # or the folder of any sentence-transformers model
    # What computes embeddings: onnx (fp32, the default), onnx-int8 (faster, see the
    # README for its retrieval figures) or torch.
    embedder_runtime: str = "onnx"
    # Where ONNX exports of the embedder are kept; empty: <data dir>/embedders.
    onnx_dir: str = ""
    top_k: int = 8  # passages retrieved for a RAG answer (as many as fit are used)
    rag_context_tokens: int = 4096  # the window a RAG answer runs in (capped by the model's)

    def __post_init__(self) -> None:
        if self.embedder_runtime not in EMBEDDER_RUNTIMES:
            raise ValueError(
                f"embedder_runtime must be one of {', '.join(EMBEDDER_RUNTIMES)},"
                f" got {self.embedder_runtime!r}"
            )
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.rag_context_tokens < 512:
            raise ValueError(
                f"rag_context_tokens must be at least 512, got {self.rag_context_tokens}"
            )


@dataclass(frozen=True)
class RouterSettings:
    """How the router weighs time, or the strategy it is told to use (see engine/router.py)."""

    # Reading a whole document is worth at most this wait before the first token; past it,
    # a question goes to retrieval unless the document's KV state is already saved.
    latency_budget_seconds: float = 60.0
    strategy: str = "auto"  # auto (the router decides), or a Strategy value: long, beacons, rag

    def __post_init__(self) -> None:
        if not self.latency_budget_seconds > 0:
            raise ValueError(
                f"latency_budget_seconds must be positive, got {self.latency_budget_seconds}"
            )
        if self.strategy != "auto" and self.strategy not in {s.value for s in Strategy}:
            known = ", ".join(["auto", *(s.value for s in Strategy)])
            raise ValueError(f"strategy must be one of {known}, got {self.strategy!r}")

    @property
    def forced_strategy(self) -> Strategy | None:
        """The strategy every question takes, or None when the router decides."""
        return None if self.strategy == "auto" else Strategy(self.strategy)


@dataclass(frozen=True)
class BeaconSettings:
    """How beacon summaries are built (engine/beacon_plan.py); changing any means new beacons."""

    window_tokens: int = 0  # tokens read per beacon; 0: a quarter of the model's window
    max_beacon_tokens: int = 256  # the longest beacon written, so generation stays cheap
    recent_tokens: int = 512  # earlier beacons kept in view while a window is read
    drill_windows: int = 2  # windows searched for passages when a question names specifics

    def __post_init__(self) -> None:
        if self.window_tokens != 0 and self.window_tokens < 64:
            raise ValueError(
                f"window_tokens must be 0 (automatic) or at least 64, got {self.window_tokens}"
            )
        if self.max_beacon_tokens < 16:
            raise ValueError(f"max_beacon_tokens must be at least 16, got {self.max_beacon_tokens}")
        if self.recent_tokens < 0:
            raise ValueError(f"recent_tokens must be 0 or more, got {self.recent_tokens}")
        if self.drill_windows < 0:
            raise ValueError(f"drill_windows must be 0 or more, got {self.drill_windows}")


@dataclass(frozen=True)
class CacheSettings:
    """The on-disk cache of prefilled document KV states."""

    kv_max_mb: int = 2048

    def __post_init__(self) -> None:
        if self.kv_max_mb < 0:
            raise ValueError(f"kv_max_mb must be 0 or more, got {self.kv_max_mb}")


@dataclass(frozen=True)
class UISettings:
    """How the terminal UI looks. The app checks the theme against the themes it has."""

    theme: str = "textual-dark"

    def __post_init__(self) -> None:
        if not self.theme.strip():
            raise ValueError("theme must name a theme, such as textual-dark or textual-light")


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Sections are frozen dataclasses with defaults."""

    home: Path = field(default_factory=default_home)
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    beacons: BeaconSettings = field(default_factory=BeaconSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    ui: UISettings = field(default_factory=UISettings)

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE_NAME


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    home: Path | None = None,
) -> Settings:
    """Build Settings from defaults, the TOML file, the environment and `overrides`.

    `overrides` is {section: {key: value}} from CLI flags; None values are left out. The data
    dir is made if missing (`ensure_home`), before its config file is looked for.
    """
    environ = os.environ if environ is None else environ
    resolved_home = home or (
        Path(environ["LONGREAD_HOME"]).expanduser() if environ.get("LONGREAD_HOME") else None
    )
    resolved_home = ensure_home(resolved_home or default_home())
    path = config_path or resolved_home / CONFIG_FILE_NAME
    layers: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = []
    # Anything at the default path is read, so a folder or a broken file there is reported
    # rather than skipped (and then overwritten by the settings screen).
    if config_path is not None or path.exists():
        layers.append((str(path), _read_toml(path)))
    layers.append((_ENVIRONMENT, _from_environment(environ)))
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        layers.append(("command-line flags", cleaned))
    return Settings(home=resolved_home, **_sections(layers))


def restart_needed(old: Settings, new: Settings) -> bool:
    """Whether going from `old` to `new` changes what the data dir, indexes and caches were
    built from, which a running assistant cannot take on (engine/assistant.py `reconfigure`)."""

    def fixed(settings: Settings) -> tuple[object, ...]:
        retrieval = settings.retrieval
        embedder = (retrieval.embedder, retrieval.embedder_runtime, retrieval.onnx_dir)
        return (settings.home, settings.chunking, embedder, settings.cache)

    return fixed(old) != fixed(new)


RELOAD_KEYS = (
    "model.name",
    "model.threads",
    "context.rope_method",
    "context.max_rope_factor",
    "context.kv_type",
    "context.gpu_layers",
    "context.memory_budget_mb",
)
"""Settings that shape the context plan or the load itself (see `needs_reload`)."""


def changed_values(old: Settings, new: Settings) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} for every setting whose value differs between old and new."""
    changes: dict[str, dict[str, Any]] = {}
    for name in _section_types():
        before, after = getattr(old, name), getattr(new, name)
        for item in dataclasses.fields(after):
            value = getattr(after, item.name)
            if getattr(before, item.name) != value:
                changes.setdefault(name, {})[item.name] = value
    return changes


def needs_reload(old: Settings, new: Settings) -> list[str]:
    """The changed settings ("context.kv_type") that apply only when the model loads again.

    The model stays resident between questions and is reused while a new context plan
    computes the same way (engine/llamacpp/params.py `can_serve`). These settings change
    the model file, the threads or the plan (RoPE scaling, KV type, GPU layers, memory), so
    the next question may load the model again, on its own: no restart, just a slower
    first answer. Everything else (answer length, strategy, theme, ...) applies at once.
    """
    changes = changed_values(old, new)
    return [key for key in RELOAD_KEYS if key.split(".")[1] in changes.get(key.split(".")[0], {})]


def environment_variable(section: str, key: str) -> str:
    """The variable that sets `section.key`: `LONGREAD_<SECTION>_<KEY>`."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def environment_overrides(
    changes: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The `LONGREAD_*` variables that are set and so win over these keys in the file."""
    environ = os.environ if environ is None else environ
    names = (environment_variable(s, k) for s, keys in changes.items() for k in keys)
    return [name for name in names if name in environ]


def save_settings(
    settings: Settings,
    changes: Mapping[str, Mapping[str, Any]] | None = None,
    path: Path | None = None,
) -> Path:
    """Write `changes` ({section: {key: value}}) into the config file; return its path.

    The file is `path`, else `settings.config_path`; with `changes` None, every key of every
    section of `settings` is written. Every table and key already in the file is kept, the
    given keys replaced or added. The result is checked the way `load_settings` reads it
    before anything is written: a value that would not load raises ConfigError and leaves
    the file as it was. The new file replaces the old one atomically (a reader sees one or
    the other), in the old one's place and with its permissions.

    The file is rewritten from its parsed values, so comments and formatting in it are
    lost. Only flat tables of strings, numbers and booleans (longread's format) can be
    written; enum values are written as their string.
    """
    target = (path or settings.config_path).expanduser()
    if changes is None:
        changes = {name: dataclasses.asdict(getattr(settings, name)) for name in _section_types()}
    document = _read_toml(target) if target.is_file() else {}
    for section, values in changes.items():
        table = document.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {target} must be a table; fix or remove it")
        table.update(values)
    text = toml_document(document)
    # Check exactly what will be written: the text, parsed back, must load.
    _sections([(str(target), tomllib.loads(text))])
    write_atomic(target.resolve(), text)
    return target


def _sections(layers: list[tuple[str, Mapping[str, Mapping[str, Any]]]]) -> dict[str, Any]:
    """Each section built from the layers (later wins); unknown sections are an error."""
    sections: dict[str, Any] = {}
    for name, section_type in _section_types().items():
        values: dict[str, Any] = {}
        origins: list[str] = []
        for origin, layer in layers:
            checked = _checked(layer.get(name, {}), section_type, name, origin)
            values.update(checked)
            origins += [origin] if checked else []
        try:
            sections[name] = section_type(**values)
        except (TypeError, ValueError) as error:
            where = f" (set in {' and '.join(origins)})" if origins else ""
            raise ConfigError(f"[{name}] settings are invalid{where}: {error}") from error
    for origin, layer in layers:
        unknown = set(layer) - set(sections)
        if unknown:
            raise ConfigError(
                f"unknown section {sorted(unknown)[0]!r} in {origin};"
                f" known sections: {', '.join(sorted(sections))}"
            )
    return sections


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "home"}


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's tables; ConfigError naming the file and the fix for anything else."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} does not exist") from error
    except IsADirectoryError as error:
        raise ConfigError(
            f"config file {path} is a folder; give the path of a TOML file"
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start} cannot be read);"
            " save it as UTF-8, or give the path of the TOML file"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"config file {path} cannot be read ({reason})") from error


def _from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, section_type in _section_types().items():
        for key in (f.name for f in dataclasses.fields(section_type)):
            variable = environment_variable(name, key)
            if variable in environ:
                found.setdefault(name, {})[key] = environ[variable]
    return found


def _checked(
    values: Mapping[str, Any], section_type: type, section: str, origin: str
) -> dict[str, Any]:
    """Values for `section_type`, converted to each field's type; unknown keys rejected."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{section}] in {origin} must be a table")
    hints = get_type_hints(section_type)
    known = {f.name for f in dataclasses.fields(section_type)}
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"unknown setting {section}.{key} in {origin}; known: {', '.join(sorted(known))}"
            )
        where = f"{section}.{key} in {origin}"
        if origin == _ENVIRONMENT:
            where = f"{environment_variable(section, key)} in the environment ({section}.{key})"
        try:
            converted[key] = setting_value(value, hints[key])
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from error
    return converted
