"""Routers: which instance a new request goes to. Chosen by name in :func:`make_router`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from servesim.engine.instance import Instance
from servesim.engine.request import Request
from servesim.knobs import ROUTERS  # (the names live below the spec layer: the scenario lists them)

Router = Callable[[Request, Sequence[Instance]], Instance]


def make_router(name: str, rng: np.random.Generator) -> Router:
    """A routing function ``(request, instances) -> instance``; ties go to the lowest index."""
    if name == "round_robin":
        counter = iter(range(1 << 62))
        return lambda req, insts: insts[next(counter) % len(insts)]
    if name == "least_outstanding":
        return lambda req, insts: min(insts, key=lambda i: i.num_outstanding)
    if name == "power_of_two":

        def power_of_two(req: Request, insts: Sequence[Instance]) -> Instance:
            if len(insts) == 1:
                return insts[0]
            a, b = rng.choice(len(insts), size=2, replace=False)
            return min(insts[a], insts[b], key=lambda i: i.num_outstanding)

        return power_of_two
    if name == "prefix_affinity":

        def prefix_affinity(req: Request, insts: Sequence[Instance]) -> Instance:
            # Requests sharing their first content block land on the same replica, where
            # that prefix is cached; unique prompts fall back to the least loaded one.
            if req.hash_ids:
                return insts[hash((req.hash_ids[0], len(insts))) % len(insts)]
            return min(insts, key=lambda i: i.num_outstanding)

        return prefix_affinity
    from servesim.errors import ServesimError

    raise ServesimError(
        f"unknown router {name!r}", field="router", fix=f"use one of: {', '.join(ROUTERS)}"
    )
