"""Prompt lengths, prefix-cache content ids, and the filler text a served request generates.

Token ids count exactly. Text is tokenised with the ``tokenizer.json`` the user gives
(``--tokenizer``, read with the ``tokenizers`` library); without one its length is
*estimated*: one token per 4 characters (OpenAI's rule of thumb for English; code and other
languages tokenise denser), at least one.

Chat messages: the content of every message, plus the tokens the model's chat template adds:
for a model family :mod:`servesim.chat_templates` knows, its count around one user message
(gpt-oss's harmony system and developer messages: 67) and :data:`CHAT_TOKENS_PER_MESSAGE` for
each further message; otherwise :data:`CHAT_TOKENS_PER_MESSAGE` for the role header and
end-of-turn markers around every message (Llama 3: ``<|start_header_id|>`` role
``<|end_header_id|>`` ``\\n\\n`` … ``<|eot_id|>``) plus :data:`CHAT_TOKENS_PRIMING` for the BOS
token and the assistant header that opens the reply.

Prefix caching sees content: the prompt's full ``block_size``-token blocks get chained content
hashes (a block's id depends on every token before it, as vLLM's block hashes do), so two
requests whose prompts share a prefix share those blocks' KV. A text prompt without a tokenizer
is hashed in blocks of ``4 × block_size`` characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHARS_PER_TOKEN = 4
"""The estimate's characters per token (text prompts without ``--tokenizer``)."""
CHAT_TOKENS_PER_MESSAGE = 5
CHAT_TOKENS_PRIMING = 4

FILLER_WORDS = (
    " the", " a", " of", " to", " and", " in", " is", " it", " that", " for", " on", " with",
    " as", " was", " at", " by", " this", " be", " from", " or", " an", " are", " not", " but",
    " which", " one", " all", " their", " there", " can", " has", " more", " will", " each",
    " about", " how", " up", " out", " them", " then", " she", " many", " some", " so", " these",
    " would", " other", " into", " time", " two", " like", " him", " see", " could", " no",
    " make", " than", " first", " been", " its", " who", " now", " people", " my", " over",
)  # fmt: skip
"""Output text: one word per generated token, cycling deterministically."""


@dataclass(frozen=True)
class Prompt:
    """A prompt as the engine needs it: its length and its content's block ids."""

    num_tokens: int
    hash_ids: tuple[int, ...]
    exact: bool
    """Whether ``num_tokens`` was counted (token ids or a tokenizer) rather than estimated."""


class PromptCounter:
    """Counts prompt tokens, with a tokenizer or by estimate (see the module docstring)."""

    def __init__(
        self,
        block_size: int,
        tokenizer_path: str | Path | None = None,
        template_tokens: int | None = None,
        vocab_size: int | None = None,
    ):
        self.block_size = block_size
        self.vocab_size = vocab_size
        """Token ids a prompt may hold are below this (None: not checked)."""
        self.template_tokens = template_tokens
        """The model family's chat-template tokens around one user message (None: unknown;
        see the module docstring)."""
        self.tokenizer = None
        if tokenizer_path is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))

    def token_ids(self, ids: Sequence[int]) -> Prompt:
        data = np.asarray(ids, dtype=np.int64).tobytes()
        return Prompt(len(ids), _chained_ids(data, 8 * self.block_size), exact=True)

    def text(self, text: str) -> Prompt:
        if self.tokenizer is not None:
            ids = self.tokenizer.encode(text, add_special_tokens=True).ids
            return self.token_ids(ids)
        n = max(1, round(len(text) / CHARS_PER_TOKEN))
        data = text.encode()
        ids = _chained_ids(data, CHARS_PER_TOKEN * self.block_size)
        return Prompt(n, ids[: n // self.block_size], exact=False)

    def chat(self, messages: Sequence[dict[str, Any]]) -> Prompt:
        """A chat request's prompt: the messages as a chat template renders them."""
        parts = [
            f"<|{m.get('role', 'user')}|>\n{_content_text(m.get('content'))}" for m in messages
        ]
        body = self.text("\n".join(parts)) if parts else Prompt(0, (), True)
        if self.template_tokens is not None and messages:
            extra = self.template_tokens + CHAT_TOKENS_PER_MESSAGE * (len(messages) - 1)
        else:
            extra = CHAT_TOKENS_PER_MESSAGE * len(messages) + CHAT_TOKENS_PRIMING
        return Prompt(body.num_tokens + extra, body.hash_ids, body.exact)


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise TypeError(f"content must be a string or a list of content parts, got {content!r}")


def _chained_ids(data: bytes, block_bytes: int) -> tuple[int, ...]:
    """Content ids of the full ``block_bytes``-byte blocks of ``data``, each chained to the
    previous one (equal ids mean equal content from the start)."""
    out = []
    previous = b""
    for start in range(0, len(data) - block_bytes + 1, block_bytes):
        block = data[start : start + block_bytes]
        previous = hashlib.blake2b(previous + block, digest_size=8).digest()
        out.append(int.from_bytes(previous, "little") >> 1)
    return tuple(out)


def filler_text(request_index: int, start: int, count: int) -> str:
    """Text of output tokens ``start .. start + count - 1`` of a request (deterministic)."""
    n = len(FILLER_WORDS)
    return "".join(FILLER_WORDS[(request_index + i) % n] for i in range(start, start + count))
