"""Paged KV cache with prefix caching by chained block hashes.

Capacity is ``num_blocks`` blocks of ``block_size`` tokens. Every block is in one of three
states: **held** by running requests, **cached** (free, but its content is kept and can be
taken back by a request with the same prefix), or **clean** (free, no reusable content).
Allocating a fresh block uses a clean one if there is one, otherwise it evicts the least
recently freed cached block.

Which content can be shared: a request's tokens are named by its ``hash_ids`` (ids of
``hash_block_size``-token chunks, e.g. Mooncake's 512-token ``hash_ids``; synthetic shared
prefixes and multi-turn histories use them too). Full blocks inside that named range get a
chained hash (covering the block and everything before it, so equal hashes mean equal
prefixes), an id and a reference count, and can be shared. Tokens beyond the named range are
unique to the request: its blocks there are *private* and only counted, which keeps the cost of
a request independent of its length. When a request is preempted, its full private blocks stay
cached as one *segment* in the LRU order, so it finds them again when it resumes (as vLLM does
with its own blocks); a finished request's private blocks become clean, since nobody else can
ever match them.

CPU tier (KV offload): with ``cpu_blocks`` > 0, whatever is evicted from the GPU cache — a
cached shared block, or the tail of a preempted request's segment — spills to a CPU LRU of that
many blocks instead of vanishing. Lookups continue there after the GPU: a hit must be loaded
back over the host link, and the blocks loaded are counted in ``pending_load_blocks`` for the
instance to charge to the step that needs them. Spilling itself runs in the background and is
only counted.

Hybrid layout (vLLM's hybrid KV cache manager, models mixing full-attention and
sliding-window layers): a block is then one *page* of ``block_size`` tokens of one group of
layers; a request holds ``cdiv(t, block_size)`` pages of the full-attention group and, in each
of ``sliding_groups`` sliding-window groups, only the pages its window still reads — at most
``window_blocks`` (:meth:`KVBlockManager.blocks_for`). The sliding groups' pages are private;
prefix sharing works on the full-attention group's. A prompt chunk of ``n`` tokens holds, for
the step that computes it, the pages of ``window - 1 + n`` tokens in each sliding group
(vLLM frees the ones its window has passed at the request's next step,
``SlidingWindowManager.remove_skipped_blocks``; here the instance releases them as the step
completes).

NOTE: vLLM keeps one free queue in which never-used, content-less and cached blocks mix in
free order. Here clean blocks are always used before any cached block is evicted; cached blocks
are evicted in LRU order. The difference only lets cached prefixes live slightly longer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import count
from typing import TypeVar

import numpy as np

from servesim.engine.request import Request

_Count = TypeVar("_Count", int, "np.ndarray")


def cdiv(a: _Count, b: int) -> _Count:
    """``ceil(a / b)`` for positive ``b``: the blocks of ``b`` tokens that hold ``a`` tokens
    (ints, or numpy arrays element-wise)."""
    return (a + (b - 1)) // b


# NOTE: only ints and tuples of ints are hashed: Python randomises str hashes per process, which
# would make runs irreproducible.


def block_content_key(req: Request, block_index: int, block_size: int) -> tuple | None:
    """A key naming the tokens of block ``block_index`` of ``req``; None if they are unnamed."""
    start = block_index * block_size
    end = start + block_size
    hbs = req.hash_block_size
    ids = req.hash_ids
    last_chunk = (end - 1) // hbs
    if last_chunk >= len(ids):
        return None
    first_chunk = start // hbs
    if first_chunk == last_chunk:
        return (ids[first_chunk], start - first_chunk * hbs, end - first_chunk * hbs)
    return tuple(
        (ids[c], max(start, c * hbs) - c * hbs, min(end, (c + 1) * hbs) - c * hbs)
        for c in range(first_chunk, last_chunk + 1)
    )


def shareable_blocks(req: Request, block_size: int) -> int:
    """Leading blocks of ``req`` whose full content is named by its hash ids."""
    if not req.hash_ids:
        return 0
    named = len(req.hash_ids) * req.hash_block_size
    return min(named, req.prompt_tokens + req.max_output_tokens) // block_size


@dataclass(frozen=True)
class CachedPrefix:
    """Prefix-cache hits for one request, in token order: shared blocks (on the GPU: a block
    id; on the CPU tier: the content hash to load), then its own private blocks (on the GPU,
    then on the CPU tier)."""

    shared: list[tuple[bool, int]] = field(default_factory=list)
    """(on_gpu, block id if on the GPU else content hash) per shared block hit."""
    num_private: int = 0
    num_private_cpu: int = 0

    @property
    def block_ids(self) -> list[int]:
        return [key for on_gpu, key in self.shared if on_gpu]

    @property
    def num_to_load(self) -> int:
        """Blocks that come back from the CPU tier."""
        return sum(1 for on_gpu, _ in self.shared if not on_gpu) + self.num_private_cpu

    @property
    def num_blocks(self) -> int:
        return len(self.shared) + self.num_private + self.num_private_cpu


_NO_HITS = CachedPrefix()


class KVBlockManager:
    """Allocates KV blocks to requests and keeps the prefix cache.

    Invariants (:meth:`check_invariants`): held + cached + clean = num_blocks, each ≥ 0;
    a shared block is held iff its reference count is positive, and cached iff it is in the
    LRU queue; every cached hash names a block carrying that hash.
    """

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        enable_prefix_caching: bool = True,
        cpu_blocks: int = 0,
        sliding_groups: int = 0,
        window_blocks: int = 0,
        window_tokens: int = 0,
        watermark_blocks: int = 0,
        full_groups: int = 1,
        admit_whole_prompt: bool = False,
    ):
        if num_blocks <= 0:
            raise ValueError("num_blocks must be positive")
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        if full_groups not in (0, 1) or (full_groups == 0 and sliding_groups != 1):
            raise ValueError("full_groups must be 1, or 0 with one sliding group")
        self.sliding_groups = sliding_groups
        """Sliding-window groups of the hybrid layout (0: one uniform group)."""
        self.full_groups = full_groups
        """Full-attention groups: 1, or 0 for a model whose every layer slides (one sliding
        group then holds all of them)."""
        self.window_blocks = window_blocks
        """Pages a request holds at most in each sliding-window group between steps."""
        self.window_tokens = window_tokens
        """The sliding window (tokens), for the pages a prompt chunk holds during its step (0:
        none beyond ``window_blocks``)."""
        if not 0 <= watermark_blocks < num_blocks:
            raise ValueError("watermark_blocks must be in [0, num_blocks)")
        self.watermark_blocks = watermark_blocks
        self.admit_whole_prompt = admit_whole_prompt
        """Admission asks room for every block of the tokens, cached hits included (vLLM V0's
        ``can_allocate``), not only for the blocks the hits leave to allocate."""
        """Blocks a waiting request must leave free to be admitted (vLLM V0's watermark,
        ``EngineProfile.admission_watermark``); growing running requests may use them."""
        self.enable_prefix_caching = enable_prefix_caching
        self.num_held = 0
        self.num_cached = 0
        self.ref_counts: dict[int, int] = {}
        self.block_hash: dict[int, int] = {}
        self.cached: dict[int, int] = {}
        """hash → id of the block holding that content."""
        self.lru: OrderedDict[tuple[int, int], int] = OrderedDict()
        """Cached free content, least recently freed first: (0, block id) → 1 for a shared
        block, (1, request id) → block count for a preempted request's private segment."""
        self.num_evictions = 0
        self._ids = count()
        self.cpu_blocks = cpu_blocks if enable_prefix_caching else 0
        self.cpu_lru: OrderedDict[tuple[int, int], int] = OrderedDict()
        """The CPU tier, least recently spilled first: (0, hash) → 1, (1, request id) → the
        blocks of that request's segment that follow its part still on the GPU."""
        self.num_cpu_used = 0
        self.num_spilled_blocks = 0
        self.num_loaded_blocks = 0
        self.pending_load_blocks = 0

    # --- queries ------------------------------------------------------------------------

    def blocks_for(self, tokens: _Count, new_tokens: _Count | None = None) -> _Count:
        """Blocks a request holding ``tokens`` tokens of KV takes (ints, or numpy arrays
        element-wise): ``cdiv(tokens, block_size)``, plus in the hybrid layout the pages of
        its sliding-window groups, ``sliding_groups × min(cdiv(tokens, block_size), window)``
        where ``window`` is ``window_blocks`` — or, while a step computes ``new_tokens`` > 1
        of them (a prompt chunk), the pages of ``window_tokens - 1 + new_tokens`` tokens. A
        model whose every layer slides (``full_groups`` 0) holds the sliding group's only."""
        bs = self.block_size
        full = cdiv(tokens, bs)
        if not self.sliding_groups:
            return full
        window = self.window_blocks
        if new_tokens is not None and self.window_tokens:
            chunk = cdiv(self.window_tokens - 1 + new_tokens, bs) + 1
            if isinstance(new_tokens, int):
                window = chunk if new_tokens > 1 else window
            else:
                window = np.where(new_tokens > 1, chunk, window)
        if isinstance(full, int) and isinstance(window, int):
            return self.full_groups * full + self.sliding_groups * min(full, window)
        return self.full_groups * full + self.sliding_groups * np.minimum(full, window)

    @property
    def num_free_blocks(self) -> int:
        """Blocks a request could get now (clean, plus cached ones that would be evicted)."""
        return self.num_blocks - self.num_held

    @property
    def num_used_blocks(self) -> int:
        return self.num_held

    @property
    def usage(self) -> float:
        """Fraction of blocks held by running requests."""
        return self.num_held / self.num_blocks

    def _block_hash(self, req: Request, index: int) -> int:
        hashes = req.block_hashes
        while len(hashes) <= index:
            i = len(hashes)
            parent = hashes[i - 1] if i else 0
            hashes.append(hash((parent, block_content_key(req, i, self.block_size))))
        return hashes[index]

    def find_cached_prefix(self, req: Request) -> CachedPrefix:
        """The longest cached prefix of ``req``'s tokens.

        At least one token is always left to compute, because the step that computes the last
        prompt token is the one that produces the next token's logits.
        """
        if not self.enable_prefix_caching:
            return _NO_HITS
        max_blocks = (req.num_tokens - 1) // self.block_size
        shareable = min(shareable_blocks(req, self.block_size), max_blocks)
        segment = (1, req.request_id)
        if shareable <= 0 and segment not in self.lru and segment not in self.cpu_lru:
            return _NO_HITS  # (the common case of a new prompt with no named content)
        hits: list[tuple[bool, int]] = []
        for i in range(shareable):
            h = self._block_hash(req, i)
            block = self.cached.get(h)
            if block is not None:
                hits.append((True, block))
            elif (0, h) in self.cpu_lru:
                hits.append((False, h))
            else:
                return CachedPrefix(hits)
        room = max_blocks - shareable
        on_gpu = min(self.lru.get((1, req.request_id), 0), room)
        on_cpu = 0
        if on_gpu == self.lru.get((1, req.request_id), 0):
            on_cpu = min(self.cpu_lru.get((1, req.request_id), 0), room - on_gpu)
        return CachedPrefix(hits, on_gpu, on_cpu)

    def can_admit(
        self, req: Request, prefix: CachedPrefix, num_tokens: int, new_tokens: int | None = None
    ) -> bool:
        """Whether ``req`` can take ``prefix`` and fresh blocks up to ``num_tokens`` tokens
        (``new_tokens`` of them computed in the step: see :meth:`blocks_for`), leaving the
        :attr:`watermark_blocks` free; with :attr:`admit_whole_prompt`, room for every block
        of the tokens, hits or not."""
        room = self.num_blocks - self.num_held - self.watermark_blocks
        if prefix is _NO_HITS or self.admit_whole_prompt:
            return self.blocks_for(num_tokens, new_tokens) <= room
        revived = (
            sum(1 for b in prefix.block_ids if self.ref_counts[b] == 0)
            + prefix.num_private
            + prefix.num_to_load
        )
        fresh = max(0, self.blocks_for(num_tokens, new_tokens) - prefix.num_blocks)
        return fresh + revived <= room

    def is_unique(self, req: Request) -> bool:
        """Whether none of ``req``'s blocks can be shared or found cached: no content named by
        hash ids, no cached segment of its own on either tier (or no prefix caching). Such a
        request (holding nothing, no KV from elsewhere) is admitted by :meth:`admit_unique`."""
        if not self.enable_prefix_caching:
            return True
        segment = (1, req.request_id)
        return not req.hash_ids and segment not in self.lru and segment not in self.cpu_lru

    # --- mutations ----------------------------------------------------------------------

    def admit_unique(self, req: Request, check_tokens: int, new_tokens: int) -> bool:
        """What :meth:`find_cached_prefix` (no hits), :meth:`can_admit` for ``check_tokens``
        tokens, :meth:`take_cached` and :meth:`allocate` of ``new_tokens`` tokens, all computed
        in the step, do for a request :meth:`is_unique` holding nothing, in one call: False,
        with nothing changed, where its blocks do not fit."""
        room = self.num_blocks - self.num_held - self.watermark_blocks
        if self.blocks_for(check_tokens, new_tokens) > room:
            return False
        needed = self.blocks_for(new_tokens, new_tokens)
        clean = self.num_blocks - self.num_held - self.num_cached
        if needed > clean:
            self._evict(needed - clean)
        self.num_held += needed
        req.num_private_blocks = needed
        req.num_registered_blocks = 0
        return True

    def take_cached(self, req: Request, prefix: CachedPrefix) -> None:
        """Give ``req`` (holding no blocks) the hits found by :meth:`find_cached_prefix`."""
        assert req.num_blocks == 0, "a cached prefix is taken only by a request holding nothing"
        if prefix is _NO_HITS:  # (no segment of its own either: see find_cached_prefix)
            req.num_private_blocks = 0
            req.num_registered_blocks = 0
            return
        # Pin the GPU hits and detach the CPU-tier entries first, so that making room for the
        # loads below can neither evict the one nor drop the other.
        for on_gpu, key in prefix.shared:
            if on_gpu:
                if self.ref_counts[key] == 0:
                    del self.lru[(0, key)]
                    self.num_cached -= 1
                    self.num_held += 1
                self.ref_counts[key] += 1
            else:
                del self.cpu_lru[(0, key)]
                self.num_cpu_used -= 1
        segment = self.lru.pop((1, req.request_id), 0)
        spilled = self.cpu_lru.pop((1, req.request_id), 0)
        # The parts of the segment beyond the hit are stale: they become clean.
        self.num_cached -= segment
        self.num_cpu_used -= spilled
        self.num_held += prefix.num_private
        loads = prefix.num_to_load
        clean = self.num_blocks - self.num_held - self.num_cached
        if loads > clean:
            self._evict(loads - clean)
        self.num_held += prefix.num_private_cpu
        req.num_private_blocks = prefix.num_private + prefix.num_private_cpu
        for on_gpu, key in prefix.shared:
            if on_gpu:
                req.block_ids.append(key)
            else:
                # Back from the CPU tier into a fresh GPU block, cached again.
                block = next(self._ids)
                self.ref_counts[block] = 1
                self.cached[key] = block
                self.block_hash[block] = key
                self.num_held += 1
                req.block_ids.append(block)
        req.num_registered_blocks = len(prefix.shared)
        self.pending_load_blocks += prefix.num_to_load
        self.num_loaded_blocks += prefix.num_to_load

    def allocate(self, req: Request, num_tokens: int, new_tokens: int | None = None) -> bool:
        """Grow ``req``'s blocks to hold ``num_tokens`` tokens (``new_tokens`` of them computed
        in the step: see :meth:`blocks_for`); False (and no change) if full."""
        held = req.num_blocks
        needed = self.blocks_for(num_tokens, new_tokens) - held
        if needed <= 0:
            return True
        if needed > self.num_blocks - self.num_held:
            return False
        clean = self.num_blocks - self.num_held - self.num_cached
        if needed > clean:
            self._evict(needed - clean)
        self.num_held += needed
        shared = 0
        if self.enable_prefix_caching:
            # (Shared blocks come first, so the ones held are the leading named blocks.)
            named = shareable_blocks(req, self.block_size)
            shared = max(0, min(needed, named - len(req.block_ids)))
        for _ in range(shared):
            block = next(self._ids)
            self.ref_counts[block] = 1
            req.block_ids.append(block)
        req.num_private_blocks += needed - shared
        return True

    def allocate_private(self, n: int) -> bool:
        """Reserve ``n`` private blocks in bulk (the caller records which request holds them)."""
        free = self.num_blocks - self.num_held
        if n > free:
            return False
        clean = free - self.num_cached
        if n > clean:
            self._evict(n - clean)
        self.num_held += n
        return True

    def release_private(self, n: int) -> None:
        """Give back ``n`` private blocks in bulk (the caller records which request held them):
        they hold nothing reusable, so they become clean."""
        assert 0 <= n <= self.num_held
        self.num_held -= n

    def _evict(self, n: int) -> None:
        """Drop ``n`` cached blocks, least recently freed first."""
        while n > 0:
            (kind, key), size = next(iter(self.lru.items()))
            if kind == 0:
                del self.lru[(kind, key)]
                h = self.block_hash.pop(key)
                del self.cached[h]
                del self.ref_counts[key]
                taken = 1
                self._spill((0, h), 1)
            else:
                # A private segment loses its tail blocks first, so a prefix survives.
                taken = min(size, n)
                if taken == size:
                    del self.lru[(kind, key)]
                else:
                    self.lru[(kind, key)] = size - taken
                self._spill((1, key), taken)
            self.num_cached -= taken
            self.num_evictions += taken
            n -= taken

    def _spill(self, key: tuple[int, int], n: int) -> None:
        """Keep ``n`` evicted blocks in the CPU tier (dropping its least recent ones)."""
        if self.cpu_blocks == 0:
            return
        if key[0] == 0 and key in self.cpu_lru:
            # The same content was computed again and evicted again: one copy is enough.
            self.cpu_lru.move_to_end(key)
            return
        n = min(n, self.cpu_blocks)
        overflow = self.num_cpu_used + n - self.cpu_blocks
        while overflow > 0:
            (kind, k), size = next(iter(self.cpu_lru.items()))
            dropped = min(size, overflow)
            if dropped == size:
                del self.cpu_lru[(kind, k)]
            else:
                self.cpu_lru[(kind, k)] = size - dropped  # a segment loses its tail
            self.num_cpu_used -= dropped
            overflow -= dropped
        # A segment's spilled blocks sit just before those already on the CPU (the GPU part
        # shrinks from its tail), so the CPU part stays contiguous after the GPU part.
        self.cpu_lru[key] = self.cpu_lru.pop(key, 0) + n
        self.num_cpu_used += n
        self.num_spilled_blocks += n

    def take_pending_loads(self) -> int:
        """Blocks loaded from the CPU tier since the last call (the step pays for them)."""
        n, self.pending_load_blocks = self.pending_load_blocks, 0
        return n

    def register_full_blocks(self, req: Request) -> None:
        """Publish ``req``'s newly filled shared blocks in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        full = min(req.num_computed_tokens // self.block_size, len(req.block_ids))
        for i in range(req.num_registered_blocks, full):
            h = self._block_hash(req, i)
            block = req.block_ids[i]
            # NOTE: if two requests computed the same content concurrently, the first copy stays
            # the cached one; the duplicate is freed as content-less (as vLLM does).
            if h not in self.cached and block not in self.block_hash:
                self.cached[h] = block
                self.block_hash[block] = h
        req.num_registered_blocks = max(req.num_registered_blocks, full)

    def free(self, req: Request, preempted: bool = False) -> None:
        """Release ``req``'s blocks (tail first in LRU order, so tails are evicted first).

        A preempted request keeps its full private blocks cached as a segment.
        """
        private = req.num_private_blocks
        if private:
            self.num_held -= private
            if preempted and self.enable_prefix_caching:
                full = req.num_computed_tokens // self.block_size - len(req.block_ids)
                keep = max(0, min(private, full))
                if keep:
                    self.lru[(1, req.request_id)] = keep
                    self.num_cached += keep
            req.num_private_blocks = 0
        for block in reversed(req.block_ids):
            rc = self.ref_counts[block] - 1
            self.ref_counts[block] = rc
            if rc == 0:
                self.num_held -= 1
                if block in self.block_hash:
                    self.lru[(0, block)] = 1
                    self.num_cached += 1
                else:
                    del self.ref_counts[block]
        req.block_ids = []
        req.num_registered_blocks = 0

    def check_invariants(self) -> None:
        """Assert the manager's invariants (used by tests)."""
        assert 0 <= self.num_held <= self.num_blocks
        assert 0 <= self.num_cached <= self.num_blocks - self.num_held
        assert self.num_cached == sum(self.lru.values()), "cached count out of sync with LRU"
        for (kind, key), size in self.lru.items():
            assert size > 0
            if kind == 0:
                assert self.ref_counts[key] == 0, f"cached block {key} is referenced"
                assert key in self.block_hash
        for b, rc in self.ref_counts.items():
            assert rc >= 0
            assert (rc == 0) == ((0, b) in self.lru), f"block {b}: ref {rc} vs LRU"
        for h, b in self.cached.items():
            assert self.block_hash[b] == h, f"cached hash of block {b} mismatched"
        assert self.num_cpu_used == sum(self.cpu_lru.values()) <= max(self.cpu_blocks, 0)
