"""The fleet: a scenario's instances, each scheduler and KV cache built from its knobs."""

import msgspec
import numpy as np
import pytest

from servesim.engine.scheduler import SchedulerConfig
from servesim.errors import ServesimError
from servesim.fleet import build_fleet, scheduler_config
from servesim.scenario import SchedulerSpec, build_scenario

SMALL = {"model": "llama-3.2-1b", "workload": {"num_requests": 4}}


def test_the_scheduler_config_takes_every_scheduler_knob_but_the_memory_ones():
    spec = SchedulerSpec(
        policy="sarathi",
        max_num_batched_tokens=512,
        max_num_seqs=7,
        block_size=32,
        enable_prefix_caching=False,
        enable_chunked_prefill=False,
        long_prefill_token_threshold=100,
        gpu_memory_utilization=0.5,
    )
    config = scheduler_config(spec)
    memory_knobs = {"gpu_memory_utilization", "kv_cache_tokens", "hybrid_kv_cache"}
    spec_fields = set(msgspec.structs.asdict(spec)) - memory_knobs
    assert spec_fields == set(SchedulerConfig.__dataclass_fields__)
    for name in spec_fields:
        assert getattr(config, name) == getattr(spec, name), name


def test_each_kv_cache_is_built_from_the_config():
    scenario = build_scenario(
        {**SMALL, "replicas": 2, "scheduler": {"block_size": 32, "enable_prefix_caching": False}}
    )
    fleet = build_fleet(scenario, np.random.default_rng(0))
    assert fleet.config.block_size == 32 and not fleet.config.enable_prefix_caching
    assert [i.instance_id for i in fleet.instances] == [0, 1]
    for inst in fleet.instances:
        assert inst.kv.block_size == 32 and not inst.kv.enable_prefix_caching
    memory = fleet.groups[0].memory
    assert memory.block_size == 32
    assert fleet.kv_tokens == memory.num_kv_blocks * 32 == memory.kv_capacity_tokens


def test_disaggregated_groups_and_the_api_server():
    scenario = build_scenario({**SMALL, "disaggregate": "1:2", "api_server": False})
    fleet = build_fleet(scenario, np.random.default_rng(0))
    assert [g.group.role for g in fleet.groups] == ["prefill", "decode"]
    assert [i.role for i in fleet.instances] == ["prefill", "decode", "decode"]
    assert fleet.api is None
    assert build_fleet(build_scenario(SMALL), np.random.default_rng(0)).api is not None


def test_a_context_window_past_the_models_is_refused():
    scenario = build_scenario({**SMALL, "max_model_len": 10**7})
    with pytest.raises(ServesimError) as err:
        build_fleet(scenario, np.random.default_rng(0))
    assert err.value.field == "max_model_len"


def test_attention_dp_ranks_step_under_per_rank_graphs_and_prompt_shares():
    scenario = build_scenario(
        {"model": "deepseek-v3", "hardware": "H200", "tp": 1, "dp": 8, "engine": "sglang",
         "workload": {"num_requests": 4}}
    )  # fmt: skip
    fleet = build_fleet(scenario, np.random.default_rng(0))
    (group,) = fleet.groups
    assert (group.parallelism.tp, group.parallelism.dp, group.gpus_per_instance) == (1, 8, 8)
    inst = group.instances[0]
    sizes = group.instances[0].graph_batch
    # 20 sequences: at most 3 per rank, each rank runs the graph captured for 4, 8 ranks.
    assert sizes(20) == 32 and sizes(8) == 8 and sizes(1) == 8
    # Each rank schedules its prompts within its share of SGLang's 8,192-token chunk.
    budget = fleet.config.max_num_batched_tokens
    assert inst.config.long_prefill_token_threshold == budget // 8
    assert fleet.config.long_prefill_token_threshold is None  # (the scenario's, unchanged)


def test_ep_beyond_tp_still_means_wide_ep_over_dp_ranks():
    from servesim.fleet import parallelism_of
    from servesim.scenario import InstanceGroup, describe_instances

    par = parallelism_of(InstanceGroup(tp=2, ep=8))
    assert (par.tp, par.dp, par.ep, par.all_to_all) == (2, 4, 8, True)
    par = parallelism_of(InstanceGroup(tp=1, dp=8))
    assert (par.dp, par.ep, par.moe_gather, par.expert_tp) == (8, 1, True, 8)
    assert describe_instances(1, "H200", 1, dp=8) == "1 instance × TP1 DP8 = 8 × H200"
    assert describe_instances(1, "H200", 2, ep=8) == "1 instance × TP2 DP4 EP8 = 8 × H200"
    with pytest.raises(ServesimError) as err:
        build_fleet(build_scenario({**SMALL, "dp": 2}), np.random.default_rng(0))
    assert err.value.field == "dp"


@pytest.mark.parametrize(
    "engine, release, budget, threshold, seqs, ratio, largest_graph, overlap",
    [
        # SGLang 0.5: chunked_prefill_size // dp per rank, schedule_conservativeness × 0.3.
        ("sglang", None, 8192, 1024, 4096, 0.7 * 0.3, 512, True),
        # SGLang 0.4 by release (server_args.py, 0.4.0-0.4.9 wheels): 0.4.0 chunk // 2 per
        # rank, graphs up to 96 per rank, no overlap scheduler; 0.4.1 lifts the graph cap,
        # 0.4.2 keeps the overlap scheduler on, 0.4.5 divides the chunk by dp.
        ("sglang-0.4", "0.4.0", 8 * 4096, 4096, 4096, 0.7 * 0.3, 96, False),
        ("sglang-0.4", "0.4.1", 8 * 4096, 4096, 4096, 0.7 * 0.3, 160, False),
        ("sglang-0.4", "0.4.3.post2", 8 * 4096, 4096, 4096, 0.7 * 0.3, 160, True),
        ("sglang-0.4", None, 8192, 1024, 4096, 0.7 * 0.3, 160, True),
        # vLLM: an engine per rank, each with vLLM V1's H200 server defaults (8192, 1024).
        ("vllm", None, 8 * 8192, 8192, 8 * 1024, None, 512, True),
    ],
)
def test_engines_run_attention_dp_ranks_their_own_way(
    engine, release, budget, threshold, seqs, ratio, largest_graph, overlap
):
    data = {"model": "deepseek-v3", "hardware": "H200", "tp": 1, "dp": 8, "engine": engine,
            "workload": {"num_requests": 4}}  # fmt: skip
    if release is not None:
        data["engine_version"] = release
    scenario = build_scenario(data)
    (group,) = build_fleet(scenario, np.random.default_rng(0)).groups
    inst = group.instances[0]
    cfg = inst.config
    assert (cfg.max_num_batched_tokens, cfg.long_prefill_token_threshold) == (budget, threshold)
    assert cfg.max_num_seqs == seqs
    admission = inst.state.admission
    assert (admission.ratio if admission else None) == pytest.approx(ratio)
    assert inst.graph_batch(8 * largest_graph) == 8 * largest_graph
    assert inst.graph_batch(8 * largest_graph + 8) == 8 * largest_graph + 8  # (no graph: eager)
    assert group.params.host_overlap is overlap


def test_the_engines_release_picks_its_moe_kernels_and_not_a_borrowed_engines():
    def moe_ms(engine, version=None):
        data = {"model": "deepseek-v3", "hardware": "H200", "tp": 8, "engine": engine,
                "workload": {"num_requests": 4}}  # fmt: skip
        if version is not None:
            data["engine_version"] = version
        (group,) = build_fleet(build_scenario(data), np.random.default_rng(0)).groups
        cost = group.instances[0].cost
        assert cost.params.engine_version == version
        step = cost.step_time(np.ones(64), np.full(64, 2000))
        return step.by_group["moe"] * 1e3

    # SGLang 0.5.3 is priced from the 0.5.10 collection (the oldest at or after it), slower
    # than 0.5.14's kernels at a 64-token decode; a later release gets the newest.
    assert moe_ms("sglang", "0.5.3") > 1.3 * moe_ms("sglang")
    assert moe_ms("sglang", "0.5.14") == moe_ms("sglang") == moe_ms("sglang", "0.6.0")
    # TensorRT-LLM borrows vLLM's MoE table: its own release number says nothing about it.
    assert moe_ms("trtllm", "0.9.0") == moe_ms("trtllm")


def test_an_engine_version_must_be_a_release_number():
    with pytest.raises(ServesimError) as err:
        build_scenario({**SMALL, "engine_version": "latest"})
    assert err.value.field == "engine_version" and "0.5.3" in str(err.value)
    assert build_scenario({**SMALL, "engine_version": "v0.5.3.post3"}).engine_version


def test_vllm_v0_instances_keep_the_block_managers_watermark():
    # 1% of the blocks (int, as vLLM V0's BlockSpaceManager): admission leaves them free and a
    # request needing them too is never served; other engines have none.
    v0 = build_fleet(build_scenario({**SMALL, "engine": "vllm-v0"}), np.random.default_rng(0))
    blocks = v0.groups[0].memory.num_kv_blocks
    kv = v0.instances[0].kv
    assert kv.watermark_blocks == int(0.01 * blocks) > 0 and kv.admit_whole_prompt
    assert v0.kv_tokens == (blocks - kv.watermark_blocks) * kv.block_size
    v1 = build_fleet(build_scenario(SMALL), np.random.default_rng(0))
    assert v1.instances[0].kv.watermark_blocks == 0 and not v1.instances[0].kv.admit_whole_prompt
