"""What longread knows about a GGUF model before loading it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class SizeClass(StrEnum):
    """Rough capability class by parameter count; the planner and router lean on it."""

    TINY = "tiny"  # under 1B: needs query-aware prompts and retrieval help
    SMALL = "small"  # 1B to under 4B
    MEDIUM = "medium"  # 4B to under 14B
    LARGE = "large"  # 14B and up

    @classmethod
    def from_parameters(cls, parameters: int | None) -> SizeClass:
        if parameters is None or parameters < 1_000_000_000:
            return cls.TINY
        if parameters < 4_000_000_000:
            return cls.SMALL
        if parameters < 14_000_000_000:
            return cls.MEDIUM
        return cls.LARGE


@dataclass(frozen=True)
class ModelProfile:
    """A GGUF model's shape as its metadata states it.

    `context_length` is the trained window (n_ctx_train). `rope_scaling_type` and
    `rope_scaling_factor` describe scaling the GGUF already carries (e.g. YaRN in Qwen
    long-context builds); `has_rope_freqs` marks Llama-3.1-style baked frequency factors.
    Either way `baked_long_context` is true and the planner must not scale again.
    """

    path: Path
    name: str
    architecture: str
    context_length: int
    embedding_length: int
    layer_count: int
    head_count: int
    kv_head_count: int
    key_length: int
    value_length: int
    rope_freq_base: float
    rope_scaling_type: str | None
    rope_scaling_factor: float | None
    rope_original_context: int | None
    has_rope_freqs: bool
    sliding_window: int | None
    parameter_count: int | None
    file_type: str | None
    has_chat_template: bool
    file_size: int
    sha256: str

    @property
    def size_class(self) -> SizeClass:
        return SizeClass.from_parameters(self.parameter_count)

    @property
    def baked_long_context(self) -> bool:
        scaled = self.rope_scaling_type not in (None, "", "none")
        return scaled or self.has_rope_freqs

    @property
    def head_dim(self) -> int:
        return self.key_length
