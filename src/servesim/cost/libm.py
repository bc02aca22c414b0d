"""Transcendental functions of numpy arrays with the C library's bits.

On CPUs with AVX-512 numpy computes ``log10``, ``log``, ``log2`` and ``exp`` of float64 arrays
with vector code that rounds some values one ulp away from the C library (``log10`` ~1% of
them, ``log`` and ``log2`` ~1 in 5,000, integers included): a step priced with them would
depend in its last bits on the CPU, and differ from the compiled kernels, which call the C
library. The step pricing takes its logarithms from here instead (one :mod:`math` call a value,
~0.08 µs, on the few values a step or a span's steps need), and so do the tables the cost model
is built with (once per model).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def c_math(fn: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``fn`` (a :mod:`math` function, e.g. ``math.log10``) of each value of the float array
    ``x``, shape ``x``'s."""
    return np.fromiter(map(fn, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


__all__ = ["c_math"]
