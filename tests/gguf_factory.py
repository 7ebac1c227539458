"""Small synthetic GGUF files with chosen metadata and tensors, for the reader and catalog tests.

`gguf_bytes({"general.architecture": "llama", ...}, [Tensor("token_embd.weight", (16, 8))])`
gives the bytes of a valid GGUF file (version 3 unless asked). Python values get the obvious
GGUF type (str STRING, bool BOOL, int UINT32 (INT64/UINT64 when it does not fit), float
FLOAT32, list ARRAY of its first element's type); wrap a value in `Typed` to pick the type.
Tensor data is written as aligned zeros, so the file is complete; `with_data=False` leaves it
out, like an interrupted download. Presets build the models the tests need (`llama_metadata`,
`yarn_llama`, `rope_freqs_llama`, `gemma3_sliding`, `per_layer_heads`), and `truncated` and
`GARBAGE` give broken files. `write_gguf` puts any of them on disk.

It encodes the format on its own (its own type tags and layout), never through models.gguf,
so the reader is tested against the format rather than against itself. It writes no real
weights: a tensor's bytes are zeros, and its shape need not match the metadata.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from math import prod
from pathlib import Path
from typing import Any


class VT(IntEnum):
    """GGUF metadata value type tags, as the GGUF specification numbers them."""

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


_CODES = {
    VT.UINT8: "B",
    VT.INT8: "b",
    VT.UINT16: "H",
    VT.INT16: "h",
    VT.UINT32: "I",
    VT.INT32: "i",
    VT.FLOAT32: "f",
    VT.BOOL: "?",
    VT.UINT64: "Q",
    VT.INT64: "q",
    VT.FLOAT64: "d",
}

# ggml tensor types the factory can size: (elements per block, bytes per block).
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8
_BLOCKS = {F32: (1, 4), F16: (1, 2), Q4_1: (32, 20), Q8_0: (32, 34)}


@dataclass(frozen=True)
class Typed:
    """A metadata value with its GGUF type spelled out; arrays also name their element type."""

    value_type: VT
    value: Any
    element_type: VT | None = None


@dataclass(frozen=True)
class Tensor:
    """A tensor record; `shape` in GGUF order (fastest-varying first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int = F32

    @property
    def byte_size(self) -> int:
        block_elements, block_bytes = _BLOCKS[self.ggml_type]
        return prod(self.shape) * block_bytes // block_elements


TINY_TENSORS = (
    Tensor("token_embd.weight", (16, 8)),
    Tensor("blk.0.attn_q.weight", (16, 16), F16),
    Tensor("blk.0.ffn_up.weight", (32, 16), Q4_1),
    Tensor("output_norm.weight", (16,)),
)
TINY_PARAMETERS = 16 * 8 + 16 * 16 + 32 * 16 + 16

# A ZIP header followed by noise: what a wrong download (an HTML page, an archive) looks like.
GARBAGE = b"PK\x03\x04" + bytes(range(256)) * 4


def gguf_bytes(
    metadata: Mapping[str, Any],
    tensors: Sequence[Tensor] = TINY_TENSORS,
    *,
    version: int = 3,
    alignment: int = 32,
    with_data: bool = True,
) -> bytes:
    """A GGUF file holding `metadata` and `tensors` (data as zeros unless `with_data` is off)."""
    entries = dict(metadata)
    if alignment != 32:
        entries["general.alignment"] = Typed(VT.UINT32, alignment)
    offsets = _data_offsets(tensors, alignment)
    head = bytearray(b"GGUF")
    head += struct.pack("<IQQ", version, len(tensors), len(entries))
    for key, value in entries.items():
        typed = _typed(value)
        head += _string(key) + struct.pack("<I", typed.value_type) + _payload(typed)
    for tensor, offset in zip(tensors, offsets, strict=True):
        head += _string(tensor.name) + struct.pack("<I", len(tensor.shape))
        head += struct.pack(f"<{len(tensor.shape)}Q", *tensor.shape)
        head += struct.pack("<IQ", tensor.ggml_type, offset)
    if not with_data or not tensors:
        return bytes(head)
    head += bytes(-len(head) % alignment)
    data_size = offsets[-1] + tensors[-1].byte_size
    return bytes(head) + bytes(data_size)


def write_gguf(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncated(data: bytes, keep: int | float = 0.5) -> bytes:
    """The first `keep` bytes (an int) or the first fraction `keep` (a float) of `data`."""
    count = keep if isinstance(keep, int) else int(len(data) * keep)
    return data[:count]


def llama_metadata(
    overrides: Mapping[str, Any] | None = None, drop: Collection[str] = ()
) -> dict[str, Any]:
    """A plain Llama-architecture model's metadata, with keys replaced, added or dropped."""
    base: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": "Synthetic Llama",
        "general.file_type": 15,  # Q4_K_M
        "llama.context_length": 4096,
        "llama.embedding_length": 256,
        "llama.block_count": 4,
        "llama.attention.head_count": 8,
        "llama.attention.head_count_kv": 2,
        "llama.rope.freq_base": 500000.0,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": ["<s>", "</s>", "a", "b"],
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
    }
    base.update(overrides or {})
    return {key: value for key, value in base.items() if key not in drop}


def yarn_llama() -> bytes:
    """A long-context build carrying YaRN scaling: factor 4 over a 32k original window."""
    return gguf_bytes(
        llama_metadata(
            {
                "llama.context_length": 131072,
                "llama.rope.scaling.type": "yarn",
                "llama.rope.scaling.factor": 4.0,
                "llama.rope.scaling.original_context_length": 32768,
            }
        )
    )


def rope_freqs_llama() -> bytes:
    """A Llama-3.1-style model: long-context RoPE factors baked into a rope_freqs tensor."""
    tensors = (*TINY_TENSORS, Tensor("rope_freqs.weight", (32,)))
    return gguf_bytes(llama_metadata({"llama.context_length": 131072}), tensors)


def gemma3_sliding() -> bytes:
    """A Gemma 3 model: sliding-window attention, explicit head dims, F16 weights."""
    metadata = {
        "general.architecture": "gemma3",
        "general.name": "Synthetic Gemma 3",
        "general.file_type": 1,
        "gemma3.context_length": 32768,
        "gemma3.embedding_length": 640,
        "gemma3.block_count": 18,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.attention.sliding_window": 512,
        "gemma3.rope.freq_base": 1000000.0,
    }
    return gguf_bytes(metadata)


def per_layer_heads() -> bytes:
    """An OpenELM-style model whose head counts are arrays, one entry per layer."""
    metadata = {
        "general.architecture": "openelm",
        "openelm.context_length": 2048,
        "openelm.embedding_length": 1280,
        "openelm.block_count": 3,
        "openelm.attention.head_count": Typed(VT.ARRAY, [12, 16, 20], VT.INT32),
        "openelm.attention.head_count_kv": Typed(VT.ARRAY, [3, 4, 5], VT.INT32),
        "openelm.attention.key_length": 64,
    }
    return gguf_bytes(metadata)


def _typed(value: Any) -> Typed:
    if isinstance(value, Typed):
        return value
    if isinstance(value, bool):
        return Typed(VT.BOOL, value)
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return Typed(VT.UINT32, value)
        return Typed(VT.INT64 if value < 0 else VT.UINT64, value)
    if isinstance(value, float):
        return Typed(VT.FLOAT32, value)
    if isinstance(value, str):
        return Typed(VT.STRING, value)
    if isinstance(value, list | tuple):
        element = _typed(value[0]).value_type if value else VT.UINT32
        return Typed(VT.ARRAY, list(value), element)
    raise TypeError(f"no GGUF type for {value!r}")


def _payload(typed: Typed) -> bytes:
    if typed.value_type is VT.STRING:
        return _string(typed.value)
    if typed.value_type is VT.ARRAY:
        element = typed.element_type
        assert element is not None, "an array needs its element type"
        items = [_element(item, element) for item in typed.value]
        body = b"".join(_payload(item) for item in items)
        return struct.pack("<IQ", element, len(items)) + body
    return struct.pack("<" + _CODES[typed.value_type], typed.value)


def _element(item: Any, element: VT) -> Typed:
    if isinstance(item, Typed):
        return item
    # Inner arrays say their own element type; anything else takes the array's.
    return _typed(item) if element is VT.ARRAY else Typed(element, item)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _data_offsets(tensors: Sequence[Tensor], alignment: int) -> list[int]:
    offsets: list[int] = []
    position = 0
    for tensor in tensors:
        offsets.append(position)
        position += tensor.byte_size
        position += -position % alignment
    return offsets
