"""A TOML writer for longread's config file: flat tables of strings, numbers and booleans.

tomllib only reads, and the config file is flat tables of scalars, so this small writer does
rather than another dependency. Strings are basic strings escaped per the TOML spec. It does
not write arrays, inline tables or nested tables, nor keep comments; it writes atomically.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STRING_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_document(document: Mapping[str, Any]) -> str:
    """`document` ({key: scalar} and {table: {key: scalar}}) as TOML text."""
    lines = [
        f"{_toml_key(key)} = {_toml_value(value, key)}"
        for key, value in document.items()
        if not isinstance(value, Mapping)
    ]  # top-level keys must come before the first table header
    for name, table in document.items():
        if not isinstance(table, Mapping):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(name)}]")
        lines.extend(
            f"{_toml_key(key)} = {_toml_value(value, f'{name}.{key}')}"
            for key, value in table.items()
        )
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, name: str) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # "4.0", "1e-05", "inf", "-inf": all valid TOML floats
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise ConfigError(
        f"{name} = {value!r} cannot be saved: a setting is a string, a number or true/false"
    )


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in _STRING_ESCAPES:
            escaped.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:  # other control characters
            escaped.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:  # a lone surrogate has no UTF-8 form
            raise ConfigError(f"{text!r} cannot be saved: it is not valid Unicode text")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def write_atomic(target: Path, text: str) -> None:
    """Write beside the target, then rename over it: a crash leaves the old file whole."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = target.stat().st_mode & 0o777 if target.exists() else None
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise ConfigError(f"{target} cannot be written: {error}") from error
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            temp.chmod(mode)
        temp.replace(target)  # os.replace: atomic on POSIX and Windows
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise ConfigError(f"{target} cannot be written: {error}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
