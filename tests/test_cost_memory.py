"""Memory plan: weights per GPU, KV per token, reserves, blocks, and models that do not fit."""

from __future__ import annotations

import pytest
from cost_factories import (
    GiB,
    deepseek_v3,
    gpt_oss_20b,
    h100,
    llama_3_1_8b,
    llama_3_1_70b,
    llama_3_1_405b,
)

from servesim.cost import CostParams, Parallelism, plan_memory
from servesim.cost.memory import STATIC_FRACTION_SHORTFALL_BYTES, stage_layers
from servesim.errors import ServesimError


def test_gqa_kv_bytes_per_token_of_llama_8b():
    plan = plan_memory(llama_3_1_8b(), h100())
    # K and V × 8 KV heads × 128 dims × 2 bytes × 32 layers.
    assert plan.kv_bytes_per_token == 2 * 8 * 128 * 2 * 32 == 131072


def test_kv_heads_split_by_tp_then_replicated():
    m, hw = llama_3_1_70b(), h100()
    # 8 KV heads: tp=4 holds 2 per GPU, tp=8 one, tp=16 still one (replicated).
    per_head = 2 * 128 * 2 * 80
    assert plan_memory(m, hw, Parallelism(tp=4)).kv_bytes_per_token == 2 * per_head
    assert plan_memory(m, hw, Parallelism(tp=8)).kv_bytes_per_token == per_head
    hw16 = h100(gpus_per_node=16)
    assert plan_memory(m, hw16, Parallelism(tp=16)).kv_bytes_per_token == per_head


def test_mla_kv_bytes_per_token_of_deepseek_v3_is_not_split_by_tp():
    big = h100(hbm_bytes=141 * GiB)
    for tp in (8, 16):
        plan = plan_memory(deepseek_v3(), big, Parallelism(tp=tp))
        # Latent 512 + rope key 64, bf16, 61 layers — the same on every TP rank.
        assert plan.kv_bytes_per_token == (512 + 64) * 2 * 61 == 70272
    fp8 = plan_memory(deepseek_v3(), big, Parallelism(tp=8), CostParams(kv_dtype="fp8"))
    assert fp8.kv_bytes_per_token == 35136


def test_plan_capacity_arithmetic_for_llama_8b_on_h100():
    plan = plan_memory(llama_3_1_8b(), h100(), gpu_memory_utilization=0.9)
    usable = 0.9 * 80 * GiB
    weights = 2 * 8_030_261_248  # every parameter in bf16
    # Activations: 8192 tokens × 2 B × (4·4096 + 3·14336) + sampler 256 × 128256 × 8 B.
    activations = 8192 * 2 * (4 * 4096 + 3 * 14336) + 256 * 128256 * 8
    runtime = 1.5 * GiB
    kv = usable - weights - activations - runtime
    assert plan.weights_bytes_per_gpu == weights
    assert plan.activation_reserve_bytes == activations == 1_235_746_816
    assert plan.runtime_reserve_bytes == runtime
    assert plan.kv_cache_bytes == pytest.approx(kv, rel=1e-15)
    assert plan.num_kv_blocks == int(kv // (16 * 131072)) == 27848
    assert plan.kv_capacity_tokens == 27848 * 16
    # A 2048 + 256 token sequence needs 144 blocks.
    assert plan.max_concurrent_seqs(2304) == 27848 // 144 == 193
    assert plan.max_concurrent_seqs(1) == 27848


def test_a_chunked_fused_moe_holds_its_caches_for_one_chunk_of_the_profiling_step():
    # DeepSeek-V3 at TP8 profiled with a 163,840-token step (vLLM V0 without chunked prefill):
    # the fused-MoE caches, k·(3·I_e/8 + d) = 8·(768 + 7168) per token, are held for a
    # 32,768-token chunk (VLLM_FUSED_MOE_CHUNK_SIZE) alongside 4·d hidden states for all.
    m, hw, par = deepseek_v3(), h100(hbm_bytes=141 * GiB), Parallelism(tp=8)
    tokens, chunk, d = 163840, 32768, 7168
    experts, shared = 8 * (3 * 2048 / 8 + d), 3 * 2048 / 8
    sampler = 256 * m.vocab_size * 8

    def reserve(chunk_tokens):
        params = CostParams(moe_chunk_tokens=chunk_tokens)
        plan = plan_memory(m, hw, par, params, max_num_batched_tokens=tokens, max_num_seqs=256)
        return plan.activation_reserve_bytes

    whole = tokens * 2 * (4 * d + experts + shared) + sampler
    chunked = tokens * 2 * 4 * d + chunk * 2 * experts + tokens * 2 * shared + sampler
    assert reserve(None) == pytest.approx(whole, rel=1e-12)
    assert reserve(chunk) == pytest.approx(chunked, rel=1e-12)
    assert whole - chunked == pytest.approx(15.5 * GiB, rel=1e-3)
    # A step within one chunk is unchanged.
    small = CostParams(moe_chunk_tokens=chunk)
    assert plan_memory(m, hw, par, small) == plan_memory(m, hw, par)


def test_materialized_mla_absorption_holds_the_absorbed_weights_beside_the_originals():
    # DeepSeek-V3 in FP8 at TP8 (16 heads a GPU): W_Q_UK 1536 × 16·512 and W_UV_O 16·512 × 7168
    # in FP8, W_QR 1536 × 16·64 in bf16, in each of 61 layers: 4.54 GB more a GPU.
    m, hw, par = deepseek_v3(), h100(hbm_bytes=141 * GiB), Parallelism(tp=8)
    plain = plan_memory(m, hw, par, CostParams(weight_dtype="fp8"))
    mat = plan_memory(m, hw, par, CostParams(weight_dtype="fp8", mla_materialized=True))
    extra = 61 * ((1536 * 16 * 512 + 16 * 512 * 7168) * 1 + 1536 * 16 * 64 * 2)
    assert extra == 4_541_382_656
    assert mat.weights_bytes_per_gpu - plain.weights_bytes_per_gpu == pytest.approx(extra)
    assert mat.kv_cache_bytes == pytest.approx(plain.kv_cache_bytes - extra)


def test_tp2_halves_the_weights_but_not_the_norms():
    m, hw = llama_3_1_8b(), h100()
    one = plan_memory(m, hw, Parallelism(tp=1))
    two = plan_memory(m, hw, Parallelism(tp=2))
    norms = (32 * 2 * 4096 + 4096) * 2  # replicated on every rank
    assert two.weights_bytes_per_gpu == (one.weights_bytes_per_gpu - norms) / 2 + norms
    assert two.kv_bytes_per_token == one.kv_bytes_per_token / 2
    assert two.runtime_reserve_bytes == 2.0 * GiB  # NCCL buffers on a multi-GPU replica


def test_pipeline_stages_split_layers_and_report_the_tightest_stage():
    assert [len(r) for r in stage_layers(32, 3)] == [11, 11, 10]
    m = llama_3_1_8b()
    plan = plan_memory(m, h100(), Parallelism(pp=2))
    # 16 layers per stage; the last stage holds the LM head, the first the embedding (equal
    # size), the last also the final norm and the sampler's reserve: it binds.
    layer = 2 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336 + 2 * 4096)
    assert plan.weights_bytes_per_gpu == 16 * layer + 2 * 128256 * 4096 + 2 * 4096
    assert plan.kv_bytes_per_token == 131072 / 2


def test_moe_weights_per_gpu_follow_ep():
    m = gpt_oss_20b()
    tp2 = plan_memory(m, h100(), Parallelism(tp=2))
    ep2 = plan_memory(m, h100(), Parallelism(tp=2, ep=2))
    # Experts split by TP or by EP hold the same bytes per GPU (biases aside).
    assert ep2.weights_bytes_per_gpu == pytest.approx(tp2.weights_bytes_per_gpu, rel=1e-3)
    # mxfp4 experts (4.25 bits with their scales) and bf16 attention (gpt-oss quantises only
    # the experts).
    expert = 3 * 2880 * 2880 * 4.25 / 8
    assert tp2.weights_bytes_per_gpu > 24 * 16 * expert


def test_405b_on_one_h100_names_a_tp_that_fits():
    with pytest.raises(ServesimError) as err:
        plan_memory(llama_3_1_405b(), h100())
    # 405,853,388,800 parameters × 2 bytes = 756.0 GiB; 16 GPUs give 47 GiB each.
    assert "756.0 GiB of weights per GPU" in str(err.value)
    assert "gpu_memory_utilization=0.9" in str(err.value)
    assert err.value.fix == "use --tp 16"
    plan = plan_memory(llama_3_1_405b(), h100(), Parallelism(tp=16))
    assert plan.num_kv_blocks > 0


def test_suggestion_keeps_the_pipeline_degree():
    with pytest.raises(ServesimError) as err:
        plan_memory(llama_3_1_405b(), h100(), Parallelism(tp=2, pp=2))
    assert err.value.fix == "use --tp 8 --pp 2"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(gpu_memory_utilization=0.0), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization"),
        (dict(block_size=0), "block_size"),
        (dict(max_num_seqs=0), "max_num_seqs"),
    ],
)
def test_plan_rejects_bad_knobs(kwargs, field):
    with pytest.raises(ServesimError) as err:
        plan_memory(llama_3_1_8b(), h100(), **kwargs)
    assert err.value.field == field


def test_max_concurrent_seqs_needs_a_positive_length():
    with pytest.raises(ServesimError):
        plan_memory(llama_3_1_8b(), h100()).max_concurrent_seqs(0)


def test_tensorrt_llm_gives_the_kv_cache_a_share_of_the_free_memory():
    # vLLM: KV = hbm × 0.9 − weights − reserves; TensorRT-LLM
    # (kv_cache_free_gpu_mem_fraction 0.9): KV = 0.9 × (hbm − weights − reserves).
    model, hw = llama_3_1_8b(), h100()
    vllm = plan_memory(model, hw, gpu_memory_utilization=0.9)
    trt = plan_memory(model, hw, gpu_memory_utilization=0.9, kv_of_free=True)
    assert trt.weights_bytes_per_gpu == vllm.weights_bytes_per_gpu
    reserves = vllm.activation_reserve_bytes + vllm.runtime_reserve_bytes
    free = hw.hbm_bytes - vllm.weights_bytes_per_gpu - reserves
    assert vllm.kv_cache_bytes == pytest.approx(
        0.9 * hw.hbm_bytes - vllm.weights_bytes_per_gpu - reserves
    )
    assert trt.kv_cache_bytes == pytest.approx(0.9 * free)
    # The difference is 0.1 × the weights and reserves: more KV under TensorRT-LLM's rule.
    assert trt.kv_cache_bytes - vllm.kv_cache_bytes == pytest.approx(
        0.1 * (vllm.weights_bytes_per_gpu + reserves)
    )


def test_the_trtllm_profile_uses_its_engine_defaults():
    from servesim.engines import engine_profile

    trt = engine_profile("trtllm")
    assert trt.kv_of_free and trt.admission == "guaranteed"
    assert not engine_profile("vllm").kv_of_free


def test_sglang_static_fraction_holds_weights_and_kv_only():
    # SGLang (mem_fraction_static f): KV = f × (hbm − runtime) − weights; activations and CUDA
    # graphs live in the other 1 − f, so no activation reserve comes out of the KV.
    model, hw = llama_3_1_8b(), h100()
    vllm = plan_memory(model, hw, gpu_memory_utilization=0.835)
    sgl = plan_memory(model, hw, gpu_memory_utilization=0.835, kv_of_static=True)
    runtime, weights = sgl.runtime_reserve_bytes, sgl.weights_bytes_per_gpu
    assert sgl.kv_cache_bytes == pytest.approx(0.835 * (hw.hbm_bytes - runtime) - weights)
    # The share is of what CUDA reports free after start-up: 1 GiB short of nvidia-smi's
    # total at any TP (public SGLang logs, see STATIC_FRACTION_SHORTFALL_BYTES).
    assert runtime == STATIC_FRACTION_SHORTFALL_BYTES == 1.0 * GiB
    assert sgl.kv_cache_bytes - vllm.kv_cache_bytes == pytest.approx(
        vllm.activation_reserve_bytes + vllm.runtime_reserve_bytes - 0.835 * runtime
    )


def test_mxfp4_experts_served_weight_only_hold_16_bit_scales():
    from servesim.cost.resolve import MXFP4_WEIGHT_ONLY_BYTES, expert_weight_bytes
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    h100, b200 = load_hardware("H100"), load_hardware("B200")
    assert expert_weight_bytes("mxfp4", b200) == 4.25 / 8  # (FP4 tensor cores: as shipped)
    assert expert_weight_bytes("mxfp4", h100) == MXFP4_WEIGHT_ONLY_BYTES == 4.5 / 8
    assert expert_weight_bytes("bf16", h100) == 2.0
    oss = load_model("openai/gpt-oss-120b")
    on_h100 = plan_memory(oss, h100).weights_bytes_per_gpu
    on_b200 = plan_memory(oss, b200).weights_bytes_per_gpu
    experts = 36 * 128 * 3 * 2880 * 2880  # routed-expert weights (biases aside)
    assert on_h100 - on_b200 == pytest.approx(experts * (4.5 - 4.25) / 8, rel=1e-3)
    # vLLM's own log on an H100: "Model loading took 64.38 GiB" (vllm#33155).
    assert on_h100 / 2**30 == pytest.approx(64.38, rel=0.01)


def test_hybrid_layout_pages_sliding_window_layers_apart():
    # gpt-oss-20b: 24 layers, 12 with a 128-token window. vLLM's hybrid manager groups them 12
    # at a time: one full-attention group and one sliding group, pages of 16 tokens of 12
    # layers; a request keeps cdiv(127, 16) + 1 = 9 pages of its window.
    from servesim.cost.memory import kv_layout

    m, hw = gpt_oss_20b(), h100()
    assert kv_layout(m, Parallelism(), 16) == (12, 2, 9)
    assert kv_layout(m, Parallelism(pp=2), 16) == (24, 1, 0)  # (not modelled under PP)
    assert kv_layout(llama_3_1_8b(), Parallelism(), 16) == (32, 1, 0)
    uniform = plan_memory(m, hw)
    hybrid = plan_memory(m, hw, params=CostParams(hybrid_kv=True))
    assert hybrid.kv_bytes_per_token == uniform.kv_bytes_per_token / 2
    assert hybrid.kv_cache_bytes == uniform.kv_cache_bytes
    assert hybrid.num_kv_blocks == pytest.approx(2 * uniform.num_kv_blocks, abs=1)
    # vLLM logs pages over groups: the same size as the uniform layout's.
    assert hybrid.kv_capacity_tokens == pytest.approx(uniform.kv_capacity_tokens, abs=16)
    assert (hybrid.kv_groups, hybrid.kv_window_blocks) == (2, 9)
    # A 32k-token sequence takes 2,000 + 9 pages instead of 2,000 two-group blocks' worth.
    blocks = hybrid.num_kv_blocks
    assert hybrid.max_concurrent_seqs(32000) == blocks // 2009
    assert uniform.max_concurrent_seqs(32000) == uniform.num_kv_blocks // 2000
    assert hybrid.max_concurrent_seqs(32000) >= 2 * uniform.max_concurrent_seqs(32000) - 1
    # Pinned to a logged size: that many tokens' slots of both groups.
    pinned = plan_memory(m, hw, params=CostParams(hybrid_kv=True), kv_cache_tokens=16000)
    assert pinned.num_kv_blocks == 2000 and pinned.kv_capacity_tokens == 16000


def test_vllm_marlin_mxfp4_experts_are_held_padded():
    # vLLM's Marlin MXFP4 MoE (before Hopper; on Hopper before 0.11.1) pads the hidden size to
    # 256 and each GPU's expert width to 128: gpt-oss-120b's 2880 → 3072 and 2944 (1536 at TP2),
    # 4-bit weights with 8-bit block-of-32 scales and bf16 biases — 65.9 GiB at TP1, as vLLM
    # 0.10.1 logged on an H100 ("Model loading took 65.97 GiB", vllm-project/vllm#23278).
    from servesim.cost.memory import marlin_mxfp4_expert_bytes
    from servesim.hardware import load_hardware
    from servesim.model import load_model

    m = load_model("openai/gpt-oss-120b")
    one = 3 * 2944 * 3072 * (0.5 + 1 / 32) + (2 * 2944 + 3072) * 2
    assert marlin_mxfp4_expert_bytes(m, Parallelism()) == one == 14_431_744
    two = 3 * 1536 * 3072 * (0.5 + 1 / 32) + (2 * 1536 + 3072) * 2
    assert marlin_mxfp4_expert_bytes(m, Parallelism(tp=2)) == two

    def weights(gpu, release, tp=1):
        params = CostParams(engine_version=release, kernel_backend="vllm")
        plan = plan_memory(m, load_hardware(gpu), Parallelism(tp=tp), params)
        return plan.weights_bytes_per_gpu / GiB

    assert weights("H100", "0.10.2") == pytest.approx(65.97, abs=0.1)
    assert weights("A100-80GB", "0.11.0") == pytest.approx(65.97, abs=0.1)
    # Hopper's triton_kernels layout from 0.11.1 (unpadded, the 4.5-bit size: 64.1 GiB).
    assert weights("H100", "0.11.1") == pytest.approx(64.05, abs=0.05)
    assert weights("H100", "0.10.2", tp=2) > weights("H100", "0.11.1", tp=2) + 2.0


def test_a_sliding_window_only_model_holds_its_window_per_request():
    # Mistral-7B-v0.1: all 32 layers slide over 4,096 tokens. vLLM V1's SlidingWindowManager
    # keeps cdiv(4095, 16) + 1 = 257 pages of a request; V0's BlockSpaceManagerV1 ceil(4096 /
    # 16) = 256 blocks, V2 4096 // 16 + 2 = 258; a prompt chunk's step adds its own pages
    # (V1 only).
    from servesim.cost.memory import SLIDING_WINDOW_PAGES, sliding_only_layout
    from servesim.model import load_model

    m, hw = load_model("mistralai/Mistral-7B-v0.1"), h100()
    assert (m.sliding_window, m.num_sliding_layers, m.num_layers) == (4096, 32, 32)
    assert sliding_only_layout(m, Parallelism(), 16, "vllm") == (257, 4096)
    assert sliding_only_layout(m, Parallelism(), 16, "vllm-v0") == (256, 0)
    assert sliding_only_layout(m, Parallelism(), 16, "vllm-v0-v2") == (258, 0)
    assert sliding_only_layout(m, Parallelism(pp=2), 16, "vllm") is None
    assert sliding_only_layout(gpt_oss_20b(), Parallelism(), 16, "vllm") is None  # (mixed)
    assert sliding_only_layout(llama_3_1_8b(), Parallelism(), 16, "vllm") is None
    assert set(SLIDING_WINDOW_PAGES) == {"vllm", "vllm-v0", "vllm-v0-v2"}
    uniform = plan_memory(m, hw)
    sliding = plan_memory(m, hw, params=CostParams(sliding_kv="vllm"))
    # The same pages of the same layers; a 32k-token request holds 257 of them, not 2,000.
    assert sliding.num_kv_blocks == uniform.num_kv_blocks
    assert sliding.kv_capacity_tokens == uniform.kv_capacity_tokens
    assert (sliding.kv_full_groups, sliding.kv_window_blocks) == (0, 257)
    assert sliding.kv_step_window_tokens == 4096
    assert (uniform.kv_full_groups, uniform.kv_window_blocks) == (1, 0)
    assert sliding.max_concurrent_seqs(32000) == sliding.num_kv_blocks // 257
    assert uniform.max_concurrent_seqs(32000) == uniform.num_kv_blocks // 2000
    assert sliding.max_concurrent_seqs(1000) == uniform.max_concurrent_seqs(1000)  # (63 pages)
    with pytest.raises(ServesimError, match="sliding_kv"):
        CostParams(sliding_kv="lmdeploy")


def test_sglangs_swa_pool_prices_a_cache_token_by_the_full_layers_and_a_share_of_the_rest():
    # SGLang's hybrid SWA memory (swa_full_tokens_ratio r = 0.8): gpt-oss-20b's 12 full and 12
    # sliding layers; T tokens of every layer become F = 24 T / (0.8 x 12 + 12) = 1.11 T
    # full-pool tokens, so a cache token costs (12 + 0.8 x 12) / 24 of every layer's KV.
    m, hw = gpt_oss_20b(), h100()
    uniform = plan_memory(m, hw)
    pooled = plan_memory(m, hw, params=CostParams(swa_pool_ratio=0.8))
    assert pooled.kv_bytes_per_token == pytest.approx(uniform.kv_bytes_per_token * 21.6 / 24)
    assert pooled.kv_cache_bytes == uniform.kv_cache_bytes
    assert pooled.kv_capacity_tokens / uniform.kv_capacity_tokens == pytest.approx(
        24 / 21.6, rel=1e-3
    )
    assert (pooled.kv_swa_pool_ratio, uniform.kv_swa_pool_ratio) == (0.8, 0.0)
    # A model without sliding-window layers keeps one pool.
    llama = plan_memory(llama_3_1_8b(), hw, params=CostParams(swa_pool_ratio=0.8))
    assert llama == plan_memory(llama_3_1_8b(), hw) and llama.kv_swa_pool_ratio == 0.0
    with pytest.raises(ServesimError, match="swa_pool_ratio"):
        CostParams(swa_pool_ratio=0.0)
