"""KV block manager: exact accounting, LRU eviction, prefix hits, preemption segments."""

import pytest
from engine_factories import make_request

from servesim.engine.kv_cache import _NO_HITS, KVBlockManager


def registered(kv, req, computed):
    req.num_computed_tokens = computed
    kv.register_full_blocks(req)


def test_unique_content_is_counted_not_named():
    kv = KVBlockManager(8, 4)
    r = make_request(prompt=10)
    assert kv.allocate(r, 10)
    assert r.block_ids == [] and r.num_private_blocks == 3
    assert kv.num_free_blocks == 5
    assert kv.allocate(r, 12)  # still fits in 3 blocks
    assert r.num_blocks == 3
    assert kv.allocate(r, 13)
    assert r.num_blocks == 4 and kv.num_held == 4
    kv.check_invariants()


def test_allocate_fails_without_change_when_full():
    kv = KVBlockManager(2, 4)
    r = make_request(prompt=12)
    assert not kv.allocate(r, 12)
    assert r.num_blocks == 0 and kv.num_free_blocks == 2


def test_named_blocks_get_ids_and_private_tail_follows():
    kv = KVBlockManager(16, 4)
    r = make_request(prompt=14, hash_ids=(7, 8), hbs=4)  # 8 named tokens, then unique
    kv.allocate(r, 14)
    assert r.block_ids == [0, 1] and r.num_private_blocks == 2


def test_prefix_hit_shares_blocks_and_counts_references():
    kv = KVBlockManager(16, 4)
    ids = (7, 8, 9)
    a = make_request(rid=1, prompt=12, hash_ids=ids, hbs=4)
    kv.allocate(a, 12)
    registered(kv, a, 12)
    b = make_request(rid=2, prompt=12, hash_ids=ids, hbs=4)
    hits = kv.find_cached_prefix(b)
    # At least one token must be computed: 12 tokens → only 2 of 3 full blocks are hits.
    assert hits.block_ids == a.block_ids[:2] and hits.num_private == 0
    kv.take_cached(b, hits)
    assert [kv.ref_counts[x] for x in a.block_ids] == [2, 2, 1]
    assert kv.num_held == 3  # shared blocks are held once
    kv.check_invariants()


def test_freed_named_blocks_stay_cached_and_are_revived():
    kv = KVBlockManager(4, 4)
    a = make_request(rid=1, prompt=9, hash_ids=(1, 2), hbs=4)
    kv.allocate(a, 9)
    registered(kv, a, 9)
    assert len(kv.cached) == 2
    kv.free(a)
    assert kv.num_cached == 2 and kv.num_held == 0
    assert list(kv.lru) == [(0, 1), (0, 0)]  # tail block first: evicted first
    b = make_request(rid=2, prompt=9, hash_ids=(1, 2), hbs=4)
    hits = kv.find_cached_prefix(b)
    assert hits.block_ids == [0, 1]
    assert kv.can_admit(b, hits, 9)
    kv.take_cached(b, hits)
    assert kv.num_cached == 0 and kv.num_held == 2
    kv.check_invariants()


def test_clean_blocks_are_used_before_cached_ones_are_evicted_lru_first():
    kv = KVBlockManager(4, 4)
    a = make_request(rid=1, prompt=8, hash_ids=(5, 6), hbs=4)
    kv.allocate(a, 8)
    registered(kv, a, 8)
    kv.free(a)
    c = make_request(rid=2, prompt=8)
    kv.allocate(c, 8)  # the 2 clean blocks: no eviction
    assert kv.num_evictions == 0 and len(kv.cached) == 2
    d = make_request(rid=3, prompt=4)
    kv.allocate(d, 4)  # must evict one: the least recently freed, a's tail block (id 1)
    assert kv.num_evictions == 1
    assert list(kv.block_hash) == [0]
    kv.check_invariants()


def test_hash_block_size_larger_than_block_size_maps_sub_blocks():
    kv = KVBlockManager(64, 16)
    # Mooncake-style 512-token hash blocks over 16-token KV blocks.
    a = make_request(rid=1, prompt=1024, hash_ids=(11, 12), hbs=512)
    b = make_request(rid=2, prompt=1024, hash_ids=(11, 99), hbs=512)
    kv.allocate(a, 1024)
    registered(kv, a, 1024)
    assert len(kv.find_cached_prefix(b).block_ids) == 32  # exactly the first 512 tokens


def test_unique_content_never_matches_other_requests():
    kv = KVBlockManager(64, 4)
    a = make_request(rid=1, prompt=16)
    kv.allocate(a, 16)
    registered(kv, a, 16)
    assert kv.find_cached_prefix(make_request(rid=2, prompt=16)).num_blocks == 0


def test_preempted_request_finds_its_own_private_blocks_again():
    kv = KVBlockManager(64, 4)
    a = make_request(rid=1, prompt=18, output=5)
    kv.allocate(a, 18)
    a.num_computed_tokens = 18  # 4 full blocks + a partial one
    kv.free(a, preempted=True)
    assert kv.num_cached == 4 and kv.num_held == 0
    a.num_computed_tokens = 0
    hits = kv.find_cached_prefix(a)
    assert hits.num_private == 4
    kv.take_cached(a, hits)
    assert a.num_private_blocks == 4 and kv.num_cached == 0 and kv.num_held == 4
    kv.check_invariants()


def test_eviction_trims_a_segment_from_its_tail():
    kv = KVBlockManager(6, 4)
    a = make_request(rid=1, prompt=16, output=5)
    kv.allocate(a, 16)
    a.num_computed_tokens = 16
    kv.free(a, preempted=True)  # segment of 4
    b = make_request(rid=2, prompt=16)
    kv.allocate(b, 16)  # 2 clean + evict 2 from the segment
    assert kv.lru[(1, 1)] == 2
    a.num_computed_tokens = 0
    assert kv.find_cached_prefix(a).num_private == 2
    kv.check_invariants()


def test_finished_request_private_blocks_become_clean():
    kv = KVBlockManager(8, 4)
    a = make_request(rid=1, prompt=16)
    kv.allocate(a, 16)
    a.num_computed_tokens = 16
    kv.free(a)
    assert kv.num_cached == 0 and kv.num_held == 0


def test_prefix_caching_off_finds_nothing_and_names_nothing():
    kv = KVBlockManager(16, 4, enable_prefix_caching=False)
    a = make_request(rid=1, prompt=12, hash_ids=(1, 2, 3), hbs=4)
    kv.allocate(a, 12)
    registered(kv, a, 12)
    assert kv.cached == {} and a.block_ids == []
    b = make_request(rid=2, prompt=12, hash_ids=(1, 2, 3), hbs=4)
    assert kv.find_cached_prefix(b).num_blocks == 0


def test_cpu_tier_keeps_evicted_prefix_blocks_and_loads_them_back():
    kv = KVBlockManager(4, 4, cpu_blocks=8)
    a = make_request(rid=1, prompt=9, hash_ids=(1, 2), hbs=4)
    kv.allocate(a, 9)
    registered(kv, a, 9)
    kv.free(a)
    filler = make_request(rid=2, prompt=16)
    kv.allocate(filler, 16)  # evicts both cached blocks: they spill to the CPU tier
    assert kv.cached == {} and kv.num_cpu_used == 2 and kv.num_spilled_blocks == 2
    kv.free(filler)
    b = make_request(rid=3, prompt=9, hash_ids=(1, 2), hbs=4)
    hits = kv.find_cached_prefix(b)
    assert hits.num_blocks == 2 and hits.num_to_load == 2
    assert kv.can_admit(b, hits, 9)
    kv.take_cached(b, hits)
    assert kv.take_pending_loads() == 2 and kv.take_pending_loads() == 0
    assert len(kv.cached) == 2 and kv.num_cpu_used == 0
    kv.check_invariants()


def test_cpu_tier_drops_its_least_recent_blocks_when_full():
    kv = KVBlockManager(2, 4, cpu_blocks=2)
    for rid, ids in ((1, (1, 2)), (2, (3, 4)), (3, (5, 6))):
        r = make_request(rid=rid, prompt=9, hash_ids=ids, hbs=4)
        kv.allocate(r, 8)
        registered(kv, r, 8)
        kv.free(r)
    # Request 1's blocks spilled first (evicted by request 2), then were dropped for request
    # 2's (evicted by request 3); request 3's are still on the GPU.
    assert kv.num_cpu_used == 2
    gone = make_request(rid=9, prompt=9, hash_ids=(1, 2), hbs=4)
    assert kv.find_cached_prefix(gone).num_blocks == 0
    on_cpu = make_request(rid=10, prompt=9, hash_ids=(3, 4), hbs=4)
    assert kv.find_cached_prefix(on_cpu).num_to_load == 2
    on_gpu = make_request(rid=11, prompt=9, hash_ids=(5, 6), hbs=4)
    hits = kv.find_cached_prefix(on_gpu)
    assert hits.num_blocks == 2 and hits.num_to_load == 0
    kv.check_invariants()


def test_preempted_segment_spills_and_comes_back_from_the_cpu_tier():
    kv = KVBlockManager(6, 4, cpu_blocks=16)
    a = make_request(rid=1, prompt=16, output=5)
    kv.allocate(a, 16)
    a.num_computed_tokens = 16
    kv.free(a, preempted=True)  # segment of 4 on the GPU
    b = make_request(rid=2, prompt=24)
    kv.allocate(b, 24)  # 2 clean + 4 evicted from the segment → CPU
    assert kv.cpu_lru[(1, 1)] == 4
    kv.free(b)
    a.num_computed_tokens = 0
    hits = kv.find_cached_prefix(a)
    # 16 tokens: the last block is recomputed (one token must be computed), 3 come back.
    assert (hits.num_private, hits.num_private_cpu) == (0, 3)
    kv.take_cached(a, hits)
    assert a.num_private_blocks == 3 and kv.take_pending_loads() == 3
    assert kv.num_cpu_used == 0  # the stale 4th block is dropped
    kv.check_invariants()


def test_hybrid_layout_holds_a_window_of_pages_per_sliding_group():
    # vLLM's hybrid manager, gpt-oss-like: one full-attention group, one sliding group of a
    # 128-token window in 16-token pages: at most cdiv(127, 16) + 1 = 9 pages a request.
    import numpy as np

    kv = KVBlockManager(100, 16, sliding_groups=1, window_blocks=9)
    assert [kv.blocks_for(t) for t in (1, 16, 17, 144, 145, 1000)] == [2, 2, 4, 18, 19, 72]
    assert kv.blocks_for(np.array([1, 17, 1000])).tolist() == [2, 4, 72]
    assert KVBlockManager(100, 16).blocks_for(1000) == 63  # (uniform: one block a 16 tokens)
    r = make_request(prompt=1000)
    assert kv.can_admit(r, kv.find_cached_prefix(r), 1000)
    assert kv.allocate(r, 1000)
    assert r.num_private_blocks == 72 and kv.num_free_blocks == 28
    assert kv.allocate(r, 1008) and r.num_blocks == 72  # (the window's pages are recycled)
    assert kv.allocate(r, 1009) and r.num_blocks == 73
    other = make_request(rid=1, prompt=500)
    assert not kv.can_admit(other, kv.find_cached_prefix(other), 500)  # 32 + 9 > 27 pages
    kv.free(r)
    assert kv.num_free_blocks == 100
    kv.check_invariants()


def test_hybrid_layout_shares_only_full_attention_pages():
    # Named prompt content is shared through the full-attention group; the sliding group's
    # pages stay the request's own.
    kv = KVBlockManager(64, 4, sliding_groups=1, window_blocks=2)
    a = make_request(prompt=12, hash_ids=(1, 2, 3), hbs=4)
    assert kv.allocate(a, 12)
    assert len(a.block_ids) == 3 and a.num_private_blocks == 2
    registered(kv, a, 12)
    b = make_request(rid=1, prompt=14, hash_ids=(1, 2, 3), hbs=4)
    hits = kv.find_cached_prefix(b)
    assert hits.num_blocks == 3
    kv.take_cached(b, hits)
    assert kv.allocate(b, 14)
    # b: 3 shared + 1 private full page, 2 sliding pages.
    assert b.block_ids == a.block_ids and b.num_private_blocks == 3
    assert kv.num_held == 5 + 3
    kv.check_invariants()


def test_a_prompt_chunk_holds_its_own_sliding_window_pages_for_its_step():
    # vLLM frees the pages a sliding group's window has passed only at the request's next
    # step: while a 1,000-token chunk computes, a 128-token window needs cdiv(127 + 1000, 16)
    # + 1 = 72 pages, not 9. Decode steps (one new token) hold the 9.
    import numpy as np

    kv = KVBlockManager(400, 16, sliding_groups=1, window_blocks=9, window_tokens=128)
    assert kv.blocks_for(2000, 1000) == 125 + 72
    assert kv.blocks_for(2000, 1) == kv.blocks_for(2000) == 125 + 9
    assert kv.blocks_for(100, 100) == 7 + 7  # (never more pages than the tokens fill)
    assert kv.blocks_for(np.array([2000, 2000]), np.array([1000, 1])).tolist() == [197, 134]
    r = make_request(prompt=2000)
    assert kv.allocate(r, 1000, 1000) and r.num_blocks == 63 + 63
    assert kv.allocate(r, 2000, 1000) and r.num_blocks == 197
    kv.release_private(197 - kv.blocks_for(2000))  # (the instance does this as the step ends)
    assert kv.num_held == 134
    # Without the window's length (0), chunks hold no more than the steady window.
    assert KVBlockManager(400, 16, sliding_groups=1, window_blocks=9).blocks_for(2000, 1000) == 134


def test_the_admission_watermark_keeps_blocks_free_for_running_requests():
    # vLLM V0: a waiting request is admitted only if int(0.01 x blocks) blocks stay free after
    # its own; a running request may still grow into them.
    kv = KVBlockManager(200, 16, watermark_blocks=2)
    a = make_request(prompt=16 * 197)
    assert kv.can_admit(a, kv.find_cached_prefix(a), 16 * 197)  # 200 - 197 = 3 >= 2
    b = make_request(rid=1, prompt=16 * 199)
    assert not kv.can_admit(b, kv.find_cached_prefix(b), 16 * 199)  # 1 left < 2
    assert KVBlockManager(200, 16).can_admit(b, _NO_HITS, 16 * 199)
    assert kv.allocate(a, 16 * 197)
    assert kv.allocate(a, 16 * 199) and kv.num_free_blocks == 1  # (growing ignores it)
    kv.check_invariants()
    with pytest.raises(ValueError, match="watermark_blocks"):
        KVBlockManager(10, 16, watermark_blocks=10)


def test_a_sliding_window_only_layout_holds_a_requests_window_whatever_its_length():
    # Every layer slides (full_groups 0): one group whose requests hold min(cdiv(t, 16), 257)
    # pages, and while a prompt chunk of n tokens computes, cdiv(4095 + n, 16) + 1.
    import numpy as np

    kv = KVBlockManager(
        2000, 16, enable_prefix_caching=False, sliding_groups=1, window_blocks=257,
        window_tokens=4096, full_groups=0,
    )  # fmt: skip
    assert [kv.blocks_for(t) for t in (1, 16, 4096, 4112, 32000)] == [1, 1, 256, 257, 257]
    assert kv.blocks_for(32000, 2048) == 385 and kv.blocks_for(1000, 1000) == 63
    assert kv.blocks_for(np.array([17, 32000])).tolist() == [2, 257]
    r = make_request(prompt=32000)
    assert kv.can_admit(r, _NO_HITS, 8192, 8192) and kv.allocate(r, 8192, 8192)
    assert r.num_blocks == 512  # (the chunk's own pages, until the step ends)
    assert kv.allocate(r, 32000) and r.num_blocks == 512
    kv.free(r)
    assert kv.num_free_blocks == 2000
    with pytest.raises(ValueError, match="full_groups"):
        KVBlockManager(100, 16, full_groups=0)


def test_admitting_the_whole_prompt_asks_room_for_its_cached_hits_too():
    # vLLM V0's can_allocate counts every block of a waiting prompt, prefix hits included;
    # V1 only the blocks the hits leave to allocate.
    for whole, admitted in ((False, True), (True, False)):
        kv = KVBlockManager(10, 4, admit_whole_prompt=whole)
        a = make_request(prompt=24, hash_ids=(7,), hbs=24)  # 6 named blocks
        assert kv.allocate(a, 24)
        registered(kv, a, 24)
        b = make_request(rid=1, prompt=28, hash_ids=(7,), hbs=24)
        hits = kv.find_cached_prefix(b)
        assert hits.num_blocks == 6  # (held by a: shared, not fresh)
        # 7 blocks of tokens, 6 of them hits: 1 fresh block fits the 4 free, 7 do not.
        assert kv.can_admit(b, hits, 28) is admitted


def _cache_state(kv, req):
    return (
        kv.num_held, kv.num_cached, kv.num_cpu_used, list(kv.lru.items()), dict(kv.cached),
        dict(kv.ref_counts), req.num_private_blocks, req.num_registered_blocks,
        list(req.block_ids),
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_admitting_a_unique_request_in_one_call_is_the_general_path(seed):
    """``admit_unique`` (the scheduler's one call for a request whose content is its own)
    leaves the cache and the request as finding no hits, ``can_admit``, ``take_cached`` and
    ``allocate`` do: the same refusals, evictions (LRU order) and counts, in layouts with a
    watermark, sliding-window groups and a CPU tier."""
    import copy
    import random

    rng = random.Random(seed)
    layout = rng.choice([
        {}, {"watermark_blocks": 3}, {"sliding_groups": 1, "window_blocks": 3, "window_tokens": 9},
        {"cpu_blocks": 8}, {"enable_prefix_caching": False}, {"admit_whole_prompt": True},
    ])  # fmt: skip
    kv = KVBlockManager(rng.randint(12, 40), 4, **layout)
    # Some cached content to evict: named prompts freed, a preempted request's segment.
    for rid in range(1, rng.randint(2, 6)):
        other = make_request(rid, prompt=rng.randint(4, 24), hash_ids=(rid * 10, rid * 10 + 1),
                             hbs=4)  # fmt: skip
        if kv.allocate(other, other.prompt_tokens):
            registered(kv, other, other.prompt_tokens)
            kv.free(other, preempted=rng.random() < 0.3)
    for rid in range(50, 50 + rng.randint(0, 3)):  # requests running: less room
        kv.allocate(make_request(rid, prompt=rng.randint(4, 40)), rng.randint(4, 40))
    req = make_request(99, prompt=rng.randint(1, 80))
    assert kv.is_unique(req)
    n = rng.randint(1, req.prompt_tokens)
    check = rng.choice([n, req.prompt_tokens])  # (a prompts-first engine checks the whole)
    general = copy.deepcopy(kv), copy.deepcopy(req)
    hits = general[0].find_cached_prefix(general[1])
    fits = general[0].can_admit(general[1], hits, check, n)
    if fits:
        general[0].take_cached(general[1], hits)
        assert general[0].allocate(general[1], n, n)
    assert kv.admit_unique(req, check, n) == fits
    assert _cache_state(kv, req) == _cache_state(*general)
    kv.check_invariants()


def test_a_request_with_named_content_or_a_cached_segment_is_not_unique():
    kv = KVBlockManager(16, 4)
    assert not kv.is_unique(make_request(1, prompt=8, hash_ids=(5,), hbs=4))
    mine = make_request(2, prompt=12)
    assert kv.allocate(mine, 12)
    mine.num_computed_tokens = 12
    kv.free(mine, preempted=True)  # (its computed blocks stay cached as its segment)
    assert not kv.is_unique(mine)
    assert KVBlockManager(16, 4, enable_prefix_caching=False).is_unique(mine)
