"""One AIConfigurator estimate, run inside AIConfigurator's own venv by ``run_peers.py``.

    /work/peer-venvs/aic/bin/python aic_runner.py < job.json

stdin: ``{"kwargs": {...}, "fit_batch": bool}``; ``kwargs`` are the keyword arguments of
``aiconfigurator.cli.api.cli_estimate`` (the function behind ``aiconfigurator cli estimate``).
With ``fit_batch`` (a backlog or closed loop: an engine runs only what fits in its KV cache)
the batch shrinks by a fifth while the tool says it does not fit (an OOM error or its "exceeds
estimated KV cache capacity" warning). stdout: the tool's log lines, then one line
``RESULT {json}`` with the estimate (times in ms, throughputs for the one replica the estimate
describes, ``batch_size_run``) or ``{"error": ...}``. Nothing here maps or converts:
run_peers.py does.
"""

import json
import os
import sys
import traceback
from importlib.metadata import version

os.environ.setdefault("AICONFIGURATOR_LOG_LEVEL", "ERROR")


def too_big(result_or_error) -> bool:
    if isinstance(result_or_error, Exception):
        return str(result_or_error).startswith("OOM")
    return "exceeds estimated KV cache capacity" in (result_or_error.kv_cache_warning or "")


def main() -> None:
    job = json.load(sys.stdin)
    kwargs = dict(job["kwargs"])
    out: dict = {"version": version("aiconfigurator")}
    try:
        from aiconfigurator.cli.api import cli_estimate

        while True:
            try:
                r = cli_estimate(**kwargs)
            except RuntimeError as err:
                r = err
            if not (job.get("fit_batch") and too_big(r) and kwargs["batch_size"] > 1):
                break
            kwargs["batch_size"] = max(1, kwargs["batch_size"] * 4 // 5)
        if isinstance(r, Exception):
            raise r
        out.update(
            batch_size_run=kwargs["batch_size"],
            mode=r.mode,
            ttft_ms=r.ttft,
            tpot_ms=r.tpot,
            request_latency_ms=r.request_latency,
            tokens_per_s=r.tokens_per_second,
            tokens_per_s_per_gpu=r.tokens_per_second_per_gpu,
            seq_per_s=r.seq_per_second,
            concurrency=r.concurrency,
            num_gpus=r.num_total_gpus,
            memory_gb=r.memory,
            backend=r.backend_name,
            backend_version=r.backend_version,
            kv_cache_warning=r.kv_cache_warning,
        )
    except Exception as err:  # the tool's own refusal is a result too: report it
        out["error"] = f"{type(err).__name__}: {err}"
        out["traceback_tail"] = traceback.format_exc()[-1500:]
    print("RESULT " + json.dumps(out, default=float))


if __name__ == "__main__":
    main()
