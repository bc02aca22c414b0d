"""Tokens a server's chat template adds around one user message, by model family.

A chat benchmark (``vllm bench serve --backend openai-chat`` and kin) counts the tokens of the
messages it sends; the server renders its chat template around them, and the engine prefills
the rendered prompt. The template's text is the same in front of every message, so a prefix
cache keeps its full blocks. Sources, per family:

- ``gpt-oss`` (harmony format): vLLM 0.10.2's ``serving_chat._make_request_with_harmony``
  renders a system message (model identity, knowledge cutoff, current date, reasoning effort,
  valid channels), an empty developer message, the user message's header and end, and the
  assistant header; a public log of a vLLM 0.26.0 server answering
  ``[{"role": "user", "content": "Reply only with OK"}]`` for openai/gpt-oss-120b reports 71
  prompt tokens, 67 around the message's 4.
- ``qwen3`` (ChatML): ``<|im_start|>user\\n`` … ``<|im_end|>\\n<|im_start|>assistant\\n``, 8.
- ``deepseek-r1``, ``deepseek-v3``: ``<｜begin▁of▁sentence｜><｜User｜>`` … ``<｜Assistant｜>``, 3.
"""

from __future__ import annotations

CHAT_TEMPLATE_TOKENS: dict[str, int] = {
    "gpt-oss": 67,
    "qwen3": 8,
    "deepseek-r1": 3,
    "deepseek-v3": 3,
}
"""Template tokens around one user message, by a family key the model id contains."""


def chat_template_tokens(model: str) -> int | None:
    """The template tokens of ``model`` (a model id or name, any case), or None when its family
    is not in :data:`CHAT_TEMPLATE_TOKENS`."""
    name = model.lower()
    return next((n for key, n in CHAT_TEMPLATE_TOKENS.items() if key in name), None)
