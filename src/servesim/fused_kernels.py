"""numba kernels that join an engine kernel and a cost-model kernel in one call (the ``compiled``
option; imported only when it is on, by :mod:`servesim.fleet`).

The engine's kernels (``engine/_commit_kernels.py``) and the cost model's
(``cost/_compiled_kernels.py``) may not import each other: the engine knows steps only through
the step-cost protocol (``engine/pricing.py``). A call that plans a step and prices it in one go
therefore lives here, above both, and reaches the engine as a callable with its cost model's
arguments (:func:`span_planner`), which :class:`~servesim.engine.instance.Instance` calls where
it would otherwise make two calls, each with its Python wrapper.

numba's disk cache keys a function on its own file: after editing one of the kernels these
call, delete the ``__pycache__/*.nbi`` index files (``tests/test_compiled.py`` compares these
kernels with the ones they join, so a stale cache fails there first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

from servesim.cost._compiled_kernels import span_steps_into, step_into
from servesim.cost.compiled import CompiledStepCost
from servesim.engine._commit_kernels import decode_span_plan
from servesim.engine.running import COMPUTED

HORIZON_EXTRA_STEPS = 3
"""Steps a planned decode span is priced past the first one that ends at or after its horizon
(the next event that could bring a request): the request that event brings reaches the step
after next at the latest (an API server's work, a step formed ahead), so the span is cut
before the steps priced run out, and the rest of a long span is never priced."""


@njit(cache=True)
def plan_priced_span(
    table, n, free, block_size, grow, ones, pad, start, horizon, given, absorbed, has_moe,
    packed, layout, seconds, ends, features,
):  # fmt: skip
    """``_commit_kernels.decode_span_plan``, and the step or span it plans priced into the
    buffers as the instance prices it apart: one step as ``_compiled_kernels.step_into`` prices
    a step of one token a row (``ones``, at least ``n`` long) and its end ``start`` plus its
    seconds, more steps as ``_compiled_kernels.span_steps_into`` prices a span from ``start``
    (s), up to :data:`HORIZON_EXTRA_STEPS` steps past ``horizon`` (s) (``pad``: the CUDA
    graph's padded rows; then those kernels' model arguments). Returns the plan's four values,
    the end (s) of the last step priced, or -1.0 where nothing was priced (no plan, a span
    longer than the buffers, or one step of a model whose step features the kernels do not
    make: MLA absorption), and the steps priced."""
    steps, first_finish, grown, context = decode_span_plan(table, n, free, block_size, grow)
    if steps < 1 or steps > seconds.shape[0]:
        return steps, first_finish, grown, context, -1.0, 0
    if steps == 1:
        if absorbed:
            return steps, first_finish, grown, context, -1.0, 0
        step = step_into(
            ones[:n], table[COMPUTED, :n], pad, has_moe, packed, layout, features
        )  # fmt: skip
        seconds[0] = step
        ends[0] = start + step
        return steps, first_finish, grown, context, ends[0], 1
    end, priced = span_steps_into(
        table[COMPUTED, :n], 0, steps, pad, start, horizon, HORIZON_EXTRA_STEPS, given,
        absorbed, has_moe, packed, layout, seconds, ends, features,
    )  # fmt: skip
    return steps, first_finish, grown, context, end, priced


@njit(cache=True)
def resume_priced_span(
    table, n, first, num_steps, pad, horizon, given, absorbed, has_moe, packed, layout,
    seconds, ends, features,
):  # fmt: skip
    """Price the steps from ``first`` on of a decode span :func:`plan_priced_span` priced up
    to there, from the end of step ``first - 1`` in ``ends``, up to
    :data:`HORIZON_EXTRA_STEPS` past ``horizon`` (s; ``math.inf``: to ``num_steps``), the
    running table as it was planned from (nothing is committed before the span ends).
    Returns (the last priced step's end, the steps priced from the span's first)."""
    return span_steps_into(
        table[COMPUTED, :n], first, num_steps, pad, ends[first - 1], horizon,
        HORIZON_EXTRA_STEPS, given, absorbed, has_moe, packed, layout, seconds, ends, features,
    )  # fmt: skip


def span_planner(cost: Any) -> tuple[Callable[..., tuple], Callable[..., tuple], tuple] | None:
    """(:func:`plan_priced_span`, :func:`resume_priced_span`, the arguments they take after
    the horizon for ``cost``'s span kernel) for ``Instance(span_planners=...)``, or None where
    ``cost`` is not compiled or its spans' features come from the reference (a sliding
    window)."""
    if not isinstance(cost, CompiledStepCost):
        return None
    arguments = cost.span_arguments()
    if arguments is None:
        return None
    return plan_priced_span, resume_priced_span, arguments


__all__ = ["HORIZON_EXTRA_STEPS", "plan_priced_span", "resume_priced_span", "span_planner"]
