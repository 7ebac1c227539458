"""The JSON form of longread's domain types: one encoder for every `--json` and batch line.

Frozen dataclasses become objects with their field names; enums their values; paths and
datetimes strings; tuples lists. Properties are not included, so what a script reads is
exactly the dataclass's fields, and a new field shows up in every JSON output at once
instead of drifting between hand-written mappers.

It does not print or write files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, strings, numbers, booleans, None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(to_jsonable(key)): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot express a {type(value).__name__} as JSON")
