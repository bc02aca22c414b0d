"""Accelerator specs (peak FLOP/s, HBM, links, efficiencies, power, price) from YAML files.

Units everywhere: FLOP/s, bytes, bytes/s (10^9 bytes/s = 1 GB/s, never GiB/s), seconds, watts,
US dollars per GPU-hour. Peak FLOP/s figures are **dense** (no 2:4 sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Link:
    """A communication link as seen by one GPU."""

    name: str
    bandwidth: float
    """Unidirectional bandwidth per GPU, bytes/s."""
    latency_s: float
    """One-way latency of a small message, seconds."""


@dataclass(frozen=True)
class Hardware:
    """One accelerator model."""

    name: str
    vendor: str
    peak_flops: dict[str, float]
    """Dense peak FLOP/s per dtype: keys among fp32, tf32, bf16, fp16, fp8, int8, fp4."""
    hbm_bytes: float
    hbm_bandwidth: float
    """HBM bandwidth, bytes/s."""
    intra_node: Link
    inter_node: Link
    gpus_per_node: int = 8
    compute_efficiency: float = 0.7
    """Typical achievable fraction of peak FLOP/s for large GEMMs."""
    memory_efficiency: float = 0.8
    """Typical achievable fraction of peak HBM bandwidth for streaming reads."""
    kernel_launch_s: float = 4e-6
    """Fixed latency per kernel (launch + tail), seconds."""
    tdp_w: float = 700.0
    idle_w: float = 100.0
    price_per_gpu_hour: float = 0.0
    """Default on-demand price, USD per GPU-hour (a documented default, override per run)."""
    aliases: tuple[str, ...] = ()
    confidence: str = "datasheet"
    """How trustworthy the figures are: datasheet, measured, estimated."""
    sources: dict[str, str] = field(default_factory=dict)
    """Where each figure comes from (field name -> citation)."""

    def peak_for(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; raises ServesimError when the GPU cannot run it."""
        from servesim.errors import ServesimError

        if dtype not in self.peak_flops:
            have = ", ".join(sorted(self.peak_flops))
            raise ServesimError(
                f"{self.name} has no {dtype} tensor-core throughput",
                field="dtype",
                fix=f"use one of: {have}",
            )
        return self.peak_flops[dtype]
