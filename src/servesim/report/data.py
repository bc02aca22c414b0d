"""Reading a saved run folder (``summary.json``, ``requests.csv``, ``steps.csv``, or the two
tables as ``.parquet``) into columns.

Shared by the HTML report and the trace writer, so both work on any run saved with
``servesim simulate --out DIR``, long after the simulation itself. Columns come back as numpy
``float64`` arrays keyed by their header: every integer a run writes (token counts, ids) is
exact in a double, and one dtype keeps the CSV reader a single vectorised ``np.loadtxt`` call.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ServesimError
from servesim.textfile import PARSE_ERRORS, csv_rows, parse_problem, read_text, text_lines

#: Columns the report and trace need from ``requests.csv`` (seconds and token counts).
REQUEST_NEEDS = (
    "request_id", "instance", "arrival_s", "first_scheduled_s", "first_token_s", "finish_s",
    "input_tokens", "output_tokens", "cached_tokens", "preemptions",
)  # fmt: skip
#: Columns the report and trace need from ``steps.csv``.
STEP_NEEDS = (
    "instance", "start_s", "duration_s", "num_steps", "batch_size", "prefill_tokens",
    "decode_tokens", "context_tokens", "num_waiting", "kv_usage",
)  # fmt: skip
#: Prefix of the per-operator-group time columns of ``steps.csv`` (seconds per group).
OP_PREFIX = "t_"

_NOT_A_RUN_FIX = "pass the folder written by `servesim simulate --out DIR`"


@dataclass(frozen=True)
class RunData:
    """One saved run: ``summary`` as loaded from JSON, and the two CSV files as columns."""

    run_dir: Path
    summary: dict[str, Any]
    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]

    @property
    def op_columns(self) -> list[str]:
        """The ``t_*`` step columns (seconds by operator group), in file order; may be empty."""
        return [c for c in self.steps if c.startswith(OP_PREFIX)]

    @property
    def num_instances(self) -> int:
        """Instances seen in the run: one more than the highest instance index."""
        seen = np.concatenate((self.requests["instance"], self.steps["instance"]))
        return int(seen.max()) + 1 if len(seen) else 1


def _check_columns(path: Path, header: list[str], needs: tuple[str, ...]) -> None:
    missing = [c for c in needs if c not in header]
    if missing:
        raise ServesimError(
            f"{path} lacks the column(s) {', '.join(missing)}",
            field="RUN_DIR",
            fix="write the run again with this version of servesim",
        )


def read_columns(path: Path, needs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The columns of a numeric CSV file with a header row, or of a Parquet file (a name
    ending ``.parquet``), as float64 arrays.

    Raises ServesimError when the file is missing, a needed column is absent, or a cell is
    not a number.
    """
    if not path.is_file():
        raise ServesimError(
            f"{path.parent} has no {path.name}", field="RUN_DIR", fix=_NOT_A_RUN_FIX
        )
    if path.suffix == ".parquet":
        return _read_parquet_columns(path, needs)
    header = next(csv_rows(path, "RUN_DIR"), (0, []))[1]
    _check_columns(path, header, needs)
    try:
        with warnings.catch_warnings():
            # A header-only file (a run with no steps) is valid: no "empty input" warning.
            warnings.simplefilter("ignore", UserWarning)
            # ndmin=2 keeps the shape (rows, columns) for one row, and for none.
            table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except UnicodeDecodeError:
        for _ in text_lines(path, "RUN_DIR"):
            pass  # raises, naming the line that is not UTF-8
        raise ServesimError(f"{path} is not UTF-8 text", field="RUN_DIR") from None
    except ValueError as err:
        # (numpy's message goes on with advice for its own callers: "use `usecols`...")
        problem = str(err).split(";")[0].strip()
        raise ServesimError(
            f"{path} is not a numeric table: {problem}",
            field="RUN_DIR",
            fix="write the run again (`servesim simulate --out`), or restore the file",
        ) from None
    if table.size == 0:
        table = np.zeros((0, len(header)))
    return {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(header)}


_REWRITE_PARQUET_FIX = (
    "write the run again (`servesim simulate --out --format parquet`), or restore the file"
)


def _read_parquet_columns(path: Path, needs: tuple[str, ...]) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise ServesimError(
            f"{path} is not a Parquet table: {err}", field="RUN_DIR", fix=_REWRITE_PARQUET_FIX
        ) from None
    _check_columns(path, table.column_names, needs)
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise ServesimError(
                f"{path} is not a numeric table: column {name} holds {column.type}",
                field="RUN_DIR",
                fix=_REWRITE_PARQUET_FIX,
            )
        # (A null, which servesim never writes, reads as NaN.)
        values = column.to_numpy(zero_copy_only=False)
        columns[name] = np.ascontiguousarray(values, dtype=np.float64)
    return columns


def run_table(run_dir: Path, table: str) -> Path:
    """The file of ``table`` (``requests`` or ``steps``) in a run folder: its ``.parquet``
    where the run was written so, else its ``.csv``."""
    parquet = run_dir / f"{table}.parquet"
    return parquet if parquet.is_file() else run_dir / f"{table}.csv"


def read_run(run_dir: str | Path) -> RunData:
    """Load a run folder; ServesimError (field ``RUN_DIR``) when it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ServesimError(f"{run_dir} is not a folder", field="RUN_DIR", fix=_NOT_A_RUN_FIX)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ServesimError(
            f"{run_dir} is not a servesim run folder (no summary.json)",
            field="RUN_DIR",
            fix=_NOT_A_RUN_FIX,
        )
    text = read_text(summary_path, "RUN_DIR")
    try:
        summary = json.loads(text)
    except PARSE_ERRORS as err:
        raise ServesimError(
            f"{summary_path} is not valid JSON: {parse_problem(err)}", field="RUN_DIR"
        ) from None
    if not isinstance(summary, dict):
        raise ServesimError(f"{summary_path} is not a JSON object", field="RUN_DIR")
    return RunData(
        run_dir=run_dir,
        summary=summary,
        requests=read_columns(run_table(run_dir, "requests"), REQUEST_NEEDS),
        steps=read_columns(run_table(run_dir, "steps"), STEP_NEEDS),
    )


def request_latencies(requests: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT and E2EL in milliseconds, as vLLM ``bench serve`` defines them.

    TPOT is NaN for requests with a single output token (vLLM leaves them out of TPOT).
    """
    arrival = requests["arrival_s"]
    ttft = (requests["first_token_s"] - arrival) * 1000.0
    e2el = (requests["finish_s"] - arrival) * 1000.0
    n_out = requests["output_tokens"]
    multi = n_out > 1
    tpot = np.full(len(arrival), np.nan)
    tpot[multi] = (e2el[multi] - ttft[multi]) / (n_out[multi] - 1)
    queued = (requests["first_scheduled_s"] - arrival) * 1000.0
    return {"ttft_ms": ttft, "tpot_ms": tpot, "e2el_ms": e2el, "queued_ms": queued}


def prefill_rows(steps: dict[str, np.ndarray]) -> np.ndarray:
    """Requests that ran prefill (a prompt chunk) in each step record.

    A decode row emits one token per step, plus its accepted draft tokens under speculative
    decoding (``spec_accepted``, when the file has it); the other rows of the batch are prefill
    rows. A fast-forwarded span is pure decode (zero prefill rows).
    """
    decode_rows = steps["decode_tokens"] - steps.get("spec_accepted", 0.0)
    per_step = decode_rows / np.maximum(steps["num_steps"], 1)
    return np.maximum(steps["batch_size"] - per_step, 0.0)


def scenario_label(summary: dict[str, Any]) -> tuple[str, str]:
    """(model, hardware) names of a run, e.g. ("meta-llama/Llama-3.1-8B", "2× H100") for one
    instance of TP2 (the title's short form; the page's scenario table says instances and
    GPUs)."""
    scenario = summary.get("scenario") or {}
    model = (summary.get("model_info") or {}).get("name") or scenario.get("model") or "model"
    hardware = (summary.get("hardware_info") or {}).get("name") or scenario.get("hardware") or "?"
    tp = scenario.get("tp") or 1
    return str(model), (f"{tp}× {hardware}" if tp > 1 else str(hardware))
