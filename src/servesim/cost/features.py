"""The step features: a batch reduced to a handful of sums, and how to compute them.

Every operator's FLOPs and bytes (``operators.py``) are linear in these features, so a step is
costed by reducing the batch to them once. They are sums over the batch rows (row i: ``n_i`` new
tokens, ``c_i`` tokens already cached):

==========  ==============================================================================
ONE         1 (constant terms: weights)
B           rows (sequences) in the step; the LM head and sampler run once per row
T           Σ n_i, tokens computed this step
T_A         tokens on MLA's weight-absorbed (decode) path (0 for non-MLA models): rows with
            at most ``absorb_max`` new tokens, or every row of a prompt step an engine runs
            absorbed (``prompt_absorb_below``)
T_R         T − T_A, tokens on the regular path
P           attention (query, key) pairs of full-attention layers on the regular path:
            Σ n_i·c_i + n_i(n_i+1)/2 (causal inside the chunk)
K           KV tokens read by a full-attention layer on the regular path: Σ c_i + n_i
P_A, K_A    the same for the rows on MLA's absorbed path
P_SW, K_SW  pairs and KV tokens of sliding-window layers (span capped at the window)
D_EXP       expected distinct routed experts hit per GPU in one MoE layer (balanced routing)
M_EXP       tokens each hit expert receives (the GEMM height of the expert kernels)
I_*         1 when B, T, T_A, T_R (respectively) is positive, else 0
T_MAX       tokens of the busiest attention-DP rank, ``max(T / dp, max_i n_i)`` (a row runs
            whole on one rank, so a long prompt chunk cannot be shared); 0 when dp = 1
==========  ==============================================================================

All features are sums of integers carried in float64, so they are exact up to 2^53 and the
vectorised decode span reproduces step-by-step features bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.cost.params import CostParams, Parallelism
from servesim.model import ModelSpec

FEATURES = (
    "ONE",
    "B",
    "T",
    "T_A",
    "T_R",
    "P",
    "K",
    "P_A",
    "K_A",
    "P_SW",
    "K_SW",
    "D_EXP",
    "M_EXP",
    "I_B",
    "I_T",
    "I_TA",
    "I_TR",
    "T_MAX",
)
(ONE, B, T, T_A, T_R, P, K, P_A, K_A, P_SW, K_SW, D_EXP, M_EXP, I_B, I_T, I_TA, I_TR,
 T_MAX) = range(len(FEATURES))  # fmt: skip
NUM_FEATURES = len(FEATURES)
INDICATOR = {B: I_B, T: I_T, T_A: I_TA, T_R: I_TR}
"""The 0/1 feature saying whether a count feature is positive: an operator's constant costs
(weight reads, kernel launches, tile padding) are charged on the indicator of its ``active``
feature, so an operator that does not run this step costs nothing."""


def sliding_layers(model: ModelSpec) -> int:
    """Layers that use a sliding window (0 when the model has none, or uses MLA)."""
    if model.sliding_window is None or model.mla is not None:
        return 0
    return min(model.num_sliding_layers, model.num_layers)


def expected_distinct_experts(tokens, num_experts: int, top_k: int):
    """Expected number of distinct experts hit when ``tokens`` tokens each pick ``top_k`` of
    ``num_experts`` experts uniformly at random (balanced routing): ``E·(1 − (1 − k/E)^T)``.

    Works on floats and numpy arrays.
    """
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


_COUNTS = [B, T, T_A, T_R, P, K, P_A, K_A, P_SW, K_SW, T_MAX]
"""Features that are sums over the batch's rows (they split with the rows)."""


@dataclass(frozen=True)
class FeatureMap:
    """What the features of a model depend on besides the batch."""

    window: float = 0.0
    """Sliding window in tokens; 0 when the model has no sliding-window layers."""
    absorb_max: float = -1.0
    """MLA rows with at most this many new tokens take the absorbed path; < 1: none do."""
    prompt_absorb_below: float = 0.0
    """MLA engines that pick one form per prompt step (``CostParams.mla_prompt_absorb_below``):
    a step with rows on the regular path runs every row absorbed when its rows' cached prefix
    per attention-DP rank is above 0 and below this; 0: no such rule."""
    prompt_prefix_floor: float = 0.0
    """Cached tokens each row counts at least in that test (``CostParams.
    mla_prompt_prefix_floor``)."""
    moe: tuple[float, float, float] | None = None
    """(routed experts, top-k, ep) when the model has MoE layers."""
    moe_load: float = 1.0
    """Pairs the busiest EP rank receives relative to the mean (``1 + moe_skew`` when
    ``ep > 1``): its experts are hit as if it saw ``moe_load × tokens`` tokens."""
    dp: float = 1.0
    """Attention data-parallel ranks: above 1, steps record ``T_MAX``."""

    @classmethod
    def for_model(cls, model: ModelSpec, par: Parallelism, params: CostParams) -> FeatureMap:
        moe = model.moe if model.num_moe_layers else None
        return cls(
            window=float(model.sliding_window) if sliding_layers(model) else 0.0,
            absorb_max=float(params.mla_absorb_max_new_tokens) if model.mla is not None else -1.0,
            prompt_absorb_below=(
                float(params.mla_prompt_absorb_below)
                if model.mla is not None and params.mla_prompt_absorb_below is not None
                else 0.0
            ),
            prompt_prefix_floor=float(params.mla_prompt_prefix_floor),
            moe=(float(moe.num_experts), float(moe.experts_per_token), float(par.ep))
            if moe
            else None,
            moe_load=1.0 + params.moe_skew if par.ep > 1 else 1.0,
            dp=float(par.dp),
        )

    def moe_features(self, tokens):
        """(distinct experts hit per GPU, tokens per hit expert) for ``tokens`` tokens (a float
        or an array): on the busiest GPU, which receives ``moe_load`` × its share of pairs."""
        assert self.moe is not None
        experts, k, ep = self.moe
        if np.ndim(tokens) == 0:  # the hot path: plain floats
            load = float(tokens) * self.moe_load
            hit = expected_distinct_experts(load, experts, k)
            return (0.0, 0.0) if hit <= 0.0 else (hit / ep, load * k / hit)
        load = np.asarray(tokens, dtype=np.float64) * self.moe_load
        hit = expected_distinct_experts(load, experts, k)
        safe = np.where(hit > 0.0, hit, 1.0)
        return hit / ep, np.where(hit > 0.0, load * k / safe, 0.0)

    def split(self, features: np.ndarray, parts: np.ndarray | float) -> np.ndarray:
        """Features of one of ``parts`` equal shares of a batch (a micro-batch, a DP rank).

        ``features`` has shape (..., NUM_FEATURES) with one step per row; ``parts`` >= 1 is a
        scalar or one value per row. Sums over rows (sequences, tokens, pairs, KV tokens) divide
        by ``parts``; the constant and the 0/1 indicators stay (each share runs every kernel and
        reads every weight); the expert features follow the share's tokens.
        """
        out = np.array(features, dtype=np.float64)
        parts = np.asarray(parts, dtype=np.float64)
        out[..., _COUNTS] /= parts[..., None] if parts.ndim else parts
        if self.moe is not None:
            out[..., D_EXP], out[..., M_EXP] = self.moe_features(out[..., T])
        return out

    def step(self, new_tokens: np.ndarray, context_lens: np.ndarray) -> np.ndarray:
        """Features of one step (1-D float array of ``NUM_FEATURES``); rows must be non-empty.

        Every feature is a sum over rows of a product of per-row columns, so the columns are
        stacked and one Gram product ``M @ M.T`` yields all the sums at once.
        """
        rows = len(new_tokens)
        window, absorb = self.window, self.absorb_max >= 1.0
        # Columns: n, c, 1, [min(c+n, w), min(c, w), min(c+n, w+n−1)], [absorbed, n·absorbed]
        m = np.empty((3 + (3 if window else 0) + (2 if absorb else 0), rows))
        n, c = m[0], m[1]
        n[:] = new_tokens
        c[:] = context_lens
        m[2] = 1.0
        if window:
            x = c + n
            np.minimum(x, window, out=m[3])
            np.minimum(c, window, out=m[4])
            np.minimum(x, n + (window - 1.0), out=m[5])
        if absorb:
            np.less_equal(n, self.absorb_max, out=m[-2])
            np.multiply(n, m[-2], out=m[-1])
        g = (m @ m.T).tolist()
        nn, nc, tokens = g[0][0], g[0][1], g[0][2]
        sum_c = g[1][2]
        f = np.zeros(NUM_FEATURES)
        f[ONE] = 1.0
        f[B] = rows
        f[T] = tokens
        f[I_B] = 1.0
        f[I_T] = 1.0 if tokens > 0 else 0.0
        # Every new token attends to the context and, causally, to the chunk up to itself:
        # pairs = Σ n·c + n(n+1)/2; the kernel reads each row's c + n cached tokens.
        pairs, kv = nc + 0.5 * (nn + tokens), sum_c + tokens
        if absorb:
            ga, gna = g[-2], g[-1]  # Σ over absorbed rows of (·) and of n·(·)
            t_a = gna[2]
            if t_a < tokens and self._absorbs_prompt_step(sum_c, rows):
                f[T_A], f[P_A], f[K_A] = tokens, pairs, kv
            else:
                f[T_A], f[P_A], f[K_A] = t_a, gna[1] + 0.5 * (gna[0] + t_a), ga[1] + t_a
            f[T_R], f[P], f[K] = tokens - f[T_A], pairs - f[P_A], kv - f[K_A]
        else:
            f[T_R], f[P], f[K] = tokens, pairs, kv
        f[I_TA] = 1.0 if f[T_A] > 0 else 0.0
        f[I_TR] = 1.0 if f[T_R] > 0 else 0.0
        if window:
            # Pairs of a row = S(c+n) − S(c), with S(x) = Σ_{q<=x} min(q, w) = m(m+1)/2 + (x−m)w
            # and m = min(x, w): query q attends to the last min(q, w) positions.
            (mx2, smx), (mc2, smc) = (g[3][3], g[3][2]), (g[4][4], g[4][2])
            f[P_SW] = (
                0.5 * (mx2 + smx)
                + window * (sum_c + tokens - smx)
                - 0.5 * (mc2 + smc)
                - window * (sum_c - smc)
            )
            # The chunk's first query reaches back w − 1 keys, its other n − 1 queries add one.
            f[K_SW] = g[5][2]
        if self.moe is not None:
            f[D_EXP], f[M_EXP] = self.moe_features(tokens)
        if self.dp > 1.0:
            f[T_MAX] = max(tokens / self.dp, float(new_tokens.max()))
        return f

    def _absorbs_prompt_step(self, cached: float, rows: int) -> bool:
        """Whether a step with prompt rows holding ``cached`` tokens of KV (Σ context) runs
        every row on MLA's absorbed path (:attr:`prompt_absorb_below`): its prefix per
        attention-DP rank, each row counting at least :attr:`prompt_prefix_floor`, is above 0
        and below the threshold. (``rows × floor`` also counts the floor for rows that have
        more context: a few tokens against a threshold of thousands.)"""
        if self.prompt_absorb_below <= 0.0:
            return False
        prefix = (cached + rows * self.prompt_prefix_floor) / self.dp
        return 0.0 < prefix < self.prompt_absorb_below

    def decode(self, context_lens: np.ndarray, num_steps: int, pad: int = 0) -> np.ndarray:
        """Features of ``num_steps`` decode steps, shape (num_steps, NUM_FEATURES): in step ``j``
        every row decodes one token with context ``context_lens + j``, and ``pad`` more rows
        (a CUDA graph's padding) one token over an empty context at every step, as
        :meth:`step` prices them one step at a time; rows must be non-empty."""
        c = np.asarray(context_lens, dtype=np.float64)
        real = float(c.shape[0])
        rows = real + pad
        j1 = np.arange(1, num_steps + 1, dtype=np.float64)  # j + 1
        # The columns that do not change from step to step, as one row broadcast down.
        absorbed = self.absorb_max >= 1.0
        first = [0.0] * NUM_FEATURES
        first[ONE] = first[I_B] = first[I_T] = 1.0
        first[B] = first[T] = rows
        if absorbed:
            first[T_A], first[I_TA] = rows, 1.0
        else:
            first[T_R], first[I_TR] = rows, 1.0
        if self.moe is not None:
            first[D_EXP], first[M_EXP] = self.moe_features(rows)
        if self.dp > 1.0:
            first[T_MAX] = max(rows / self.dp, 1.0)
        f = np.empty((num_steps, NUM_FEATURES))
        f[:] = first
        # A decode row attends to (and reads) its c + j + 1 keys; a padded row its one.
        span = np.add.reduce(c) + real * j1 + pad
        pairs, keys = (P_A, K_A) if absorbed else (P, K)
        f[:, pairs] = span
        f[:, keys] = span
        if self.window:
            w = self.window
            cs = np.sort(c)
            prefix = np.concatenate(([0.0], np.cumsum(cs)))
            # Rows with c + j + 1 <= w attend to all of it, the others to w keys.
            below = np.searchsorted(cs, w - j1, side="right")
            # (A padded row's one key is inside any window.)
            windowed = prefix[below] + below * j1 + (real - below) * w + pad
            f[:, P_SW] = windowed
            f[:, K_SW] = windowed
        return f
