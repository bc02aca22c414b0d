"""KV block manager: exact allocation, free-queue (LRU) order, prefix hits, invariants."""

from engine_factories import make_request

from servesim.engine.kv_cache import KVBlockManager


def test_allocate_takes_blocks_from_queue_head_in_order():
    kv = KVBlockManager(8, 4)
    r = make_request(prompt=10)
    assert kv.allocate(r, 10)
    assert r.block_ids == [0, 1, 2]
    assert kv.num_free_blocks == 5
    assert kv.allocate(r, 12)  # still fits in 3 blocks
    assert r.block_ids == [0, 1, 2]
    assert kv.allocate(r, 13)
    assert r.block_ids == [0, 1, 2, 3]
    kv.check_invariants()


def test_allocate_fails_without_change_when_full():
    kv = KVBlockManager(2, 4)
    r = make_request(prompt=12)
    assert not kv.allocate(r, 12)
    assert r.block_ids == [] and kv.num_free_blocks == 2


def test_free_queues_tail_blocks_first_so_they_are_evicted_first():
    kv = KVBlockManager(4, 4)
    a = make_request(rid=1, prompt=8)
    b = make_request(rid=2, prompt=8)
    kv.allocate(a, 8)
    kv.allocate(b, 8)
    kv.free(a)
    kv.free(b)
    assert list(kv.free_queue) == [1, 0, 3, 2]
    kv.check_invariants()


def test_prefix_hit_shares_blocks_and_counts_references():
    kv = KVBlockManager(16, 4)
    ids = (7, 8, 9)  # 3 hash blocks of 4 tokens
    a = make_request(rid=1, prompt=12, hash_ids=ids, hbs=4)
    kv.allocate(a, 12)
    a.num_computed_tokens = 12
    kv.register_full_blocks(a)
    b = make_request(rid=2, prompt=12, hash_ids=ids, hbs=4)
    hits = kv.find_cached_prefix(b)
    # At least one token must be computed: 12 tokens → only 2 of 3 full blocks are hits.
    assert hits == a.block_ids[:2]
    kv.take_cached(b, hits)
    assert [kv.ref_counts[x] for x in a.block_ids] == [2, 2, 1]
    kv.check_invariants()


def test_freed_cached_blocks_are_revived_and_evicted_in_lru_order():
    kv = KVBlockManager(4, 4)
    a = make_request(rid=1, prompt=9, hash_ids=(1, 2, 3), hbs=4)
    kv.allocate(a, 9)
    a.num_computed_tokens = 9
    kv.register_full_blocks(a)
    assert len(kv.cached) == 2
    kv.free(a)
    b = make_request(rid=2, prompt=9, hash_ids=(1, 2, 3), hbs=4)
    hits = kv.find_cached_prefix(b)
    assert hits == [0, 1]
    assert kv.can_admit(b, hits, 9)
    kv.take_cached(b, hits)
    assert 0 not in kv.free_queue and 1 not in kv.free_queue
    # A request with other content evicts free blocks from the queue head.
    c = make_request(rid=3, prompt=8)
    kv.allocate(c, 8)
    assert c.block_ids == [3, 2]  # never-used block 3 first, then the freed tail block 2
    kv.check_invariants()


def test_eviction_drops_cached_hash():
    kv = KVBlockManager(2, 4)
    a = make_request(rid=1, prompt=8, hash_ids=(5, 6), hbs=4)
    kv.allocate(a, 8)
    a.num_computed_tokens = 8
    kv.register_full_blocks(a)
    kv.free(a)
    c = make_request(rid=2, prompt=8)
    kv.allocate(c, 8)
    assert kv.cached == {}
    assert kv.num_evictions == 2
    kv.check_invariants()


def test_hash_block_size_larger_than_block_size_maps_sub_blocks():
    kv = KVBlockManager(64, 16)
    # Mooncake-style 512-token hash blocks over 16-token KV blocks.
    a = make_request(rid=1, prompt=1024, hash_ids=(11, 12), hbs=512)
    b = make_request(rid=2, prompt=1024, hash_ids=(11, 99), hbs=512)
    kv.allocate(a, 1024)
    a.num_computed_tokens = 1024
    kv.register_full_blocks(a)
    hits = kv.find_cached_prefix(b)
    assert len(hits) == 32  # exactly the first 512 tokens match


def test_unique_content_never_matches_other_requests():
    kv = KVBlockManager(64, 4)
    a = make_request(rid=1, prompt=16)
    kv.allocate(a, 16)
    a.num_computed_tokens = 16
    kv.register_full_blocks(a)
    assert kv.find_cached_prefix(make_request(rid=2, prompt=16)) == []
    # ...but a request finds its own blocks again after a preemption.
    kv.free(a)
    assert len(kv.find_cached_prefix(a)) == 3


def test_prefix_caching_off_finds_nothing():
    kv = KVBlockManager(16, 4, enable_prefix_caching=False)
    a = make_request(rid=1, prompt=12, hash_ids=(1, 2, 3), hbs=4)
    kv.allocate(a, 12)
    a.num_computed_tokens = 12
    kv.register_full_blocks(a)
    assert kv.cached == {}
    assert kv.find_cached_prefix(make_request(rid=2, prompt=12, hash_ids=(1, 2, 3), hbs=4)) == []
