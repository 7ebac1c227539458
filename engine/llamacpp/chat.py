"""Chat prompts as the model's own template makes them, and their exact tokens.

`ChatPrompts` renders messages with the GGUF's chat template (a plain "Role: text" one for
a base model without a template), tokenizes the result the way the model will read it, and
splits a prompt at a cached document prefix so the prefix's tokens are the same whatever
question follows. What it does not do: evaluate anything (engine/llamacpp/cache.py) or
write the messages (engine/prompts.py).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.llm import CachedPrefix, ChatMessage
from engine.llm_errors import GenerationError

log = logging.getLogger(__name__)

FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""For a GGUF without a chat template (a base model): plain "Role: text" turns."""
FALLBACK_STOPS = ("\nUser:", "\nSystem:")

_TOKEN_CACHE_SIZE = 4
"""Rendered texts whose tokens are kept: a question's count, then its stream, tokenize the
same long document prompt; a few entries spare the second pass."""


@dataclass(frozen=True)
class Prompt:
    """The tokens a stream evaluates, and the document prefix among them worth keeping."""

    tokens: list[int]
    prefix_tokens: list[int] | None
    document_id: str | None


class ChatPrompts:
    """The chat template and tokenizer of one loaded model.

    `open_llama` returns the model's `Llama` (or raises once it is closed); token counts may
    be asked from any thread.
    """

    def __init__(self, open_llama: Callable[[], Any], path: Path) -> None:
        self._open_llama = open_llama
        self._path = path
        self._formatters, self.template_stops = _formatters(open_llama(), path)
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool) -> str:
        formatter = self._formatters[add_generation_prompt]
        payload = [{"role": message.role.value, "content": message.content} for message in messages]
        try:
            return str(formatter(messages=payload).prompt)
        except Exception as error:  # Jinja raises many types; all of them mean "cannot"
            raise GenerationError(
                f"the chat template of {self._path.name} cannot format these messages: {error}"
            ) from error

    def tokens(self, text: str) -> list[int]:
        """Tokens of rendered chat text: special tokens parsed, no BOS added (the template
        writes its own, as llama-cpp-python's chat handlers assume too)."""
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        llama = self._open_llama()
        tokens = [int(t) for t in llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)]
        with self._lock:
            self._cache[text] = tokens
            while len(self._cache) > _TOKEN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return tokens

    def prompt(self, messages: Sequence[ChatMessage], prefix: CachedPrefix | None) -> Prompt:
        """The tokens of `messages` with the reply cue, split at `prefix` when it is stable."""
        full = self.render(messages, add_generation_prompt=True)
        if prefix is None:
            return Prompt(self.tokens(full), None, None)
        if prefix.messages > len(messages):
            raise ValueError(f"prefix of {prefix.messages} messages, but only {len(messages)}")
        head = self.render(messages[: prefix.messages], add_generation_prompt=False)
        if not full.startswith(head):
            # The template rewrites earlier turns once more follow: no stable prefix.
            log.warning("chat template does not keep the document prefix; not caching it")
            return Prompt(self.tokens(full), None, None)
        # Tokenized apart at the message boundary, so the prefix's tokens are the same with
        # any question after them (at ChatML-style boundaries this is also how the whole
        # text tokenizes: a special token always starts a new piece).
        head_tokens = self.tokens(head)
        tail = full[len(head) :]
        tail_tokens = self.tokens(tail) if tail else []
        return Prompt(head_tokens + tail_tokens, head_tokens, prefix.document_id)


def _formatters(llama: Any, path: Path) -> tuple[dict[bool, Any], tuple[str, ...]]:
    """Jinja formatters from the GGUF's chat template, with and without the reply cue, and
    the stop strings the template needs (none, unless it is the fallback)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # deferred with the rest

    template = llama.metadata.get("tokenizer.chat_template")
    eos = _token_text(llama, llama.token_eos())
    bos = _token_text(llama, llama.token_bos())
    if template:
        try:
            formatters = {
                flag: Jinja2ChatFormatter(
                    template=template, eos_token=eos, bos_token=bos, add_generation_prompt=flag
                )
                for flag in (True, False)
            }
            return formatters, ()
        except Exception as error:  # noqa: BLE001 - any Jinja error means "unusable"
            log.warning("chat template of %s is unusable (%s)", path, error)
    log.info("%s has no usable chat template; using plain turns", path.name)
    formatters = {
        flag: Jinja2ChatFormatter(
            template=FALLBACK_TEMPLATE, eos_token=eos, bos_token=bos, add_generation_prompt=flag
        )
        for flag in (True, False)
    }
    return formatters, FALLBACK_STOPS


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llama.detokenize([token], special=True)).decode("utf-8", "replace")
