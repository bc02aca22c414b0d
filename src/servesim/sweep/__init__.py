"""Many scenarios at once: sweeps (local process pool or Ray), capacity and deployment plans.

- :mod:`~servesim.sweep.spec`: the sweep file → validated :class:`SweepPoint` s;
- :mod:`~servesim.sweep.executors`: where they run (serial, process pool, Ray);
- :mod:`~servesim.sweep.results` / :mod:`~servesim.sweep.runner`: journal, resume, tables;
- :mod:`~servesim.sweep.capacity`: highest rate within SLOs, by bisection;
- :mod:`~servesim.sweep.plan`: cheapest deployment and the cost/latency Pareto frontier.
"""

from servesim.sweep.capacity import Capacity, Probe, find_capacity
from servesim.sweep.executors import (
    LocalExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
    run_ordered,
)
from servesim.sweep.plan import (
    Deployment,
    Evaluation,
    Plan,
    PlanSpec,
    pareto_frontier,
    parse_plan,
    require_feasible,
    search_plan,
)
from servesim.sweep.runner import SweepOutcome, run_sweep
from servesim.sweep.spec import SweepPoint, SweepSpec, expand, load_sweep_file, parse_sweep

__all__ = [
    "Capacity",
    "Deployment",
    "Evaluation",
    "LocalExecutor",
    "Plan",
    "PlanSpec",
    "Probe",
    "RayExecutor",
    "SerialExecutor",
    "SweepOutcome",
    "SweepPoint",
    "SweepSpec",
    "expand",
    "find_capacity",
    "load_sweep_file",
    "make_executor",
    "pareto_frontier",
    "parse_plan",
    "parse_sweep",
    "require_feasible",
    "run_ordered",
    "run_sweep",
    "search_plan",
]
