"""DeepSeek-V3 at batch 1 on SGLang 0.4.2: a public measurement outside the suite.

SGLang's pull request sgl-project/sglang#3236 ("Optimize MoE topk with torch compile",
2025-01-31) ran ``python3 -m sglang.bench_one_batch --batch-size 1 --input 128 --output 256
--model deepseek-ai/DeepSeek-V3 --trust-remote-code --tp 8`` on main, then a few commits past
the 0.4.2 release (DeepSeek-V3 in FP8 needs eight GPUs of more than 80 GB: eight H200s, the
GPUs of the same authors' DeepSeek-V3 pull requests that month, e.g. sgl-project/sglang#2735).
Main, with the grouped top-k run op by op: a 27.11 ms median decode step and a 169.21 ms
128-token prefill (the second, warm run). With the top-k under ``torch.compile`` (the PR,
released in 0.4.2.post2): "2 token/s faster", 36.88 → about 38.9 tokens/s, a ~25.7 ms step.
A month earlier the 0.4.1.post2 release notes (sgl-project/sglang#2643, 2024-12-29) gave 30.29
tokens/s for the same batch-1 run, a 33.0 ms step: the January work in between (a faster
``moe_align_block_size``, sgl-project/sglang#2735, and FP8 GEMM tuning) is not in the census,
which gives 0.4.1 the same glue as 0.4.2.

servesim prices the kernels of the later releases it was measured on; SGLang 0.4.2 launched
many more small ones in each DeepSeek layer (``servesim.engines.SGLANG_DEEPSEEK_GLUE``, a census
of the 0.4.2-0.4.6 wheels). This prints servesim's figures with that census and without it.
The run is in process (no API server), one request, fixed lengths. Nothing here was fitted: the
census counts kernels and each costs the hardware's ``kernel_launch_s``.

    python bench/fidelity/deepseek_glue_check.py
"""

from __future__ import annotations

from servesim import fleet
from servesim.run import simulate
from servesim.scenario import build_scenario

RUNS = (
    # (label, SGLang release the build corresponds to, measured decode step ms, prefill ms)
    ("0.4.1.post2 release notes", "0.4.1.post2", 1000.0 / 30.29, None),
    ("main 2025-01-31, eager top-k", "0.4.2", 27.11, 169.21),
    ("sglang#3236, compiled top-k", "0.4.2.post2", 1000.0 / (36.88 + 2.0), None),
)


def scenario(release: str) -> dict:
    """``bench_one_batch`` as a servesim scenario: one 128-token prompt, 256 tokens out."""
    return {
        "model": "deepseek-ai/DeepSeek-V3",
        "hardware": "H200",
        "tp": 8,
        "engine": "sglang-0.4",
        "engine_version": release,
        "weight_dtype": "fp8",
        "api_server": False,
        "scheduler": {"policy": "static", "max_num_seqs": 1, "max_num_batched_tokens": 2048},
        "workload": {
            "input_len": 128,
            "output_len": 256,
            "num_requests": 1,
            "arrival": {"kind": "burst"},
        },
    }


def predict(release: str, glue: bool) -> tuple[float, float]:
    """servesim's (median decode step ms, TTFT ms) for the run, with or without the census."""
    census = fleet.deepseek_glue_kernels
    if not glue:
        fleet.deepseek_glue_kernels = lambda *_: (0.0, 0.0)
    try:
        summary = simulate(build_scenario(scenario(release))).summary
    finally:
        fleet.deepseek_glue_kernels = census
    return summary["median_tpot_ms"], summary["median_ttft_ms"]


def main() -> None:
    print(f"{'run':32s} {'':16s} decode step ms · prefill (TTFT) ms")
    for label, release, step_ms, prefill_ms in RUNS:
        prefill = "—" if prefill_ms is None else f"{prefill_ms:.0f}"
        print(f"{label:32s} {'measured':16s} {step_ms:.1f} · {prefill}")
        for name, glue in (("servesim, census", True), ("servesim, none", False)):
            step, ttft = predict(release, glue)
            print(f"{label:32s} {name:16s} {step:.1f} · {ttft:.0f}")


if __name__ == "__main__":
    main()
