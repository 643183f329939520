r"""The sensitivity explorer's grid: exact-engine answers over a dense grid of priors.

For every setting of

* the tau prior: family (:data:`TAU_FAMILIES`) x scale (:func:`tau_scales`, log-spaced),
* the design-bias prior ``delta ~ N(log b, sd^2)`` (``b`` on the HR scale as in
  :mod:`synthesis.models.tipping`; :func:`bias_axes`),
* the down-weighting factor ``alpha`` of the non-randomised studies (the ``downweight`` variant;
  ``alpha = 0`` is the randomised studies alone, as on the tipping module's alpha curve,
  :func:`synthesis.models.tipping.alpha_grid`),

it stores the posterior median HR of a randomised comparison, its 95% equal-tailed interval and
``P(HR < T)`` on a grid of thresholds ``T`` (:func:`threshold_axis`, 0.6 to 1.0), for four models:

* ``rct``: random effects on the randomised studies only (depends on the tau prior);
* ``bias``: the additive design-bias model (tau prior x bias mean x bias SD);
* ``downweight``: all studies, the non-randomised ones' variances divided by alpha (tau prior x
  alpha; the bias prior does not enter);
* ``averaged``: the model average of :func:`synthesis.models.averaging.average_models` over
  effect x design bias (additive) x heterogeneity, equal prior model probabilities (tau prior x
  bias mean x bias SD). ``T <= 1``, so the spike at HR = 1 of the no-effect models never counts
  in ``P(HR < T)``; a quantile may fall exactly on it.

The computation is the exact engine's (:mod:`synthesis.models.exact`), vectorised over the grid the
way :mod:`synthesis.models.tipping` is: given tau, with ``w_i = 1 / (v_i + tau^2)`` and the sums
``A = sum w_i``, ``B = sum w_i nr_i``, ``S_y = sum w_i y_i``, ``S_ny = sum w_i nr_i y_i``,
``S_yy = sum w_i y_i^2``, ``L = sum log(v_i + tau^2)``, the coefficients ``b`` (``(mu, delta)``,
``(mu)``, ``(delta)`` or none) have a conjugate normal posterior with precision ``P`` and
``r = X^T W y + S_0^{-1} m_0``, and

.. math::

    -2 \log p(y \mid \tau) = k \log 2\pi + L + \log|S_0| + \log|P| + S_{yy}
        + m_0^\top S_0^{-1} m_0 - r^\top P^{-1} r,

normalising constants included, so that the eight models' marginal likelihoods
``p(y | M) = \int p(\tau) p(y | \tau) d\tau`` weigh them exactly as the averaging does. One set of
sums per tau node serves every bias prior of a tau prior; tau is integrated by Simpson's rule
uniform in ``u = asinh(tau / c)`` over the union of the regions where each setting's posterior of
tau is within ``exp(-40)`` of its maximum (found on a wide pilot grid, as the exact engine
does), with at least as many nodes as the exact engine puts on the narrowest of them. Summaries
are normal mixtures over the nodes: quantiles by a safeguarded Newton iteration on the mixture
CDF, ``P(HR < T)`` its value at ``log T``. tests/test_explorer.py checks every model against
:func:`~synthesis.models.exact.fit_exact` and :func:`~synthesis.models.averaging.average_models`
at grid points.

Between grid points the page interpolates multilinearly (:func:`interpolate`) in log tau scale,
log bias mean, log bias SD, alpha and log T (the tau family is a choice, not interpolated): the
quantiles of log HR directly, ``P(HR < T)`` through its probit ``Phi^{-1}(P)``, which is linear in
log T and in a shift of the bias for a normal posterior (linear interpolation of P itself erred by
up to 0.02 where the posterior is narrow).
:func:`interpolation_error` measures the worst error of that interpolation, stored values
rounded as they are embedded (:data:`LOG_HR_DIGITS`, :data:`Z_DIGITS`), against direct exact
computations at random off-grid settings; the grid carries that number. On the bundled data
(200 settings; benchmarks/bench_explorer.py): P(HR < T) within 0.002 (RCTs only), 0.012
(design-bias, down-weighted) and 0.022 (model-averaged); the HR median and interval ends within
0.5% except for the model average (18%): its posterior is a spike at HR = 1 beside the effect
models' posterior, and where both carry weight its quantiles jump between neighbouring settings,
which no interpolation follows (its P(HR < T) has no jumps).

In a report: :func:`explorer_for` (the analysis's priors, alpha and threshold as the starting
setting; ``None`` without both designs; not above :data:`MAX_STUDIES` studies), wrapped by
``run_analysis`` in a :class:`DeferredExplorer` so that only a written report (or ``to_json``)
pays for the grid (about 3 s, and 1 s for the error check, on 2 shared cores).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import special

from synthesis.base import INTERVAL_PROB
from synthesis.errors import InputError, ModelError
from synthesis.models.averaging import DEFAULT_INCLUSION_PROB, has_bias_dimension
from synthesis.models.priors import PriorConfig, PriorSpec, parse_prior, resolve_priors
from synthesis.models.spec import ModelData, ModelSpec, StudySource
from synthesis.models.tipping import (
    BIAS_MEAN_RANGE,
    BIAS_SD_RANGE,
    alpha_grid,
    covering_nodes,
    prior_support,
)

#: tau-prior families of the explorer; the slider's "scale" is the family's scale parameter
#: (half-normal, half-Cauchy) or the mean 1 / rate (exponential).
TAU_FAMILIES: tuple[str, ...] = ("halfnormal", "halfcauchy", "exponential")
#: Range of the tau prior's scale (log-spaced; powers of 2 so that 0.5, the default, is a node).
TAU_SCALE_RANGE: tuple[float, float] = (1.0 / 16.0, 2.0)
#: Range of the threshold T of P(HR < T).
THRESHOLD_RANGE: tuple[float, float] = (0.6, 1.0)
#: The models of the explorer, in display order, and the grid axes each depends on.
MODEL_AXES: dict[str, tuple[str, ...]] = {
    "averaged": ("tau_scale", "bias_mean", "bias_sd"),
    "bias": ("tau_scale", "bias_mean", "bias_sd"),
    "downweight": ("tau_scale", "alpha"),
    "rct": ("tau_scale",),
}
#: Model labels as the page prints them.
MODEL_LABELS: dict[str, str] = {
    "averaged": "Model-averaged (8 models)",
    "bias": "Design-bias adjusted",
    "downweight": "Down-weighted non-randomised",
    "rct": "Random effects, RCTs only",
}
#: Grid resolution (points per doubling of the tau scale, the bias factor and the bias SD;
#: number of alphas; threshold step), chosen from the worst interpolation error at 200 random
#: settings on the bundled data (P(HR < T), by model: averaged, bias, downweight, RCTs): with
#: 8 and 4 points per doubling of b and SD and T steps of 0.05, 0.053 / 0.033 / 0.011 / 0.003
#: (0.71 MB); this grid, 0.022 / 0.012 / 0.012 / 0.002 (1.26 MB) in about the same time (the
#: error along b and along T dominated). benchmarks/bench_explorer.py --resolutions compares grids.
DEFAULT_RESOLUTION: dict[str, float] = {"tau_per_octave": 1, "mean_per_octave": 12, "sd_per_octave": 3, "alpha": 21, "t_step": 0.025}
#: Stored log HRs are rounded to this many decimals, and P(HR < T) is stored as its probit
#: ``z = Phi^{-1}(P)`` (P clipped to [P_CLIP, 1 - P_CLIP]) rounded to Z_DIGITS decimals: the
#: embedded JSON holds integers (value x 10^digits); the rounding is part of the measured error.
LOG_HR_DIGITS = 4
Z_DIGITS = 3
P_CLIP = 1e-6
#: Off-grid settings drawn to measure the interpolation error (fixed seed: reproducible), in
#: groups of CHECK_GROUP sharing a random tau prior (one quadrature per group).
DEFAULT_CHECK_POINTS = 200
CHECK_SEED = 20261203
CHECK_GROUP = 20
#: The report computes no explorer above this many studies: the grid's sums grow with k (k = 200
#: took 8.6 s on the shared 2-core machine, k = 1,000 29 s, k = 3,000 63 s; the bundled k = 17 6 s).
MAX_STUDIES = 200
#: Minimum tau nodes of a direct computation (the exact engine's default) and the pilot/cut-off
#: of the exact engine.
MIN_NODES = 257
#: Minimum Simpson nodes per tau posterior for the grid: on the bundled data, 65 nodes give
#: every stored number within 2e-8 of a 1025-node computation (33 nodes: 1e-4), far below the
#: interpolation error; the grid is then 4 times cheaper than with 257.
GRID_NODES = 65
PILOT_POINTS = 256
LOG_CUTOFF = 40.0
_PROBS = np.array([0.5, (1.0 - INTERVAL_PROB) / 2.0, (1.0 + INTERVAL_PROB) / 2.0])
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Axes and priors
# --------------------------------------------------------------------------------------------
def _octaves(lo: float, hi: float, per_octave: float, anchor: float) -> np.ndarray:
    """Points ``anchor * 2^(j / per_octave)`` between ``lo`` and ``hi``, and the two ends."""
    j0 = math.ceil(per_octave * math.log2(lo / anchor) - 1e-9)
    j1 = math.floor(per_octave * math.log2(hi / anchor) + 1e-9)
    inner = anchor * 2.0 ** (np.arange(j0, j1 + 1) / per_octave)
    inner = inner[(inner > lo * (1 + 1e-9)) & (inner < hi * (1 - 1e-9))]
    return np.concatenate([[lo], inner, [hi]])


def tau_scales(per_octave: float = DEFAULT_RESOLUTION["tau_per_octave"]) -> np.ndarray:
    """The tau-prior scales of the grid: ``0.5 * 2^(j / per_octave)`` over :data:`TAU_SCALE_RANGE`.

    Examples
    --------
    >>> tau_scales(1).tolist()
    [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0]
    """
    return _octaves(*TAU_SCALE_RANGE, per_octave, 0.5)


def bias_axes(mean_per_octave: float = DEFAULT_RESOLUTION["mean_per_octave"],
              sd_per_octave: float = DEFAULT_RESOLUTION["sd_per_octave"]) -> tuple[np.ndarray, np.ndarray]:
    """Bias means (HR scale, anchored at 1) over the tipping module's
    :data:`~synthesis.models.tipping.BIAS_MEAN_RANGE` and bias SDs (log scale, anchored at the
    default 0.5) over :data:`~synthesis.models.tipping.BIAS_SD_RANGE`.

    Examples
    --------
    >>> means, sds = bias_axes(2, 1)
    >>> means.round(3).tolist(), sds.round(4).tolist()
    ([0.5, 0.707, 1.0, 1.25], [0.02, 0.0312, 0.0625, 0.125, 0.25, 0.5, 1.0])
    """
    return _octaves(*BIAS_MEAN_RANGE, mean_per_octave, 1.0), _octaves(*BIAS_SD_RANGE, sd_per_octave, 0.5)


def threshold_axis(step: float = DEFAULT_RESOLUTION["t_step"]) -> np.ndarray:
    """Thresholds T from 0.6 to 1.0 in steps of ``step``.

    Examples
    --------
    >>> threshold_axis(0.1).tolist()
    [0.6, 0.7, 0.8, 0.9, 1.0]
    """
    n = int(round((THRESHOLD_RANGE[1] - THRESHOLD_RANGE[0]) / step)) + 1
    return np.round(np.linspace(*THRESHOLD_RANGE, n), 10)


#: HRs below and above the thresholds where the model average's CDF is stored as well (its
#: quantiles are read from the CDF: they jump where the spike at HR = 1 and the effect models
#: trade weight, which interpolating quantiles cannot follow).
CDF_TAILS: tuple[tuple[float, float, int], tuple[float, float, int]] = ((0.25, 0.6, 9), (1.0, 2.0, 9))


def cdf_axis(step: float = DEFAULT_RESOLUTION["t_step"]) -> np.ndarray:
    """HRs at which the model average's CDF is stored: the thresholds and log-spaced tails
    (:data:`CDF_TAILS`); HR = 1 is a node (the spike).

    Examples
    --------
    >>> x = cdf_axis(0.1)
    >>> x.size, float(x[0]), 1.0 in x, float(x[-1])
    (21, 0.25, True, 2.0)
    """
    (lo_a, lo_b, n_lo), (hi_a, hi_b, n_hi) = CDF_TAILS
    return np.concatenate([np.geomspace(lo_a, lo_b, n_lo)[:-1], threshold_axis(step), np.geomspace(hi_a, hi_b, n_hi)[1:]])


def tau_prior(family: str, scale: float) -> PriorSpec:
    """The tau prior of a family at a scale (exponential: rate ``1 / scale``).

    Examples
    --------
    >>> tau_prior("exponential", 0.5).label, tau_prior("halfcauchy", 0.25).label
    ('exponential(rate=2)', 'half-Cauchy(scale=0.25)')
    """
    return parse_prior(tau_prior_text(family, scale), "tau")


def tau_prior_text(family: str, scale: float) -> str:
    """The prior string ``fit --tau-prior`` takes for a family at a scale.

    Examples
    --------
    >>> tau_prior_text("halfnormal", 0.5), tau_prior_text("exponential", 0.25)
    ('halfnormal(0.5)', 'exponential(4)')
    """
    if family not in TAU_FAMILIES:
        raise InputError(f"tau family must be one of {', '.join(TAU_FAMILIES)}, got {family!r}", parameter="family")
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"a tau-prior scale must be > 0, got {scale!r}", parameter="scale")
    value = 1.0 / scale if family == "exponential" else scale
    return f"{family}({float(f'{value:.6g}')!r})".replace(".0)", ")")


# --------------------------------------------------------------------------------------------
# The vectorised exact computation
# --------------------------------------------------------------------------------------------
def _sums(y: np.ndarray, v: np.ndarray, nr: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """(G, 6): A, B, S_y, S_ny, S_yy, L at each tau node (``v``: within-study variances)."""
    cols = np.stack([np.ones_like(y), nr, y, nr * y, y * y], axis=1)
    V = v[None, :] + (tau * tau)[:, None]
    out = np.empty((tau.size, 6))
    out[:, 5] = np.log(V).sum(axis=1)
    out[:, :5] = np.reciprocal(V) @ cols
    return out


@dataclass(frozen=True)
class _Cond:
    """Per (node, setting): log p(y | tau) with all constants, mu's conditional mean and SD
    (None when mu is fixed at 0)."""

    loglik: np.ndarray
    mean: np.ndarray | None
    sd: np.ndarray | None


def _conditional(S: np.ndarray, k: int, m0: float, a0: float, d0: np.ndarray | None, h: np.ndarray | None,
                 effect: bool) -> _Cond:
    """The conjugate update given tau; ``d0``/``h`` (N,) = the delta prior's mean and precision
    (``None``: no bias term). Arrays (G, N) (N = 1 without a bias term)."""
    A, B, Sy, Sny, Syy, L = (S[:, j : j + 1] for j in range(6))
    base = k * _LOG_2PI + L + Syy
    if d0 is None:
        if not effect:
            return _Cond(-0.5 * base, None, None)
        P = A + a0
        r = Sy + m0 * a0
        m2 = -math.log(a0) + np.log(P) + m0 * m0 * a0 - r * r / P
        return _Cond(-0.5 * (base + m2), r / P, 1.0 / np.sqrt(P))
    d0, h = d0[None, :], h[None, :]
    if not effect:
        P = B + h
        r = Sny + d0 * h
        return _Cond(-0.5 * (base - np.log(h) + np.log(P) + d0 * d0 * h - r * r / P), None, None)
    Ah = A + a0
    Bh = B + h
    det = Ah * Bh - B * B
    r0 = Sy + m0 * a0
    r1 = Sny + d0 * h
    rpr = (Bh * r0 * r0 - 2.0 * B * r0 * r1 + Ah * r1 * r1) / det
    m2 = -math.log(a0) - np.log(h) + np.log(det) + m0 * m0 * a0 + d0 * d0 * h - rpr
    return _Cond(-0.5 * (base + m2), (Bh * r0 - B * r1) / det, np.sqrt(Bh / det))


@dataclass(frozen=True)
class _Nodes:
    tau: np.ndarray
    log_q: np.ndarray  # log(Simpson weight x Jacobian x prior density)
    truncated: bool


def _nodes(prior: PriorSpec, loglik_at: Any, sd: np.ndarray, ptp: float, n_grid: int) -> _Nodes:
    """Simpson nodes in asinh(tau / c) covering every column's posterior mass of tau
    (``loglik_at(tau) -> (G, N)``), located on a wide pilot grid as the exact engine does."""
    s_lo, med, q999, s_hi = prior_support(prior)
    small = min(float(sd.min()), med if math.isfinite(med) and med > 0 else math.inf)
    big = max(float(sd.max()), ptp, min(q999, 1e8) if math.isfinite(q999) else 0.0)
    c0 = 1e-3 * small
    u = np.linspace(0.0, math.asinh(1e4 * big / c0), PILOT_POINTS)
    tau = c0 * np.sinh(u)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = loglik_at(tau) + (prior.logpdf(tau) + np.log(c0 * np.cosh(u)))[:, None]
    lp = np.where(np.isfinite(lp), lp, -np.inf)
    peak = lp.max(axis=0)
    keep = lp >= peak - LOG_CUTOFF
    first = keep.argmax(axis=0)
    last = tau.size - 1 - keep[::-1].argmax(axis=0)
    truncated = bool((last == tau.size - 1).any())
    i0, i1 = np.maximum(first - 1, 0), np.minimum(last + 1, tau.size - 1)
    lo_p = np.maximum(np.where(i0 == 0, 0.0, tau[i0]), s_lo)
    hi_p = np.minimum(tau[i1], s_hi)
    mass = np.cumsum(np.exp(lp - peak), axis=0)
    med_p = np.clip(tau[np.minimum((mass < 0.5 * mass[-1]).sum(axis=0), tau.size - 1)], lo_p, hi_p)
    nodes, q = covering_nodes(lo_p, hi_p, med_p, n_grid)
    with np.errstate(divide="ignore"):
        log_q = np.log(q) + prior.logpdf(nodes)
    return _Nodes(nodes, log_q, truncated)


def _quantile(W: np.ndarray, M: np.ndarray, S: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Quantile ``p[n]`` of each column's normal mixture ``sum_g W[g, n] N(M[g, n], S[g, n]^2)``:
    Halley's method on the mixture CDF (as :func:`~synthesis.models.exact.mixture_quantiles`),
    safeguarded by bisection inside a bracket; only the columns not yet converged are iterated."""
    mean = np.sum(W * M, axis=0)
    var = np.sum(W * (S * S + M * M), axis=0) - mean * mean
    lo, hi = (M - 40.0 * S).min(axis=0), (M + 40.0 * S).max(axis=0)
    x = np.clip(mean + np.sqrt(np.maximum(var, 1e-300)) * special.ndtri(np.clip(p, 1e-300, 1.0)), lo, hi)
    inv = 1.0 / S
    act = np.arange(x.size)
    e_prev = np.full(x.size, np.inf)
    for _ in range(200):
        Wa, Ma, Ia, xa = W[:, act], M[:, act], inv[:, act], x[act]
        z = (xa - Ma) * Ia
        err = np.sum(Wa * special.ndtr(z), axis=0) - p[act]
        phi = Wa * np.exp(-0.5 * z * z) * Ia
        pdf = np.sum(phi, axis=0) / math.sqrt(2.0 * math.pi)
        dpdf = -np.sum(phi * z * Ia, axis=0) / math.sqrt(2.0 * math.pi)
        lo[act] = np.where(err <= 0.0, xa, lo[act])
        hi[act] = np.where(err >= 0.0, xa, hi[act])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            new = xa - 2.0 * err * pdf / (2.0 * pdf * pdf - err * dpdf)  # Halley's step
        # bisect when the step leaves the bracket or the last step did not halve the error (a
        # start far in a tail, where Halley's steps crawl)
        bad = ~np.isfinite(new) | (new < lo[act]) | (new > hi[act]) | (np.abs(err) > 0.5 * e_prev[act])
        e_prev[act] = np.abs(err)
        new = np.where(bad, 0.5 * (lo[act] + hi[act]), new)
        x[act] = new
        tol = 1e-14 * (1.0 + np.abs(xa))
        act = act[(np.abs(new - xa) > tol) & (hi[act] - lo[act] > tol)]
        if act.size == 0:
            break
    return x


#: Quadrature nodes whose normalised weight is below this in every setting are dropped (their
#: total mass is below 1e-13).
_PRUNE = 1e-16


@dataclass(frozen=True)
class _Mixture:
    """Per setting (column): weights (normalised), means and SDs of mu's normal mixture, and
    the log marginal likelihood. Arrays have ``n`` columns or one shared by all ``n``."""

    W: np.ndarray
    M: np.ndarray
    S: np.ndarray
    log_ml: np.ndarray
    n: int

    def full(self, name: str) -> np.ndarray:
        x = getattr(self, name)
        return np.broadcast_to(x, (x.shape[0], self.n))

    def p_below(self, log_t: np.ndarray) -> np.ndarray:
        """(n, len(T)): P(log HR < log T)."""
        z = (log_t[None, None, :] - self.M[:, :, None]) / self.S[:, :, None]
        p = np.einsum("gn,gnt->nt", np.broadcast_to(self.W, self.M.shape) if self.W.shape[1] < self.M.shape[1] else self.W, special.ndtr(z))
        return np.broadcast_to(p, (self.n, log_t.size)) if p.shape[0] == 1 else p

    def summaries(self, log_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) quantiles of log HR (median, 2.5%, 97.5%) and (n, len(T)) P(log HR < log T)."""
        W, M, S = self.W, self.M, self.S
        if W.shape[1] < M.shape[1]:
            W = np.broadcast_to(W, M.shape)
        q = np.stack([_quantile(W, M, S, np.full(W.shape[1], p)) for p in _PROBS], axis=1)
        q = np.broadcast_to(q, (self.n, 3)) if q.shape[0] == 1 else q
        return q, self.p_below(log_t)


def _integrate(cond: _Cond, log_q: np.ndarray | None, n: int) -> _Mixture:
    """Integrate tau out (``log_q`` None: tau fixed at 0, one node) for ``n`` settings; nodes
    negligible in every setting are dropped."""
    lw = cond.loglik if log_q is None else cond.loglik + log_q[:, None]
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    peak = lw.max(axis=0)
    E = np.exp(lw - peak)
    tot = E.sum(axis=0)
    log_ml = np.broadcast_to(peak + np.log(tot), (n,))
    W = E / tot
    keep = W.max(axis=1) > _PRUNE
    W = W[keep]
    if cond.mean is None:
        return _Mixture(W, np.zeros((W.shape[0], 1)), np.ones((W.shape[0], 1)), log_ml, n)
    return _Mixture(W, cond.mean[keep], cond.sd[keep], log_ml, n)


@dataclass(frozen=True)
class _Problem:
    y: np.ndarray
    v: np.ndarray
    nr: np.ndarray
    m0: float
    a0: float

    @property
    def k(self) -> int:
        return int(self.y.size)

    def sums(self, tau: np.ndarray, alpha: float = 1.0, rct_only: bool = False) -> tuple[np.ndarray, int]:
        keep = self.nr == 0 if rct_only else slice(None)
        v = self.v / np.where(self.nr > 0, alpha, 1.0)
        y = self.y[keep]
        return _sums(y, v[keep], self.nr[keep], tau), int(y.size)


def _problem(data: ModelData, priors: PriorConfig) -> _Problem:
    nr = np.asarray(data.nonrandomised, dtype=float)
    if not (nr.any() and not nr.all()):
        raise ModelError(
            f"{data.source or 'the data'}: the sensitivity explorer needs both randomised and non-randomised "
            "studies (a 'design' column with rct and prospective/retrospective rows)"
        )
    if not priors.mu.is_normal:
        raise ModelError(f"the sensitivity explorer is computed exactly and needs a normal prior on mu; got {priors.mu.label}")
    m0, s0 = priors.mu.params
    return _Problem(np.asarray(data.y, float), np.asarray(data.se, float) ** 2, nr, float(m0), 1.0 / float(s0) ** 2)


@dataclass(frozen=True)
class _Summary:
    q: np.ndarray  # (N, 3) log HR quantiles
    p: np.ndarray  # (N, n_T)
    spike: np.ndarray | None = None  # (N,) P(HR = 1) of the model average


def _tau_models(pb: _Problem, prior: PriorSpec, d0: np.ndarray, h: np.ndarray, alphas: np.ndarray,
                log_t: np.ndarray, n_grid: int) -> dict[str, Any]:
    """All four models at one tau prior: bias settings (d0, h) (N,), alphas (> 0 or 0)."""
    sd, ptp = np.sqrt(pb.v), float(np.ptp(pb.y))
    k = pb.k
    out: dict[str, Any] = {"truncated": False}

    # -- the bias group (effect and no-effect bias models) and the no-bias group
    def ll_bias(tau: np.ndarray) -> np.ndarray:
        S, _ = pb.sums(tau)
        return np.concatenate([_conditional(S, k, pb.m0, pb.a0, d0, h, e).loglik for e in (True, False)], axis=1)

    def ll_re(tau: np.ndarray) -> np.ndarray:
        S, _ = pb.sums(tau)
        return np.concatenate([_conditional(S, k, pb.m0, pb.a0, None, None, e).loglik for e in (True, False)], axis=1)

    nodes_b = _nodes(prior, ll_bias, sd, ptp, n_grid)
    nodes_r = _nodes(prior, ll_re, sd, ptp, n_grid)
    Sb, _ = pb.sums(nodes_b.tau)
    Sr, _ = pb.sums(nodes_r.tau)
    S0, _ = pb.sums(np.zeros(1))
    n = d0.size
    mix = {
        # (effect, bias, heterogeneity)
        (True, True, True): _integrate(_conditional(Sb, k, pb.m0, pb.a0, d0, h, True), nodes_b.log_q, n),
        (False, True, True): _integrate(_conditional(Sb, k, pb.m0, pb.a0, d0, h, False), nodes_b.log_q, n),
        (True, False, True): _integrate(_conditional(Sr, k, pb.m0, pb.a0, None, None, True), nodes_r.log_q, n),
        (False, False, True): _integrate(_conditional(Sr, k, pb.m0, pb.a0, None, None, False), nodes_r.log_q, n),
        (True, True, False): _integrate(_conditional(S0, k, pb.m0, pb.a0, d0, h, True), None, n),
        (False, True, False): _integrate(_conditional(S0, k, pb.m0, pb.a0, d0, h, False), None, n),
        (True, False, False): _integrate(_conditional(S0, k, pb.m0, pb.a0, None, None, True), None, n),
        (False, False, False): _integrate(_conditional(S0, k, pb.m0, pb.a0, None, None, False), None, n),
    }
    p_own = {key: m.p_below(log_t) for key, m in mix.items() if key[0]}
    bias = mix[(True, True, True)]
    out["bias"] = _Summary(np.stack([_quantile(bias.W, bias.M, bias.S, np.full(n, pr)) for pr in _PROBS], axis=1),
                           p_own[(True, True, True)])
    out["averaged"] = _average(mix, log_t, p_own)
    # -- randomised studies only, and the down-weighted model per alpha
    k_rct = int((pb.nr == 0).sum())
    sd_rct = np.sqrt(pb.v[pb.nr == 0])

    def ll_rct(tau: np.ndarray) -> np.ndarray:
        S, kk = pb.sums(tau, rct_only=True)
        return _conditional(S, kk, pb.m0, pb.a0, None, None, True).loglik

    nodes_rct = _nodes(prior, ll_rct, sd_rct, float(np.ptp(pb.y[pb.nr == 0])), n_grid)
    S_rct, _ = pb.sums(nodes_rct.tau, rct_only=True)
    rct = _Summary(*_integrate(_conditional(S_rct, k_rct, pb.m0, pb.a0, None, None, True), nodes_rct.log_q, 1).summaries(log_t))
    out["rct"] = rct
    pos = alphas[alphas > 0]

    def cond_dw(tau: np.ndarray) -> _Cond:
        """The down-weighted model at every alpha > 0: one column per alpha."""
        parts = [_conditional(pb.sums(tau, a)[0], k, pb.m0, pb.a0, None, None, True) for a in pos]
        return _Cond(*(np.concatenate([getattr(c, f) for c in parts], axis=1) for f in ("loglik", "mean", "sd")))

    rows = np.empty((alphas.size, 3)), np.empty((alphas.size, log_t.size))
    rows[0][alphas == 0], rows[1][alphas == 0] = rct.q[0], rct.p[0]
    if pos.size:
        # the pilot locates tau's posterior at the smallest, a middle and the largest alpha (it
        # moves monotonically from the randomised studies' to all studies' as alpha grows)
        probe = np.unique(pos[[0, pos.size // 2, -1]])

        def ll_probe(tau: np.ndarray) -> np.ndarray:
            return np.concatenate([_conditional(pb.sums(tau, a)[0], k, pb.m0, pb.a0, None, None, True).loglik
                                   for a in probe], axis=1)

        nodes_d = _nodes(prior, ll_probe, sd, ptp, n_grid)
        q, p = _integrate(cond_dw(nodes_d.tau), nodes_d.log_q, pos.size).summaries(log_t)
        rows[0][alphas > 0], rows[1][alphas > 0] = q, p
        out["truncated"] = nodes_d.truncated
    out["downweight"] = _Summary(*rows)
    out["truncated"] = out["truncated"] or nodes_b.truncated or nodes_r.truncated or nodes_rct.truncated
    return out


def _average(mix: dict[tuple[bool, bool, bool], _Mixture], log_t: np.ndarray, p_own: dict[tuple[bool, bool, bool], np.ndarray]) -> _Summary:
    """The model average over the eight models (equal prior probabilities): P(HR < T) for T <= 1
    (the spike at HR = 1 excluded: the posterior-weighted sum of the effect models' own
    ``p_own``) and the generalised-inverse quantiles of the spike mixture."""
    keys = list(mix)
    n = next(iter(mix.values())).n
    log_prior = math.log(DEFAULT_INCLUSION_PROB) * 3  # product of the three inclusion probabilities
    lj = np.stack([mix[key].log_ml + log_prior for key in keys])  # (8, N)
    post = np.exp(lj - special.logsumexp(lj, axis=0))
    eff = [i for i, key in enumerate(keys) if key[0]]
    spike = post[[i for i, key in enumerate(keys) if not key[0]]].sum(axis=0)  # (N,)
    p = sum(post[i][:, None] * p_own[keys[i]] for i in eff)  # T <= 1: the spike never counts
    c = 1.0 - spike
    cc = np.where(c > 0, c, 1.0)
    Wc = np.concatenate([mix[keys[i]].full("W") * (post[i] / cc)[None, :] for i in eff])
    M = np.concatenate([mix[keys[i]].full("M") for i in eff])
    S = np.concatenate([mix[keys[i]].full("S") for i in eff])
    below = np.sum(Wc * special.ndtr(-M / S), axis=0) * c  # F(0-)
    q = np.zeros((n, _PROBS.size))
    for j, pr in enumerate(_PROBS):
        lower = pr <= below
        upper = pr > below + spike
        target = np.where(lower, pr / cc, (pr - spike) / cc)
        solve = (lower | upper) & (c > 0)
        if solve.any():
            q[solve, j] = _quantile(Wc[:, solve], M[:, solve], S[:, solve], np.clip(target[solve], 0.0, 1.0))
    return _Summary(q, p, spike)


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------
@dataclass
class ExplorerGrid:
    """Exact answers over the explorer's grid (see the module docstring).

    ``values[model]`` holds ``log_hr`` (axes..., 3: median, 2.5%, 97.5% of log HR) and ``p``
    (axes..., len(thresholds)): P(HR < T), with the model's axes ``("family",) +``
    :data:`MODEL_AXES` ``[model]``. ``max_error`` is the worst interpolation error measured
    (``hr``: relative, on the HR median and interval ends; ``p``: absolute), ``None`` until
    measured; ``max_error["models"]`` gives the same per model.
    """

    axes: dict[str, np.ndarray]
    families: tuple[str, ...]
    values: dict[str, dict[str, np.ndarray]]
    priors: dict[str, str]
    k: int
    k_rct: int
    source: str = ""
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    max_error: dict[str, Any] | None = None
    n_checks: int = 0
    current: Setting | None = None
    tipping: dict[str, Any] | None = None
    commands: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The embedded data: axes, and per model its axes and values as integers (log HR and
        probabilities x 10^digits, flattened C-order)."""
        sc_hr, sc_z = 10**LOG_HR_DIGITS, 10**Z_DIGITS
        models = {}
        for name, vals in self.values.items():
            models[name] = {"label": MODEL_LABELS[name], "axes": ["family", *MODEL_AXES[name]], "shape": list(vals["p"].shape[:-1])}
            if "cdf" in vals:  # the model average: its CDF (spike excluded) and the spike
                models[name] |= {
                    "cdf_z": np.rint(probit(vals["cdf"]) * sc_z).astype(int).ravel().tolist(),
                    "spike_z": np.rint(probit(vals["spike"]) * sc_z).astype(int).ravel().tolist(),
                }
            else:
                models[name] |= {
                    "log_hr": np.rint(vals["log_hr"] * sc_hr).astype(int).ravel().tolist(),
                    "z": np.rint(probit(vals["p"]) * sc_z).astype(int).ravel().tolist(),
                }
        return {
            "families": list(self.families),
            "axes": {key: [float(v) for v in val] for key, val in self.axes.items()},
            "scale": {"log_hr": sc_hr, "z": sc_z},
            "models": models,
            "priors": dict(self.priors),
            "k": self.k,
            "k_rct": self.k_rct,
            "source": self.source,
            "max_error": self.max_error,
            "n_checks": self.n_checks,
            "current": None if self.current is None else asdict(self.current),
            "tipping": self.tipping,
            "commands": dict(self.commands),
            "resolution": {key: int(val.size) for key, val in self.axes.items()},
            "notes": list(self.notes),
        }

    def summary(self) -> dict[str, Any]:
        """What ``AnalysisResult.to_json`` records of the explorer (not the grid itself, which
        explorer.html embeds): axis sizes, the measured error, the starting setting, timing."""
        return {
            "resolution": {key: int(val.size) for key, val in self.axes.items()},
            "families": list(self.families),
            "settings": int(sum(v["p"][..., 0].size for v in self.values.values())),
            "max_error": self.max_error,
            "n_checks": self.n_checks,
            "current": None if self.current is None else asdict(self.current),
            "timing": dict(self.timing),
            "notes": list(self.notes),
        }

    def decoded(self) -> ExplorerGrid:
        """The grid as the page sees it (values rounded as embedded)."""

        def p_round(p: np.ndarray) -> np.ndarray:
            return special.ndtr(np.rint(probit(p) * 10**Z_DIGITS) / 10**Z_DIGITS)

        vals = {
            m: {"log_hr": np.rint(v["log_hr"] * 10**LOG_HR_DIGITS) / 10**LOG_HR_DIGITS, "p": p_round(v["p"])}
            | ({"cdf": p_round(v["cdf"]), "spike": p_round(v["spike"])} if "cdf" in v else {})
            for m, v in self.values.items()
        }
        return ExplorerGrid(self.axes, self.families, vals, self.priors, self.k, self.k_rct, self.source)


def _check_resolution(res: dict[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_RESOLUTION) | dict(res or {})
    unknown = set(out) - set(DEFAULT_RESOLUTION)
    if unknown:
        raise InputError(f"unknown resolution keys: {', '.join(sorted(unknown))}")
    return out


def build_grid(
    data: ModelData,
    priors: PriorConfig | None = None,
    *,
    resolution: dict[str, float] | None = None,
    families: Sequence[str] = TAU_FAMILIES,
    n_grid: int = GRID_NODES,
    check_points: int = DEFAULT_CHECK_POINTS,
) -> ExplorerGrid:
    """Exact answers of the four models over the explorer's grid, and (``check_points`` > 0) the
    worst interpolation error against direct computations at random off-grid settings.

    Parameters
    ----------
    data
        Studies with both designs (``ModelData`` of a bias spec).
    priors
        The mu prior (normal) is kept; tau and delta priors are the grid's.
    resolution
        Overrides of :data:`DEFAULT_RESOLUTION`.
    families
        tau-prior families (a subset of :data:`TAU_FAMILIES`).
    n_grid
        Minimum number of tau quadrature nodes.
    check_points
        Number of random off-grid settings for :func:`interpolation_error` (0: not measured).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.spec import ModelSpec
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> g = build_grid(data, resolution={"tau_per_octave": 1, "mean_per_octave": 2, "sd_per_octave": 1,
    ...                                  "alpha": 3, "t_step": 0.1}, families=["halfnormal"], check_points=0)
    >>> g.values["bias"]["p"].shape  # family, tau scale, bias mean, bias SD, T
    (1, 6, 4, 7, 5)
    >>> i = int(np.flatnonzero(g.axes["tau_scale"] == 0.5)[0])
    >>> round(float(np.exp(g.values["rct"]["log_hr"][0, i, 0])), 2)  # the RCT-only median HR
    0.93
    """
    t0 = time.perf_counter()
    priors = resolve_priors() if priors is None else priors
    res = _check_resolution(resolution)
    fams = tuple(families)
    for f in fams:
        tau_prior_text(f, 1.0)
    pb = _problem(data, priors)
    scales = tau_scales(res["tau_per_octave"])
    means, sds = bias_axes(res["mean_per_octave"], res["sd_per_octave"])
    alphas = alpha_grid(int(res["alpha"]))
    ts = threshold_axis(res["t_step"])
    xs = cdf_axis(res["t_step"])
    t_at = np.searchsorted(xs, ts)  # the thresholds among the CDF nodes
    log_x = np.log(xs)
    BM, BS = np.meshgrid(means, sds, indexing="ij")
    d0, h = np.log(BM.ravel()), 1.0 / BS.ravel() ** 2
    nf, ns, nm, nsd, na, nt = len(fams), scales.size, means.size, sds.size, alphas.size, ts.size
    shapes = {"averaged": (nf, ns, nm, nsd), "bias": (nf, ns, nm, nsd), "downweight": (nf, ns, na), "rct": (nf, ns)}
    values = {m: {"log_hr": np.empty((*s, 3)), "p": np.empty((*s, nt))} for m, s in shapes.items()}
    values["averaged"] |= {"cdf": np.empty((*shapes["averaged"], xs.size)), "spike": np.empty(shapes["averaged"])}
    truncated = False
    for i, fam in enumerate(fams):
        for j, sc in enumerate(scales):
            out = _tau_models(pb, tau_prior(fam, float(sc)), d0, h, alphas, log_x, n_grid)
            truncated = truncated or out["truncated"]
            for m in shapes:
                summ = out[m]
                values[m]["log_hr"][i, j] = summ.q.reshape((*shapes[m][2:], 3))
                values[m]["p"][i, j] = summ.p[:, t_at].reshape((*shapes[m][2:], nt))
            avg = out["averaged"]
            values["averaged"]["cdf"][i, j] = avg.p.reshape((*shapes["averaged"][2:], xs.size))
            values["averaged"]["spike"][i, j] = avg.spike.reshape(shapes["averaged"][2:])
    notes = []
    if truncated:
        notes.append("the posterior of tau reached the end of the pilot grid for some settings; its upper tail may be truncated")
    nr = np.asarray(data.nonrandomised, dtype=bool)
    grid = ExplorerGrid(
        axes={"tau_scale": scales, "bias_mean": means, "bias_sd": sds, "alpha": alphas, "threshold": ts, "cdf_hr": xs},
        families=fams,
        values=values,
        priors={"mu": priors.mu.label},
        k=data.k,
        k_rct=int((~nr).sum()),
        source=data.source,
        notes=notes,
    )
    grid.timing["grid_s"] = time.perf_counter() - t0
    if check_points > 0:
        t1 = time.perf_counter()
        grid.max_error = interpolation_error(grid, data, priors, n=check_points)
        grid.n_checks = int(check_points)
        grid.timing["check_s"] = time.perf_counter() - t1
    return grid


# --------------------------------------------------------------------------------------------
# Settings, direct computation and interpolation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One point of the explorer: tau prior (family, scale), bias prior (mean on the HR scale,
    SD on the log scale), down-weighting alpha and threshold T."""

    family: str
    tau_scale: float
    bias_mean: float
    bias_sd: float
    alpha: float
    threshold: float


@dataclass(frozen=True)
class Answer:
    """One model's answer at a setting: HR median and 95% interval, P(HR < T)."""

    hr_median: float
    hr_q025: float
    hr_q975: float
    p_hr_below: float


def direct(data: ModelData, setting: Setting, priors: PriorConfig | None = None, *,
           n_grid: int = MIN_NODES) -> dict[str, Answer]:
    """The four models computed directly (no interpolation) at one setting.

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.spec import ModelSpec
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> out = direct(data, Setting("halfnormal", 0.5, 1.0, 0.5, 0.5, 0.8))
    >>> round(out["bias"].hr_median, 2), round(out["bias"].p_hr_below, 3)
    (0.91, 0.052)
    """
    return direct_many(data, [setting], priors, n_grid=n_grid)[0]


def direct_many(data: ModelData, settings: Sequence[Setting], priors: PriorConfig | None = None, *,
                n_grid: int = MIN_NODES) -> list[dict[str, Answer]]:
    """:func:`direct` at many settings; settings sharing a tau prior are computed together (one
    tau quadrature covering all of them).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.spec import ModelSpec
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> two = direct_many(data, [Setting("halfnormal", 0.5, 1.0, 0.5, 0.5, 0.8), Setting("halfnormal", 0.5, 0.8, 0.1, 0.0, 0.9)])
    >>> [round(a["downweight"].p_hr_below, 3) for a in two]  # alpha = 0: the RCTs alone
    [0.97, 0.383]
    """
    priors = resolve_priors() if priors is None else priors
    pb = _problem(data, priors)
    groups: dict[tuple[str, float], list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault((s.family, float(s.tau_scale)), []).append(i)
    out: list[dict[str, Answer]] = [{} for _ in settings]
    for (family, scale), idx in groups.items():
        ss = [settings[i] for i in idx]
        res = _tau_models(
            pb, tau_prior(family, scale), np.log([s.bias_mean for s in ss]), 1.0 / np.array([s.bias_sd for s in ss]) ** 2,
            np.array([float(s.alpha) for s in ss]), np.log([s.threshold for s in ss]), n_grid,
        )
        for r, i in enumerate(idx):
            for m in MODEL_AXES:
                row = 0 if m == "rct" else r
                med, lo, hi = np.exp(res[m].q[row])
                out[i][m] = Answer(float(med), float(lo), float(hi), float(res[m].p[row, r]))
    return out


def probit(p: np.ndarray | float) -> np.ndarray:
    """``Phi^{-1}(P)`` with P clipped to [:data:`P_CLIP`, 1 - :data:`P_CLIP`].

    Examples
    --------
    >>> probit(np.array([0.5, 0.0])).round(3).tolist()
    [0.0, -4.753]
    """
    return special.ndtri(np.clip(p, P_CLIP, 1.0 - P_CLIP))


def _weights(axis: np.ndarray, x: float, log: bool) -> tuple[int, float]:
    """Lower index and fraction of ``x`` in the axis (clamped to its ends)."""
    a = np.log(axis) if log else axis
    v = math.log(x) if log else x
    if v <= a[0]:
        return 0, 0.0
    if v >= a[-1]:
        return a.size - 2, 1.0
    i = int(np.searchsorted(a, v, side="right") - 1)
    return i, float((v - a[i]) / (a[i + 1] - a[i]))


#: Interpolation coordinates: which axes are interpolated on the log scale.
LOG_AXES: dict[str, bool] = {"tau_scale": True, "bias_mean": True, "bias_sd": True, "alpha": False, "threshold": True}


def interpolate(grid: ExplorerGrid, model: str, setting: Setting) -> Answer:
    """Multilinear interpolation of one model's stored values at a setting (what the page does):
    log HR quantiles and the probit of P(HR < T) interpolated in (log tau scale, log bias mean,
    log bias SD, alpha, log T); settings outside the grid are clamped to its edges.

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.spec import ModelSpec
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> g = build_grid(data, resolution={"tau_per_octave": 1, "mean_per_octave": 2, "sd_per_octave": 1,
    ...                                  "alpha": 3, "t_step": 0.1}, families=["halfnormal"], check_points=0)
    >>> s = Setting("halfnormal", 0.5, 1.0, 0.5, 0.25, 0.8)  # on grid nodes: the stored numbers
    >>> round(interpolate(g, "bias", s).p_hr_below, 3)
    0.052
    """
    fam = grid.families.index(setting.family)
    names = MODEL_AXES[model]
    vals = grid.values[model]
    idx = [_weights(grid.axes[a], getattr(setting, a), LOG_AXES[a]) for a in names]
    ti, tf = _weights(grid.axes["threshold"], setting.threshold, LOG_AXES["threshold"])
    log_hr = np.zeros(3)
    z = 0.0
    cdf = "cdf" in vals
    zc, zs = np.zeros(grid.axes["cdf_hr"].size if cdf else 0), 0.0
    for corner in range(2 ** len(names)):
        w = 1.0
        pos: list[int] = [fam]
        for d, (i, f) in enumerate(idx):
            bit = (corner >> d) & 1
            w *= f if bit else 1.0 - f
            pos.append(i + bit)
        if w == 0.0:
            continue
        if cdf:
            zc += w * probit(vals["cdf"][tuple(pos)])
            zs += w * float(probit(vals["spike"][tuple(pos)]))
            continue
        log_hr += w * vals["log_hr"][tuple(pos)]
        row = probit(vals["p"][tuple(pos)])
        z += w * ((1.0 - tf) * row[ti] + tf * row[ti + 1])
    if cdf:
        return _from_cdf(np.log(grid.axes["cdf_hr"]), zc, float(special.ndtr(zs)), setting.threshold)
    med, lo, hi = np.exp(log_hr)
    return Answer(float(med), float(lo), float(hi), float(special.ndtr(z)))


def _from_cdf(lx: np.ndarray, zc: np.ndarray, spike: float, threshold: float) -> Answer:
    """The model average's answer from its interpolated CDF: ``F(x) = Phi(zc)`` at the nodes
    ``lx`` (log HR; probit-linear between them; the spike excluded) plus ``spike`` at log HR 0.
    Quantiles are the generalised inverse (exactly 1 where the spike holds them); P(HR < T)
    is ``F((log T)-)``: the spike counts only for T > 1 (the grid's T <= 1 never counts it)."""
    G = special.ndtr(zc)

    def inverse(t: float) -> float:
        if t <= G[0]:
            return float(lx[0])
        if t >= G[-1]:
            return float(lx[-1])
        j = min(int(np.searchsorted(G, t, side="right")) - 1, G.size - 2)
        dz = zc[j + 1] - zc[j]
        f = 0.0 if dz <= 0 else (float(special.ndtri(t)) - zc[j]) / dz
        return float(lx[j] + min(max(f, 0.0), 1.0) * (lx[j + 1] - lx[j]))

    j0 = int(np.flatnonzero(np.isclose(lx, 0.0, atol=1e-12))[0])
    below0 = float(G[j0])
    q = []
    for pr in _PROBS:
        if pr <= below0:
            q.append(inverse(pr))
        elif pr <= below0 + spike:
            q.append(0.0)
        else:
            q.append(inverse(pr - spike))
    lt = math.log(threshold)
    j = min(max(int(np.searchsorted(lx, lt, side="right")) - 1, 0), lx.size - 2)
    f = (lt - lx[j]) / (lx[j + 1] - lx[j])
    p = float(special.ndtr((1 - f) * zc[j] + f * zc[j + 1])) + (spike if threshold > 1.0 else 0.0)
    med, lo, hi = np.exp(q)
    return Answer(float(med), float(lo), float(hi), p)


def random_settings(grid: ExplorerGrid, n: int, seed: int = CHECK_SEED, per_prior: int = CHECK_GROUP) -> list[Setting]:
    """``n`` settings drawn uniformly over the grid's range (log-uniform on the log axes),
    ``per_prior`` at a time sharing a random tau prior (families in turn), so that
    :func:`direct_many` computes each group with one quadrature.

    Examples
    --------
    >>> g = ExplorerGrid({"tau_scale": np.array([0.1, 1.0]), "bias_mean": np.array([0.5, 1.0]),
    ...                   "bias_sd": np.array([0.1, 1.0]), "alpha": np.array([0.0, 1.0]),
    ...                   "threshold": np.array([0.6, 1.0])}, ("halfnormal",), {}, {}, 3, 1)
    >>> s = random_settings(g, 3, per_prior=2)
    >>> len(s), s[0].tau_scale == s[1].tau_scale != s[2].tau_scale
    (3, True)
    >>> all(0.1 <= x.tau_scale <= 1.0 and 0.6 <= x.threshold <= 1.0 for x in s)
    True
    """
    rng = np.random.default_rng(seed)

    def draw(a: str) -> float:
        lo, hi = float(grid.axes[a][0]), float(grid.axes[a][-1])
        return math.exp(rng.uniform(math.log(lo), math.log(hi))) if LOG_AXES[a] else float(rng.uniform(lo, hi))

    out: list[Setting] = []
    group = 0
    while len(out) < n:
        family, scale = grid.families[group % len(grid.families)], draw("tau_scale")
        for _ in range(min(per_prior, n - len(out))):
            out.append(Setting(family, scale, **{a: draw(a) for a in LOG_AXES if a != "tau_scale"}))
        group += 1
    return out


def interpolation_error(grid: ExplorerGrid, data: ModelData, priors: PriorConfig | None = None, *,
                        n: int = DEFAULT_CHECK_POINTS, seed: int = CHECK_SEED, n_grid: int = MIN_NODES) -> dict[str, Any]:
    """Worst error of the page's interpolation (values rounded as embedded) against direct
    exact computations at ``n`` random settings: ``hr`` the largest relative error of the HR
    median or an interval end, ``p`` the largest absolute error of P(HR < T), over the four
    models, and the same per model under ``models``."""
    shown = grid.decoded()
    per = {m: {"hr": 0.0, "p": 0.0} for m in MODEL_AXES}
    settings = random_settings(grid, n, seed)
    for s, ref in zip(settings, direct_many(data, settings, priors, n_grid=n_grid), strict=True):
        for m, r in ref.items():
            a = interpolate(shown, m, s)
            w = per[m]
            for x, y in ((a.hr_median, r.hr_median), (a.hr_q025, r.hr_q025), (a.hr_q975, r.hr_q975)):
                w["hr"] = max(w["hr"], abs(x / y - 1.0))
            w["p"] = max(w["p"], abs(a.p_hr_below - r.p_hr_below))
    return {
        "hr": max(w["hr"] for w in per.values()),
        "p": max(w["p"] for w in per.values()),
        "models": per,
    }


# --------------------------------------------------------------------------------------------
# The report's explorer
# --------------------------------------------------------------------------------------------
def current_setting(priors: PriorConfig, alpha: float, threshold: float) -> tuple[Setting, list[str]]:
    """The explorer's starting point: the analysis's tau and bias priors, alpha and threshold,
    each clamped into the grid's range (with a note when it had to be moved).

    Examples
    --------
    >>> s, notes = current_setting(resolve_priors(), 0.5, 0.8)
    >>> (s.family, s.tau_scale, s.bias_mean, s.bias_sd, s.alpha, s.threshold), notes
    (('halfnormal', 0.5, 1.0, 0.5, 0.5, 0.8), [])
    """
    notes = []
    tau = priors.tau
    if tau.family in ("halfnormal", "halfcauchy"):
        family, scale = tau.family, float(tau.params[0])
    elif tau.family == "exponential":
        family, scale = "exponential", 1.0 / float(tau.params[0])
    else:
        family, scale = "halfnormal", 0.5
        notes.append(f"the analysis's tau prior {tau.label} is not one of the explorer's families; it starts at half-normal(0.5)")
    delta = priors.delta
    if delta.is_normal:
        mean, sd = math.exp(float(delta.params[0])), float(delta.params[1])
    else:
        mean, sd = 1.0, 0.5
        notes.append(f"the analysis's bias prior {delta.label} is not normal; the explorer starts at normal(0, 0.5)")

    def clamp(name: str, x: float, lo: float, hi: float) -> float:
        if x < lo or x > hi:
            notes.append(f"the analysis's {name} {x:g} is outside the explorer's range {lo:g} to {hi:g}; it starts at the nearest end")
        return float(min(max(x, lo), hi))

    return Setting(
        family,
        clamp("tau-prior scale", scale, *TAU_SCALE_RANGE),
        clamp("bias mean", mean, *BIAS_MEAN_RANGE),
        clamp("bias SD", sd, *BIAS_SD_RANGE),
        clamp("alpha", float(alpha), 0.0, 1.0),
        clamp("threshold", float(threshold), *THRESHOLD_RANGE),
    ), notes


def explorer_analysis(
    data: ModelData,
    priors: PriorConfig | None = None,
    *,
    alpha: float = 0.5,
    threshold: float = 0.8,
    tipping: Any = None,
    file_arg: str = "",
    check_points: int = DEFAULT_CHECK_POINTS,
    resolution: dict[str, float] | None = None,
) -> ExplorerGrid:
    """The grid of :func:`build_grid` with what the page needs besides: the starting setting
    (:func:`current_setting`), the tipping contour of a
    :class:`~synthesis.models.tipping.TippingResult` (``tipping``; drawn for comparison) and the
    pieces of the ``synthesis fit`` / ``synthesis average`` commands (``file_arg``: the FILE
    argument, empty for the bundled data; a ``--mu-prior`` when the mu prior is not the default).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.spec import ModelSpec
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> g = explorer_analysis(data, check_points=0, resolution={"tau_per_octave": 1, "mean_per_octave": 2,
    ...                       "sd_per_octave": 1, "alpha": 3, "t_step": 0.1})
    >>> g.current.tau_scale, g.commands["mu_prior"]
    (0.5, '')
    """
    priors = resolve_priors() if priors is None else priors
    current, notes = current_setting(priors, alpha, threshold)
    grid = build_grid(data, priors, resolution=resolution, check_points=check_points)
    grid.current = current
    grid.notes.extend(notes)
    m0, s0 = priors.mu.params
    default_mu = resolve_priors().mu.params
    grid.commands = {
        "file": file_arg,
        "mu_prior": "" if (m0, s0) == tuple(default_mu) else f"normal({m0:g}, {s0:g})",
    }
    if tipping is not None:
        grid.tipping = {
            "threshold": float(tipping.threshold),
            "level": float(tipping.level),
            "tau_prior": str(tipping.priors.get("tau", "")),
            "contour": [[float(c.bias_mean), float(c.bias_sd)] for c in tipping.contour],
        }
    return grid


def explorer_for(table: StudySource, spec: ModelSpec, *, threshold: float, tipping: Any = None,
                 check_points: int = DEFAULT_CHECK_POINTS) -> ExplorerGrid | None:
    """The explorer of an analysis (``synthesis report/run``): the priors, alpha and threshold of
    the analysis's design-bias model ``spec`` as the starting setting. ``None`` when the table
    does not have both randomised and non-randomised studies (the page says so); above
    :data:`MAX_STUDIES` studies a :class:`~synthesis.errors.ModelError` says why not.

    Examples
    --------
    >>> import synthesis as syn
    >>> g = explorer_for(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"), threshold=0.8, check_points=0)
    >>> g.commands["file"], g.current.threshold
    ('', 0.8)
    """
    if not has_bias_dimension(table):
        return None
    if table.k > MAX_STUDIES:
        raise ModelError(f"the sensitivity explorer is computed up to {MAX_STUDIES:,} studies (k = {table.k:,})")
    bias = ModelSpec("bias", priors=spec.priors, alpha=spec.alpha)
    data = ModelData.from_table(table, bias)
    source = str(getattr(table, "source", ""))
    path = getattr(table, "path", None)
    file_arg = "" if "(bundled " in source or path is None else str(path)
    return explorer_analysis(data, spec.priors, alpha=spec.alpha, threshold=threshold, tipping=tipping,
                             file_arg=file_arg, check_points=check_points)


class DeferredExplorer:
    """An analysis's explorer, computed on first use (:meth:`get`): ``synthesis report/run``
    write it; an analysis that is never reported (a notebook, most tests) does not pay for the
    grid. A failure (:class:`~synthesis.errors.SynthesisError`) is appended to ``warnings`` as
    "sensitivity explorer not computed: ..." and the explorer is ``None``; the time goes to
    ``timing["explorer_s"]``.

    Examples
    --------
    >>> calls = []
    >>> d = DeferredExplorer(lambda: calls.append(1) or "grid", warnings=[], timing={})
    >>> len(calls)
    0
    >>> d.get(), d.get(), len(calls)
    ('grid', 'grid', 1)
    """

    _UNSET = object()

    def __init__(self, compute: Any, *, warnings: list[str], timing: dict[str, float]) -> None:
        self._compute = compute
        self._value: Any = self._UNSET
        self._warnings = warnings
        self._timing = timing

    def get(self) -> ExplorerGrid | None:
        """The explorer (computed now if it was not yet), or ``None``."""
        if self._value is self._UNSET:
            from synthesis.errors import SynthesisError

            t0 = time.perf_counter()
            try:
                self._value = self._compute()
            except SynthesisError as exc:
                self._value = None
                self._warnings.append(f"sensitivity explorer not computed: {exc}")
            self._timing["explorer_s"] = round(time.perf_counter() - t0, 3)
        return self._value

    def summary(self) -> dict[str, Any] | None:
        """:meth:`ExplorerGrid.summary` of the explorer (computing it), or ``None``."""
        grid = self.get()
        return None if grid is None else grid.summary()

    def to_json(self) -> dict[str, Any] | None:
        """:meth:`ExplorerGrid.to_json` of the explorer (computing it), or ``None``."""
        grid = self.get()
        return None if grid is None else grid.to_json()
