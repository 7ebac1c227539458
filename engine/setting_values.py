"""One setting's value from TOML or the environment, checked against its field's type.

Text (every environment value) is parsed; any other value must already be of the right
kind, never coerced across kinds: a TOML `600.5` or `true` is not a whole number, a list is
not a number, a choice or a path must be quoted text. A whole number is accepted where a
fraction is expected. Errors are ValueErrors saying what was expected; engine/config.py
adds where the value came from.

It does not check ranges (each settings section does) or know the sections.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

_Number = TypeVar("_Number", int, float)


def setting_value(value: Any, target: Any) -> Any:
    """`value` as the field type `target`; ValueError saying what was expected.

    Text is parsed (the environment's values are all text); any other value must already be
    of the right kind: a TOML `600.5` or `true` is not a whole number, and a list is not a
    number. A whole number is accepted where a fraction is expected.
    """
    text = value if isinstance(value, str) else None
    if target is bool:
        if isinstance(value, bool):
            return value
        lowered = (text or "").strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {_shown(value)}")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        parsed = _parsed(int, text)
        if parsed is None:
            raise ValueError(f"expected a whole number, got {_shown(value)}")
        return parsed
    if target is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float | None = float(value)
        else:
            number = _parsed(float, text)
        if number is None:
            raise ValueError(f"expected a number, got {_shown(value)}")
        return number  # inf is meant (no latency budget); each section checks its range
    if isinstance(target, type) and issubclass(target, Enum):
        if isinstance(value, target):
            return value
        choices = [str(member.value) for member in target]
        if text is None or text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {_shown(value)}")
        return target(text)
    if target is Path or target == (Path | None):
        if text is None:
            raise ValueError(f"expected a path in quotes, got {_shown(value)}")
        return Path(text).expanduser()
    if target is str or target == (str | None):
        if text is None:
            raise ValueError(f"expected text in quotes, got {_shown(value)}")
        return str(text)  # a StrEnum's plain value
    return value


def _shown(value: Any) -> str:
    """A value as the person wrote it: TOML's `true`, not Python's `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _parsed(kind: type[_Number], text: str | None) -> _Number | None:
    """`text` read as an int or a float, or None when there is no text or it is not one."""
    if text is None:
        return None
    try:
        return kind(text.strip())
    except ValueError:
        return None
