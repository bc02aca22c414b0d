"""KV transfer over the host link (the CPU offload tier)."""

from __future__ import annotations

import numpy as np
import pytest
from cost_factories import llama_3_1_8b

from servesim.cost import plan_memory
from servesim.cost.memory import HOST_LINK_EFFICIENCY, kv_transfer_seconds
from servesim.errors import ServesimError
from servesim.hardware import Link, load_hardware


def test_kv_transfer_over_the_host_link():
    hw = load_hardware("H100")
    assert hw.host_link.name == "PCIe Gen5 x16" and hw.host_link.bandwidth == 63e9
    assert hw.cpu_memory_bytes == 256 * 2**30
    plan = plan_memory(llama_3_1_8b(), hw)
    secs = kv_transfer_seconds(1000, plan.kv_bytes_per_token, hw.host_link)
    assert secs == pytest.approx(1000 * 131072 / (63e9 * HOST_LINK_EFFICIENCY) + 1e-5)
    many = kv_transfer_seconds(np.array([0, 1000, 2000]), 131072, hw.host_link, lanes=2)
    assert many[0] == 0.0 and many[2] - many[1] == pytest.approx(1000 * 131072 / (63e9 * 0.85 * 2))
    with pytest.raises(ServesimError):
        kv_transfer_seconds(1, 1.0, Link("x", 1e9, 0.0), efficiency=0.0)
