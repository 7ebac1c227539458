"""Read a GGUF file's header (its metadata and its tensor table), never its weights.

A GGUF file (versions 2 and 3, little-endian) opens with the magic "GGUF", a version, the
tensor and key/value counts, then the key/value pairs, then one record per tensor (name,
shape, type, offset), then the aligned tensor data. This module parses everything before the
data through a read-only mmap, so only the header's pages are read: a 40 GB model costs what
its header costs. Long arrays (the tokenizer's tens of thousands of tokens and merges) are
stepped over and summarized unless a caller asks for them by key.

`read_profile` maps the metadata onto a `ModelProfile` for the planner and the router.

It does not read or check the weights beyond their extent (a file cut short is caught), does
not validate the tokenizer, and never imports llama_cpp: a file that parses here can still be
refused by llama.cpp, for example for an architecture it does not know.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum
from math import prod
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, TypeAlias, TypeGuard

from models.errors import CorruptModelError, ModelError, ModelNotFoundError, UnsupportedModelError
from models.types import ModelProfile

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = frozenset({2, 3})
DEFAULT_ALIGNMENT = 32
# Per-layer arrays (a few hundred entries at most) are always read; vocabularies and merges
# (tens of thousands) are only summarized unless asked for by key.
DEFAULT_ARRAY_LIMIT = 1024
ROPE_FREQS_TENSOR = "rope_freqs.weight"
DEFAULT_ROPE_FREQ_BASE = 10000.0

_MAX_ARRAY_DEPTH = 8
_MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses tensors with more dimensions
_FTYPE_GUESSED = 1024  # llama.cpp ORs this flag into a file type it guessed
# Old pre-GGUF formats store a little-endian uint32 magic, so their first bytes read backwards.
_LEGACY_MAGICS = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT"}


class ValueType(IntEnum):
    """The type tag of a GGUF metadata value."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR_CODES: dict[ValueType, str] = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "?",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}
_SCALARS: dict[ValueType, struct.Struct] = {
    kind: struct.Struct("<" + code) for kind, code in _SCALAR_CODES.items()
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# The fewest bytes one element can take: a string is at least its length, an array its header.
_MIN_ELEMENT_SIZE: dict[ValueType, int] = {
    **{kind: fmt.size for kind, fmt in _SCALARS.items()},
    ValueType.STRING: 8,
    ValueType.ARRAY: 12,
}
_MIN_KV_SIZE = 8 + 4 + 1  # key length, type tag, the smallest value
_MIN_TENSOR_INFO_SIZE = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset

# ggml tensor types: name, elements per block, bytes per block (from ggml-common.h).
_GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}
# llama.cpp's llama_ftype numbers (general.file_type), named as quantize names them.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    4: "Q4_1_SOME_F16",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}


@dataclass(frozen=True)
class ArraySummary:
    """An array that was stepped over rather than read: what it holds and how many."""

    element_type: ValueType
    length: int


MetadataValue: TypeAlias = "str | int | float | bool | tuple[MetadataValue, ...] | ArraySummary"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor record: `shape` is in GGUF order (fastest-varying dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section

    @property
    def element_count(self) -> int:
        return prod(self.shape)

    @property
    def type_name(self) -> str:
        known = _GGML_TYPES.get(self.ggml_type)
        return known[0] if known else f"type {self.ggml_type}"

    @property
    def byte_size(self) -> int | None:
        """Bytes of data, or None for a type whose block layout this module does not know."""
        known = _GGML_TYPES.get(self.ggml_type)
        if known is None:
            return None
        _, block_elements, block_bytes = known
        return self.element_count * block_bytes // block_elements


@dataclass(frozen=True)
class GGUFMetadata:
    """A GGUF file's header: metadata (long arrays summarized) and its tensor table."""

    path: Path
    version: int
    metadata: Mapping[str, MetadataValue]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int

    @property
    def tensor_count(self) -> int:
        return len(self.tensors)

    @property
    def parameter_count(self) -> int:
        return sum(tensor.element_count for tensor in self.tensors)

    @property
    def has_rope_freqs(self) -> bool:
        return any(tensor.name == ROPE_FREQS_TENSOR for tensor in self.tensors)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) and value else None


class _TruncatedError(Exception):
    """A read ran past the end of the file; the parser turns it into a CorruptModelError."""


class _MalformedError(Exception):
    """The bytes are there but make no sense; the message is the cause shown to the user."""


class _Cursor:
    """Bounds-checked little-endian reads from the mapped file, so garbage can never overrun."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.size = len(data)
        self.pos = 0
        self.where = "the file header"  # what is being read, for the error message

    def need(self, count: int) -> None:
        if self.pos + count > self.size:
            raise _TruncatedError

    def u32(self) -> int:
        self.need(4)
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        self.need(8)
        (value,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> str:
        length = self.u64()
        self.need(length)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        # The spec says UTF-8; a stray byte in a model card is no reason to refuse the model.
        return raw.decode("utf-8", errors="replace")

    def scalar(self, kind: ValueType) -> int | float | bool:
        fmt = _SCALARS[kind]
        self.need(fmt.size)
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value  # type: ignore[no-any-return]

    def scalars(self, kind: ValueType, count: int) -> tuple[int | float | bool, ...]:
        fmt = struct.Struct(f"<{count}{_SCALAR_CODES[kind]}")
        self.need(fmt.size)
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def skip_strings(self, count: int) -> None:
        # The hot loop for a 49k-token vocabulary: locals and no per-string decoding.
        data, pos, size, unpack = self.data, self.pos, self.size, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise _TruncatedError
            (length,) = unpack(data, pos)
            pos += 8 + length
        if pos > size:
            raise _TruncatedError
        self.pos = pos


def read_metadata(
    path: Path | str,
    *,
    array_limit: int | None = DEFAULT_ARRAY_LIMIT,
    full_arrays: Collection[str] = (),
) -> GGUFMetadata:
    """Parse the header of the GGUF file at `path`.

    Arrays longer than `array_limit` are recorded as `ArraySummary` unless their key is in
    `full_arrays`; `array_limit=None` reads every array. Raises ModelNotFoundError for a
    missing file, CorruptModelError for one that is not GGUF or is cut short,
    UnsupportedModelError for a GGUF variant this reader does not handle.
    """
    path = Path(path)
    with _open(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise _corrupt(path, "the file is empty")
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path} cannot be read as a file: {exc}") from exc
        with data:
            return _parse(path, data, array_limit, frozenset(full_arrays))


def read_profile(path: Path | str, sha256: str) -> ModelProfile:
    """Read the GGUF header at `path` and map it onto a ModelProfile; see profile_from_metadata."""
    return profile_from_metadata(read_metadata(path), sha256)


def profile_from_metadata(meta: GGUFMetadata, sha256: str) -> ModelProfile:
    """Map parsed metadata onto a ModelProfile, applying llama.cpp's defaults for absent keys.

    Raises UnsupportedModelError when a key the planner cannot do without is absent (no
    architecture, no trained context length, no attention heads).
    """
    arch = meta.architecture
    if arch is None:
        raise UnsupportedModelError(
            f"{meta.path} has no general.architecture in its metadata, so it is not a model "
            "longread can run (it may be a LoRA adapter or a vocabulary-only file); "
            "use a complete GGUF model file"
        )
    lookup = _Lookup(meta, arch)
    embedding_length = lookup.required_int("embedding_length")
    head_count = lookup.required_int("attention.head_count")
    scaling_type, scaling_factor = lookup.rope_scaling()
    return ModelProfile(
        path=meta.path,
        name=lookup.text("general.name") or meta.path.stem,
        architecture=arch,
        context_length=lookup.required_int("context_length"),
        embedding_length=embedding_length,
        layer_count=lookup.required_int("block_count"),
        head_count=head_count,
        kv_head_count=lookup.arch_int("attention.head_count_kv") or head_count,
        key_length=lookup.arch_int("attention.key_length") or embedding_length // head_count,
        value_length=lookup.arch_int("attention.value_length") or embedding_length // head_count,
        rope_freq_base=lookup.arch_float("rope.freq_base") or DEFAULT_ROPE_FREQ_BASE,
        rope_scaling_type=scaling_type,
        rope_scaling_factor=scaling_factor,
        rope_original_context=lookup.arch_int("rope.scaling.original_context_length"),
        has_rope_freqs=meta.has_rope_freqs,
        # 0 is how some converters write "no sliding window".
        sliding_window=lookup.arch_int("attention.sliding_window") or None,
        parameter_count=meta.parameter_count if meta.tensors else None,
        file_type=_file_type_name(meta),
        has_chat_template=isinstance(meta.metadata.get("tokenizer.chat_template"), str),
        file_size=meta.file_size,
        sha256=sha256,
    )


class _Lookup:
    """Typed reads of metadata values; a value of the wrong type counts as absent."""

    def __init__(self, meta: GGUFMetadata, arch: str) -> None:
        self.meta = meta
        self.arch = arch

    def integer(self, key: str) -> int | None:
        value = self.meta.metadata.get(key)
        if isinstance(value, tuple):
            # Per-layer arrays (OpenELM, Jamba head counts): the largest layer sizes the cache.
            numbers = [item for item in value if _is_int(item)]
            return max(numbers) if numbers else None
        return value if _is_int(value) else None

    def number(self, key: str) -> float | None:
        value = self.meta.metadata.get(key)
        if _is_int(value) or isinstance(value, float):
            return float(value)
        return None

    def text(self, key: str) -> str | None:
        value = self.meta.metadata.get(key)
        return value if isinstance(value, str) and value else None

    def arch_int(self, suffix: str) -> int | None:
        return self.integer(f"{self.arch}.{suffix}")

    def arch_float(self, suffix: str) -> float | None:
        return self.number(f"{self.arch}.{suffix}")

    def required_int(self, suffix: str) -> int:
        value = self.arch_int(suffix)
        if value is None or value <= 0:
            raise UnsupportedModelError(
                f"{self.meta.path} has no usable {self.arch}.{suffix} in its metadata, which "
                "longread needs to plan the context; it may not be a transformer language model, "
                "or it came from an old converter: try a current GGUF build of the model"
            )
        return value

    def rope_scaling(self) -> tuple[str | None, float | None]:
        kind = self.text(f"{self.arch}.rope.scaling.type")
        factor = self.arch_float("rope.scaling.factor")
        # Before rope.scaling.* existed, converters wrote a bare linear factor.
        legacy = self.arch_float("rope.scale_linear")
        if kind is None and legacy is not None and legacy != 1.0:
            return "linear", legacy
        return kind, factor


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int to Python, but a GGUF BOOL is never a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _file_type_name(meta: GGUFMetadata) -> str | None:
    value = meta.metadata.get("general.file_type")
    if _is_int(value):
        ftype = value & ~_FTYPE_GUESSED
        return FILE_TYPE_NAMES.get(ftype, f"ftype {ftype}")
    return _guess_file_type(meta.tensors)


def _guess_file_type(tensors: tuple[TensorInfo, ...]) -> str | None:
    # As llama.cpp does without general.file_type: the type holding most matrix weights.
    weights: Counter[str] = Counter()
    for tensor in tensors:
        if len(tensor.shape) >= 2:
            weights[tensor.type_name] += tensor.element_count
    return weights.most_common(1)[0][0] if weights else None


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{path} does not exist: check the path to the GGUF file") from exc
    except IsADirectoryError as exc:
        raise ModelError(
            f"{path} is a folder, not a GGUF file: give the path of the .gguf file inside it"
        ) from exc
    except PermissionError as exc:
        raise ModelError(
            f"{path} cannot be read (permission denied): check the file's permissions"
        ) from exc
    except OSError as exc:
        raise ModelError(f"{path} cannot be read: {exc.strerror or exc}") from exc


def _corrupt(path: Path, cause: str) -> CorruptModelError:
    return CorruptModelError(f"{path} is not a valid GGUF file: {cause}")


def _parse(
    path: Path, data: mmap.mmap, array_limit: int | None, full_arrays: frozenset[str]
) -> GGUFMetadata:
    cursor = _Cursor(data)
    try:
        version = _read_preamble(path, cursor)
        tensor_count = cursor.u64()
        kv_count = cursor.u64()
        _check_count(cursor, kv_count, _MIN_KV_SIZE, "metadata entries")
        metadata = _read_metadata_entries(cursor, kv_count, array_limit, full_arrays)
        alignment = _alignment(metadata)
        _check_count(cursor, tensor_count, _MIN_TENSOR_INFO_SIZE, "tensors")
        tensors = _read_tensor_infos(cursor, tensor_count)
    except _TruncatedError:
        raise _corrupt(
            path,
            f"it ends after {cursor.size} bytes, inside {cursor.where}; it may be an "
            "incomplete download, so fetch the file again",
        ) from None
    except _MalformedError as exc:
        raise _corrupt(path, str(exc)) from None
    data_offset = -(-cursor.pos // alignment) * alignment
    _check_data_extent(path, tensors, data_offset, cursor.size)
    return GGUFMetadata(
        path=path,
        version=version,
        metadata=MappingProxyType(metadata),
        tensors=tensors,
        alignment=alignment,
        data_offset=data_offset,
        file_size=cursor.size,
    )


def _read_preamble(path: Path, cursor: _Cursor) -> int:
    magic = cursor.data[:4]
    if magic != GGUF_MAGIC:
        if magic in _LEGACY_MAGICS:
            raise UnsupportedModelError(
                f"{path} is an old {_LEGACY_MAGICS[magic]}-format model, from before GGUF; "
                "download a GGUF build of the model, or convert it with llama.cpp's tools"
            )
        raise _MalformedError(f"it does not start with the GGUF magic bytes (found {magic!r})")
    cursor.pos = 4
    version = cursor.u32()
    if version in SUPPORTED_VERSIONS:
        return version
    if version == 1:
        raise UnsupportedModelError(
            f"{path} is a GGUF version 1 file, which longread cannot read; "
            "download a current GGUF build of the model"
        )
    if int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
        raise UnsupportedModelError(
            f"{path} is a big-endian GGUF file; longread reads little-endian files only, "
            "which is what almost every published GGUF is: download that build"
        )
    raise _MalformedError(f"unknown GGUF version {version} (longread reads versions 2 and 3)")


def _check_count(cursor: _Cursor, count: int, min_size: int, what: str) -> None:
    # A garbage count (2**60) must fail at once, not loop for hours or allocate for it.
    if count * min_size > cursor.size - cursor.pos:
        raise _MalformedError(
            f"its header claims {count} {what}, more than its {cursor.size} bytes can hold"
        )


def _read_metadata_entries(
    cursor: _Cursor, count: int, array_limit: int | None, full_arrays: frozenset[str]
) -> dict[str, MetadataValue]:
    metadata: dict[str, MetadataValue] = {}
    for index in range(count):
        cursor.where = f"metadata entry {index + 1} of {count}"
        key = cursor.string()
        cursor.where = f"metadata entry {key!r}"
        if key in metadata:
            raise _MalformedError(f"metadata key {key!r} appears twice")
        kind = _value_type(cursor.u32(), key)
        limit = None if key in full_arrays else array_limit
        metadata[key] = _read_value(cursor, kind, limit, key)
    return metadata


def _value_type(tag: int, key: str) -> ValueType:
    try:
        return ValueType(tag)
    except ValueError:
        raise _MalformedError(f"metadata key {key!r} has an unknown value type {tag}") from None


def _read_value(
    cursor: _Cursor, kind: ValueType, array_limit: int | None, key: str
) -> MetadataValue:
    if kind is ValueType.STRING:
        return cursor.string()
    if kind is ValueType.ARRAY:
        return _read_array(cursor, array_limit, key)
    return cursor.scalar(kind)


def _read_array(
    cursor: _Cursor, array_limit: int | None, key: str, depth: int = 1
) -> MetadataValue:
    element_type = _array_element_type(cursor, key, depth)
    count = cursor.u64()
    _check_count(cursor, count, _MIN_ELEMENT_SIZE[element_type], f"elements in {key!r}")
    if array_limit is not None and count > array_limit:
        _skip_elements(cursor, element_type, count, key, depth)
        return ArraySummary(element_type, count)
    if element_type is ValueType.STRING:
        return tuple(cursor.string() for _ in range(count))
    if element_type is ValueType.ARRAY:
        # An array inside an array that is being read is read whole.
        return tuple(_read_array(cursor, None, key, depth + 1) for _ in range(count))
    return cursor.scalars(element_type, count)


def _skip_elements(
    cursor: _Cursor, element_type: ValueType, count: int, key: str, depth: int
) -> None:
    if element_type is ValueType.STRING:
        cursor.skip_strings(count)
    elif element_type is ValueType.ARRAY:
        for _ in range(count):
            inner_type = _array_element_type(cursor, key, depth + 1)
            inner_count = cursor.u64()
            _check_count(cursor, inner_count, _MIN_ELEMENT_SIZE[inner_type], f"elements in {key!r}")
            _skip_elements(cursor, inner_type, inner_count, key, depth + 1)
    else:
        size = count * _SCALARS[element_type].size
        cursor.need(size)
        cursor.pos += size


def _array_element_type(cursor: _Cursor, key: str, depth: int) -> ValueType:
    # Real files nest arrays one level at most (llama.cpp reads none); a crafted file could
    # nest them a million deep and blow Python's stack.
    if depth > _MAX_ARRAY_DEPTH:
        raise _MalformedError(
            f"metadata key {key!r} nests arrays more than {_MAX_ARRAY_DEPTH} deep"
        )
    return _value_type(cursor.u32(), key)


def _alignment(metadata: Mapping[str, MetadataValue]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not _is_int(value) or value <= 0 or value & (value - 1):
        raise _MalformedError(f"general.alignment is {value!r}, not a power of two")
    return value


def _read_tensor_infos(cursor: _Cursor, count: int) -> tuple[TensorInfo, ...]:
    tensors: list[TensorInfo] = []
    for index in range(count):
        cursor.where = f"tensor record {index + 1} of {count}"
        name = cursor.string()
        n_dims = cursor.u32()
        if n_dims > _MAX_DIMS:
            raise _MalformedError(f"tensor {name!r} has {n_dims} dimensions (at most 4 exist)")
        shape = tuple(cursor.u64() for _ in range(n_dims))
        ggml_type = cursor.u32()
        offset = cursor.u64()
        tensors.append(TensorInfo(name=name, shape=shape, ggml_type=ggml_type, offset=offset))
    return tuple(tensors)


def _check_data_extent(
    path: Path, tensors: tuple[TensorInfo, ...], data_offset: int, file_size: int
) -> None:
    # The usual damage is an interrupted download: a whole header and too little data.
    needed = 0
    for tensor in tensors:
        byte_size = tensor.byte_size
        if byte_size is not None:
            needed = max(needed, data_offset + tensor.offset + byte_size)
    if needed > file_size:
        raise _corrupt(
            path,
            f"it is cut short: its tensors need {needed} bytes but the file has {file_size}; "
            "it may be an incomplete download, so fetch the file again",
        )
