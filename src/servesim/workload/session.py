"""What a workload hands the engine: sessions of requests.

An open-loop request is a :class:`Session` of one turn. A multi-turn conversation, an agent's
tool loop or a closed-loop user is a :class:`Session` of many turns, where turn ``i + 1`` arrives
``think_times_s[i]`` seconds after turn ``i`` *finishes* (so its arrival depends on the simulated
server, and only the engine can compute it).

Content is described by ``hash_ids``: one id per consecutive block of ``hash_block_size`` tokens,
covering the prompt and then the output. Equal ids at equal positions after equal prefixes mean
identical tokens, which is what a prefix cache can reuse. An empty tuple means "unique content".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servesim.errors import ServesimError


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request (one turn) as the workload describes it.

    Attributes:
        input_tokens: prompt length, tokens (>= 1).
        output_tokens: tokens to generate (>= 1).
        hash_ids: content ids of consecutive ``hash_block_size``-token blocks covering the prompt
            then the output: ``ceil((input + output) / hash_block_size)`` ids, or only the
            prompt's ``ceil(input / hash_block_size)``, or none (unique content).
        hash_block_size: tokens per hash id (Mooncake traces: 512).
    """

    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    hash_block_size: int = 16

    def __post_init__(self) -> None:
        if self.input_tokens < 1:
            raise ServesimError(
                f"is {self.input_tokens}, must be >= 1",
                field="input_tokens",
                fix="a prompt has at least one token",
            )
        if self.output_tokens < 1:
            raise ServesimError(
                f"is {self.output_tokens}, must be >= 1",
                field="output_tokens",
                fix="a request generates at least one token",
            )
        if self.hash_block_size < 1:
            raise ServesimError(f"is {self.hash_block_size}, must be >= 1", field="hash_block_size")
        if not self.hash_ids:
            return  # (unique content: nothing more to check, most requests of a long run)
        most = math.ceil((self.input_tokens + self.output_tokens) / self.hash_block_size)
        if len(self.hash_ids) > most:
            raise ServesimError(
                f"{len(self.hash_ids)} ids for {self.input_tokens} + {self.output_tokens} "
                f"tokens in blocks of {self.hash_block_size}; at most {most} fit",
                field="hash_ids",
                fix="give one id per hash_block_size tokens, or set hash_block_size",
            )

    @property
    def num_full_blocks(self) -> int:
        """Blocks of prompt + output that are completely filled (their ids can be reused)."""
        return (self.input_tokens + self.output_tokens) // self.hash_block_size


@dataclass(frozen=True, slots=True)
class Session:
    """A sequence of turns from one user or agent.

    Attributes:
        session_id: unique within the workload.
        start_s: arrival time of the first turn, seconds from t = 0.
        turns: the requests, in order (at least one).
        think_times_s: ``len(turns) - 1`` delays, seconds: turn ``i + 1`` arrives
            ``think_times_s[i]`` after turn ``i`` finishes. An empty tuple means no think time
            (it is filled with zeros).
        conversation_starts: indices of the turns that begin a new, independent conversation
            (a closed-loop user's next one), ascending, each in ``1 .. len(turns) - 1``. A turn
            the server refuses ends its conversation (the later turns need its answer); the
            session goes on with its next conversation, as a benchmark client sends its next
            request after a failed one. Empty: the turns are one conversation.
    """

    session_id: int
    start_s: float
    turns: tuple[RequestSpec, ...]
    think_times_s: tuple[float, ...] = ()
    conversation_starts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.turns:
            raise ServesimError("a session needs at least one turn", field="turns")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ServesimError(f"is {self.start_s}, must be a finite number >= 0", field="start_s")
        want = len(self.turns) - 1
        if not self.think_times_s and want:
            # NOTE: frozen + slots: object.__setattr__ is the sanctioned way to normalise a field.
            object.__setattr__(self, "think_times_s", (0.0,) * want)
        elif len(self.think_times_s) != want:
            raise ServesimError(
                f"has {len(self.think_times_s)} values for {len(self.turns)} turns",
                field="think_times_s",
                fix="give one think time between each pair of consecutive turns",
            )
        if want and any(not (math.isfinite(t) and t >= 0) for t in self.think_times_s):
            raise ServesimError(
                f"{self.think_times_s} has a negative or non-finite value", field="think_times_s"
            )
        starts = self.conversation_starts
        if starts and (
            list(starts) != sorted(set(starts)) or starts[0] < 1 or starts[-1] >= len(self.turns)
        ):
            raise ServesimError(
                f"{starts} for {len(self.turns)} turns",
                field="conversation_starts",
                fix="give ascending turn indices between 1 and the number of turns - 1",
            )

    def conversation_end(self, turn: int) -> int:
        """Index one past the last turn of the conversation ``turn`` belongs to."""
        return next((s for s in self.conversation_starts if s > turn), len(self.turns))

    @property
    def num_turns(self) -> int:
        return len(self.turns)
