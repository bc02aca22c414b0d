"""The running batch of one instance as parallel numpy arrays (struct of arrays).

Per-step work (token budgets, KV block needs, token commits, finishes) is vectorised over
these arrays, so a step costs a few numpy calls however large the batch is. The
:class:`~servesim.engine.request.Request` objects stay the source of truth for everything that
does not change every step (ids, block lists, timestamps); their per-step counters are written
back by :meth:`RunningTable.sync` whenever Python code needs to look at one request.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from servesim.engine.request import Request

# Rows of the integer table (one array, so removing finished rows is one fancy-index copy).
COMPUTED, TOKENS, PROMPT, MAX_OUT, NBLOCKS, NSHARED, SHAREABLE = range(7)
_NUM_INT_COLUMNS = SHAREABLE + 1


class RunningTable:
    """Running requests in scheduling order, oldest first."""

    def __init__(self, capacity: int = 64):
        self.reqs: list[Request] = []
        self._cap = capacity
        # Buffers over the table's capacity (attributes, not accessors: the engine reads them
        # several times a step); a buffer is replaced, not resized, when the table grows.
        self.int_buffer = np.zeros((_NUM_INT_COLUMNS, capacity), dtype=np.int64)
        """The integer columns (``COMPUTED`` … ``SHAREABLE``), the first ``len(self)`` rows
        live: what the compiled commits (``engine._commit_kernels``) update in place."""
        self.last_buffer = np.zeros(capacity, dtype=np.float64)
        """Each row's last-token time (s; NaN: none yet), the first ``len(self)`` live."""
        self.done_buffer = np.zeros(capacity, dtype=np.bool_)
        """Where the compiled commits mark the rows that finished (only what they report as
        written is meaningful; the next commit overwrites it)."""
        self.first_buffer = np.zeros(capacity, dtype=np.int64)
        """Where the compiled commits write the rows that emitted a first token."""
        self.token_buffer = np.zeros(capacity, dtype=np.int64)
        """Where the compiled scheduler writes a step's new tokens per row
        (``ScheduledBatch.new_tokens`` is then a view of its head: valid until the next step is
        scheduled)."""

    def __len__(self) -> int:
        # NOTE: the engine's per-step code reads ``len(table.reqs)`` instead: the same count
        # without this method's Python frame (~9 a request at low load).
        return len(self.reqs)

    def columns(self) -> np.ndarray:
        """The integer columns of the live rows, shape (columns, rows), indexed by
        ``COMPUTED`` … ``SHAREABLE``: one view for code that reads several columns."""
        return self.int_buffer[:, : len(self.reqs)]

    # Views of the live rows; writes through them update the table.
    @property
    def computed(self) -> np.ndarray:
        return self.int_buffer[COMPUTED, : len(self.reqs)]

    @computed.setter
    def computed(self, values: np.ndarray) -> None:
        self.int_buffer[COMPUTED, : len(self.reqs)] = values

    @property
    def tokens(self) -> np.ndarray:
        return self.int_buffer[TOKENS, : len(self.reqs)]

    @tokens.setter
    def tokens(self, values: np.ndarray) -> None:
        self.int_buffer[TOKENS, : len(self.reqs)] = values

    @property
    def prompt(self) -> np.ndarray:
        return self.int_buffer[PROMPT, : len(self.reqs)]

    @prompt.setter
    def prompt(self, values: np.ndarray) -> None:
        self.int_buffer[PROMPT, : len(self.reqs)] = values

    @property
    def max_out(self) -> np.ndarray:
        return self.int_buffer[MAX_OUT, : len(self.reqs)]

    @max_out.setter
    def max_out(self, values: np.ndarray) -> None:
        self.int_buffer[MAX_OUT, : len(self.reqs)] = values

    @property
    def nblocks(self) -> np.ndarray:
        return self.int_buffer[NBLOCKS, : len(self.reqs)]

    @nblocks.setter
    def nblocks(self, values: np.ndarray) -> None:
        self.int_buffer[NBLOCKS, : len(self.reqs)] = values

    @property
    def nshared(self) -> np.ndarray:
        """Shared (content-named) blocks held by each row."""
        return self.int_buffer[NSHARED, : len(self.reqs)]

    @property
    def shareable(self) -> np.ndarray:
        return self.int_buffer[SHAREABLE, : len(self.reqs)]

    @property
    def last_token(self) -> np.ndarray:
        return self.last_buffer[: len(self.reqs)]

    @last_token.setter
    def last_token(self, values: np.ndarray) -> None:
        self.last_buffer[: len(self.reqs)] = values

    def _grow(self) -> None:
        n = self._cap
        self._cap *= 2
        ints = np.zeros((_NUM_INT_COLUMNS, self._cap), dtype=np.int64)
        ints[:, :n] = self.int_buffer
        last = np.zeros(self._cap, dtype=np.float64)
        last[:n] = self.last_buffer
        self.int_buffer, self.last_buffer = ints, last
        self.done_buffer = np.zeros(self._cap, dtype=np.bool_)
        self.first_buffer = np.zeros(self._cap, dtype=np.int64)
        # (A new buffer: a batch scheduled into the old one keeps it.)
        self.token_buffer = np.zeros(self._cap, dtype=np.int64)

    def append(self, req: Request, shareable: int = 0, max_out: int | None = None) -> None:
        """Add ``req`` at the end (the newest request, first to be preempted).

        ``shareable``: how many of its leading blocks can be shared (the rest are private,
        and growing into them is pure counting, done here in bulk). ``max_out`` overrides the
        request's output length here (a prefill instance stops after the first token).
        """
        i = len(self.reqs)
        if i == self._cap:
            self._grow()
        self.reqs.append(req)
        self.int_buffer[:, i] = (
            req.num_computed_tokens,
            req.num_tokens,
            req.prompt_tokens,
            req.max_output_tokens if max_out is None else max_out,
            req.num_blocks,
            len(req.block_ids),
            shareable,
        )
        self.last_buffer[i] = req.last_token_s if req.last_token_s is not None else np.nan

    def sync(self, i: int) -> Request:
        """Write row ``i``'s counters back into its Request and return it."""
        req = self.reqs[i]
        computed, tokens, prompt, _, nblocks, nshared, _ = self.int_buffer[:, i].tolist()
        req.num_computed_tokens = computed
        req.num_output_tokens = tokens - prompt
        req.num_private_blocks = nblocks - nshared
        last = float(self.last_buffer[i])
        req.last_token_s = None if last != last else last  # (NaN: no token yet)
        return req

    def refresh_blocks(self, i: int) -> None:
        """Re-read row ``i``'s block count after its Request's block list changed."""
        req = self.reqs[i]
        self.int_buffer[NBLOCKS, i] = req.num_blocks
        self.int_buffer[NSHARED, i] = len(req.block_ids)

    def remove(self, drop: np.ndarray, compact: Callable[..., None] | None = None) -> list[Request]:
        """Remove the rows where ``drop`` is True (synced) and return their Requests in order.
        ``compact``: the compiled compaction (``_commit_kernels.remove_rows``), else numpy."""
        n = len(self.reqs)
        idx = drop.nonzero()[0].tolist()
        if not idx:
            return []
        removed = [self.sync(i) for i in idx]
        if compact is not None:
            compact(self.int_buffer, self.last_buffer, n, drop)
        elif len(idx) == 1:
            # One row leaves (the usual case): the rows after it move up one.
            i = idx[0]
            self.int_buffer[:, i : n - 1] = self.int_buffer[:, i + 1 : n]
            self.last_buffer[i : n - 1] = self.last_buffer[i + 1 : n]
        else:
            keep = ~drop
            m = n - len(idx)
            self.int_buffer[:, :m] = self.int_buffer[:, :n][:, keep]
            self.last_buffer[:m] = self.last_buffer[:n][keep]
        reqs = self.reqs
        for i in reversed(idx):  # a few rows leave a long list: delete in place
            del reqs[i]
        return removed

    def pop_last(self) -> Request:
        """Remove and return the newest request (synced)."""
        req = self.sync(len(self.reqs) - 1)
        self.reqs.pop()
        return req
