"""One llm-analysis inference analysis, run inside llm-analysis's own venv by ``run_peers.py``.

    /work/peer-venvs/llma/bin/python llma_runner.py < job.json

stdin: ``{"kwargs": {...}, "fit_batch": bool}``; ``kwargs`` are the keyword arguments of
``llm_analysis.analysis.infer`` (the function behind ``python -m llm_analysis.analysis infer``).
``model_name`` is one of the tool's shipped model names or a path to a model-config JSON in its
own format. With ``fit_batch`` (a backlog: an engine runs only what fits in memory) a batch the
tool's memory check rejects is rerun at the largest batch that check reports as fitting.
stdout: one line ``RESULT {json}`` with the tool's summary (seconds, tokens/s for one model
replica) or ``{"error": ...}``. Nothing here maps or converts: run_peers.py does.
"""

import json
import re
import sys
import traceback
from importlib.metadata import version

KEEP = (
    "batch_size_per_gpu",
    "seq_len",
    "num_tokens_to_generate",
    "tp_size",
    "pp_size",
    "flops_efficiency",
    "hbm_memory_efficiency",
    "weight_memory_per_gpu",
    "kv_cache_memory_per_gpu",
    "prefill_latency",
    "decode_latency",
    "total_decode_latency",
    "total_latency",
    "total_per_token_latency",
    "prefill_tokens_per_sec",
    "decode_tokens_per_sec",
    "total_tokens_per_sec",
)


def main() -> None:
    job = json.load(sys.stdin)
    kwargs = dict(job["kwargs"])
    out: dict = {"version": version("llm-analysis")}
    try:
        from llm_analysis.analysis import infer

        try:
            summary = infer(log_level="ERROR", **kwargs)
        except AssertionError as err:
            fits = re.search(r"(?:prefill|decode)_max_batch_size_per_gpu: (\d+)", str(err))
            if not (job.get("fit_batch") and fits and 0 < int(fits.group(1))):
                raise
            kwargs["batch_size_per_gpu"] = int(fits.group(1))
            summary = infer(log_level="ERROR", **kwargs)
        out.update({k: summary[k] for k in KEEP if k in summary})
    except Exception as err:  # a failed memory check (AssertionError) is the tool's answer
        out["error"] = f"{type(err).__name__}: {err}"
        out["traceback_tail"] = traceback.format_exc()[-1500:]
    print("RESULT " + json.dumps(out, default=float))


if __name__ == "__main__":
    main()
