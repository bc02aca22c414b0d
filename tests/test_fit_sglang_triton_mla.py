"""bench/fidelity/fit_sglang_triton_mla.py: the Triton MLA prompt kernel against its A/B run."""

from __future__ import annotations

import pytest
from bench_scripts import load_bench_script

from servesim import engines


def test_the_shipped_triton_mla_scale_reproduces_the_prs_throughput_ratio():
    """sgl-project/sglang#3550 measured the Triton backend at 0.2545 of FlashInfer MLA's
    throughput on the same server and client; the shipped scale gives that ratio, the tables'
    rate (scale 1) one three times as high, and the module's constant is left as it was."""
    fit = load_bench_script("fidelity/fit_sglang_triton_mla.py")
    shipped = engines.SGLANG04_TRITON_MLA_PROMPT_SCALE
    trace = fit.client_trace()  # (asserts the client's draws give the PR's token totals)
    flashinfer = fit.throughput(trace, "flashinfer", 1.0)
    measured = fit.MEASURED["triton"] / fit.MEASURED["flashinfer"]
    assert measured == pytest.approx(0.2545, abs=1e-4)
    triton = fit.throughput(trace, "triton", shipped)
    assert triton / flashinfer == pytest.approx(measured, rel=0.03)
    assert fit.throughput(trace, "triton", 1.0) / flashinfer > 2.5 * measured
    assert engines.SGLANG04_TRITON_MLA_PROMPT_SCALE == shipped
