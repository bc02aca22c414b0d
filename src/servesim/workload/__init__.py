"""Workloads: synthetic request generators and trace readers.

``build_workload(spec, rng)`` turns a :class:`WorkloadSpec` into a lazy, start-ordered stream of
:class:`Session` objects (an open-loop request is a one-turn session) for the engine;
``describe(spec)`` gives the one-line summary. See :mod:`servesim.workload.build` for the
design and :mod:`servesim.workload.traces` for the trace formats.
"""

from servesim.workload.build import build_workload, describe
from servesim.workload.presets import PRESET_TABLES
from servesim.workload.session import RequestSpec, Session
from servesim.workload.spec import (
    DEFAULT_NUM_REQUESTS,
    DEFAULT_PRESET,
    DEFAULT_RATE_RPS,
    ArrivalSpec,
    BurstArrival,
    ClosedLoop,
    ConstantArrival,
    DurationDist,
    GammaArrival,
    LengthDist,
    MultiTurnSpec,
    PoissonArrival,
    WorkloadSpec,
    parse_workload_spec,
)
from servesim.workload.traces import TraceTable, read_sessions, read_trace, select_rows

__all__ = [
    "DEFAULT_NUM_REQUESTS",
    "DEFAULT_PRESET",
    "DEFAULT_RATE_RPS",
    "PRESET_TABLES",
    "ArrivalSpec",
    "BurstArrival",
    "ClosedLoop",
    "ConstantArrival",
    "DurationDist",
    "GammaArrival",
    "LengthDist",
    "MultiTurnSpec",
    "PoissonArrival",
    "RequestSpec",
    "Session",
    "TraceTable",
    "WorkloadSpec",
    "build_workload",
    "describe",
    "parse_workload_spec",
    "read_sessions",
    "read_trace",
    "select_rows",
]
