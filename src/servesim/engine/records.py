"""Records the engine emits, and the in-memory collector that keeps them compactly.

The event loop only *emits* records; metrics, CSV files, traces and reports are computed from
them afterwards. Columns are kept in ``array.array`` buffers (8 bytes a value), so a million
requests and their steps fit in a few hundred MB.
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

import numpy as np

from servesim.engine.request import Request

REQUEST_COLUMNS = (
    "request_id",
    "session_id",
    "turn",
    "instance",
    "arrival_s",
    "first_scheduled_s",
    "first_token_s",
    "finish_s",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "preemptions",
)
_REQUEST_INT = {
    "request_id",
    "session_id",
    "turn",
    "instance",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "preemptions",
}

STEP_COLUMNS = (
    "instance",
    "start_s",
    "duration_s",
    "num_steps",
    "batch_size",
    "prefill_tokens",
    "decode_tokens",
    "context_tokens",
    "num_preempted",
    "num_waiting",
    "kv_usage",
    "spec_proposed",
    "spec_accepted",
    "spec_rows",
)
_STEP_INT = {
    "instance",
    "num_steps",
    "batch_size",
    "prefill_tokens",
    "decode_tokens",
    "context_tokens",
    "num_preempted",
    "num_waiting",
    "spec_proposed",
    "spec_accepted",
    "spec_rows",
}


class StepRecord(NamedTuple):
    """One step, or a fast-forwarded span of ``num_steps`` identical-shape decode steps.

    ``context_tokens`` is the KV context the step's attention read, summed over the batch
    (for a span: summed over all its steps). ``kv_usage`` is the fraction of KV blocks in use
    at the end of the step. (A named tuple: one is built per step record.)
    """

    instance: int
    start_s: float
    duration_s: float
    num_steps: int
    batch_size: int
    prefill_tokens: int
    decode_tokens: int
    context_tokens: int
    num_preempted: int
    num_waiting: int
    kv_usage: float
    spec_proposed: int = 0
    """Draft tokens verified (speculative decoding)."""
    spec_accepted: int = 0
    """Draft tokens accepted."""
    spec_rows: int = 0
    """Requests that verified drafts."""


class RunRecords:
    """Collects request, step and inter-token-latency records of one run."""

    def __init__(self) -> None:
        self.requests = {c: array("q" if c in _REQUEST_INT else "d") for c in REQUEST_COLUMNS}
        self.steps = {c: array("q" if c in _STEP_INT else "d") for c in STEP_COLUMNS}
        # Pooled inter-token gaps as (value, weight) pairs: every token gap of every request,
        # with identical gaps of one step folded into one weighted entry.
        # Cost-model features of every step record, flattened (see StepCost).
        self.step_feature_values = array("d")
        self.num_step_features = 0
        self.itl_values = array("d")
        self.itl_weights = array("q")
        self.num_kv_transfers = 0
        self.kv_transfer_seconds = 0.0
        self.num_skipped = 0
        self.skipped_reasons: dict[str, int] = {}

    def request_done(self, req: Request) -> None:
        r = self.requests
        r["request_id"].append(req.request_id)
        r["session_id"].append(req.session_id)
        r["turn"].append(req.turn)
        r["instance"].append(req.instance_id)
        r["arrival_s"].append(req.arrival_s)
        r["first_scheduled_s"].append(req.first_scheduled_s)
        r["first_token_s"].append(req.first_token_s)
        r["finish_s"].append(req.finish_s)
        r["input_tokens"].append(req.prompt_tokens)
        r["output_tokens"].append(req.num_output_tokens)
        r["cached_tokens"].append(req.num_cached_tokens)
        r["preemptions"].append(req.num_preemptions)

    def kv_transfer(self, seconds: float) -> None:
        self.num_kv_transfers += 1
        self.kv_transfer_seconds += seconds

    def request_skipped(self, reason: str) -> None:
        self.num_skipped += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1

    def step_done(self, rec: StepRecord, features: np.ndarray | None = None) -> None:
        if features is not None:
            self.num_step_features = len(features)
            self.step_feature_values.extend(features.tolist())
        s = self.steps
        s["instance"].append(rec.instance)
        s["start_s"].append(rec.start_s)
        s["duration_s"].append(rec.duration_s)
        s["num_steps"].append(rec.num_steps)
        s["batch_size"].append(rec.batch_size)
        s["prefill_tokens"].append(rec.prefill_tokens)
        s["decode_tokens"].append(rec.decode_tokens)
        s["context_tokens"].append(rec.context_tokens)
        s["num_preempted"].append(rec.num_preempted)
        s["num_waiting"].append(rec.num_waiting)
        s["kv_usage"].append(rec.kv_usage)
        s["spec_proposed"].append(rec.spec_proposed)
        s["spec_accepted"].append(rec.spec_accepted)
        s["spec_rows"].append(rec.spec_rows)

    def itl(self, values: np.ndarray, weights: np.ndarray) -> None:
        self.itl_values.extend(values.tolist())
        self.itl_weights.extend(weights.tolist())

    # --- columnar views -----------------------------------------------------------------

    def freeze(self) -> None:
        """End of the run: later column reads share memory with the buffers instead of copying
        them (a million requests' records would otherwise be held twice)."""
        self._frozen = True

    def _np(self, buf: array) -> np.ndarray:
        if getattr(self, "_frozen", False) and len(buf):
            view = np.frombuffer(buf, dtype=buf.typecode)
            view.flags.writeable = False
            return view
        return _as_numpy(buf)

    def request_columns(self) -> dict[str, np.ndarray]:
        return {c: self._np(a) for c, a in self.requests.items()}

    def step_columns(self) -> dict[str, np.ndarray]:
        return {c: self._np(a) for c, a in self.steps.items()}

    def step_features(self) -> np.ndarray:
        """Features of every step record, shape (records, features)."""
        values = self._np(self.step_feature_values)
        return values.reshape(-1, max(self.num_step_features, 1))

    def itl_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self._np(self.itl_values), self._np(self.itl_weights)

    @property
    def num_completed(self) -> int:
        return len(self.requests["request_id"])


def _as_numpy(buf: array) -> np.ndarray:
    """A copy (a view would pin the buffer and forbid further appends)."""
    return np.frombuffer(buf, dtype=buf.typecode).copy() if len(buf) else np.zeros(0, buf.typecode)
