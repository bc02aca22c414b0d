"""The OpenAI-compatible request and response bodies, as vLLM's server reads and writes them.

Requests are read leniently, as vLLM does: the fields that change timing are honoured
(``prompt`` / ``messages``, ``max_tokens`` / ``max_completion_tokens``, ``min_tokens``,
``stream``, ``stream_options.include_usage``); sampling fields (``temperature``, ``top_p``,
``stop``, ``seed``, ``ignore_eos``, ...) are accepted and ignored: the simulated model never
ends early, so every request with ``max_tokens`` generates exactly that many tokens.
Errors are vLLM's JSON, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from servesim.serve.tokens import Prompt, PromptCounter


class ApiError(Exception):
    """A request the server refuses: becomes vLLM's error JSON with ``status``."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param

    @property
    def error_type(self) -> str:
        return {404: "NotFoundError", 500: "InternalServerError"}.get(
            self.status, "BadRequestError"
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.error_type,
                "param": self.param,
                "code": self.status,
            }
        }


@dataclass(frozen=True)
class Generation:
    """One parsed completion or chat-completion request."""

    chat: bool
    model: str
    prompt: Prompt
    max_tokens: int | None
    min_tokens: int
    stream: bool
    include_usage: bool


def _int_field(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"{name} must be an integer, got {value!r}", param=name)
    if value < low:
        raise ApiError(f"{name} must be at least {low}, got {value}", param=name)
    return value


def parse_generation(body: Any, chat: bool, counter: PromptCounter) -> Generation:
    """Validate a request body (JSON already decoded)."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError("messages must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) for m in messages):
            raise ApiError("each message must be an object", param="messages")
        _check_contents(messages)
        prompt = counter.chat(messages)
    else:
        prompt = _completion_prompt(body.get("prompt"), counter)
    n = _int_field(body, "n", 1)
    if n is not None and n > 1:
        raise ApiError("n > 1 is not supported by servesim serve: send n requests", param="n")
    max_tokens = _int_field(body, "max_completion_tokens", 1) if chat else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens", 1)
    min_tokens = _int_field(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise ApiError(
            f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.",
            param="min_tokens",
        )
    _check_sampling(body)
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(f"stream_options must be an object, got {options!r}", param="stream_options")
    if options and not stream:
        raise ApiError("Stream options can only be defined when `stream=True`.")
    include_usage = bool(options.get("include_usage"))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(f"model must be a string, got {model!r}", param="model")
    return Generation(chat, model if isinstance(model, str) else "", prompt, max_tokens,
                      min_tokens, stream, include_usage)  # fmt: skip


def _check_contents(messages: list[dict[str, Any]]) -> None:
    """Each message's ``content``: a string, null, or a list of content parts whose text parts
    hold strings (vLLM's request validation answers 400 otherwise)."""
    for i, message in enumerate(messages):
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        parts = content if isinstance(content, list) else None
        if parts is None or not all(
            isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in parts
        ):
            raise ApiError(
                f"messages[{i}].content must be a string or a list of content parts with "
                f"string text, got {content!r}",
                param="messages",
            )


def _check_sampling(body: dict[str, Any]) -> None:
    """The sampling fields vLLM checks (servesim ignores their values, not their mistakes)."""
    for name, low, high in (("temperature", 0.0, None), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(f"{name} must be a number, got {value!r}", param=name)
        if value < low or (high is not None and value > high) or (name == "top_p" and value == 0):
            bound = f"in (0, {high}]" if name == "top_p" else f"at least {low:g}"
            raise ApiError(f"{name} must be {bound}, got {value}", param=name)


def _completion_prompt(prompt: Any, counter: PromptCounter) -> Prompt:
    """A completion's ``prompt``: text, token ids, or a list holding one of them."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str) or prompt == []:
        if not prompt:
            raise ApiError("prompt cannot be empty", param="prompt")
        return counter.text(prompt)
    if isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt
    ):
        if min(prompt) < 0:
            raise ApiError(f"token ids must be >= 0 (got {min(prompt)})", param="prompt")
        vocab = counter.vocab_size
        if vocab is not None and max(prompt) >= vocab:
            raise ApiError(f"Token id {max(prompt)} is out of vocabulary", param="prompt")
        return counter.token_ids(prompt)
    if isinstance(prompt, list) and all(isinstance(p, (str, list)) for p in prompt):
        raise ApiError("batched prompts are not supported by servesim serve: send one request "
                       "per prompt", param="prompt")  # fmt: skip
    raise ApiError("prompt must be a string or a list of token ids", param="prompt")


def check_length(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> None:
    """vLLM's context-length errors."""
    if prompt_tokens >= max_model_len:
        raise ApiError(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_tokens} input tokens. Please reduce the length of the input "
            "messages.",
            param="input_tokens",
        )
    if max_tokens is not None and prompt_tokens + max_tokens > max_model_len:
        raise ApiError(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
            f"maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_tokens} input tokens ({max_tokens} > {max_model_len} - {prompt_tokens}).",
            param="max_tokens",
        )


@dataclass(frozen=True)
class Reply:
    """Builds the response bodies of one request."""

    gen: Generation
    model: str
    request_id: str
    created: int

    @classmethod
    def new(cls, gen: Generation, model: str) -> Reply:
        prefix = "chatcmpl" if gen.chat else "cmpl"
        return cls(gen, model, f"{prefix}-{uuid.uuid4().hex}", int(time.time()))

    @property
    def object(self) -> str:
        return "chat.completion.chunk" if self.gen.chat else "text_completion"

    def usage(self, completion_tokens: int) -> dict[str, Any]:
        prompt = self.gen.prompt.num_tokens
        return {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        }

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.request_id, "object": obj, "created": self.created,
                "model": self.model, "choices": choices}  # fmt: skip

    def role_chunk(self) -> dict[str, Any]:
        """A chat stream's first chunk: the assistant role, before any token."""
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._envelope(self.object, [choice])

    def chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        if self.gen.chat:
            choice = {"index": 0, "delta": {"content": text}, "logprobs": None,
                      "finish_reason": finish_reason, "stop_reason": None}  # fmt: skip
        else:
            choice = {"index": 0, "text": text, "logprobs": None,
                      "finish_reason": finish_reason, "stop_reason": None}  # fmt: skip
        return self._envelope(self.object, [choice])

    def usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        body = self._envelope(self.object, [])
        body["usage"] = self.usage(completion_tokens)
        return body

    def full(self, text: str, finish_reason: str, completion_tokens: int) -> dict[str, Any]:
        """The non-streaming response."""
        if self.gen.chat:
            message = {"role": "assistant", "content": text, "tool_calls": []}
            choice = {"index": 0, "message": message, "logprobs": None,
                      "finish_reason": finish_reason, "stop_reason": None}  # fmt: skip
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                      "stop_reason": None, "prompt_logprobs": None}  # fmt: skip
            body = self._envelope("text_completion", [choice])
        body["usage"] = self.usage(completion_tokens)
        return body
