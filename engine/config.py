"""Settings: frozen dataclasses loaded from TOML, the environment and CLI flags.

Precedence is defaults < config file < `LONGREAD_*` environment < CLI flags. The file is
`config.toml` in the data dir (or `--config`); its tables are the sections below, and an
unknown table or key is an error that lists the known ones, never silently ignored. The
environment names a key as `LONGREAD_<SECTION>_<KEY>` (`LONGREAD_CHUNKING_MAX_TOKENS=800`);
the data dir itself is `LONGREAD_HOME`, else the platform's user data dir.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, get_type_hints

from engine.errors import ConfigError
from engine.types import KVCacheType, PromptLayout, RopeMethod
from ingest.types import ChunkSettings

CONFIG_FILE_NAME = "config.toml"
ENV_PREFIX = "LONGREAD_"


def default_home() -> Path:
    """The data dir: `LONGREAD_HOME`, else the platform's user data dir for longread."""
    explicit = os.environ.get("LONGREAD_HOME")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_data_path  # deferred: only needed without LONGREAD_HOME

    return user_data_path("longread", appauthor=False)


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
        if self.kv_type != "auto":
            KVCacheType(self.kv_type)
        if self.layout != "auto":
            PromptLayout(self.layout)
        if not 1.0 <= self.max_rope_factor <= 32.0:
            raise ValueError(
                f"max_rope_factor must be between 1 and 32, got {self.max_rope_factor}"
            )


@dataclass(frozen=True)
class RetrievalSettings:
    """Search indexes and answers from retrieved passages."""

    embedder: str = "bundled"  # or the folder of any sentence-transformers model
    top_k: int = 8  # passages retrieved for a RAG answer (as many as fit are used)
    rag_context_tokens: int = 4096  # the window a RAG answer runs in (capped by the model's)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.rag_context_tokens < 512:
            raise ValueError(
                f"rag_context_tokens must be at least 512, got {self.rag_context_tokens}"
            )


@dataclass(frozen=True)
class RouterSettings:
    """How the router weighs time (see engine/router.py)."""

    # Reading a whole document is worth at most this wait before the first token; past it,
    # a question goes to retrieval unless the document's KV state is already saved.
    latency_budget_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.latency_budget_seconds > 0:
            raise ValueError(
                f"latency_budget_seconds must be positive, got {self.latency_budget_seconds}"
            )


@dataclass(frozen=True)
class CacheSettings:
    """The on-disk cache of prefilled document KV states."""

    kv_max_mb: int = 2048

    def __post_init__(self) -> None:
        if self.kv_max_mb < 0:
            raise ValueError(f"kv_max_mb must be 0 or more, got {self.kv_max_mb}")


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Sections are frozen dataclasses with defaults."""

    home: Path = field(default_factory=default_home)
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)

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

    `overrides` is {section: {key: value}} from CLI flags; None values are left out.
    """
    environ = os.environ if environ is None else environ
    resolved_home = home or (
        Path(environ["LONGREAD_HOME"]).expanduser() if environ.get("LONGREAD_HOME") else None
    )
    resolved_home = resolved_home or default_home()
    path = config_path or resolved_home / CONFIG_FILE_NAME
    layers: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = []
    if config_path is not None or path.is_file():
        layers.append((str(path), _read_toml(path)))
    layers.append(("the environment", _from_environment(environ)))
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        layers.append(("command-line flags", cleaned))

    sections: dict[str, Any] = {}
    for name, section_type in _section_types().items():
        values: dict[str, Any] = {}
        for origin, layer in layers:
            values.update(_checked(layer.get(name, {}), section_type, name, origin))
        try:
            sections[name] = section_type(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"[{name}] settings are invalid: {error}") from error
    for origin, layer in layers:
        unknown = set(layer) - set(sections)
        if unknown:
            raise ConfigError(
                f"unknown section {sorted(unknown)[0]!r} in {origin};"
                f" known sections: {', '.join(sorted(sections))}"
            )
    return Settings(home=resolved_home, **sections)


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "home"}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path} does not exist") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error


def _from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, section_type in _section_types().items():
        for key in (f.name for f in dataclasses.fields(section_type)):
            variable = f"{ENV_PREFIX}{name}_{key}".upper()
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
        converted[key] = _convert(value, hints[key], f"{section}.{key}", origin)
    return converted


def _convert(value: Any, target: Any, name: str, origin: str) -> Any:
    """Coerce strings from the environment (and check TOML values) to the field's type."""
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if target is int:
            if isinstance(value, bool):
                raise ValueError(f"expected a whole number, got {value!r}")
            return int(value)
        if target is float:
            return float(value)
        if target is Path or target == (Path | None):
            return Path(str(value)).expanduser()
        if isinstance(target, type) and issubclass(target, Enum):
            return target(value)
        if target is str or target == (str | None):
            return str(value)
    except ValueError as error:
        raise ConfigError(f"{name} from {origin}: {error}") from error
    return value
