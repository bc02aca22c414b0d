"""The running batch of one instance as parallel numpy arrays (struct of arrays).

Per-step work (token budgets, KV block needs, token commits, finishes) is vectorised over
these arrays, so a step costs a few numpy calls however large the batch is. The
:class:`~servesim.engine.request.Request` objects stay the source of truth for everything that
does not change every step (ids, block lists, timestamps); their per-step counters are written
back by :meth:`RunningTable.sync` whenever Python code needs to look at one request.
"""

from __future__ import annotations

import numpy as np

from servesim.engine.request import Request

_COLUMNS = (
    "_computed", "_tokens", "_prompt", "_max_out", "_nblocks", "_last_token", "_nshared",
    "_shareable",
)  # fmt: skip


class RunningTable:
    """Running requests in scheduling order, oldest first."""

    def __init__(self, capacity: int = 64):
        self.reqs: list[Request] = []
        self._cap = capacity
        self._computed = np.zeros(capacity, dtype=np.int64)
        self._tokens = np.zeros(capacity, dtype=np.int64)
        self._prompt = np.zeros(capacity, dtype=np.int64)
        self._max_out = np.zeros(capacity, dtype=np.int64)
        self._nblocks = np.zeros(capacity, dtype=np.int64)
        self._last_token = np.zeros(capacity, dtype=np.float64)
        self._nshared = np.zeros(capacity, dtype=np.int64)
        self._shareable = np.zeros(capacity, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.reqs)

    # Views of the live rows; writes through them update the table.
    @property
    def computed(self) -> np.ndarray:
        return self._computed[: len(self.reqs)]

    @computed.setter
    def computed(self, values: np.ndarray) -> None:
        self._computed[: len(self.reqs)] = values

    @property
    def tokens(self) -> np.ndarray:
        return self._tokens[: len(self.reqs)]

    @tokens.setter
    def tokens(self, values: np.ndarray) -> None:
        self._tokens[: len(self.reqs)] = values

    @property
    def prompt(self) -> np.ndarray:
        return self._prompt[: len(self.reqs)]

    @prompt.setter
    def prompt(self, values: np.ndarray) -> None:
        self._prompt[: len(self.reqs)] = values

    @property
    def max_out(self) -> np.ndarray:
        return self._max_out[: len(self.reqs)]

    @max_out.setter
    def max_out(self, values: np.ndarray) -> None:
        self._max_out[: len(self.reqs)] = values

    @property
    def nblocks(self) -> np.ndarray:
        return self._nblocks[: len(self.reqs)]

    @nblocks.setter
    def nblocks(self, values: np.ndarray) -> None:
        self._nblocks[: len(self.reqs)] = values

    @property
    def nshared(self) -> np.ndarray:
        """Shared (content-named) blocks held by each row."""
        return self._nshared[: len(self.reqs)]

    @property
    def shareable(self) -> np.ndarray:
        return self._shareable[: len(self.reqs)]

    @property
    def last_token(self) -> np.ndarray:
        return self._last_token[: len(self.reqs)]

    @last_token.setter
    def last_token(self, values: np.ndarray) -> None:
        self._last_token[: len(self.reqs)] = values

    def _grow(self) -> None:
        self._cap *= 2
        for name in _COLUMNS:
            old = getattr(self, name)
            new = np.zeros(self._cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

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
        self._computed[i] = req.num_computed_tokens
        self._tokens[i] = req.num_tokens
        self._prompt[i] = req.prompt_tokens
        self._max_out[i] = req.max_output_tokens if max_out is None else max_out
        self._nblocks[i] = req.num_blocks
        self._nshared[i] = len(req.block_ids)
        self._shareable[i] = shareable
        self._last_token[i] = req.last_token_s if req.last_token_s is not None else np.nan

    def sync(self, i: int) -> Request:
        """Write row ``i``'s counters back into its Request and return it."""
        req = self.reqs[i]
        req.num_computed_tokens = int(self._computed[i])
        req.num_output_tokens = int(self._tokens[i] - self._prompt[i])
        req.num_private_blocks = int(self._nblocks[i] - self._nshared[i])
        last = float(self._last_token[i])
        req.last_token_s = None if np.isnan(last) else last
        return req

    def refresh_blocks(self, i: int) -> None:
        """Re-read row ``i``'s block count after its Request's block list changed."""
        req = self.reqs[i]
        self._nblocks[i] = req.num_blocks
        self._nshared[i] = len(req.block_ids)

    def remove(self, drop: np.ndarray) -> list[Request]:
        """Remove the rows where ``drop`` is True (synced) and return their Requests in order."""
        n = len(self.reqs)
        idx = np.flatnonzero(drop)
        if idx.size == 0:
            return []
        removed = [self.sync(int(i)) for i in idx]
        keep = ~drop
        m = n - idx.size
        for name in _COLUMNS:
            arr = getattr(self, name)
            arr[:m] = arr[:n][keep]
        self.reqs = [r for r, k in zip(self.reqs, keep.tolist(), strict=True) if k]
        return removed

    def pop_last(self) -> Request:
        """Remove and return the newest request (synced)."""
        req = self.sync(len(self.reqs) - 1)
        self.reqs.pop()
        return req
