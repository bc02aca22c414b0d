"""Content ids (``hash_ids``) for synthetic requests.

Three kinds of ids, in disjoint ranges so they never collide with each other or with the small
ids found in public traces (Mooncake's count up from 0):

- unique content: consecutive ids from a per-workload counter starting at 2**40;
- shared prefix ``g``: ``2**50 + g * 2**24 + block`` — the same system prompt always has the
  same ids, in every workload and every run;
- ids copied from an earlier turn of the same session, so a prefix cache sees the history.
"""

from __future__ import annotations

from servesim.workload.session import RequestSpec

UNIQUE_ID_START = 2**40
PREFIX_ID_BASE = 2**50
PREFIX_ID_STRIDE = 2**24
"""Room for 2**24 blocks (2**28 tokens at 16 per block) in each shared prefix."""


class ContentIds:
    """Hands out fresh content ids for one workload (never a global: each build owns one)."""

    def __init__(self, start: int = UNIQUE_ID_START) -> None:
        self._next = start

    def fresh(self, n: int) -> tuple[int, ...]:
        """``n`` ids never handed out before by this counter."""
        start = self._next
        self._next += n
        return tuple(range(start, start + n))


def num_blocks(tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``tokens`` tokens (the last one may be partial)."""
    return -(-tokens // block_size)


def prefix_ids(group: int, prefix_tokens: int, block_size: int) -> tuple[int, ...]:
    """Ids of the *full* blocks of shared prefix ``group``.

    A partial last block is left out: its tail holds each request's own tokens, so its content
    differs between requests.
    """
    start = PREFIX_ID_BASE + group * PREFIX_ID_STRIDE
    return tuple(range(start, start + prefix_tokens // block_size))


def first_turn_ids(
    ids: ContentIds,
    input_tokens: int,
    output_tokens: int,
    block_size: int,
    shared: tuple[int, ...] = (),
) -> tuple[int, ...]:
    """Ids covering prompt + output: the ``shared`` leading blocks, then fresh ones."""
    total = num_blocks(input_tokens + output_tokens, block_size)
    return shared + ids.fresh(total - len(shared))


def next_turn_ids(
    ids: ContentIds, previous: RequestSpec, input_tokens: int, output_tokens: int
) -> tuple[int, ...]:
    """Ids of a turn whose prompt is ``previous``'s prompt + output + new tokens.

    The previous turn's *full* blocks are reused; its partial last block gets a fresh id here
    because this turn's tokens continue it differently.
    """
    keep = previous.hash_ids[: previous.num_full_blocks]
    total = num_blocks(input_tokens + output_tokens, previous.hash_block_size)
    return keep + ids.fresh(total - len(keep))
