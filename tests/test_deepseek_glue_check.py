"""bench/fidelity/deepseek_glue_check.py: the census against SGLang's own batch-1 figures."""

from __future__ import annotations

import pytest
from bench_scripts import load_bench_script


def test_census_brings_sglang_0_4_2_batch_one_within_a_tenth_of_its_measured_step():
    check = load_bench_script("fidelity/deepseek_glue_check.py")
    _, (_, release, measured_step, measured_prefill), (_, compiled, compiled_step, _) = check.RUNS
    step, ttft = check.predict(release, glue=True)
    bare_step, bare_ttft = check.predict(release, glue=False)
    assert step == pytest.approx(measured_step, rel=0.1)
    assert ttft == pytest.approx(measured_prefill, rel=0.15)
    # Without the census servesim prices the later releases' kernels: under half the step.
    assert bare_step < 0.45 * measured_step and bare_ttft < 0.5 * measured_prefill
    # The compiled top-k launches fewer kernels than the eager one.
    assert check.predict(compiled, glue=True)[0] < step
    assert compiled_step < measured_step
