"""Records the engine emits, and the in-memory collector that keeps them compactly.

The event loop only *emits* records; metrics, CSV files, traces and reports are computed from
them afterwards. Columns are kept in ``array.array`` buffers (8 bytes a value), so a million
requests and their steps fit in a few hundred MB.
"""

from __future__ import annotations

import struct
from array import array
from typing import NamedTuple

import numpy as np

from servesim.engine.request import Request

DROPPED_TURNS = "earlier_turn_skipped"
ABORTED = "aborted"
"""Skip reason of a request whose client went away before it finished (online serving)."""
"""Skip reason of the turns a conversation never sent because an earlier turn was refused."""

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


def _packing(columns: tuple[str, ...], ints: set[str]) -> tuple[struct.Struct, np.dtype]:
    """A record of ``columns`` as packed bytes (8 bytes a value, little-endian) and the numpy
    record type that reads a run of them back as columns."""
    codes = ["q" if c in ints else "d" for c in columns]
    dtype = np.dtype(
        [(c, "<" + ("i8" if k == "q" else "f8")) for c, k in zip(columns, codes, strict=True)]
    )
    return struct.Struct("<" + "".join(codes)), dtype


_REQUEST_PACKING = _packing(REQUEST_COLUMNS, _REQUEST_INT)
_STEP_PACKING = _packing(STEP_COLUMNS, _STEP_INT)
_INT32_MAX = np.iinfo(np.int32).max
_FLOAT64 = np.dtype(np.float64)
_max = np.maximum.reduce


class StepRecord(NamedTuple):
    """One step, or a fast-forwarded span of ``num_steps`` identical-shape decode steps.

    ``context_tokens`` is the KV context the step's attention read, summed over the batch
    (for a span: summed over all its steps). ``kv_usage`` is the fraction of KV blocks in use
    at the end of the step (for a span: the highest at the end of any of its steps, as the
    steps' own records would show it). (A named tuple: one is built per step record.)
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


assert StepRecord._fields == STEP_COLUMNS  # records are moved into columns by position
_PACK_REQUEST = _REQUEST_PACKING[0].pack
_PACK_STEP = _STEP_PACKING[0].pack
"""A record packed as it arrives (one bytes object instead of a tuple of 12-14 objects kept
until the next flush, which reads a run of them back as columns in numpy)."""


class RunRecords:
    """Collects request, step and inter-token-latency records of one run.

    NOTE: records arrive packed as bytes and are moved into the column buffers a batch at a
    time (:meth:`_flush`): one append per record instead of one per column. Inter-token pairs
    are written into a scratch log (:meth:`itl_room`; the compiled commits write there
    directly) and moved the same way.
    """

    _FLUSH_EVERY = 2048
    _ITL_SCRATCH = 1 << 16
    """Inter-token pairs the scratch log holds before it is moved into the buffers."""

    def __init__(self) -> None:
        self.requests = {c: array("q" if c in _REQUEST_INT else "d") for c in REQUEST_COLUMNS}
        self.steps = {c: array("q" if c in _STEP_INT else "d") for c in STEP_COLUMNS}
        # Cost-model features of every step record (see StepCost), a column each, kept only
        # for the features some record has non-zero: a dense model never uses the MLA,
        # sliding-window, expert and DP ones (half of them), and a long run has millions of
        # records. A column first seen non-zero is back-filled with zeros.
        self._feature_columns: dict[int, array] = {}
        self._num_feature_rows = 0
        self.num_step_features = 0
        # Pooled inter-token gaps as (value, weight) pairs: every token gap of every request,
        # with identical gaps of one step folded into one weighted entry. The weights are
        # 4-byte (the largest array of a long run: tens of millions of pairs), widened to 8
        # bytes if one ever needs it.
        self.itl_values = array("d")
        self.itl_weights = array("i")
        self.num_kv_transfers = 0
        self.kv_transfer_seconds = 0.0
        self.num_skipped = 0
        self.skipped_reasons: dict[str, int] = {}
        self._pending_requests: list[bytes] = []
        self._pending_steps: list[bytes] = []
        self._pending_features: list[bytes] = []
        self._itl_scratch = np.empty(self._ITL_SCRATCH)
        self._itl_scratch_weights = np.empty(self._ITL_SCRATCH, dtype=np.int64)
        self._itl_used = 0

    def request_done(self, req: Request) -> None:
        pending = self._pending_requests
        pending.append(
            _PACK_REQUEST(
                req.request_id,
                req.session_id,
                req.turn,
                req.instance_id,
                req.arrival_s,
                req.first_scheduled_s,
                req.first_token_s,
                req.finish_s,
                req.prompt_tokens,
                req.num_output_tokens,
                req.num_cached_tokens,
                req.num_preemptions,
            )
        )
        if len(pending) >= self._FLUSH_EVERY:
            self._flush()

    def kv_transfer(self, seconds: float) -> None:
        self.num_kv_transfers += 1
        self.kv_transfer_seconds += seconds

    def request_skipped(self, reason: str, dropped: int = 0, ends_session: bool = True) -> None:
        """A request the server refused for ``reason``, and the ``dropped`` later turns of its
        conversation that were never sent (``earlier_turn_skipped``). ``ends_session``: no
        turn of its session follows (a concurrency cap frees the session's slot)."""
        reasons = self.skipped_reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        if dropped:
            reasons[DROPPED_TURNS] = reasons.get(DROPPED_TURNS, 0) + dropped
        self.num_skipped += 1 + dropped

    def step_done(self, rec: StepRecord, features: np.ndarray | None = None) -> None:
        if features is not None:
            self.num_step_features = len(features)
            if features.dtype is not _FLOAT64:  # (an astype call costs 4x the test)
                features = features.astype(np.float64)
            self._pending_features.append(features.tobytes())
        pending = self._pending_steps
        pending.append(_PACK_STEP(*rec))
        if len(pending) >= self._FLUSH_EVERY:
            self._flush()

    def itl(self, values: np.ndarray, weights: np.ndarray) -> None:
        """Log inter-token gaps (s) as (value, weight) pairs, after those logged before."""
        k = len(values)
        scratch, scratch_weights, used = self.itl_room(k)
        scratch[used : used + k] = values
        scratch_weights[used : used + k] = weights
        self._itl_used = used + k

    def itl_room(self, need: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(values, weights, position): where ``need`` more inter-token pairs can be written,
        from that position on. A writer reports the position after its last pair with
        :meth:`itl_written`; until then what it wrote is not logged (a step whose pairs are
        replaced, as a stream interval's chunks replace its gaps, just does not report)."""
        used = self._itl_used
        if used + need > len(self._itl_scratch):
            self._flush_itl()
            used = 0
            if need > len(self._itl_scratch):
                self._itl_scratch = np.empty(2 * need)
                self._itl_scratch_weights = np.empty(2 * need, dtype=np.int64)
        return self._itl_scratch, self._itl_scratch_weights, used

    def itl_written(self, position: int) -> None:
        """The pairs written into :meth:`itl_room`'s arrays up to ``position`` are logged."""
        self._itl_used = position

    def _flush_itl(self) -> None:
        used = self._itl_used
        if not used:
            return
        self.itl_values.frombytes(self._itl_scratch[:used].tobytes())
        weights = self._itl_scratch_weights[:used]
        if self.itl_weights.typecode == "i" and _max(weights) > _INT32_MAX:
            self.itl_weights = array("q", self.itl_weights)
        dtype = np.dtype(self.itl_weights.typecode)
        self.itl_weights.frombytes(weights.astype(dtype).tobytes())
        self._itl_used = 0

    def _flush(self) -> None:
        """Move the pending records into the column buffers."""
        if self._pending_requests:
            _unpack_into(self.requests, self._pending_requests, _REQUEST_PACKING[1])
            self._pending_requests = []
        if self._pending_steps:
            _unpack_into(self.steps, self._pending_steps, _STEP_PACKING[1])
            self._pending_steps = []
        if self._pending_features:
            block = np.frombuffer(b"".join(self._pending_features), dtype=np.float64)
            block = block.reshape(-1, self.num_step_features)  # (records, features)
            columns = self._feature_columns
            for j in np.flatnonzero(np.logical_or.reduce(block != 0.0, axis=0)).tolist():
                if j not in columns:
                    columns[j] = array("d", bytes(8 * self._num_feature_rows))
            for j, column in columns.items():
                column.frombytes(np.ascontiguousarray(block[:, j]).tobytes())
            self._num_feature_rows += len(block)
            self._pending_features = []
        self._flush_itl()

    # --- columnar views -----------------------------------------------------------------

    def freeze(self) -> None:
        """End of the run: later column reads share memory with the buffers instead of copying
        them (a million requests' records would otherwise be held twice)."""
        self._flush()
        self._frozen = True

    def _np(self, buf: array) -> np.ndarray:
        self._flush()
        if getattr(self, "_frozen", False) and len(buf):
            view = np.frombuffer(buf, dtype=buf.typecode)
            view.flags.writeable = False
            return view
        return _as_numpy(buf)

    def request_columns(self) -> dict[str, np.ndarray]:
        self._flush()
        return {c: self._np(a) for c, a in self.requests.items()}

    def step_columns(self) -> dict[str, np.ndarray]:
        self._flush()
        return {c: self._np(a) for c, a in self.steps.items()}

    def step_features(self) -> np.ndarray:
        """Features of every step record, shape (records, features)."""
        self._flush()
        return self.step_feature_rows(slice(0, self._num_feature_rows))

    def step_feature_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        """Features of the step records ``rows`` (a slice or indices), shape (rows,
        features): a block at a time, without holding every record's features at once."""
        self._flush()
        n = len(range(self._num_feature_rows)[rows]) if isinstance(rows, slice) else len(rows)
        out = np.zeros((n, max(self.num_step_features, 1)))
        for j, column in self._feature_columns.items():
            out[:, j] = np.frombuffer(column, dtype=np.float64)[rows]
        return out

    def itl_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self._np(self.itl_values), self._np(self.itl_weights)

    @property
    def num_completed(self) -> int:
        return len(self.requests["request_id"]) + len(self._pending_requests)


def _unpack_into(buffers: dict[str, array], packed: list[bytes], dtype: np.dtype) -> None:
    """Append records packed as ``dtype`` to their column buffers."""
    block = np.frombuffer(b"".join(packed), dtype=dtype)
    for name, buf in buffers.items():
        buf.frombytes(block[name].astype(buf.typecode).tobytes())


def _as_numpy(buf: array) -> np.ndarray:
    """A copy (a view would pin the buffer and forbid further appends)."""
    return np.frombuffer(buf, dtype=buf.typecode).copy() if len(buf) else np.zeros(0, buf.typecode)
