"""A request as the engine sees it while it is being served.

Each request has ``num_computed_tokens`` (tokens whose KV is in the cache) and ``num_tokens``
(prompt plus the output tokens sampled so far). The scheduler's only job is to let computed
tokens catch up with ``num_tokens``; there are no separate prefill and decode phases. A request
samples a token in every step that brings ``num_computed_tokens`` up to ``num_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Request:
    """Mutable serving state of one request. Times are simulated seconds."""

    request_id: int
    session_id: int
    turn: int
    arrival_s: float
    prompt_tokens: int
    max_output_tokens: int
    hash_ids: tuple[int, ...] = ()
    hash_block_size: int = 16
    num_computed_tokens: int = 0
    num_output_tokens: int = 0
    instance_id: int = -1
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None
    finish_s: float | None = None
    num_cached_tokens: int = 0
    """Prompt tokens found in the prefix cache when the request was first scheduled."""
    num_preemptions: int = 0
    num_external_tokens: int = 0
    """Tokens whose KV arrives from elsewhere (a prefill instance, under P/D disaggregation):
    on admission they count as computed without being computed here."""
    block_ids: list[int] = field(default_factory=list)
    """Shared (content-named) KV blocks held, in order; they come before private ones."""
    num_private_blocks: int = 0
    """KV blocks held whose content is unique to this request (counted, not named)."""
    block_hashes: list[int] = field(default_factory=list)
    """Chained content hashes of this request's leading blocks, computed lazily."""
    num_registered_blocks: int = 0
    """Leading full blocks already registered in the prefix cache."""
    session: Any = None
    """The workload session this request is a turn of (its later turns follow it)."""
    queued_s: float = 0.0
    """When the request last joined its instance's waiting queue (an engine that schedules a
    step ahead sees it only in steps scheduled after this)."""

    @property
    def num_tokens(self) -> int:
        """Tokens that exist for this request: prompt plus sampled outputs."""
        return self.prompt_tokens + self.num_output_tokens

    @property
    def num_blocks(self) -> int:
        """KV blocks this request holds."""
        return len(self.block_ids) + self.num_private_blocks

    @property
    def max_tokens(self) -> int:
        """Tokens the request will hold in KV at its longest (prompt + output − 1)."""
        return self.prompt_tokens + self.max_output_tokens - 1

    @property
    def is_finished(self) -> bool:
        return self.num_output_tokens >= self.max_output_tokens

    def receive_prompt_kv(self) -> None:
        """Start over on a decode instance that receives the prompt's KV from its prefill
        instance (P/D disaggregation): all of it but the last token, which the decode instance
        recomputes to produce the first output token (as vLLM's disaggregated connectors do)."""
        self.num_output_tokens = 0
        self.num_computed_tokens = 0
        self.num_external_tokens = self.prompt_tokens - 1
        self.first_token_s = self.last_token_s = None
