"""Every command module, imported for its side effect of registering commands on ``app``
(in the order ``servesim --help`` lists them)."""

# isort: off
from servesim.cli import (  # noqa: F401
    simulate_cmd,
    serve_cmd,
    catalog_cmds,
    hardware_cmds,
    kernels_cmd,
    cost_cmds,
    trace_cmds,
    report_cmd,
    calibrate_cmds,
    sweep_cmds,
    plan_cmd,
)
# isort: on
