"""One GenZ estimate (PyPI genz-llm), run inside GenZ's own venv by ``run_peers.py``.

    /work/peer-venvs/genz/bin/python genz_runner.py < job.json

stdin: ``{"kwargs": {...}, "fit_batch": bool}`` with ``kwargs``: ``model`` (keyword arguments of
``GenZ.ModelConfig``), ``system_name`` (one of GenZ's ``Systems/system_configs.py``), ``bits``,
``batch_size``, ``input_tokens``, ``output_tokens``, ``tensor_parallel``, ``pipeline_parallel``,
``system_eff`` (GenZ's compute and memory efficiency; its default is 1).

Calls ``GenZ.prefill_moddeling`` once (the batch's prompts in one forward pass: TTFT) and
``GenZ.decode_moddeling`` twice with ``Bb=1`` (one sequence per request, no beams): at the
answer's end (``output_tokens``), which is the tool's memory check at the largest KV cache, and
at its midpoint (``output_tokens // 2``), whose step time is the mean decode step when, as in
GenZ's model, a step grows linearly with the KV it reads. With ``fit_batch`` (a backlog: an
engine runs only what fits) a batch the tool's memory check rejects is bisected down to the
largest it accepts. stdout: one line ``RESULT {json}`` with milliseconds of one replica, or
``{"error": ...}``. Nothing here maps or converts: run_peers.py does.
"""

import json
import sys
import traceback
import warnings
from importlib.metadata import version

DOES_NOT_FIT = "would not fit on chip"
"""What GenZ's memory check raises (ValueError) when weights + KV cache exceed the GPUs."""


def estimate(kwargs: dict, batch: int) -> dict:
    """Prefill and decode milliseconds of ``batch`` requests (raises the tool's errors)."""
    from GenZ import ModelConfig, decode_moddeling, prefill_moddeling

    model = ModelConfig(**kwargs["model"])
    tp, pp = kwargs["tensor_parallel"], kwargs["pipeline_parallel"]
    common = {
        "model": model,
        "batch_size": batch,
        "input_tokens": kwargs["input_tokens"],
        "system_name": kwargs["system_name"],
        "bits": kwargs["bits"],
        "system_eff": kwargs.get("system_eff", 1),
        "tensor_parallel": tp,
        "pipeline_parallel": pp,
        "parallelism_heirarchy": f"TP{{{tp}}}_EP{{1}}_PP{{{pp}}}",
    }
    osl = kwargs["output_tokens"]
    end = decode_moddeling(output_tokens=osl, Bb=1, **common)  # (memory check at the peak KV)
    mid = decode_moddeling(output_tokens=osl // 2, Bb=1, **common)
    prefill = prefill_moddeling(**common)
    return {
        "batch_size_run": batch,
        "prefill_ms": float(prefill["Latency"]),
        "decode_ms": float(mid["Latency"]),
        "decode_end_ms": float(end["Latency"]),
        "decode_breakdown_ms": mid["Runtime_breakdown"].to_dict(),
    }


def largest_fitting(kwargs: dict, batch: int) -> dict:
    """:func:`estimate` at the largest batch up to ``batch`` the memory check accepts."""
    lo, hi, found = 0, batch, None  # (lo fits or is 0; hi does not)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            found = estimate(kwargs, mid)
            lo = mid
        except ValueError as err:
            if DOES_NOT_FIT not in str(err):
                raise
            hi = mid
    if found is None or found["batch_size_run"] != lo:
        if lo == 0:
            raise ValueError(f"not even one request {DOES_NOT_FIT} (GenZ's memory check)")
        found = estimate(kwargs, lo)
    return found


def main() -> None:
    warnings.filterwarnings("ignore")
    job = json.load(sys.stdin)
    kwargs = job["kwargs"]
    out: dict = {"version": version("genz-llm")}
    try:
        try:
            out.update(estimate(kwargs, kwargs["batch_size"]))
        except ValueError as err:
            if not (job.get("fit_batch") and DOES_NOT_FIT in str(err)):
                raise
            out.update(largest_fitting(kwargs, kwargs["batch_size"]))
    except Exception as err:  # a failed memory check is the tool's answer
        out["error"] = f"{type(err).__name__}: {err}"
        out["traceback_tail"] = traceback.format_exc()[-1500:]
    print("RESULT " + json.dumps(out, default=float))


if __name__ == "__main__":
    main()
