"""Paged KV cache with prefix caching by chained block hashes.

Blocks are integers ``0..num_blocks-1``. A block held by a request has a reference count; a
block whose count drops to zero goes to the tail of the free queue but keeps its content hash,
so a later request with the same prefix can take it back (a prefix-cache hit). Allocating a
fresh block pops the head of the free queue, evicting whatever content it held: the free queue
is therefore the LRU order of cached blocks.

Content hashes are chained: a block's hash covers its own tokens and every token before it, so
equal hashes mean equal prefixes. Token content comes from the request's ``hash_ids`` (ids of
``hash_block_size``-token chunks, e.g. Mooncake's 512-token ``hash_ids``); tokens beyond them
are unique to the request.
"""

from __future__ import annotations

from collections import OrderedDict

from servesim.engine.request import Request

# NOTE: only ints and tuples of ints are hashed: Python randomises str hashes per process, which
# would make runs irreproducible.
_UNIQUE = -1


def block_content_key(req: Request, block_index: int, block_size: int) -> tuple:
    """A key naming the tokens of block ``block_index`` of ``req`` (not yet chained)."""
    start = block_index * block_size
    end = start + block_size
    hbs = req.hash_block_size
    ids = req.hash_ids
    last_chunk = (end - 1) // hbs
    if last_chunk >= len(ids):
        return (_UNIQUE, req.request_id, block_index)
    first_chunk = start // hbs
    if first_chunk == last_chunk:
        return (ids[first_chunk], start - first_chunk * hbs, end - first_chunk * hbs)
    return tuple(
        (ids[c], max(start, c * hbs) - c * hbs, min(end, (c + 1) * hbs) - c * hbs)
        for c in range(first_chunk, last_chunk + 1)
    )


class KVBlockManager:
    """Allocates KV blocks to requests and keeps the prefix cache.

    Invariants (checked by :meth:`check_invariants`): every block is either referenced
    (ref count > 0) or in the free queue, never both; every cached hash maps to a block that
    carries that hash.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks <= 0:
            raise ValueError("num_blocks must be positive")
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}
        self.free_queue: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.num_evictions = 0

    # --- queries ------------------------------------------------------------------------

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_queue)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free_queue)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by running requests."""
        return self.num_used_blocks / self.num_blocks

    def blocks_needed(self, req: Request, num_tokens: int) -> int:
        """Fresh blocks ``req`` needs to hold ``num_tokens`` tokens of KV."""
        return max(0, -(-num_tokens // self.block_size) - len(req.block_ids))

    def _block_hash(self, req: Request, index: int) -> int:
        hashes = req.block_hashes
        while len(hashes) <= index:
            i = len(hashes)
            parent = hashes[i - 1] if i else 0
            hashes.append(hash((parent, block_content_key(req, i, self.block_size))))
        return hashes[index]

    def find_cached_prefix(self, req: Request) -> list[int]:
        """Blocks holding the longest cached prefix of ``req``'s tokens.

        At least one token is always left to compute, because the step that computes the last
        prompt token is the one that produces the first output logits.
        """
        if not self.enable_prefix_caching:
            return []
        max_blocks = (req.num_tokens - 1) // self.block_size
        hits: list[int] = []
        for i in range(max_blocks):
            block = self.cached.get(self._block_hash(req, i))
            if block is None:
                break
            hits.append(block)
        return hits

    def can_admit(self, req: Request, cached_blocks: list[int], num_tokens: int) -> bool:
        """Whether ``req`` can take ``cached_blocks`` and fresh blocks up to ``num_tokens``."""
        revived = sum(1 for b in cached_blocks if self.ref_counts[b] == 0)
        fresh = max(0, -(-num_tokens // self.block_size) - len(cached_blocks))
        return fresh + revived <= len(self.free_queue)

    # --- mutations ----------------------------------------------------------------------

    def take_cached(self, req: Request, cached_blocks: list[int]) -> None:
        """Give ``req`` the prefix-cache hits found by :meth:`find_cached_prefix`."""
        assert not req.block_ids, "cached prefix is taken only by a request holding no blocks"
        for b in cached_blocks:
            if self.ref_counts[b] == 0:
                del self.free_queue[b]
            self.ref_counts[b] += 1
        req.block_ids.extend(cached_blocks)
        req.num_registered_blocks = len(cached_blocks)

    def allocate(self, req: Request, num_tokens: int) -> bool:
        """Grow ``req``'s blocks to hold ``num_tokens`` tokens; False (and no change) if full."""
        needed = -(-num_tokens // self.block_size) - len(req.block_ids)
        if needed <= 0:
            return True
        if needed > len(self.free_queue):
            return False
        for _ in range(needed):
            block, _ = self.free_queue.popitem(last=False)
            old = self.block_hash[block]
            if old is not None:
                # Evict: the block's old content is gone from the cache.
                if self.cached.get(old) == block:
                    del self.cached[old]
                self.block_hash[block] = None
                self.num_evictions += 1
            self.ref_counts[block] = 1
            req.block_ids.append(block)
        return True

    def register_full_blocks(self, req: Request) -> None:
        """Publish ``req``'s newly filled blocks in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        full = min(req.num_computed_tokens // self.block_size, len(req.block_ids))
        for i in range(req.num_registered_blocks, full):
            h = self._block_hash(req, i)
            block = req.block_ids[i]
            # NOTE: if two requests computed the same content concurrently, the first copy stays
            # the cached one; the duplicate block is freed normally (as vLLM does).
            if h not in self.cached and self.block_hash[block] is None:
                self.cached[h] = block
                self.block_hash[block] = h
        req.num_registered_blocks = max(req.num_registered_blocks, full)

    def free(self, req: Request) -> None:
        """Release ``req``'s blocks. Tail blocks are queued first so they are evicted first."""
        for block in reversed(req.block_ids):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free_queue[block] = None
        req.block_ids = []
        req.num_registered_blocks = 0

    def check_invariants(self) -> None:
        """Assert the manager's invariants (used by tests; O(num_blocks))."""
        for b in range(self.num_blocks):
            rc = self.ref_counts[b]
            assert rc >= 0, f"block {b} has negative ref count"
            assert (rc == 0) == (b in self.free_queue), f"block {b}: ref {rc} vs free queue"
        for h, b in self.cached.items():
            assert self.block_hash[b] == h, f"cached hash of block {b} mismatched"
