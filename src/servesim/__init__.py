"""servesim: predict and explain the performance of LLM inference serving.

The Python API in one call::

    import servesim
    result = servesim.simulate({"model": "llama-3.1-8b", "hardware": "H100",
                                "workload": {"num_requests": 200}})
    result.summary["p99_ttft_ms"]

``import servesim`` stays light (no numpy, no msgspec): the engine is imported on first use,
so ``servesim --help`` and small runs start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from servesim.run import Result
    from servesim.scenario import Scenario

__all__ = ["Result", "Scenario", "ServesimError", "__version__", "build_scenario", "simulate"]


def simulate(
    scenario: Scenario | dict[str, Any] | str | Path,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Run one scenario to completion and return its :class:`~servesim.run.Result`.

    ``scenario`` is a :class:`~servesim.scenario.Scenario`, a dict of its fields (the same
    fields as a ``--config`` file; omitted ones take the CLI's defaults), or the path of a
    scenario YAML/JSON file. Each is validated (a Scenario built in code too: its constructor
    checks cross-field rules, not ranges); invalid input raises
    :class:`~servesim.errors.ServesimError` naming the field. ``on_progress`` is called with
    the number of requests done since its last call (finished, or refused as too long): its
    calls add up to the requests the workload sends.

    A workload that leaves fields out takes the same defaults as the CLI
    (:data:`~servesim.workload.spec.DEFAULT_NUM_REQUESTS` requests of the
    :data:`~servesim.workload.spec.DEFAULT_PRESET` preset, Poisson at
    :data:`~servesim.workload.spec.DEFAULT_RATE_RPS` req/s): ``{"workload": {"num_requests":
    20}}`` runs what ``servesim simulate -n 20`` runs.
    """
    from servesim.run import simulate as run_scenario
    from servesim.scenario import Scenario, build_scenario, load_scenario_file

    if isinstance(scenario, (str, Path)):
        scenario = build_scenario(load_scenario_file(scenario), source=str(scenario))
    elif isinstance(scenario, dict):
        scenario = build_scenario(scenario)
    elif isinstance(scenario, Scenario):
        from servesim.validation import revalidate

        scenario = revalidate(scenario)
    else:
        from servesim.errors import ServesimError

        raise ServesimError(
            f"cannot simulate a {type(scenario).__name__}",
            field="scenario",
            fix="pass a Scenario, a dict of scenario fields or a scenario file path",
        )
    if on_progress is not None and not callable(on_progress):
        from servesim.errors import ServesimError

        raise ServesimError(
            f"must be callable, got {type(on_progress).__name__}",
            field="on_progress",
            fix="pass a function of one int (the requests done since its last call)",
        )
    return run_scenario(scenario, on_progress=on_progress)


def __getattr__(name: str) -> Any:
    # PEP 562: the heavy names load on first access, keeping `import servesim` cheap.
    if name == "ServesimError":
        from servesim.errors import ServesimError

        return ServesimError
    if name == "Result":
        from servesim.run import Result

        return Result
    if name in ("Scenario", "build_scenario"):
        from servesim import scenario

        return getattr(scenario, name)
    raise AttributeError(f"module 'servesim' has no attribute {name!r}")
