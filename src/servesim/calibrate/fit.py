"""Fit the cost model's free parameters to measured step times by robust least squares.

The model (``servesim.cost.step``) times a step as

    Σ_operators max(compute_j / e_c(j), memory_j / e_m(j)) + launches + s0 + sT · tokens

where ``compute_j`` / ``memory_j`` are the operator's seconds at 100% of peak FLOP/s and
bandwidth. With inverse efficiencies ``u = 1/e`` every side is linear in the parameters, so
once we know which side of each operator's ``max`` binds, the step time is *linear* in

    θ = (u_gemm, u_attention, u_memory, u_kv, s0, sT)

(compute efficiency of GEMMs and elementwise kernels, of the attention kernel, bandwidth
efficiency of weight/activation traffic, of KV-cache reads, per-step and per-token host
seconds). The fit alternates: pick the binding sides at the current θ, solve a weighted
linear least-squares problem in θ, line-search on the true (piecewise-linear, convex in θ)
model. Weights are Huber's on the *relative* residual (step times span 1 ms to 1 s, and a
few steps hit by GC pauses or preemptions must not drag the fit): iteratively reweighted
least squares, numpy only.

NOTE: why not ``scipy.optimize.least_squares(loss="soft_l1")``: scipy is not a dependency,
and the problem is linear in θ between kinks, so each iteration is one small ``lstsq``
(closed form, deterministic, microseconds); bounds (efficiency in (0.01, 1], seconds >= 0)
are an active set.

Parameters the data cannot pin down (no measurement spends more than a few percent of its
time on them, or their standard error is large) keep their default and are reported as
such: calibrating a decode-only log must not invent an attention efficiency. The GEMM
size-regime curve (``gemm_half_tokens``) is chosen from a small grid when the data prefers
another value clearly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from servesim.calibrate.batches import feature_matrix, op_masks, regimes
from servesim.calibrate.readers import Measurements
from servesim.cost import CostParams, Parallelism, build_step_cost
from servesim.cost import operator as ops_mod
from servesim.cost.resolve import given_efficiencies
from servesim.errors import ServesimError
from servesim.hardware import Hardware
from servesim.model import ModelSpec

FIT_PARAMS = (
    "compute_efficiency",
    "attention_efficiency",
    "memory_efficiency",
    "attention_memory_efficiency",
    "step_overhead_s",
    "overhead_per_token_s",
)
"""CostParams fields the fit solves for (the first four as inverse efficiencies)."""
FIXED_PARAMS = ("kernel_launch_s", "overhead_per_seq_s", "gemm_half_tokens", "comm_efficiency")
"""CostParams fields the fit assumes (recorded in the calibration so it is self-contained)."""
HALF_TOKENS_GRID = (0.0, 16.0, 32.0, 64.0, 128.0)
MIN_POINTS = 12
_N_EFF = 4  # the first four θ are inverse efficiencies
_LO = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
_HI = np.array([100.0, 100.0, 100.0, 100.0, np.inf, np.inf])
_HUBER_K = 1.345  # 95% efficiency at the normal distribution
_OUTLIER_K = 3.0  # residuals beyond 3 spreads are reported as outliers
_MIN_INFLUENCE = 0.03  # a parameter must carry >= 3% of some measurement's time
_MAX_REL_SE = 0.5  # ... and be known to +-50% (one standard error), else it keeps its default
_WEAK_REL_SE = 0.15  # beyond +-15% it is kept but reported as weakly identified
_COMPUTE_CLASS = {
    ops_mod.RATE_GEMM: 0,
    ops_mod.RATE_GEMM_EXPERT: 0,
    ops_mod.RATE_GEMM_ACT: 0,
    ops_mod.RATE_VECTOR: 0,
    ops_mod.RATE_ATTENTION: 1,
}

NO_HOST_MODEL = {"host_step_s": 0.0, "host_per_seq_s": 0.0, "host_per_token_s": 0.0}
"""Calibrated parameters replace the host-time model by the fitted additive overheads."""


@dataclass(frozen=True)
class Decomposition:
    """Measured rows split into the pieces that scale with each parameter (seconds)."""

    comp: np.ndarray
    """(rows, operators) compute seconds at 100% efficiency, 0 where not covered or a link."""
    mem: np.ndarray
    """(rows, operators) memory seconds at 100% efficiency, likewise."""
    cclass: np.ndarray
    """(operators,) 0: GEMM/elementwise compute efficiency, 1: attention."""
    mclass: np.ndarray
    """(operators,) 0: memory efficiency, 1: KV-read (attention) memory efficiency."""
    const: np.ndarray
    """(rows,) seconds no parameter scales: launches, links, per-sequence host time."""
    overhead: np.ndarray
    """(rows,) 1.0 for whole steps (host overhead applies), 0.0 for operator rows."""
    tokens: np.ndarray

    def predict(self, theta: np.ndarray) -> np.ndarray:
        """Seconds of every row at parameters ``theta``."""
        uc = theta[:2][self.cclass]
        um = theta[2:4][self.mclass]
        secs = np.maximum(self.comp * uc, self.mem * um).sum(axis=1)
        return secs + self.const + self.overhead * (theta[4] + theta[5] * self.tokens)

    def design(self, theta: np.ndarray) -> np.ndarray:
        """(rows, 6) design matrix at the binding sides of ``theta``: predict = X @ θ + const."""
        bind = self.comp * theta[:2][self.cclass] >= self.mem * theta[2:4][self.mclass]
        c, m = self.comp * bind, self.mem * ~bind
        x = np.empty((len(self.const), 6))
        x[:, 0] = c[:, self.cclass == 0].sum(axis=1)
        x[:, 1] = c[:, self.cclass == 1].sum(axis=1)
        x[:, 2] = m[:, self.mclass == 0].sum(axis=1)
        x[:, 3] = m[:, self.mclass == 1].sum(axis=1)
        x[:, 4] = self.overhead
        x[:, 5] = self.overhead * self.tokens
        return x


def unit_params(base: CostParams) -> CostParams:
    """``base`` at 100% efficiency with no launch or host seconds (the pure roofline)."""
    return replace(
        base,
        compute_efficiency=1.0,
        memory_efficiency=1.0,
        attention_efficiency=1.0,
        attention_memory_efficiency=1.0,
        kernel_launch_s=0.0,
        step_overhead_s=0.0,
        overhead_per_token_s=0.0,
    )


def decompose(
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    base: CostParams,
    m: Measurements,
    features: np.ndarray | None = None,
) -> Decomposition:
    """Split every measured row into parameter-scaled pieces (see :class:`Decomposition`)."""
    unit = unit_params(base)
    cost0 = build_step_cost(model, hw, par, unit)
    launch = hw.kernel_launch_s if base.kernel_launch_s is None else base.kernel_launch_s
    cost1 = build_step_cost(model, hw, par, replace(unit, kernel_launch_s=launch))
    f = feature_matrix(cost0, m) if features is None else features
    mask = op_masks(cost0, m)
    c0, m0 = cost0.operator_sides_from_features(f)
    c1, _ = cost1.operator_sides_from_features(f)
    c0, m0, c1 = c0 * mask, m0 * mask, c1 * mask
    nops = len(cost0.operators)
    link = np.array([op.rate not in _COMPUTE_CLASS for op in cost0.operators])
    # Links (and the per-sequence host seconds in the last column) are fixed: the fit leaves
    # comm_efficiency alone; their launches and latencies are in both sides, so take the max.
    fixed = np.maximum(c0[:, :nops][:, link], m0[:, :nops][:, link]).sum(axis=1)
    launches = (c1 - c0)[:, :nops][:, ~link].sum(axis=1)
    comp, mem = c0[:, :nops].copy(), m0[:, :nops].copy()
    comp[:, link] = 0.0
    mem[:, link] = 0.0
    rates = [op.rate for op in cost0.operators]
    return Decomposition(
        comp=comp,
        mem=mem,
        cclass=np.array([_COMPUTE_CLASS.get(r, 0) for r in rates], dtype=np.intp),
        mclass=np.array([1 if r == ops_mod.RATE_ATTENTION else 0 for r in rates], dtype=np.intp),
        const=fixed + launches + c0[:, nops],
        overhead=mask[:, nops].astype(float),
        tokens=m.tokens.astype(float),
    )


def initial_theta(hw: Hardware, base: CostParams) -> np.ndarray:
    """θ of ``base`` (its defaults filled from the hardware)."""
    ce, me, attn, attn_mem = given_efficiencies(hw, base)
    return np.array(
        [
            1.0 / ce,
            1.0 / attn,
            1.0 / me,
            1.0 / attn_mem,
            base.step_overhead_s,
            base.overhead_per_token_s,
        ]
    )


# --------------------------------------------------------------------------- the solver


def _huber_rho(z: np.ndarray) -> np.ndarray:
    a = np.abs(z)
    return np.where(a <= _HUBER_K, 0.5 * z * z, _HUBER_K * (a - 0.5 * _HUBER_K))


def _huber_w(z: np.ndarray) -> np.ndarray:
    a = np.abs(z)
    return np.where(a <= _HUBER_K, 1.0, _HUBER_K / np.maximum(a, 1e-300))


def _scale(r: np.ndarray) -> float:
    """Robust spread of relative residuals (MAD), floored at 0.1%."""
    return max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-3)


def _bounded_wls(
    x: np.ndarray, rhs: np.ndarray, sw: np.ndarray, free: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Minimise Σ (sw·(x θ − rhs))² over the ``free`` entries of θ within the bounds."""
    out = theta.copy()
    free = free.copy()
    while free.any():
        fixed_part = x[:, ~free] @ out[~free]
        j = sw[:, None] * x[:, free]
        b = sw * (rhs - fixed_part)
        norms = np.linalg.norm(j, axis=0)
        norms[norms == 0] = 1.0
        sol = np.linalg.lstsq(j / norms, b, rcond=None)[0] / norms
        idx = np.flatnonzero(free)
        lo, hi = _LO[idx], _HI[idx]
        over = np.maximum(lo - sol, sol - hi) / np.maximum(np.abs(lo), 1.0)
        if (over <= 0).all():
            out[idx] = sol
            return out
        # Clamp the worst violator to its bound and solve again without it.
        worst = int(np.argmax(over))
        out[idx[worst]] = lo[worst] if sol[worst] < lo[worst] else hi[worst]
        free[idx[worst]] = False
    return out


def _irls(
    dec: Decomposition, y: np.ndarray, theta0: np.ndarray, free: np.ndarray, sigma: float
) -> np.ndarray:
    """Huber IRLS with the residual scale ``sigma`` held fixed; returns θ."""
    theta = theta0.copy()

    def objective(t: np.ndarray) -> float:
        return float(_huber_rho((dec.predict(t) - y) / y / sigma).sum())

    current = objective(theta)
    for _ in range(200):
        r = (dec.predict(theta) - y) / y
        sw = np.sqrt(_huber_w(r / sigma)) / y
        x = dec.design(theta)
        proposal = _bounded_wls(x, y - dec.const, sw, free, theta)
        step, delta = 1.0, proposal - theta
        while step > 1e-6:
            trial = theta + step * delta
            value = objective(trial)
            if value <= current:
                break
            step *= 0.5
        else:
            break
        change = np.abs(trial - theta) / np.maximum(np.abs(theta), [1, 1, 1, 1, 1e-6, 1e-9])
        theta, current = trial, value
        if change.max() < 1e-9:
            break
    return theta


def _robust_fit(
    dec: Decomposition, y: np.ndarray, theta0: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, float]:
    """(θ, residual scale): least squares to find a scale, then Huber IRLS twice."""
    theta = _irls(dec, y, theta0, free, sigma=1e6)  # ρ is quadratic everywhere: plain LS
    sigma = _scale((dec.predict(theta) - y) / y)
    for _ in range(2):
        theta = _irls(dec, y, theta, free, sigma)
        sigma = _scale((dec.predict(theta) - y) / y)
    return theta, sigma


def _uncertainty(
    dec: Decomposition,
    y: np.ndarray,
    theta: np.ndarray,
    theta0: np.ndarray,
    free: np.ndarray,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(relative standard error, influence) of every θ entry (NaN where not applicable).

    Influence: the largest share of one measurement's predicted time the parameter carries
    at its fitted or its default value, whichever is larger (so a host overhead the data
    push to 0 counts as measured, not as unseen).
    """
    x = dec.design(theta)
    pred = dec.predict(theta)
    influence = np.max(np.abs(x * np.maximum(theta, theta0)) / pred[:, None], axis=0)
    rel_se = np.full(len(theta), np.nan)
    inside = free & (theta > _LO + 1e-12) & (theta < _HI)
    if inside.any():
        r = (pred - y) / y
        w = _huber_w(r / sigma)
        j = np.sqrt(w)[:, None] * x[:, inside] / y[:, None]
        dof = max(len(y) - int(inside.sum()), 1)
        s2 = float((w * r * r).sum()) / dof
        norms = np.linalg.norm(j, axis=0)
        norms[norms == 0] = 1.0
        cov = np.linalg.pinv((j / norms).T @ (j / norms)) * s2 / np.outer(norms, norms)
        rel_se[inside] = np.sqrt(np.maximum(np.diag(cov), 0.0)) / np.abs(theta[inside])
    return rel_se, influence


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class FitResult:
    """A finished fit: the parameters, what the data identified, and the errors."""

    params: dict[str, float]
    """Every field of :data:`FIT_PARAMS` and :data:`FIXED_PARAMS` with its value."""
    status: dict[str, str]
    """Per fitted field: ``fitted``, ``at bound: ...`` or ``default: <why>``."""
    rel_stderr: dict[str, float]
    """Relative standard error of each fitted field (NaN when not estimated)."""
    residual_scale: float
    """Robust spread of the relative residuals after the fit (1.4826 × MAD)."""
    outliers: int
    """Rows whose relative residual exceeds 3 × ``residual_scale`` (the Huber loss gives
    them little weight)."""
    before_s: np.ndarray
    """Predicted seconds per row with the base parameters."""
    after_s: np.ndarray
    """Predicted seconds per row with the fitted parameters."""

    def cost_params(self, base: CostParams | None = None) -> CostParams:
        """``base`` with the fitted values, ``fidelity="calibrated"``."""
        return replace(base or CostParams(), **self.params, **NO_HOST_MODEL, fidelity="calibrated")


def _check_enough(m: Measurements) -> None:
    if len(m) < MIN_POINTS:
        raise ServesimError(
            f"only {len(m)} measured step(s); a fit needs at least {MIN_POINTS}",
            field="LOGS",
            fix="log more steps, covering prefill and decode batches of several sizes",
        )


def _fit_identified(
    dec: Decomposition, y: np.ndarray, theta0: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, dict[str, str]]:
    """(θ, residual scale, relative standard errors, status per field) of one decomposition.

    Fits every parameter, then drops the least identified one (it keeps its default) and
    fits again, until every free parameter carries enough of some step's time and is known
    to ±50%.
    """
    free = np.ones(len(theta0), dtype=bool)
    status: dict[str, str] = {}
    while True:
        theta, sigma = _robust_fit(dec, y, theta0, free)
        rel_se, influence = _uncertainty(dec, y, theta, theta0, free, sigma)
        bad = []
        for k in np.flatnonzero(free):
            name = FIT_PARAMS[k]
            if influence[k] < _MIN_INFLUENCE:
                why = f"too small to see: under {_MIN_INFLUENCE:.0%} of every step"
                bad.append((np.inf, k, why))
            elif rel_se[k] > _MAX_REL_SE:
                why = f"known only to ±{rel_se[k]:.0%}; the data cannot separate it"
                bad.append((rel_se[k], k, why))
            elif rel_se[k] > _WEAK_REL_SE:
                status[name] = f"weakly identified (±{rel_se[k]:.0%})"
            else:
                status[name] = "fitted"
        if not bad:
            break
        _, k, why = max(bad)
        free[k] = False
        status[FIT_PARAMS[k]] = f"default: {why}"
    for k in np.flatnonzero(free):
        if theta[k] <= _LO[k] + 1e-12:
            status[FIT_PARAMS[k]] = f"at bound: {'100% of peak' if k < _N_EFF else '0 s'}"
        elif theta[k] >= _HI[k]:
            status[FIT_PARAMS[k]] = "at bound: 1% of peak"
    return theta, sigma, rel_se, status


def _params(theta: np.ndarray, hw: Hardware, base: CostParams, half: float) -> dict[str, float]:
    """CostParams fields of θ plus the assumed ones (see :data:`FIXED_PARAMS`)."""
    launch = hw.kernel_launch_s if base.kernel_launch_s is None else base.kernel_launch_s
    return {
        "compute_efficiency": float(1.0 / theta[0]),
        "attention_efficiency": float(1.0 / theta[1]),
        "memory_efficiency": float(1.0 / theta[2]),
        "attention_memory_efficiency": float(1.0 / theta[3]),
        "step_overhead_s": float(theta[4]),
        "overhead_per_token_s": float(theta[5]),
        "kernel_launch_s": float(launch),
        "overhead_per_seq_s": float(base.overhead_per_seq_s),
        "gemm_half_tokens": float(half),
        "comm_efficiency": float(base.comm_efficiency),
    }


def fit_params(
    m: Measurements,
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    base: CostParams | None = None,
) -> FitResult:
    """Fit :data:`FIT_PARAMS` (and pick ``gemm_half_tokens``) to the measured rows of ``m``.

    ``base``: the parameters the fit starts from and reports "before" with (default
    ``CostParams()``). Raises ServesimError when there are fewer than :data:`MIN_POINTS` rows.
    """
    # NOTE: the fitted per-step and per-token overheads absorb the host time the logs saw;
    # the separate host model (overlapped with the GPU under CUDA graphs) would count it twice.
    base = replace(base or CostParams(), **NO_HOST_MODEL)
    _check_enough(m)
    y = m.seconds.astype(float)
    theta0 = initial_theta(hw, base)
    features = feature_matrix(build_step_cost(model, hw, par, unit_params(base)), m)
    fits = {}
    for half in sorted({base.gemm_half_tokens, *HALF_TOKENS_GRID}):
        dec = decompose(model, hw, par, replace(base, gemm_half_tokens=half), m, features)
        fits[half] = (*_fit_identified(dec, y, theta0), dec)
    ref_sigma = fits[base.gemm_half_tokens][1]

    def loss(h: float) -> float:
        theta, _, _, _, dec = fits[h]
        return float(_huber_rho((dec.predict(theta) - y) / y / ref_sigma).sum())

    # NOTE: keep the default curve unless another one is clearly better (5% lower loss):
    # the curve only shows in GEMMs near the compute/memory crossover.
    best = min(fits, key=loss)
    half = best if loss(best) < 0.95 * loss(base.gemm_half_tokens) else base.gemm_half_tokens
    theta, sigma, rel_se, status, _ = fits[half]
    status["gemm_half_tokens"] = (
        "fitted (grid)"
        if half != base.gemm_half_tokens
        else "default: the data do not prefer another"
    )
    params = _params(theta, hw, base, half)
    before = predict_seconds(m, model, hw, par, base, features)
    after = predict_seconds(m, model, hw, par, replace(base, **params), features)
    r = (after - y) / y
    return FitResult(
        params=params,
        status=status,
        rel_stderr={name: float(rel_se[k]) for k, name in enumerate(FIT_PARAMS)},
        residual_scale=sigma,
        outliers=int((np.abs(r) > _OUTLIER_K * sigma).sum()),
        before_s=before,
        after_s=after,
    )


def predict_seconds(
    m: Measurements,
    model: ModelSpec,
    hw: Hardware,
    par: Parallelism,
    params: CostParams,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """The cost model's seconds for every measured row (whole steps, or the timed operators)."""
    cost = build_step_cost(model, hw, par, params)
    f = feature_matrix(cost, m) if features is None else features
    comp, mem = cost.operator_sides_from_features(f)
    return (np.maximum(comp, mem) * op_masks(cost, m)).sum(axis=1)


def error_stats(predicted: np.ndarray, measured: np.ndarray, regime: np.ndarray) -> dict:
    """``{regime: {n, median_abs_pct, p90_abs_pct}}`` for each regime present and ``all``."""
    err = np.abs(predicted - measured) / measured * 100.0
    out = {}
    for name in ("all", *sorted(set(regime.tolist()))):
        sel = np.ones(len(err), dtype=bool) if name == "all" else regime == name
        if sel.any():
            out[name] = {
                "n": int(sel.sum()),
                "median_abs_pct": float(np.median(err[sel])),
                "p90_abs_pct": float(np.percentile(err[sel], 90)),
            }
    return out


def fit_quality(m: Measurements, fit: FitResult) -> dict:
    """Error of the base and the fitted model on ``m``: ``{"before": ..., "after": ...}``."""
    reg = regimes(m)
    return {
        "before": error_stats(fit.before_s, m.seconds, reg),
        "after": error_stats(fit.after_s, m.seconds, reg),
    }
