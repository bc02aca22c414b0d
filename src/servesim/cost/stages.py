"""Pipeline stages: which layers each of the ``pp`` stages runs.

``StageLayers`` says what one stage holds (its layers, how many are sliding-window or MoE, the
embedding on the first stage, the head on the last, the hand-off to the next);
``operators.build_operators(..., stage=...)`` lists that stage's operators and ``memory.py``
sizes its weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.cost.features import sliding_layers
from servesim.model import ModelSpec


@dataclass(frozen=True)
class StageLayers:
    """The layers one pipeline stage runs (or, with ``first`` and ``last`` both set and
    ``sends = pp − 1``, the whole model)."""

    layers: int
    sliding: int
    """Of ``layers``, how many use a sliding window."""
    moe: int
    """Of ``layers``, how many are MoE layers."""
    first: bool
    """Holds the embedding."""
    last: bool
    """Holds the final norm, the head and the sampler."""
    sends: int
    """Activation hand-offs to a next stage (1 on every stage but the last)."""


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Layers of each pipeline stage: even split, the first ``num_layers % pp`` take one more."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def whole_model(model: ModelSpec, pp: int = 1) -> StageLayers:
    """Every layer of ``model``, with the ``pp − 1`` hand-offs of a ``pp``-stage pipeline."""
    return StageLayers(
        layers=model.num_layers,
        sliding=sliding_layers(model),
        moe=model.num_moe_layers,
        first=True,
        last=True,
        sends=pp - 1,
    )


def pipeline_stages(model: ModelSpec, pp: int) -> tuple[StageLayers, ...]:
    """The ``pp`` stages of ``model``: layers as :func:`stage_layers`, MoE layers where the model
    puts them, sliding-window layers spread in proportion (gpt-oss alternates them)."""
    n_sw, total = sliding_layers(model), model.num_layers
    out = []
    for s, layers in enumerate(stage_layers(total, pp)):
        # Rounded cumulative shares, so the stages' sliding layers add up to the model's.
        sliding = round(n_sw * layers.stop / total) - round(n_sw * layers.start / total)
        out.append(
            StageLayers(
                layers=len(layers),
                sliding=sliding,
                moe=sum(model.is_moe_layer(i) for i in layers),
                first=s == 0,
                last=s == pp - 1,
                sends=0 if s == pp - 1 else 1,
            )
        )
    return tuple(out)
