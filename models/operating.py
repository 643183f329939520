r"""Operating characteristics of a Bayesian decision rule: how often "recommend if
P(HR < T) > level" recommends, over simulated evidence bases shaped like the input, for the
design-bias model, the naive all-studies pool and the randomised studies alone.

Simulation. Each replicate keeps the input's standard errors and designs and draws

.. math::

    y_i = \log \mathrm{HR} + nr_i \log b + \sqrt{\tau_0^2 + nr_i\,\sigma_b^2 + s_i^2}\; z_i,
    \qquad z_i \sim N(0, 1),

(true randomised HR, between-study SD ``tau_0``, non-randomised studies biased by a factor
``b`` on the HR scale with study-to-study SD ``sigma_b`` on the log scale): the same
distribution as the sum of three independent normal terms, from one normal draw per study.
Replicate ``r`` of scenario ``s`` draws from ``numpy.random.Generator(SFC64(SeedSequence(seed,
spawn_key=(s, r))))`` (the ``r``-th child of the ``s``-th child of the root seed; SFC64 draws
normals ~1.5x faster than the default PCG64), so its data do not depend on how the replicates
are split into jobs, workers or machines.

Analysis: the exact engine's model (:mod:`synthesis.models.exact`) batched over datasets. For
a fixed design (``X``, the SEs, the priors) and a fixed tau grid everything but two sums is
independent of ``y``: with ``W_g = V_{tau_g}^{-1}`` and ``P_g = X'W_gX + S_0^{-1}``,

.. math::

    \hat b_{ng} = P_g^{-1} r_{ng}, \quad r_{ng} = X'W_g y_n + S_0^{-1} m_0, \qquad
    -2 \log p(y_n \mid \tau_g) = \text{const}_g + y_n'W_gy_n + m_0'S_0^{-1}m_0 - r_{ng}'\hat b_{ng},

so ``N`` datasets cost a few matrix products ``(N, k) x (k, G)`` and per-node ``p x p``
algebra: the engine's conjugate update and marginal likelihood (its docstring) in the
``b``-minimised form of the quadratic. ``P(HR < T) = sum_g w_ng Phi((log T - b_mu,ng) / sd_mu,g)``.

The tau grid of each (scenario, analysis) is a function of the scenario's truth and the design
only (:func:`simulation_grid`): it covers where the *expected* log posterior of tau under the
truth,

.. math::

    \bar\ell(\tau) = \log p(\tau) - \tfrac12 \Big(\log|V_\tau| + \log|P_\tau| + \log|S_0|
    + \mathrm{E}\,y'W_\tau y + m_0'S_0^{-1}m_0 - \bar r'P_\tau^{-1}\bar r
    - \mathrm{tr}\,P_\tau^{-1}X'W_\tau D W_\tau X\Big),

(``y ~ N(m, D)`` the truth, ``r-bar = X'W m + S_0^{-1} m_0``; closed form), is within
:data:`FOCUS_LOG_DROP` of its maximum: about 14 posterior SDs either side of where the
datasets' posteriors concentrate when k is large (the whole prior range when k is small), with
nodes :data:`NODES_PER_SD` per SD of that expected posterior (trapezoidal rule in
``u = asinh(tau / c)``: spectrally accurate for the smooth integrand, which is negligible at an
interior grid end and even in ``u`` at ``tau = 0``; Gregory's end weights at a bound of the
prior's support, where the posterior can pile up). At k = 100,000 that is about 60 nodes where
a fixed grid would need thousands; small designs get up to :data:`SIM_GRID` nodes
(:data:`SIM_GRID_CELLS`). A dataset whose posterior nevertheless puts weight above
:data:`GRID_END_WEIGHT` on an end node inside the prior's support is re-analysed on its own
adaptive grid by :func:`~synthesis.models.exact.exact_posterior` (a note counts them).
tests/test_simulate.py compares the batched engine with
:func:`~synthesis.models.exact.fit_exact` per dataset (within 1e-13 at k = 100,000).

Work and memory. Jobs are :data:`CHUNK` replicates of one scenario; a job analyses them in
batches of :func:`batch_size` (a function of k), so every replicate's arithmetic is the same
however the jobs are spread over workers. The engines hold the studies randomised first
(``X'W y`` is then one product per design group); the design-level work and the grid weights
are built once per process and shared by the scenarios that share a grid.

The naive pool is the random-effects model on all studies (every study estimates mu); the
RCT-only analysis is the random-effects model on the randomised studies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special
from threadpoolctl import threadpool_limits

from synthesis.errors import InputError
from synthesis.models.exact import _design, _prior_points, exact_posterior
from synthesis.models.preposterior import RULE_LEVEL, RULE_THRESHOLD
from synthesis.models.spec import ModelData, ModelSpec

#: The three analyses of every simulated evidence base.
ANALYSES: tuple[str, ...] = ("bias", "naive", "rct_only")
#: Most nodes of a simulation tau grid (the small-k case, where the grid spans the prior's range).
SIM_GRID = 401
#: ... and at least SIM_GRID_CELLS / k of them (up to SIM_GRID): small designs are cheap, and a
#: fine grid there keeps the batched engine within 1e-6 of fit_exact whatever the dataset.
SIM_GRID_CELLS = 400_000
#: Fewest nodes of a simulation tau grid.
MIN_GRID = 33
#: Nodes per SD of the expected posterior of tau (trapezoidal rule: with one node per SD the
#: rule's error on a normal density is exp(-2 pi^2) ~ 3e-9; two leave room for skewed shapes).
NODES_PER_SD = 2.0
#: The grid spans where the expected log posterior is within this of its maximum: +/- 14 SDs
#: of a normal, room for a dataset's posterior to sit 7 SDs from the expected one before its
#: weight at an end node reaches GRID_END_WEIGHT. Measured on 200 datasets of each default
#: scenario at k = 100,000 (benchmarks/bench_scale.py's design): the datasets' posterior means
#: of tau spread 0.5 to 1.3 posterior SDs, none came nearer than 6.4 SDs to a grid end (8.5 to
#: an open one), the largest end-node weight was 8e-18.
FOCUS_LOG_DROP = 100.0
#: The "core" of the expected posterior, which sets the node spacing (+/- 2 SDs of a normal).
CORE_LOG_DROP = 2.0
#: Nodes of each round of locating the expected posterior (zooming until its support spans at
#: least half of them), and the most rounds.
LOCATE_NODES = 257
LOCATE_ROUNDS = 12
#: Quantile bins per design group that stand in for the studies' SEs when locating (each bin a
#: two-point rule matching its count, mean and variance of s^2): locating costs O(bins), not O(k).
LOCATE_BINS = 512
#: The tau grid ends where the tau prior's upper tail mass is this small (and at least at
#: SIM_TAU_SE_FACTOR x the largest SE).
SIM_PRIOR_TAIL = 1e-12
SIM_TAU_SE_FACTOR = 10.0
#: ... and never beyond this (heavy-tailed priors: the datasets then decide, and those whose
#: posterior reaches the end are re-analysed on their own grid).
SIM_TAU_CAP = 20.0
#: A dataset's tau posterior "reaches an end of the grid" when an end node's weight exceeds
#: this (the lower end only where the grid starts above the prior's support).
GRID_END_WEIGHT = 1e-9
#: Replicates per job: fixed, so the arithmetic of every replicate is the same whatever the
#: number of workers (1, 2, a Dask cluster).
CHUNK = 500
#: A job analyses its replicates in batches of at most BATCH_CELLS / k (and CHUNK): a function of
#: k only, for the same reason. A batch's (N, k) arrays then stay under 24 MB, which the
#: allocator reuses from batch to batch (larger ones are mapped afresh, page by page).
BATCH_CELLS = 3_000_000
#: Default grid of truths: true randomised HR, bias factor b (HR scale) and bias SD (log scale).
DEFAULT_TRUE_HRS: tuple[float, ...] = (1.0, 0.8)
DEFAULT_BIAS_MEANS: tuple[float, ...] = (1.0, 0.8, 0.65)
DEFAULT_BIAS_SDS: tuple[float, ...] = (0.05, 0.2)
DEFAULT_N_SIM = 1000


def batch_size(k: int) -> int:
    """Replicates analysed together for ``k`` studies.

    Examples
    --------
    >>> batch_size(17), batch_size(100_000), batch_size(10**9)
    (500, 30, 1)
    """
    return max(1, min(CHUNK, BATCH_CELLS // max(int(k), 1)))


@dataclass(frozen=True)
class Scenario:
    """One truth: true randomised HR, bias factor b (HR scale), bias SD (log scale)."""

    true_hr: float
    bias_mean: float
    bias_sd: float


@dataclass(frozen=True)
class Truth:
    """The simulated log HRs of a scenario by design group (0: randomised, 1: not):
    ``y_i ~ N(mean[g], extra[g] + s_i^2)``."""

    mean: tuple[float, float]
    extra: tuple[float, float]

    @classmethod
    def of(cls, scenario: Scenario, tau: float) -> Truth:
        """The truth of ``scenario`` with between-study SD ``tau``.

        Examples
        --------
        >>> t = Truth.of(Scenario(1.0, math.e, 0.5), 0.1)
        >>> t.mean, tuple(round(v, 4) for v in t.extra)
        ((0.0, 1.0), (0.01, 0.26))
        """
        mu = math.log(scenario.true_hr)
        return cls(mean=(mu, mu + math.log(scenario.bias_mean)),
                   extra=(tau * tau, tau * tau + scenario.bias_sd**2))

    @property
    def spread(self) -> float:
        """An upper bound on the between-study SD any analysis can see: sqrt(largest extra
        variance + squared difference of the group means)."""
        return math.sqrt(max(self.extra) + (self.mean[1] - self.mean[0]) ** 2)


@dataclass(frozen=True)
class _Groups:
    """Studies by design group (randomised first: the engines' column order), with the row of
    ``X`` each group shares (the simulated analyses have no covariates)."""

    slices: tuple[slice, ...]  # column ranges of each group present
    index: tuple[int, ...]  # 0 randomised, 1 non-randomised, per slice
    rows: np.ndarray  # (len(slices), p)


def _groups(X: np.ndarray, nonrandomised: np.ndarray) -> _Groups:
    nr = np.asarray(nonrandomised, dtype=bool)
    if nr.size and np.any(np.diff(nr.astype(int)) < 0):
        raise ValueError("studies must be ordered randomised first")
    kr = int((~nr).sum())
    slices, index, rows = [], [], []
    for g, sl in ((0, slice(0, kr)), (1, slice(kr, nr.size))):
        if sl.stop > sl.start:
            block = X[sl]
            if block.size and np.ptp(block, axis=0).max() > 0:
                raise ValueError("the rows of X must be the same within a design group")
            slices.append(sl)
            index.append(g)
            rows.append(block[0] if block.size else np.zeros(X.shape[1]))
    return _Groups(tuple(slices), tuple(index), np.array(rows).reshape(len(rows), X.shape[1]))


@dataclass(frozen=True)
class BatchedExact:
    """The exact engine's posterior of mu for many datasets that share one design and tau grid.

    The studies are ordered randomised first (:func:`_groups`): ``X'W y`` is a sum over the
    design groups of one matrix product each, and ``y'W y`` one product over all studies.
    """

    data: ModelData
    spec: ModelSpec
    tau: np.ndarray  # (G,)
    W: np.ndarray  # (G, k) 1 / (s^2 + tau_g^2)
    groups: _Groups
    cov: np.ndarray  # (G, p, p) P_g^{-1}
    const: np.ndarray  # (G,) log prior + log quadrature weight - 0.5 (log|V| + log|S0| + log|P|)
    prior_rhs: np.ndarray  # (p,) S0^{-1} m0
    prior_quad: float  # m0' S0^{-1} m0
    mu_index: int
    #: Whether the first / last node is an end the posterior can reach (inside the prior's support).
    open_below: bool
    open_above: bool

    @classmethod
    def build(cls, data: ModelData, spec: ModelSpec, tau: np.ndarray, qweights: np.ndarray, d: Any = None) -> BatchedExact:
        """The engine of ``spec`` on ``data`` (randomised studies first) on the grid ``tau``
        (``d``: the exact engine's design of ``data`` and ``spec``, if already made)."""
        d = _design(data, spec) if d is None else d
        if d.layout is not None or d.mu_index is None:
            raise InputError("simulate analyses the additive and downweight bias variants and re, with an effect")
        X = d.X
        groups = _groups(X, data.nonrandomised)
        tau = np.asarray(tau, dtype=float)
        W, log_det_v = _weights(d.s2, tau)
        p = X.shape[1]
        prec0 = 1.0 / d.s0**2
        # X'WX from the group sums of W (rows of X are constant within a group)
        xwx = sum(W[:, sl].sum(axis=1)[:, None, None] * np.outer(row, row)[None] for sl, row in zip(groups.slices, groups.rows, strict=True))
        P = xwx + np.diag(prec0)[None, :, :]
        sign, logdet_p = np.linalg.slogdet(P)
        with np.errstate(divide="ignore"):
            log_prior = spec.priors.tau.logpdf(tau) if spec.heterogeneity else np.zeros(tau.size)
            log_q = np.log(qweights)
        const = log_prior + log_q - 0.5 * (log_det_v + np.log(d.s0**2).sum() + logdet_p)
        assert p == d.m0.size and (sign > 0).all()
        support = _prior_points(spec.priors.tau)[[0, 3]] if spec.heterogeneity else np.zeros(2)
        varies = bool(spec.heterogeneity and tau.size > 1)
        return cls(data=data, spec=spec, tau=tau, W=W, groups=groups, cov=np.linalg.inv(P), const=const,
                   prior_rhs=prec0 * d.m0, prior_quad=float(d.m0 @ (prec0 * d.m0)), mu_index=d.mu_index,
                   open_below=varies and tau[0] > support[0], open_above=varies and tau[-1] < support[1])

    def posterior(self, Y: np.ndarray, Y2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Node weights (N, G) and conditional means of mu (N, G) for datasets ``Y`` (N, k)
        (studies ordered as the engine's; ``Y2`` = ``Y * Y`` if already computed)."""
        Y = np.atleast_2d(Y)
        Y2 = Y * Y if Y2 is None else Y2
        p = self.cov.shape[1]
        # X'W y: one product per design group (or one over all studies when the rows agree)
        if len(self.groups.slices) > 1 and not np.all(self.groups.rows == self.groups.rows[0]):
            parts = [(Y[:, sl] @ self.W[:, sl].T, row) for sl, row in zip(self.groups.slices, self.groups.rows, strict=True)]
        else:
            parts = [(Y @ self.W.T, self.groups.rows[0])]
        r = [sum(row[j] * part for part, row in parts if row[j] != 0.0) + self.prior_rhs[j] for j in range(p)]
        r = [np.broadcast_to(v, (Y.shape[0], self.tau.size)) if np.ndim(v) < 2 else v for v in r]
        quad = Y2 @ self.W.T + self.prior_quad
        b_mu = np.zeros_like(quad)
        for i in range(p):  # p is 1 or 2: explicit sums beat einsum over (N, G, p, p)
            b_i = sum(self.cov[None, :, i, j] * r[j] for j in range(p))
            quad -= r[i] * b_i
            if i == self.mu_index:
                b_mu = b_i
        logw = self.const[None, :] - 0.5 * quad
        logw -= logw.max(axis=1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=1, keepdims=True)
        return w, b_mu

    def p_below(self, Y: np.ndarray, threshold: float, Y2: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """P(HR < threshold) per dataset, and how many datasets were re-analysed on their own
        grid by :func:`~synthesis.models.exact.exact_posterior` (their posterior of tau put
        more than :data:`GRID_END_WEIGHT` on an end node)."""
        Y = np.atleast_2d(Y)
        w, m = self.posterior(Y, Y2)
        sd = np.sqrt(self.cov[:, self.mu_index, self.mu_index])
        log_t = math.log(threshold)
        p = np.einsum("ng,ng->n", w, special.ndtr((log_t - m) / sd[None, :]))
        end = np.zeros(p.size, dtype=bool)  # tau fixed at 0, or a prior's bound: no end to reach
        if self.open_above:
            end |= w[:, -1] > GRID_END_WEIGHT
        if self.open_below:
            end |= w[:, 0] > GRID_END_WEIGHT
        for n in np.flatnonzero(end):
            post = exact_posterior(replace(self.data, y=np.array(Y[n], dtype=float)), self.spec)
            mu = post.cond.b_mean[:, self.mu_index]
            sd_n = np.sqrt(post.cond.b_cov[:, self.mu_index, self.mu_index])
            p[n] = float(post.weights @ special.ndtr((log_t - mu) / sd_n))
        return p, int(end.sum())


#: Per process, the most bytes of grid weights W kept for reuse: scenarios that share a grid
#: (the design-bias model's depends on the bias SD only, the RCTs' on tau only) and the
#: design-bias model and naive pool on one grid share them. A cache: results do not depend on it.
WEIGHTS_CACHE_BYTES = 256 * 2**20
_WEIGHTS: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray]] = {}


def _weights(s2: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W = 1 / (s^2 + tau_g^2)`` (G, k), read-only, and ``log|V_g|`` (G,), from the process's
    cache when already computed (least recently used first out beyond WEIGHTS_CACHE_BYTES)."""
    key = (s2.tobytes(), tau.tobytes())
    hit = _WEIGHTS.pop(key, None)
    if hit is None:
        W = np.empty((tau.size, s2.size))
        log_det_v = np.empty(tau.size)
        rows = max(1, BATCH_CELLS // max(s2.size, 1))
        for i in range(0, tau.size, rows):  # blocks of nodes: no temporary of the size of W
            v = np.add(s2[None, :], (tau[i : i + rows] ** 2)[:, None], out=W[i : i + rows])
            log_det_v[i : i + rows] = np.log(v).sum(axis=1)
            np.reciprocal(v, out=v)
        W.flags.writeable = False
        hit = (W, log_det_v)
    _WEIGHTS[key] = hit  # most recently used last
    while sum(w.nbytes for w, _ in _WEIGHTS.values()) > WEIGHTS_CACHE_BYTES and len(_WEIGHTS) > 1:
        del _WEIGHTS[next(iter(_WEIGHTS))]
    return hit


# --------------------------------------------------------------------------------------------
# The tau grid of a scenario
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Compressed:
    """A design's studies for the expected log posterior: per design group, LOCATE_BINS
    quantile bins of s^2, each a two-point rule (mean +/- SD of its s^2, half its count each)."""

    se2: np.ndarray  # (M,) true sampling variances
    s2: np.ndarray  # (M,) the model's variances (downweight: s^2 / alpha for non-randomised)
    count: np.ndarray  # (M,)
    group: np.ndarray  # (M,) 0 / 1
    rows: np.ndarray  # (2, p) X row of each group (zeros for an absent group)
    m0: np.ndarray
    s0: np.ndarray

    @classmethod
    def of(cls, data: ModelData, d: Any) -> _Compressed:
        se2_all = np.asarray(data.se, dtype=float) ** 2
        nr = np.asarray(data.nonrandomised, dtype=bool)
        se2, s2, count, group = [], [], [], []
        rows = np.zeros((2, d.X.shape[1]))
        for g in (0, 1):
            mask = nr == bool(g)
            if not mask.any():
                continue
            rows[g] = d.X[mask][0]
            x = np.sort(se2_all[mask])
            ratio = float(np.median(d.s2[mask] / se2_all[mask]))  # 1, or 1 / alpha
            bins = min(LOCATE_BINS, x.size)
            starts = (np.arange(bins) * x.size) // bins
            n = np.diff(np.append(starts, x.size)).astype(float)
            mean = np.add.reduceat(x, starts) / n
            sd = np.sqrt(np.maximum(np.add.reduceat((x - np.repeat(mean, n.astype(int))) ** 2, starts) / n, 0.0))
            nodes = np.concatenate([mean - sd, mean + sd])
            se2.append(nodes)
            s2.append(nodes * ratio)
            count.append(np.concatenate([0.5 * n, 0.5 * n]))
            group.append(np.full(nodes.size, g))
        return cls(np.concatenate(se2), np.concatenate(s2), np.concatenate(count), np.concatenate(group), rows, d.m0, d.s0)

    def expected_loglik(self, tau: np.ndarray, truth: Truth) -> np.ndarray:
        """E log p(y | tau) under the truth (up to a constant; module docstring)."""
        tau = np.asarray(tau, dtype=float)
        V = self.s2[None, :] + (tau * tau)[:, None]
        W = 1.0 / V
        W2 = W * W
        p = self.rows.shape[1]
        prec0 = 1.0 / self.s0**2
        xwx = np.zeros((tau.size, p, p))
        cov_r = np.zeros((tau.size, p, p))
        xwm = np.zeros((tau.size, p))
        eywy = np.zeros(tau.size)
        for g in (0, 1):
            c = self.count * (self.group == g)
            if not c.any():
                continue
            s1, s2, t1, t2 = W @ c, W2 @ c, W @ (c * self.se2), W2 @ (c * self.se2)
            outer = np.outer(self.rows[g], self.rows[g])[None]
            xwx += s1[:, None, None] * outer
            cov_r += (s2 * truth.extra[g] + t2)[:, None, None] * outer
            xwm += (s1 * truth.mean[g])[:, None] * self.rows[g][None, :]
            eywy += s1 * (truth.mean[g] ** 2 + truth.extra[g]) + t1
        P = xwx + np.diag(prec0)[None]
        Pinv = np.linalg.inv(P)
        rbar = xwm + prec0 * self.m0
        quad = (eywy + float(self.m0 @ (prec0 * self.m0)) - np.einsum("gi,gij,gj->g", rbar, Pinv, rbar)
                - np.einsum("gij,gji->g", Pinv, cov_r))
        return -0.5 * (np.log(V) @ self.count + np.linalg.slogdet(P)[1] + quad)


def _u_nodes(lo: float, hi: float, c: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` nodes uniform in ``u = asinh(tau / c)`` from ``lo`` to ``hi``: (tau, u)."""
    u = np.linspace(math.asinh(lo / c), math.asinh(hi / c), n)
    tau = np.clip(c * np.sinh(u), lo, hi)
    tau[0], tau[-1] = lo, hi
    return tau, u


#: Gregory's end weights (exact for cubics): an end where the integrand neither vanishes nor is
#: even in u (the lower bound of a prior such as uniform(0.1, 2), where the posterior can pile up).
GREGORY_END = (3.0 / 8.0, 7.0 / 6.0, 23.0 / 24.0)


def _trapezoid_grid(lo: float, hi: float, c: float, n: int, hard_below: bool = False,
                    hard_above: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and trapezoidal weights in tau (uniform in ``u = asinh(tau / c)``, Jacobian
    ``c cosh u``); with ``hard_below`` / ``hard_above``, Gregory's weights at that end (O(h^4)).

    Examples
    --------
    Both rules integrate the half-normal density (even in u at 0, negligible at 8 SDs) to 1,
    and Gregory's integrates the density of tau - 1 on [1, 9] too:

    >>> from scipy import stats
    >>> tau, q = _trapezoid_grid(0.0, 8.0, 0.5, 65)
    >>> round(float(q @ stats.halfnorm.pdf(tau)), 12)
    1.0
    >>> tau, q = _trapezoid_grid(1.0, 9.0, 0.5, 65, hard_below=True)
    >>> round(float(q @ stats.halfnorm.pdf(tau - 1.0)), 6)
    1.0
    """
    tau, u = _u_nodes(lo, hi, c, n)
    q = np.full(n, (u[-1] - u[0]) / (n - 1)) * c * np.cosh(u)
    q[0] *= 0.5
    q[-1] *= 0.5
    fix = np.array(GREGORY_END) / np.array([0.5, 1.0, 1.0])
    if hard_below:
        q[:3] *= fix
    if hard_above:
        q[-3:] *= fix[::-1]
    return tau, q


def _tau_range(data: ModelData, spec: ModelSpec) -> tuple[float, float, float]:
    """The widest tau range of a simulation grid and the default ``c``: from the prior's support
    to where its upper tail is SIM_PRIOR_TAIL (at least SIM_TAU_SE_FACTOR x the largest SE, at
    most SIM_TAU_CAP, never beyond the support); ``c`` is 5% of the median SE."""
    se = np.asarray(data.se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = float(spec.priors.tau.ppf(np.array([1.0 - SIM_PRIOR_TAIL]))[0])
    hi = min(max(tail if math.isfinite(tail) else SIM_TAU_CAP, SIM_TAU_SE_FACTOR * float(se.max())), SIM_TAU_CAP)
    lo, top = (float(v) for v in _prior_points(spec.priors.tau)[[0, 3]])
    return lo, max(min(hi, top), lo + 1e-12), 0.05 * float(np.median(se))


def simulation_grid(data: ModelData, spec: ModelSpec, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """The tau grid of one (scenario, analysis): nodes and quadrature weights in tau; ``(0, 1)``
    -> one node at 0 when tau is fixed at 0 (see the module docstring for the rule).

    A function of the truth, the design (SEs, designs, priors) only, never of simulated data.

    Examples
    --------
    At k = 17 the grid spans the prior's range; at k = 20,000 it is a narrow window around the
    tau the datasets estimate (here the naive pool's, sqrt(0.4 x 0.6) x |log 0.7| ~ 0.17):

    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> truth = Truth.of(Scenario(1.0, 0.7, 0.0), 0.0)
    >>> tau, q = simulation_grid(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec, truth)
    >>> tau.size, float(tau[0]), round(float(tau[-1]), 2)
    (401, 0.0, 4.43)
    >>> rng = np.random.default_rng(1)
    >>> k = 20_000
    >>> big = ModelData(studies=("s",) * k, y=np.zeros(k), se=rng.uniform(0.05, 0.5, k), nonrandomised=np.arange(k) % 5 >= 2,
    ...                 designs=("rct",) * k, covariates=(), x=np.zeros((k, 0)), centres=np.zeros(0))
    >>> tau, q = simulation_grid(big, spec, truth)
    >>> tau.size < 80, 0.14 < float(tau[0]) < float(tau[-1]) < 0.21
    (True, True)
    """
    return _Prepared.of(data, spec).grid(truth)


@dataclass(frozen=True)
class _Prepared:
    """One analysis of a design before any truth: its data, the exact engine's design, the
    compressed studies and the widest tau range (built once per process, shared by scenarios)."""

    data: ModelData
    spec: ModelSpec
    design: Any
    compressed: _Compressed
    tau_range: tuple[float, float, float]

    @classmethod
    def of(cls, data: ModelData, spec: ModelSpec) -> _Prepared:
        d = _design(data, spec)
        return cls(data, spec, d, _Compressed.of(data, d), _tau_range(data, spec))

    def grid(self, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
        """:func:`simulation_grid` of this analysis."""
        if not self.spec.heterogeneity:
            return np.zeros(1), np.ones(1)
        return _focused_grid(self.compressed, self.spec.priors.tau, self.tau_range, self.data.k, truth)

    def engine(self, truth: Truth) -> BatchedExact:
        return BatchedExact.build(self.data, self.spec, *self.grid(truth), d=self.design)


def _focused_grid(comp: _Compressed, prior: Any, tau_range: tuple[float, float, float], k: int,
                  truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """Locate the expected posterior of tau (zooming in until its support spans at least half of
    LOCATE_NODES nodes) and place the grid on it (module docstring)."""
    lo_s, hi_s, c0 = tau_range
    top = float(_prior_points(prior)[3])  # the support's upper end (inf if none)
    hi_s = min(max(hi_s, SIM_TAU_SE_FACTOR * truth.spread), top)  # a truth beyond the prior's range

    def log_post(tau: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = comp.expected_loglik(tau, truth) + prior.logpdf(tau)
        return np.where(np.isfinite(v), v, -np.inf)

    lo, hi, c = lo_s, hi_s, c0
    for _ in range(LOCATE_ROUNDS):
        tau, _u = _u_nodes(lo, hi, c, LOCATE_NODES)
        v = log_post(tau)
        if not np.isfinite(v).any():  # nothing to focus on: the whole range
            return _trapezoid_grid(lo_s, hi_s, c0, SIM_GRID, hard_below=lo_s > 0.0, hard_above=hi_s == top)
        top = float(v.max())
        keep = np.flatnonzero(v >= top - FOCUS_LOG_DROP)
        core = np.flatnonzero(v >= top - CORE_LOG_DROP)
        i0, i1 = max(keep[0] - 1, 0), min(keep[-1] + 1, tau.size - 1)
        new_lo = float(tau[i0]) if i0 > 0 else lo
        new_hi = float(tau[i1]) if i1 < tau.size - 1 else hi
        # the core's inner ends (its width sets the spacing) and the node above it (sets c)
        core_lo, core_hi, core_out = float(tau[core[0]]), float(tau[core[-1]]), float(tau[min(core[-1] + 1, tau.size - 1)])
        if i1 - i0 >= LOCATE_NODES // 2:
            break
        lo, hi = new_lo, new_hi
        c = lo if lo > 0.0 else min(c, 0.5 * core_out)
    lo, hi = new_lo, new_hi
    c = lo if lo > 0.0 else max(min(c0, 0.5 * core_out), 1e-12 * hi)
    u_lo, u_hi = math.asinh(lo / c), math.asinh(hi / c)
    sd_u = (math.asinh(core_hi / c) - math.asinh(core_lo / c)) / 4.0
    if sd_u <= 0.0:  # a one-node core: the finest grid allowed
        sd_u = 1e-300
    n = int(math.ceil(NODES_PER_SD * (u_hi - u_lo) / sd_u)) + 1
    n = min(max(n, MIN_GRID, min(SIM_GRID, SIM_GRID_CELLS // max(k, 1))), SIM_GRID)
    return _trapezoid_grid(lo, hi, c, n, hard_below=0.0 < lo_s == lo, hard_above=hi == top)


def _subset(data: ModelData, mask: np.ndarray | slice) -> ModelData:
    """The studies ``mask`` selects (a boolean mask, or a slice / index array: in that order)."""
    idx = np.flatnonzero(mask) if isinstance(mask, np.ndarray) and mask.dtype == bool else np.arange(data.k)[mask]
    return replace(
        data,
        studies=tuple(data.studies[i] for i in idx),
        y=np.asarray(data.y)[idx], se=np.asarray(data.se)[idx], nonrandomised=np.asarray(data.nonrandomised)[idx],
        designs=tuple(data.designs[i] for i in idx),
        x=np.asarray(data.x)[idx],
        clusters=tuple(data.clusters[i] for i in idx) if data.clusters else data.clusters,
    )


@dataclass(frozen=True)
class _Layout:
    """A design's three analyses before any truth (:class:`_Prepared`), studies randomised first."""

    prepared: dict[str, _Prepared]
    order: np.ndarray  # (k,) engine column j is input study order[j]
    n_rct: int

    @classmethod
    def of(cls, data: ModelData, spec: ModelSpec) -> _Layout:
        rct = ~np.asarray(data.nonrandomised, dtype=bool)
        if rct.all() or not rct.any():
            raise InputError(
                "simulate needs both randomised and non-randomised studies (it compares the "
                "design-bias model with the naive pool and the randomised studies alone)"
            )
        order = np.argsort(~rct, kind="stable")
        n_rct = int(rct.sum())
        sorted_data = _subset(data, order)
        bias_spec = replace(spec, model="bias", covariates=())
        re_spec = replace(spec, model="re", covariates=())
        prepared = {
            name: _Prepared.of(dt, sp)
            for name, sp, dt in (("bias", bias_spec, sorted_data), ("naive", re_spec, sorted_data),
                                 ("rct_only", re_spec, _subset(sorted_data, slice(0, n_rct))))
        }
        return cls(prepared=prepared, order=order, n_rct=n_rct)


@dataclass(frozen=True)
class Analyses:
    """The three batched analyses of a design under one truth: bias model, naive pool, RCT
    only, each on its own tau grid (:func:`simulation_grid`). The engines hold the studies
    randomised first (``order``); :meth:`p_below` takes datasets in the input's study order."""

    engines: dict[str, BatchedExact]
    order: np.ndarray  # (k,) engine column j is input study order[j]
    n_rct: int

    @classmethod
    def build(cls, data: ModelData, spec: ModelSpec, truth: Truth) -> Analyses:
        return cls.of(_Layout.of(data, spec), truth)

    @classmethod
    def of(cls, layout: _Layout, truth: Truth) -> Analyses:
        engines = {name: prep.engine(truth) for name, prep in layout.prepared.items()}
        return cls(engines=engines, order=layout.order, n_rct=layout.n_rct)

    def p_below_ordered(self, Y: np.ndarray, threshold: float) -> dict[str, tuple[np.ndarray, int]]:
        """P(HR < threshold) and re-analysed datasets per analysis, for ``Y`` (N, k) in the
        engines' study order (randomised first)."""
        Y2 = Y * Y
        out = {}
        for name, eng in self.engines.items():
            if name == "rct_only":
                out[name] = eng.p_below(Y[:, : self.n_rct], threshold, Y2[:, : self.n_rct])
            else:
                out[name] = eng.p_below(Y, threshold, Y2)
        return out

    def p_below(self, Y: np.ndarray, threshold: float) -> dict[str, tuple[np.ndarray, int]]:
        """As :meth:`p_below_ordered` for ``Y`` (N, k) in the input's study order."""
        return self.p_below_ordered(np.atleast_2d(Y)[:, self.order], threshold)


def simulate_data(
    scenario: Scenario, index: int, replicates: range, se: np.ndarray, nonrandomised: np.ndarray,
    *, tau: float, seed: int, order: np.ndarray | None = None,
) -> np.ndarray:
    """Simulated log HRs (len(replicates), k) of scenario number ``index``: replicate ``r`` from
    ``Generator(SFC64(SeedSequence(seed, spawn_key=(index, r))))``, one standard normal per study
    (see the module docstring); columns in the order ``order`` of the studies (default: theirs).

    Examples
    --------
    Replicate 3's data are the same whether drawn alone or with others:

    >>> sc = Scenario(1.0, 0.8, 0.1)
    >>> se, nr = np.array([0.1, 0.2, 0.3]), np.array([False, True, True])
    >>> a = simulate_data(sc, 0, range(0, 5), se, nr, tau=0.0, seed=1)
    >>> b = simulate_data(sc, 0, range(3, 4), se, nr, tau=0.0, seed=1)
    >>> bool(np.array_equal(a[3], b[0]))
    True
    """
    se = np.asarray(se, dtype=float)
    nr = np.asarray(nonrandomised, dtype=float)
    mean = math.log(scenario.true_hr) + nr * math.log(scenario.bias_mean)
    sd = np.sqrt(tau * tau + nr * scenario.bias_sd**2 + se * se)
    if order is not None:
        mean, sd = mean[order], sd[order]
    out = np.empty((len(replicates), se.size))
    z = np.empty(se.size) if order is not None else None
    for i, r in enumerate(replicates):
        rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, r))))
        if z is None:
            rng.standard_normal(out=out[i])
        else:
            rng.standard_normal(out=z)
            np.take(z, order, out=out[i])
        out[i] *= sd
        out[i] += mean
    return out


@dataclass(frozen=True)
class ChunkResult:
    """Counts of one job: recommendations and datasets re-analysed on their own grid, per analysis."""

    scenario: int
    n: int
    recommend: dict[str, int]
    grid_end: dict[str, int]


def run_chunk(job: tuple) -> ChunkResult:
    """One job (top level: it is pickled for process pools and Dask): simulate replicates
    ``start..stop`` of one scenario and count how often each analysis recommends (in batches of
    :func:`batch_size` replicates from ``start``)."""
    data, spec, scenario, index, start, stop, tau, seed, threshold, level = job
    recommend = dict.fromkeys(ANALYSES, 0)
    grid_end = dict.fromkeys(ANALYSES, 0)
    se, nr = np.asarray(data.se, dtype=float), np.asarray(data.nonrandomised, dtype=bool)
    with threadpool_limits(1):
        analyses = _analyses(data, spec, Truth.of(scenario, tau))
        step = batch_size(data.k)
        for first in range(start, stop, step):
            Y = simulate_data(scenario, index, range(first, min(first + step, stop)), se, nr, tau=tau, seed=seed,
                              order=analyses.order)
            for name, (p, refits) in analyses.p_below_ordered(Y, threshold).items():
                recommend[name] += int((p > level).sum())
                grid_end[name] += refits
            del Y
    return ChunkResult(scenario=index, n=stop - start, recommend=recommend, grid_end=grid_end)


#: Per process: the last design's layout and the last (design, truth)'s analyses (a scenario's
#: jobs share them; the layout is shared by every scenario).
_CACHE: dict[str, tuple[tuple, Any]] = {}


def _analyses(data: ModelData, spec: ModelSpec, truth: Truth) -> Analyses:
    """The batched analyses of (data, spec, truth), built once per process."""
    key = (data.se.tobytes(), np.asarray(data.nonrandomised).tobytes(), repr(spec))
    hit = _CACHE.get("analyses")
    if hit is not None and hit[0] == (key, truth):
        return hit[1]
    _CACHE.pop("analyses", None)
    layout = _CACHE.get("layout")
    if layout is None or layout[0] != key:
        _CACHE.pop("layout", None)
        layout = _CACHE["layout"] = (key, _Layout.of(data, spec))
    analyses = Analyses.of(layout[1], truth)
    _CACHE["analyses"] = ((key, truth), analyses)
    return analyses


@dataclass
class SimulationResult:
    """Operating characteristics: P(recommend) per scenario and analysis."""

    threshold: float
    level: float
    scenarios: list[Scenario]
    n_sim: int
    recommend: list[dict[str, int]]
    tau: float
    seed: int
    spec: ModelSpec
    k: int
    seconds: float = 0.0
    workers: str = "1"
    notes: list[str] = field(default_factory=list)

    def p_recommend(self, i: int) -> dict[str, float]:
        return {a: self.recommend[i][a] / self.n_sim for a in ANALYSES}

    def mc_se(self, i: int) -> dict[str, float]:
        return {a: math.sqrt(p * (1.0 - p) / self.n_sim) for a, p in self.p_recommend(i).items()}

    def to_json(self) -> dict[str, Any]:
        """``synthesis simulate --json``."""
        return {
            "rule": {"threshold": self.threshold, "level": self.level},
            "scenarios": [
                {
                    "true_hr": sc.true_hr, "bias_mean": sc.bias_mean, "bias_sd": sc.bias_sd,
                    "n_sim": self.n_sim, "p_recommend": self.p_recommend(i), "mc_se": self.mc_se(i),
                }
                for i, sc in enumerate(self.scenarios)
            ],
            "tau": self.tau,
            "seed": self.seed,
            "k": self.k,
            "spec": self.spec.describe(),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def to_frame(self) -> Any:
        import pandas as pd

        rows = []
        for i, sc in enumerate(self.scenarios):
            row: dict[str, Any] = {"true_hr": sc.true_hr, "bias_mean": sc.bias_mean, "bias_sd": sc.bias_sd, "n_sim": self.n_sim}
            for a in ANALYSES:
                row[f"p_recommend_{a}"] = self.p_recommend(i)[a]
                row[f"mc_se_{a}"] = self.mc_se(i)[a]
            rows.append(row)
        return pd.DataFrame.from_records(rows)

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        frame = self.to_frame()
        rows = [[f"{v:.4g}" for v in row] for row in frame.itertuples(index=False)]
        title = f"Operating characteristics of P(HR < {self.threshold:g}) > {self.level:g} ({self.n_sim} per scenario)"
        return html_block(title, [html_table(list(frame.columns), rows)], self.notes)

    def _variant_label(self) -> str:
        """The design-bias variant as run (with alpha when down-weighted)."""
        return self.spec.bias_variant + (f", alpha {self.spec.alpha:g}" if self.spec.bias_variant == "downweight" else "")

    def _effects_label(self) -> str:
        """Random effects, or common effect when every analysis fixes tau at 0."""
        return "random effects" if self.spec.heterogeneity else "common effect, tau = 0"

    def __str__(self) -> str:
        lines = [
            f"Operating characteristics of 'recommend if P(HR < {self.threshold:g}) > {self.level:g}': "
            f"{self.n_sim} simulated evidence bases per scenario (k = {self.k}, the input's SEs and designs; "
            f"between-study SD {self.tau:g}), {self.seconds:.1f} s on {self.workers}",
            f"analyses ({self._effects_label()}): the design-bias model ({self._variant_label()}), the naive pool "
            "of all studies and the RCTs alone",
            "true HR: the randomised effect; bias b: factor on the HR of non-randomised studies (1 = none), "
            f"SD on the log scale. P(recommend) at a true HR >= {self.threshold:g} is an error rate (the claim "
            f"HR < {self.threshold:g} is false; at HR = {self.threshold:g} its boundary), below {self.threshold:g} the power.",
            f"{'true HR':>8} {'bias b':>7} {'bias SD':>8}  {'design-bias':>13} {'naive pool':>13} {'RCTs only':>13}",
        ]
        for i, sc in enumerate(self.scenarios):
            p, se = self.p_recommend(i), self.mc_se(i)
            cells = "".join(f" {p[a]:>6.3f} ±{se[a]:.3f}" for a in ANALYSES)
            lines.append(f"{sc.true_hr:>8g} {sc.bias_mean:>7g} {sc.bias_sd:>8g} {cells}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def scenario_grid(true_hrs: Sequence[float], bias_means: Sequence[float], bias_sds: Sequence[float]) -> list[Scenario]:
    """Every combination (true HR major, then bias mean, then bias SD).

    Examples
    --------
    >>> [(s.true_hr, s.bias_mean) for s in scenario_grid([1.0, 0.8], [1.0, 0.7], [0.1])]
    [(1.0, 1.0), (1.0, 0.7), (0.8, 1.0), (0.8, 0.7)]
    >>> scenario_grid([1.0, 1.0, 0.8], [1.0], [0.1])
    Traceback (most recent call last):
    synthesis.errors.InputError: true HR values repeat (1): give each once
    """
    for name, values, positive in (("true HR", true_hrs, True), ("bias mean", bias_means, True), ("bias SD", bias_sds, False)):
        if not values:
            raise InputError(f"no {name} values given")
        for v in values:
            if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
                raise InputError(f"{name} values must be finite and {'> 0' if positive else '>= 0'}, got {v!r}")
        repeated = sorted({float(v) for v in values if sum(float(u) == float(v) for u in values) > 1})
        if repeated:
            raise InputError(f"{name} values repeat ({', '.join(f'{v:g}' for v in repeated)}): give each once")
    return [Scenario(float(h), float(b), float(s)) for h in true_hrs for b in bias_means for s in bias_sds]


def jobs_for(data: ModelData, spec: ModelSpec, scenarios: Sequence[Scenario], n_sim: int, *, tau: float,
             seed: int, threshold: float = RULE_THRESHOLD, level: float = RULE_LEVEL) -> list[tuple]:
    """The jobs of a simulation: each scenario's replicates in chunks of :data:`CHUNK`."""
    return [
        (data, spec, sc, i, start, min(start + CHUNK, n_sim), float(tau), int(seed), float(threshold), float(level))
        for i, sc in enumerate(scenarios)
        for start in range(0, n_sim, CHUNK)
    ]
