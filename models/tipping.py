r"""Tipping-point analysis of the design-bias model: for which bias priors does the answer flip?

The model is the ``bias`` model, variant ``additive``: for study ``i`` with observed log HR
``y_i`` and standard error ``s_i``,

.. math::

    y_i \sim N(\mu + \delta\, nr_i,\; s_i^2 + \tau^2), \qquad
    \mu \sim N(m_0, s_0^2), \quad \delta \sim N(\log b,\; \sigma_b^2), \quad \tau \sim p(\tau),

with ``nr_i = 1`` for a non-randomised study. ``b`` (``bias_mean``) is on the **hazard-ratio
scale**: the factor by which a non-randomised study's HR is believed to be multiplied by its
design bias (``b = 1``: unbiased; ``b = 0.8``: non-randomised HRs 20% too favourable);
``sigma_b`` (``bias_sd``) is the prior SD of the bias on the log-HR scale. ``mu`` is the log HR
of a randomised comparison; the question is ``P(HR < T) = P(mu < log T | y)``.

The tipping grid evaluates ``P(HR < T)`` and the posterior median HR at every (``b``,
``sigma_b``) of a grid (``b`` log-spaced over :data:`BIAS_MEAN_RANGE`, ``sigma_b`` log-spaced
over :data:`BIAS_SD_RANGE`) with the exact computation of :mod:`synthesis.models.exact` (the
coefficients integrated analytically given tau, tau by quadrature), vectorised over the grid:
given tau, with ``w_i = 1/(s_i^2 + tau^2)`` and the five sums

.. math::

    A = \sum w_i,\quad B = \sum w_i nr_i,\quad S_y = \sum w_i y_i,\quad
    S_{ny} = \sum w_i nr_i y_i,\quad S_{yy} = \sum w_i y_i^2,

the posterior of ``(mu, delta)`` is normal with precision
``P = [[A + 1/s_0^2, B], [B, B + 1/sigma_b^2]]`` and mean ``P^{-1} r``,
``r = (S_y + m_0/s_0^2,\; S_{ny} + \log b / sigma_b^2)``, and the marginal likelihood is

.. math::

    -2 \log p(y \mid \tau) = \text{const} + \sum_i \log(s_i^2 + \tau^2) + \log|P|
        + S_{yy} - r^\top P^{-1} r

(the terms that do not depend on tau drop out of the normalisation). One set of sums per tau
node therefore serves every bias prior; each grid point only reweights the nodes by its own
``p(tau) p(y | tau)``. The tau nodes are a Simpson rule uniform in ``u = asinh(tau / c)`` over
the union of the regions where each grid point's posterior density of tau is within
``exp(-40)`` of its maximum (located on a wide pilot grid), with as many nodes as the exact
engine uses for the narrowest of them. Then ``P(HR < T) = sum_g w_g Phi((log T - m_g) / s_g)``.
tests/test_tipping.py checks the numbers against :func:`~synthesis.models.exact.fit_exact`.

Cost: the sums are the only work proportional to k, done once on the pilot grid and once on the
final nodes (O(k x nodes)); every bias prior then costs O(nodes). :func:`tipping_analysis` builds
one quadrature covering the grid, the profile at ``bias_mean = 1`` and the midpoints between SD
neighbours, and evaluates all of them, and every step of the contour's root-finder, with it.

The contour is where ``P(HR < T)`` crosses ``level`` along ``bias_sd`` at each ``bias_mean``
(sign changes between grid neighbours, refined by Brent's method on the exact computation at
that single point, with the analysis's quadrature). The sentence reads the same computation at
``bias_mean = 1`` (no bias expected) and states the SD where it crosses as the bias prior's 95%
interval of the bias factor (asymmetric on the HR scale),

.. math::

    \left[e^{-1.96\,\sigma_b},\; e^{1.96\,\sigma_b}\right];

it then says, from the grid and its contour, on which side of ``b = 1`` (and over which ``b``
and SDs) other bias priors also give ``P(HR < T) > level`` (:func:`off_centre_regions`), so that
no grid point above the level goes unmentioned.

The down-weighting curve uses the ``downweight`` variant (the non-randomised studies' variances
divided by ``alpha``; Ibrahim and Chen 2000, power priors, doi:10.1214/ss/1009212673): at
``alpha = 0`` the ``re`` model fitted to the randomised studies only, at ``alpha = 1`` the
``re`` model fitted to every study as equal, each point as
:func:`~synthesis.models.exact.fit_exact` fits it (the same tau grid and summaries, through
:func:`~synthesis.models.exact.sweep_tau_priors` without the k study-effect summaries: the
variances depend on alpha, so each point is O(k x nodes)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize, special

from synthesis.base import INTERVAL_PROB
from synthesis.errors import InputError, ModelError
from synthesis.models.display import fmt
from synthesis.models.exact import exact_unsupported_reason, sweep_tau_priors
from synthesis.models.priors import PriorConfig, PriorSpec, parse_prior, resolve_priors
from synthesis.models.spec import ModelData, ModelSpec, check_thresholds, threshold_key

if TYPE_CHECKING:
    import pandas as pd

    from synthesis.models.results import FitResult

#: Range of the bias prior's mean on the hazard-ratio scale (the bias factor of non-randomised HRs).
BIAS_MEAN_RANGE: tuple[float, float] = (0.5, 1.25)
#: Range of the bias prior's SD (log-HR scale).
BIAS_SD_RANGE: tuple[float, float] = (0.02, 1.0)
#: Default grid: (number of bias means, number of bias SDs).
DEFAULT_GRID: tuple[int, int] = (40, 40)
#: Largest number of bias means or bias SDs on a side of the grid (200 x 200, 25 times the default,
#: takes ~9 s with --json on the bundled data; 400 x 400 took 24 s of CPU: both grow as the product).
MAX_GRID_SIDE = 200
#: Default decision threshold T of P(HR < T) and the level it is compared with.
DEFAULT_THRESHOLD = 0.8
DEFAULT_LEVEL = 0.5
#: Default number of alpha values on the down-weighting curve (spaced as ``(i / (n - 1))^2``:
#: P(HR < T) moves fastest near alpha = 0).
DEFAULT_ALPHA_POINTS = 21
#: The bias factor of "no bias expected": the sentence reads the SD profile at this mean.
UNBIASED = 1.0
#: Minimum number of tau quadrature nodes (the exact engine's default).
MIN_NODES = 257
#: Nodes of the wide pilot grid that locates each grid point's posterior mass of tau.
PILOT_POINTS = 256
#: Nodes cover the region where log p(tau | y) >= max - LOG_CUTOFF, for every grid point.
LOG_CUTOFF = 40.0
#: Largest (tau nodes x grid points) block held at once (8 MB per array).
BLOCK_CELLS = 1_000_000
#: Largest (tau nodes x studies) block of the per-node sums (2 MB per array: cache-sized).
SUM_BLOCK_CELLS = 250_000
#: Brent's method stops when the crossing's log(bias_sd) is known to this absolute tolerance.
CONTOUR_XTOL = 1e-10
_Z = float(special.ndtri(0.5 + INTERVAL_PROB / 2.0))  # 1.959964


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def check_level(level: float) -> float:
    """The probability level a tipping point is defined by: a number strictly between 0 and 1.

    Examples
    --------
    >>> check_level(0.5)
    0.5
    >>> check_level(1)
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: level must be a probability strictly between 0 and 1, got 1
    """
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level must be a probability strictly between 0 and 1, got {level!r}", parameter="level") from None
    if not 0.0 < value < 1.0:
        raise InputError(f"level must be a probability strictly between 0 and 1, got {value:g}", parameter="level")
    return value


def check_grid(grid: int | Sequence[int]) -> tuple[int, int]:
    """Grid size as (number of bias means, number of bias SDs), each an integer from 2 to
    :data:`MAX_GRID_SIDE`.

    Examples
    --------
    >>> check_grid(40), check_grid((10, 20))
    ((40, 40), (10, 20))
    >>> check_grid(1)
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: grid sizes must be integers >= 2, got (1, 1)
    >>> check_grid(100000)
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: grid sizes must be at most 200 a side (200 x 200 points), got (100000, 100000)
    """
    sizes = (grid, grid) if isinstance(grid, (int, np.integer)) else tuple(grid)
    if len(sizes) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2 for n in sizes):
        raise InputError(f"grid sizes must be integers >= 2, got {sizes!r}", parameter="grid")
    if max(sizes) > MAX_GRID_SIDE:
        raise InputError(
            f"grid sizes must be at most {MAX_GRID_SIDE} a side ({MAX_GRID_SIDE} x {MAX_GRID_SIDE} points), "
            f"got {tuple(int(n) for n in sizes)!r}",
            parameter="grid",
        )
    return int(sizes[0]), int(sizes[1])


def _check_data(data: ModelData) -> None:
    nr = np.asarray(data.nonrandomised, dtype=bool)
    if nr.all() or not nr.any():
        which = "no randomised (rct)" if nr.all() else "no non-randomised"
        raise ModelError(
            f"{data.source or 'the data'}: a tipping-point analysis needs both randomised and "
            f"non-randomised studies (a 'design' column with rct and prospective/retrospective "
            f"rows); these {data.k} studies include {which} study"
        )


def _check_priors(priors: PriorConfig, data: ModelData) -> None:
    if not priors.mu.is_normal:
        raise ModelError(
            f"a tipping-point analysis is computed exactly and needs a normal prior on mu; got "
            f"{priors.mu.label} (give normal(m, s))",
            parameter="mu_prior",
        )
    spec = ModelSpec("bias", priors=priors)
    reason = exact_unsupported_reason(spec, data)
    if reason is not None:
        raise ModelError(reason)


def bias_prior(bias_mean: float, bias_sd: float) -> PriorSpec:
    """The delta prior ``normal(log(bias_mean), bias_sd)`` (``bias_mean`` on the HR scale).

    Examples
    --------
    >>> bias_prior(1.0, 0.1).label
    'normal(mean=0, sd=0.1)'
    """
    if not (math.isfinite(bias_mean) and bias_mean > 0 and math.isfinite(bias_sd) and bias_sd > 0):
        raise InputError(f"a bias prior needs bias_mean > 0 and bias_sd > 0, got {bias_mean!r}, {bias_sd!r}")
    return parse_prior(f"normal({math.log(bias_mean)!r}, {float(bias_sd)!r})", "delta")


def bias_spec(priors: PriorConfig, bias_mean: float, bias_sd: float) -> ModelSpec:
    """The additive bias model with the bias prior at (``bias_mean``, ``bias_sd``), for
    :func:`~synthesis.models.exact.fit_exact`.

    Examples
    --------
    >>> bias_spec(resolve_priors(), 0.8, 0.2).priors.delta.params[1]
    0.2
    """
    return ModelSpec("bias", bias_variant="additive", priors=replace(priors, delta=bias_prior(bias_mean, bias_sd)))


def within_percent(bias_sd: float | np.ndarray) -> float | np.ndarray:
    r"""``X = 100 (exp(1.96 sd) - 1)``: a bias prior centred on 1 with SD ``sd`` (log scale)
    puts 95% probability on the bias factor lying within ``[1/(1 + X/100), 1 + X/100]``
    ("unbiased to within ±X%").

    Examples
    --------
    >>> round(within_percent(0.1), 1)
    21.7
    """
    out = 100.0 * np.expm1(_Z * np.asarray(bias_sd, dtype=float))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# The vectorised exact computation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sums:
    """Per tau node: the sums of the conditional linear model (y centred on ``centre``)."""

    tau: np.ndarray
    A: np.ndarray
    B: np.ndarray
    Sy: np.ndarray
    Sny: np.ndarray
    Syy: np.ndarray
    logdet_v: np.ndarray


def _sums(y: np.ndarray, s2: np.ndarray, nr: np.ndarray, tau: np.ndarray) -> _Sums:
    """The sums at every node, in blocks of at most :data:`SUM_BLOCK_CELLS` node-study cells
    (memory flat in k); the only O(k) work of the analysis besides the down-weighting curve."""
    cols = np.stack([np.ones_like(y), nr, y, nr * y, y * y], axis=1)  # (k, 5)
    S = np.empty((tau.size, 5))
    logdet = np.empty(tau.size)
    step = max(1, SUM_BLOCK_CELLS // max(y.size, 1))
    for i in range(0, tau.size, step):
        t = tau[i : i + step]
        v = s2[None, :] + (t * t)[:, None]  # (nodes, k)
        logdet[i : i + step] = np.log(v).sum(axis=1)
        S[i : i + step] = np.reciprocal(v, out=v) @ cols
    return _Sums(tau, S[:, 0], S[:, 1], S[:, 2], S[:, 3], S[:, 4], logdet)


@dataclass(frozen=True)
class _Problem:
    """The data and the fixed priors, centred: ``y - centre``, ``m0 - centre``."""

    y: np.ndarray
    s2: np.ndarray
    nr: np.ndarray
    centre: float
    m0: float
    a0: float  # 1 / s0^2
    tau_prior: PriorSpec

    @classmethod
    def make(cls, data: ModelData, priors: PriorConfig) -> _Problem:
        s2 = np.asarray(data.se, dtype=float) ** 2
        y = np.asarray(data.y, dtype=float)
        centre = float(np.sum(y / s2) / np.sum(1.0 / s2))
        m0, s0 = priors.mu.params
        return cls(y - centre, s2, np.asarray(data.nonrandomised, dtype=float), centre, m0 - centre, 1.0 / s0**2, priors.tau)


def _conditional(sums: _Sums, p: _Problem, d0: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G, n): log p(y | tau) up to terms constant in tau, and mu's conditional mean and SD.

    ``d0`` = log(bias_mean), ``h`` = 1 / bias_sd^2, each (n,)."""
    A = sums.A[:, None] + p.a0
    B = sums.B[:, None]
    Bh = B + h[None, :]
    det = A * Bh - B * B
    r0 = sums.Sy[:, None] + p.m0 * p.a0
    r1 = sums.Sny[:, None] + d0[None, :] * h[None, :]
    rpr = (Bh * r0 * r0 - 2.0 * B * r0 * r1 + A * r1 * r1) / det
    loglik = -0.5 * (sums.logdet_v[:, None] + np.log(det) + sums.Syy[:, None] - rpr)
    mean = (Bh * r0 - B * r1) / det
    sd = np.sqrt(Bh / det)
    return loglik, mean, sd


def prior_support(prior: PriorSpec) -> tuple[float, float, float, float]:
    """Support ends, median and 99.9% quantile of the tau prior: ``(lo, median, q999, hi)``.

    Examples
    --------
    >>> from synthesis.models.priors import parse_prior
    >>> [round(v, 4) for v in prior_support(parse_prior("halfnormal(0.5)", "tau"))]
    [0.0, 0.3372, 1.6452, inf]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, med, q999, hi = (float(v) for v in prior.ppf(np.array([0.0, 0.5, 0.999, 1.0])))
    lo = max(lo, 0.0) if math.isfinite(lo) else 0.0
    if not math.isfinite(hi) or hi <= lo:
        hi = math.inf
    return lo, med, q999, hi


def _blocks(n_points: int, n_nodes: int) -> list[slice]:
    step = max(1, BLOCK_CELLS // max(n_nodes, 1))
    return [slice(i, min(i + step, n_points)) for i in range(0, n_points, step)]


def _pilot_sums(p: _Problem) -> tuple[_Sums, np.ndarray]:
    """The sums on the wide pilot grid (uniform in asinh(tau / c0) from 0 to 10^4 times the
    largest scale, c0 a thousandth of the smallest) and the log of prior density x Jacobian."""
    _, med, q999, _ = prior_support(p.tau_prior)
    sd = np.sqrt(p.s2)
    small = min(float(sd.min()), med if math.isfinite(med) and med > 0 else math.inf)
    big = max(float(sd.max()), float(np.ptp(p.y)), min(q999, 1e8) if math.isfinite(q999) else 0.0)
    c0 = 1e-3 * small
    u = np.linspace(0.0, math.asinh(1e4 * big / c0), PILOT_POINTS)
    tau = c0 * np.sinh(u)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = p.tau_prior.logpdf(tau) + np.log(c0 * np.cosh(u))
    return _sums(p.y, p.s2, p.nr, tau), base


def _tau_nodes(
    p: _Problem, d0: np.ndarray, h: np.ndarray, n_grid: int, pilot: tuple[_Sums, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Simpson nodes in u = asinh(tau / c) covering every point's posterior mass of tau, with
    their weights for integrals over tau, and whether some posterior reached the pilot's end
    (``pilot``: :func:`_pilot_sums`)."""
    s_lo, _, _, s_hi = prior_support(p.tau_prior)
    sums, base = pilot
    tau = sums.tau
    los, his, meds, truncated = [], [], [], False
    for sl in _blocks(d0.size, tau.size):
        loglik, _, _ = _conditional(sums, p, d0[sl], h[sl])
        lp = loglik + base[:, None]
        lp = np.where(np.isfinite(lp), lp, -np.inf)
        peak = lp.max(axis=0)
        keep = lp >= peak - LOG_CUTOFF
        first = keep.argmax(axis=0)
        last = tau.size - 1 - keep[::-1].argmax(axis=0)
        truncated = truncated or bool((last == tau.size - 1).any())
        i0, i1 = np.maximum(first - 1, 0), np.minimum(last + 1, tau.size - 1)
        los.append(np.where(i0 == 0, 0.0, tau[i0]))
        his.append(tau[i1])
        mass = np.cumsum(np.exp(lp - peak), axis=0)
        meds.append(tau[(mass < 0.5 * mass[-1]).sum(axis=0)])
    lo_p = np.maximum(np.concatenate(los), s_lo)
    hi_p = np.minimum(np.concatenate(his), s_hi)
    med_p = np.clip(np.concatenate(meds), lo_p, hi_p)
    nodes, q = covering_nodes(lo_p, hi_p, med_p, n_grid)
    return nodes, q, truncated


def covering_nodes(lo_p: np.ndarray, hi_p: np.ndarray, med_p: np.ndarray, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    r"""One set of Simpson nodes for many posteriors of tau at once, and their weights.

    Each posterior ``j`` has its mass in ``[lo_p[j], hi_p[j]]`` with median ``med_p[j]``. The
    nodes are even in ``u = asinh(tau / c)`` (linear below ``c``, logarithmic above, as in the
    exact engine), with ``c`` the smallest of half a median and a positive lower end, and so
    many that the narrowest posterior spans at least ``n_grid`` of them (at most ``16 n_grid``
    in all); the weights are Simpson's times the Jacobian ``c cosh u``.

    Examples
    --------
    >>> nodes, q = covering_nodes(np.array([0.0]), np.array([1.0]), np.array([0.2]), 33)
    >>> bool(nodes[0] == 0.0 and nodes[-1] == 1.0), round(float(q.sum()), 12)
    (True, 1.0)
    """
    lo, hi = float(lo_p.min()), float(hi_p.max())
    c = float(np.min(np.where(lo_p > 0, np.minimum(0.5 * med_p, lo_p), 0.5 * med_p)))
    c = max(c, 1e-12 * hi, 1e-300)
    u_lo, u_hi = math.asinh(lo / c), math.asinh(hi / c)
    narrowest = max(float(np.min(np.arcsinh(hi_p / c) - np.arcsinh(lo_p / c))), 1e-12)
    n = int(min(n_grid * math.ceil((u_hi - u_lo) / narrowest), 16 * n_grid))
    n = max(n, n_grid, 5)
    n += 1 - n % 2
    uu = np.linspace(u_lo, u_hi, n)
    nodes = np.clip(c * np.sinh(uu), lo, hi)
    nodes[0], nodes[-1] = lo, hi
    q = np.full(n, 2.0)
    q[1::2] = 4.0
    q[0] = q[-1] = 1.0
    q = q * (u_hi - u_lo) / (n - 1) / 3.0 * c * np.cosh(uu)
    return nodes, q


def _mixture_quantile(W: np.ndarray, M: np.ndarray, S: np.ndarray, prob: float) -> np.ndarray:
    """Quantile ``prob`` of each column's normal mixture ``sum_g W[g] N(M[g], S[g]^2)``:
    Newton's method on the mixture CDF, safeguarded by bisection inside a bracket."""
    mean = np.sum(W * M, axis=0)
    var = np.sum(W * (S * S + M * M), axis=0) - mean * mean
    lo, hi = (M - 40.0 * S).min(axis=0), (M + 40.0 * S).max(axis=0)
    x = np.clip(mean + np.sqrt(np.maximum(var, 1e-300)) * special.ndtri(prob), lo, hi)
    for _ in range(100):
        z = (x - M) / S
        err = np.sum(W * special.ndtr(z), axis=0) - prob
        pdf = np.sum(W * np.exp(-0.5 * z * z) / S, axis=0) / math.sqrt(2.0 * math.pi)
        lo = np.where(err <= 0.0, x, lo)
        hi = np.where(err >= 0.0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - err / pdf
        bad = ~np.isfinite(new) | (new < lo) | (new > hi)
        new = np.where(bad, 0.5 * (lo + hi), new)
        done = np.abs(new - x) <= 1e-13 * (1.0 + np.abs(x))
        x = new
        if done.all():
            break
    return x


@dataclass(frozen=True)
class BiasPointSummaries:
    """Posterior summaries at a set of bias priors (arrays shaped like the inputs)."""

    p_hr_below: np.ndarray
    hr_median: np.ndarray
    n_nodes: int
    truncated: bool = False


def bias_prior_summaries(
    data: ModelData,
    priors: PriorConfig,
    bias_mean: np.ndarray | float,
    bias_sd: np.ndarray | float,
    threshold: float,
    *,
    median: bool = True,
    n_grid: int = MIN_NODES,
) -> BiasPointSummaries:
    r"""``P(HR < T)`` and the posterior median HR of a randomised comparison under the additive
    bias model, at each bias prior ``delta ~ N(log bias_mean, bias_sd^2)`` (vectorised).

    Parameters
    ----------
    data
        Studies with both designs.
    priors
        The mu prior (normal) and tau prior (any scale family); the delta prior is replaced by
        each (``bias_mean``, ``bias_sd``).
    bias_mean, bias_sd
        Broadcastable arrays: the bias factor on the HR scale (> 0) and the prior SD of its log.
    threshold
        T, a hazard ratio > 0.
    median
        Also compute the posterior median HR (else NaN).
    n_grid
        Minimum number of tau nodes for the narrowest posterior (see the module docstring).

    Returns
    -------
    BiasPointSummaries
        Arrays of the broadcast shape.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> out = bias_prior_summaries(data, spec.priors, 1.0, 0.5, 0.8)
    >>> round(float(out.p_hr_below), 3), round(float(out.hr_median), 2)
    (0.052, 0.91)
    """
    (t,) = check_thresholds([threshold], "threshold")
    _check_data(data)
    _check_priors(priors, data)
    bm, bs = np.broadcast_arrays(np.asarray(bias_mean, dtype=float), np.asarray(bias_sd, dtype=float))
    if not (np.all(np.isfinite(bm)) and np.all(bm > 0) and np.all(np.isfinite(bs)) and np.all(bs > 0)):
        raise InputError("bias means and bias SDs must be finite and > 0")
    shape = bm.shape
    d0, h = np.log(bm.ravel()), 1.0 / bs.ravel() ** 2
    return _Quadrature.make(data, priors, d0, h, n_grid).summaries(d0, h, t, median=median, shape=shape)


@dataclass(frozen=True)
class _Quadrature:
    """One tau quadrature (nodes, weights x prior density, the sums at the nodes) serving any
    bias prior whose posterior mass of tau it covers: evaluating a bias prior costs O(nodes),
    not O(k). Built once for all the points an analysis needs (the grid, the profile at bias
    mean 1 and the points between grid neighbours where the contour is refined)."""

    problem: _Problem
    sums: _Sums
    log_q: np.ndarray
    truncated: bool

    @classmethod
    def make(cls, data: ModelData, priors: PriorConfig, d0: np.ndarray, h: np.ndarray, n_grid: int) -> _Quadrature:
        """Nodes covering the posterior mass of tau at every (``d0``, ``h``); the O(k) work."""
        p = _Problem.make(data, priors)
        nodes, q, truncated = _tau_nodes(p, d0, h, n_grid, _pilot_sums(p))
        with np.errstate(divide="ignore"):
            log_q = np.log(q) + p.tau_prior.logpdf(nodes)
        return cls(p, _sums(p.y, p.s2, p.nr, nodes), log_q, truncated)

    @property
    def n_nodes(self) -> int:
        return int(self.log_q.size)

    def summaries(
        self, d0: np.ndarray, h: np.ndarray, threshold: float, *, median: bool = True, shape: tuple[int, ...] | None = None
    ) -> BiasPointSummaries:
        """P(HR < T) (and the median HR) at bias priors ``d0`` = log(bias_mean), ``h`` =
        1 / bias_sd^2 (1-D arrays), reshaped to ``shape``."""
        p = self.problem
        x = math.log(threshold) - p.centre
        prob = np.empty(d0.size)
        med = np.full(d0.size, np.nan)
        for sl in _blocks(d0.size, self.n_nodes):
            loglik, mean, sd = _conditional(self.sums, p, d0[sl], h[sl])
            lw = loglik + self.log_q[:, None]
            lw = np.where(np.isfinite(lw), lw, -np.inf)
            W = np.exp(lw - lw.max(axis=0))
            W /= W.sum(axis=0)
            prob[sl] = np.sum(W * special.ndtr((x - mean) / sd), axis=0)
            if median:
                med[sl] = np.exp(_mixture_quantile(W, mean, sd, 0.5) + p.centre)
        shape = (d0.size,) if shape is None else shape
        return BiasPointSummaries(prob.reshape(shape), med.reshape(shape), self.n_nodes, self.truncated)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlphaPoint:
    """One point of the down-weighting curve (``alpha = 0``: randomised studies only)."""

    alpha: float
    hr_median: float
    hr_q025: float
    hr_q975: float
    p_hr_below: float

    def to_dict(self) -> dict[str, float]:
        return {
            "alpha": self.alpha,
            "hr_median": self.hr_median,
            "hr_q025": self.hr_q025,
            "hr_q975": self.hr_q975,
            "p_hr_below": self.p_hr_below,
        }


@dataclass(frozen=True)
class Crossing:
    """A point where P(HR < T) crosses the level along bias_sd; ``rising`` when P increases
    with bias_sd there."""

    bias_mean: float
    bias_sd: float
    rising: bool


@dataclass(frozen=True)
class AlphaCrossing:
    """An alpha where P(HR < T) crosses the level on the down-weighting curve."""

    alpha: float
    rising: bool


@dataclass
class TippingResult:
    """A tipping-point analysis: the grid, its contour, the down-weighting curve and the
    sentence a reader needs (see :func:`tipping_analysis`).

    Scales: ``bias_mean`` (attributes ``bias_means``, the JSON and CSV key ``bias_mean``) is the
    bias factor ``b`` on the **hazard-ratio scale** (1 = unbiased), while ``bias_sd``
    (``bias_sds``) is the prior SD of ``log b``, on the **log-HR scale**; the keys are a public
    contract and keep these names. ``off_centre`` summarises where ``P(HR < T) > level`` off
    ``b = 1`` (:func:`off_centre_regions`). :meth:`plot_map` and :meth:`plot_alpha_curve` draw
    the figures (:mod:`synthesis.plots.tipping`).
    """

    threshold: float
    level: float
    bias_means: np.ndarray
    bias_sds: np.ndarray
    p_hr_below: np.ndarray  # (n_means, n_sds)
    hr_median: np.ndarray  # (n_means, n_sds)
    contour: list[Crossing]
    unbiased_sds: np.ndarray  # the SD profile at bias_mean = UNBIASED
    unbiased_p: np.ndarray
    unbiased_crossings: list[Crossing]
    alpha_curve: list[AlphaPoint]
    alpha_crossings: list[AlphaCrossing]
    sentence: str
    priors: dict[str, str]
    k: int
    k_rct: int
    source: str = ""
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    off_centre: list[OffCentreRegion] = field(default_factory=list)

    def grid_rows(self) -> list[dict[str, float]]:
        """The grid as rows ``{bias_mean, bias_sd, hr_median, p_hr_below}``, bias_mean-major."""
        return [
            {
                "bias_mean": float(m),
                "bias_sd": float(s),
                "hr_median": float(self.hr_median[i, j]),
                "p_hr_below": float(self.p_hr_below[i, j]),
            }
            for i, m in enumerate(self.bias_means)
            for j, s in enumerate(self.bias_sds)
        ]

    def to_json(self) -> dict[str, Any]:
        """The ``tipping --json`` contract: ``threshold``, ``level``, ``grid``, ``contour``,
        ``alpha_curve``, plus ``sentence``, ``unbiased`` (the SD profile at bias mean 1; each
        crossing with its ``bias_factor_interval``), ``off_centre`` (:class:`OffCentreRegion`
        per side of b = 1), ``priors``, ``k``, ``k_rct``, ``source`` and ``notes``.
        ``bias_mean`` is the bias factor on the HR scale, ``bias_sd`` the SD of its log."""
        return {
            "threshold": self.threshold,
            "level": self.level,
            "grid": self.grid_rows(),
            "contour": [{"bias_mean": c.bias_mean, "bias_sd": c.bias_sd} for c in self.contour],
            "alpha_curve": [a.to_dict() for a in self.alpha_curve],
            "alpha_crossings": [{"alpha": c.alpha, "rising": c.rising} for c in self.alpha_crossings],
            "sentence": self.sentence,
            "unbiased": {
                "bias_mean": UNBIASED,
                "profile": [{"bias_sd": float(s), "p_hr_below": float(v)} for s, v in zip(self.unbiased_sds, self.unbiased_p, strict=True)],
                "crossings": [
                    {"bias_sd": c.bias_sd, "within_percent": float(within_percent(c.bias_sd)), "rising": c.rising,
                     "bias_factor_interval": list(bias_interval(c.bias_sd))}
                    for c in self.unbiased_crossings
                ],
            },
            "off_centre": [r.to_dict() for r in self.off_centre],
            "model": {"model": "bias", "bias_variant": "additive", "priors": dict(self.priors)},
            "k": self.k,
            "k_rct": self.k_rct,
            "source": self.source,
            "notes": list(self.notes),
        }

    def to_frame(self, what: str = "grid") -> pd.DataFrame:
        """``"grid"`` (one row per grid point), ``"contour"`` or ``"alpha"`` (the curve) as a table.

        Examples
        --------
        >>> import synthesis as syn
        >>> spec = ModelSpec("bias")
        >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
        >>> res = tipping_analysis(data, spec.priors, grid=(3, 3), alpha_points=3)
        >>> res.to_frame().shape, list(res.to_frame("alpha").columns)[:2]
        ((9, 4), ['alpha', 'hr_median'])
        """
        import pandas as pd

        if what == "grid":
            return pd.DataFrame(self.grid_rows(), columns=["bias_mean", "bias_sd", "hr_median", "p_hr_below"])
        if what == "contour":
            return pd.DataFrame([{"bias_mean": c.bias_mean, "bias_sd": c.bias_sd} for c in self.contour], columns=["bias_mean", "bias_sd"])
        if what == "alpha":
            return pd.DataFrame([a.to_dict() for a in self.alpha_curve], columns=["alpha", "hr_median", "hr_q025", "hr_q975", "p_hr_below"])
        raise InputError(f"what must be 'grid', 'contour' or 'alpha', got {what!r}")

    def __str__(self) -> str:
        return format_tipping(self)

    def plot_map(self, ax: Any = None, **kwargs: Any) -> Any:
        """Heat map of P(HR < T) over the bias prior with its contour
        (:func:`synthesis.plots.plot_tipping_map`); keyword arguments go to the plot function.

        Examples
        --------
        >>> import synthesis as syn
        >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
        >>> fig = tipping_analysis(data, grid=(3, 3), alpha_points=2).plot_map()
        >>> fig.axes[0].get_xscale()
        'log'
        """
        from synthesis.models.results import _plotting

        return _plotting().plot_tipping_map(self, ax=ax, **kwargs)

    def plot_alpha_curve(self, fig: Any = None, **kwargs: Any) -> Any:
        """The down-weighting curve (:func:`synthesis.plots.plot_alpha_curve`); keyword
        arguments go to the plot function."""
        from synthesis.models.results import _plotting

        return _plotting().plot_alpha_curve(self, fig=fig, **kwargs)

    def _repr_html_(self) -> str:
        """The sentence, the contour and the down-weighting curve as HTML (Jupyter)."""
        import html

        from synthesis.models.display import html_block, html_table

        contour = html_table(
            ["bias mean (HR scale)", "bias SD (log scale)"],
            [[f"{c.bias_mean:.3f}", f"{c.bias_sd:.4f}"] for c in self.contour],
            caption=f"Contour P(HR < {self.threshold:g}) = {self.level:g}",
        )
        curve = html_table(
            ["alpha", "HR (95% CrI)", f"P(HR < {self.threshold:g})"],
            [[f"{a.alpha:.3f}", f"{fmt(a.hr_median)} ({fmt(a.hr_q025)} to {fmt(a.hr_q975)})", fmt(a.p_hr_below)] for a in self.alpha_curve],
            caption="Down-weighting the non-randomised studies (alpha = 0: randomised only)",
        )
        return html_block("Tipping-point analysis", [f"<p>{html.escape(self.sentence)}</p>", contour, curve], self.notes)


# --------------------------------------------------------------------------------------------
# Contour and sentence
# --------------------------------------------------------------------------------------------
def _refine(
    quad: _Quadrature, mean: float, sds: np.ndarray, probs: np.ndarray, threshold: float, level: float,
) -> list[Crossing]:
    """Crossings of ``level`` along ``sds`` at ``mean``: sign changes of probs - level between
    neighbours, refined by Brent's method in log(bias_sd) on the single-point computation with
    the analysis's tau quadrature (``quad``, which covers the points between neighbours)."""
    above = probs > level
    out = []
    d0 = np.array([math.log(mean)])
    for j in np.flatnonzero(above[:-1] != above[1:]):

        def f(x: float) -> float:
            v = quad.summaries(d0, np.array([math.exp(-2.0 * x)]), threshold, median=False)
            return float(v.p_hr_below[0]) - level

        a, b = math.log(sds[j]), math.log(sds[j + 1])
        fa, fb = f(a), f(b)
        if fa == 0.0 or fb == 0.0 or (fa > 0) == (fb > 0):
            # the refined values disagree with the grid's in sign at an end (a crossing within
            # quadrature error of a node): take the grid's log-linear interpolation
            pa, pb = probs[j] - level, probs[j + 1] - level
            x = a + (b - a) * pa / (pa - pb) if pa != pb else a
        else:
            x = optimize.brentq(f, a, b, xtol=CONTOUR_XTOL)
        out.append(Crossing(float(mean), float(math.exp(x)), bool(probs[j + 1] > probs[j])))
    return out


def bias_interval(bias_sd: float, bias_mean: float = UNBIASED) -> tuple[float, float]:
    r"""The 95% prior interval of the bias factor, ``b exp(-/+ 1.96 sd)``, of the bias prior
    ``delta ~ N(log b, sd^2)`` (asymmetric on the HR scale).

    Examples
    --------
    >>> [round(v, 2) for v in bias_interval(0.0997)]
    [0.82, 1.22]
    """
    return bias_mean * math.exp(-_Z * bias_sd), bias_mean * math.exp(_Z * bias_sd)


def _interval_txt(bias_sd: float) -> str:
    lo, hi = bias_interval(bias_sd)
    return f"{lo:.2f} to {hi:.2f}"


def _sig3(x: float, *, up: bool) -> str:
    """``x`` to 3 significant figures rounded outwards (down for a lower bound, up for an upper
    one), so a printed range contains every value it summarises.

    Examples
    --------
    >>> _sig3(0.096934, up=True), _sig3(0.81912, up=False), _sig3(0.02, up=False)
    ('0.097', '0.819', '0.02')
    """
    if x == 0.0 or not math.isfinite(x):
        return f"{x:g}"
    e = math.floor(math.log10(abs(x))) - 2
    q = x / 10.0**e
    q = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    return f"{q * 10.0**e:.3g}"


#: How the sentence names the bias priors on each side of b = 1 (b multiplies a non-randomised
#: study's HR: below 1 it looks more favourable than it is, above 1 less).
SIDE_WORDS: dict[str, str] = {
    "below": "expect the non-randomised studies to exaggerate benefit (b < 1)",
    "above": "expect them to exaggerate harm (b > 1)",
}


@dataclass(frozen=True)
class OffCentreRegion:
    """Where, on one side of ``b = 1``, the grid has ``P(HR < T) > level``: the range of bias
    means (HR scale) of its rows and of bias SDs (log scale) its points and contour reach."""

    side: str  # "below" (b < 1) or "above" (b > 1)
    bias_mean_lo: float
    bias_mean_hi: float
    bias_sd_lo: float
    bias_sd_hi: float
    n_points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "bias_mean_lo": self.bias_mean_lo,
            "bias_mean_hi": self.bias_mean_hi,
            "bias_sd_lo": self.bias_sd_lo,
            "bias_sd_hi": self.bias_sd_hi,
            "n_points": self.n_points,
        }


def off_centre_regions(
    means: np.ndarray, sds: np.ndarray, probs: np.ndarray, contour: Sequence[Crossing], level: float
) -> list[OffCentreRegion]:
    """The grid points with ``P(HR < T) > level`` off ``b = 1``, summarised per side: the bias
    means of their rows, and the SD range reached by them and by the contour's crossings on those
    rows (a crossing is an edge of the region, so the range covers it between grid nodes).

    Examples
    --------
    >>> means, sds = np.array([0.8, 1.0, 1.2]), np.array([0.02, 0.2])
    >>> probs = np.array([[0.4, 0.1], [0.9, 0.2], [0.7, 0.3]])
    >>> [r.to_dict() for r in off_centre_regions(means, sds, probs, [Crossing(1.2, 0.1, False)], 0.5)]
    [{'side': 'above', 'bias_mean_lo': 1.2, 'bias_mean_hi': 1.2, 'bias_sd_lo': 0.02, 'bias_sd_hi': 0.1, 'n_points': 1}]
    """
    out = []
    above = np.asarray(probs) > level
    for side, on_side in (("below", means < UNBIASED), ("above", means > UNBIASED)):
        rows = np.flatnonzero(on_side & above.any(axis=1))
        if rows.size == 0:
            continue
        reach = [float(sds[j]) for i in rows for j in np.flatnonzero(above[i])]
        row_means = {float(means[i]) for i in rows}
        reach += [c.bias_sd for c in contour if c.bias_mean in row_means]
        out.append(OffCentreRegion(side, float(means[rows].min()), float(means[rows].max()), min(reach), max(reach),
                                   int(above[rows].sum())))
    return out


def _range_txt(name: str, lo: float, hi: float) -> str:
    """``name from lo to hi`` rounded outwards, or ``name = lo`` for a single value.

    Examples
    --------
    >>> _range_txt("b", 0.92145, 0.92145), _range_txt("SD", 0.02, 0.14461)
    ('b = 0.921', 'SD from 0.02 to 0.145')
    """
    if lo == hi:
        return f"{name} = {lo:.3g}"
    return f"{name} from {_sig3(lo, up=False)} to {_sig3(hi, up=True)}"


def off_centre_sentence(
    threshold: float, level: float, means: np.ndarray, regions: Sequence[OffCentreRegion]
) -> str:
    """The grid off ``b = 1`` in words: on which side (and where) ``P(HR < T) > level`` too.

    Examples
    --------
    >>> means = np.array([0.8, 1.2])
    >>> off_centre_sentence(0.8, 0.5, means, [OffCentreRegion("above", 1.2, 1.25, 0.02, 0.1446, 30)])
    'Centred elsewhere, P(HR < 0.8) > 0.5 also for some bias priors that expect them to exaggerate harm (b > 1): b from 1.2 to 1.25 with SD from 0.02 to 0.145 (see the map).'
    >>> off_centre_sentence(0.8, 0.5, means, [])
    'No bias prior centred elsewhere on the grid (b from 0.8 to 1.2) gives P(HR < 0.8) > 0.5.'
    """
    p_txt = f"P(HR < {threshold:g})"
    if not regions:
        return f"No bias prior centred elsewhere on the grid (b from {means.min():g} to {means.max():g}) gives {p_txt} > {level:g}."
    parts = [
        f"{SIDE_WORDS[r.side]}: {_range_txt('b', r.bias_mean_lo, r.bias_mean_hi)} "
        f"with {_range_txt('SD', r.bias_sd_lo, r.bias_sd_hi)}"
        for r in regions
    ]
    return f"Centred elsewhere, {p_txt} > {level:g} also for some bias priors that " + "; and some that ".join(parts) + " (see the map)."


def tipping_sentence(
    threshold: float, level: float, sds: np.ndarray, probs: np.ndarray, crossings: Sequence[Crossing]
) -> str:
    """The conclusion at ``b = 1`` (a bias prior centred on no bias) in words, from its SD
    profile and crossings; the grid off ``b = 1`` is :func:`off_centre_sentence`'s.

    The bias prior's SD is read as its 95% prior interval of the bias factor,
    ``exp(-/+ 1.96 sd)`` (:func:`bias_interval`; asymmetric on the HR scale).

    Examples
    --------
    >>> sds = np.array([0.02, 0.1, 1.0])
    >>> print(tipping_sentence(0.8, 0.5, sds, np.array([0.9, 0.6, 0.1]), [Crossing(1.0, 0.2, False)]))
    With a bias prior centred on no bias (b = 1), P(HR < 0.8) > 0.5 only if its SD is below 0.2 on the log scale (95% prior interval of the bias factor 0.68 to 1.48).
    >>> print(tipping_sentence(0.8, 0.5, sds, np.array([0.4, 0.3, 0.1]), []))  # doctest: +NORMALIZE_WHITESPACE
    With a bias prior centred on no bias (b = 1), P(HR < 0.8) <= 0.5 for every SD from 0.02 to 1 on the
    log scale: even a 95% prior interval of the bias factor as narrow as 0.96 to 1.04 does not take
    P(HR < 0.8) above 0.5.
    """
    p_txt, lo, hi = f"P(HR < {threshold:g})", float(sds[0]), float(sds[-1])
    head = f"With a bias prior centred on no bias (b = 1), {p_txt}"
    if not crossings:
        if probs[0] > level:
            return (
                f"{head} > {level:g} for every SD from {lo:g} to {hi:g} on the log scale (95% prior intervals "
                f"of the bias factor from {_interval_txt(lo)} to {_interval_txt(hi)})."
            )
        return (
            f"{head} <= {level:g} for every SD from {lo:g} to {hi:g} on the log scale: even a 95% prior "
            f"interval of the bias factor as narrow as {_interval_txt(lo)} does not take {p_txt} above {level:g}."
        )
    if len(crossings) == 1:
        c = crossings[0]
        if not c.rising:
            return (
                f"{head} > {level:g} only if its SD is below {c.bias_sd:.3g} on the log scale (95% prior "
                f"interval of the bias factor {_interval_txt(c.bias_sd)})."
            )
        return (
            f"{head} > {level:g} only if its SD is above {c.bias_sd:.3g} on the log scale (95% prior "
            f"interval of the bias factor wider than {_interval_txt(c.bias_sd)})."
        )
    # several crossings: the SD intervals where P > level
    edges = [lo] + [c.bias_sd for c in crossings] + [hi]
    above = [bool(probs[0] > level)]
    for _ in crossings:
        above.append(not above[-1])
    parts = [f"{edges[i]:.3g} to {edges[i + 1]:.3g}" for i in range(len(above)) if above[i]]
    return (
        f"{head} > {level:g} only for SDs (log scale) from {', '.join(parts)} (of {lo:g} to {hi:g}): the "
        "answer does not move monotonically with trust in the non-randomised studies."
    )


def alpha_sentence(threshold: float, level: float, curve: Sequence[AlphaPoint], crossings: Sequence[AlphaCrossing]) -> str:
    """The down-weighting curve in words.

    Examples
    --------
    >>> curve = [AlphaPoint(0.0, 0.93, 0.7, 1.3, 0.11), AlphaPoint(1.0, 0.69, 0.62, 0.79, 0.98)]
    >>> alpha_sentence(0.8, 0.5, curve, [AlphaCrossing(0.025, True)])
    'Down-weighted instead, the non-randomised studies tip P(HR < 0.8) above 0.5 once they count with weight alpha above 0.025 (alpha = 0: 0.11 from the randomised studies alone; alpha = 1: 0.98 with all studies as equal).'
    """
    p_txt = f"P(HR < {threshold:g})"
    ends = f"(alpha = 0: {curve[0].p_hr_below:.2f} from the randomised studies alone; alpha = 1: {curve[-1].p_hr_below:.2f} with all studies as equal)"
    if not crossings:
        side = "above" if curve[0].p_hr_below > level else "at or below"
        return f"Down-weighted instead, {p_txt} stays {side} {level:g} for every weight alpha from 0 to 1 {ends}."
    if len(crossings) == 1:
        c = crossings[0]
        verb = "above" if c.rising else "to or below"
        return (
            f"Down-weighted instead, the non-randomised studies tip {p_txt} {verb} {level:g} once they count "
            f"with weight alpha above {c.alpha:.3g} {ends}."
        )
    where = ", ".join(f"{c.alpha:.3g}" for c in crossings)
    return f"Down-weighted instead, {p_txt} crosses {level:g} at alpha = {where} {ends}."


# --------------------------------------------------------------------------------------------
# The down-weighting curve
# --------------------------------------------------------------------------------------------
def _rct_only(data: ModelData) -> ModelData:
    keep = ~np.asarray(data.nonrandomised, dtype=bool)
    return replace(
        data,
        studies=tuple(s for s, k in zip(data.studies, keep, strict=True) if k),
        y=np.asarray(data.y)[keep],
        se=np.asarray(data.se)[keep],
        nonrandomised=np.asarray(data.nonrandomised)[keep],
        designs=tuple(d for d, k in zip(data.designs, keep, strict=True) if k),
        x=np.asarray(data.x)[keep],
    )


def alpha_grid(n: int = DEFAULT_ALPHA_POINTS) -> np.ndarray:
    """``n`` alphas from 0 to 1 spaced as ``(i / (n - 1))^2`` (denser near 0, where the posterior
    moves fastest as the non-randomised studies come in).

    Examples
    --------
    >>> alpha_grid(5).tolist()
    [0.0, 0.0625, 0.25, 0.5625, 1.0]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise InputError(f"alpha_points must be an integer >= 2, got {n!r}", parameter="alpha_points")
    return np.linspace(0.0, 1.0, int(n)) ** 2


def _alpha_fit(data: ModelData, priors: PriorConfig, t: float, a: float) -> FitResult:
    """The exact fit at one alpha: :func:`~synthesis.models.exact.fit_exact`'s computation (same
    tau grid, same summaries) without the k study-effect summaries nobody reads here."""
    if a == 0.0:
        data, spec = _rct_only(data), ModelSpec("re", priors=priors)
    else:
        spec = ModelSpec("bias", bias_variant="downweight", alpha=a, priors=priors)
    (fit,) = sweep_tau_priors(data, spec, [priors.tau], (t,), study_effects=False)
    return fit


def alpha_curve(
    data: ModelData, priors: PriorConfig, threshold: float, alphas: Sequence[float]
) -> list[AlphaPoint]:
    """The HR and ``P(HR < T)`` against the down-weighting factor alpha in [0, 1].

    ``alpha > 0``: the ``bias`` model, variant ``downweight`` (non-randomised variances divided
    by alpha); ``alpha = 0``: the ``re`` model on the randomised studies only (the limit as
    alpha -> 0). Each point is :func:`~synthesis.models.exact.fit_exact`'s fit (its HR summary
    and ``P(HR < T)``, without the study effects).

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> [round(a.p_hr_below, 2) for a in alpha_curve(data, spec.priors, 0.8, [0.0, 1.0])]
    [0.11, 0.98]
    """
    (t,) = check_thresholds([threshold], "threshold")
    _check_data(data)
    key = threshold_key(t)
    out = []
    for a in alphas:
        a = float(a)
        if not 0.0 <= a <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {a:g}", parameter="alphas")
        res = _alpha_fit(data, priors, t, a)
        out.append(AlphaPoint(a, res.hr.median, res.hr.q025, res.hr.q975, res.p_hr_below[key]))
    return out


def alpha_crossings(
    data: ModelData, priors: PriorConfig, threshold: float, level: float, curve: Sequence[AlphaPoint]
) -> list[AlphaCrossing]:
    """The alphas where P(HR < T) crosses ``level`` along the down-weighting curve: sign changes
    between neighbours, refined by Brent's method on :func:`~synthesis.models.exact.fit_exact`.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> curve = alpha_curve(data, spec.priors, 0.8, [0.0, 0.1])
    >>> [round(c.alpha, 4) for c in alpha_crossings(data, spec.priors, 0.8, 0.5, curve)]
    [0.0255]
    """
    key = threshold_key(threshold)
    out = []
    for lo, hi in zip(curve[:-1], curve[1:], strict=True):
        if (lo.p_hr_below > level) == (hi.p_hr_below > level):
            continue

        def f(a: float) -> float:
            return float(_alpha_fit(data, priors, threshold, a).p_hr_below[key]) - level

        root = optimize.brentq(f, lo.alpha, hi.alpha, xtol=CONTOUR_XTOL)
        out.append(AlphaCrossing(float(root), bool(hi.p_hr_below > lo.p_hr_below)))
    return out


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------
def grid_axes(grid: int | Sequence[int] = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """The bias means (log-spaced over :data:`BIAS_MEAN_RANGE`) and SDs (log-spaced over
    :data:`BIAS_SD_RANGE`) of a grid of the given size.

    Examples
    --------
    >>> means, sds = grid_axes((3, 2))
    >>> means.round(3).tolist(), sds.tolist()
    ([0.5, 0.791, 1.25], [0.02, 1.0])
    """
    n_m, n_s = check_grid(grid)
    means = np.exp(np.linspace(math.log(BIAS_MEAN_RANGE[0]), math.log(BIAS_MEAN_RANGE[1]), n_m))
    sds = np.exp(np.linspace(math.log(BIAS_SD_RANGE[0]), math.log(BIAS_SD_RANGE[1]), n_s))
    means[0], means[-1], sds[0], sds[-1] = *BIAS_MEAN_RANGE, *BIAS_SD_RANGE
    return means, sds


def _analysis_quadrature(
    data: ModelData, priors: PriorConfig, means: np.ndarray, sds: np.ndarray, n_grid: int
) -> _Quadrature:
    """One tau quadrature for every bias prior the analysis evaluates: the grid, the profile at
    bias mean 1, and the midpoints (in log sd) between SD neighbours, where the contour's
    refinement evaluates (the sums over the studies are computed once)."""
    log_sd = np.log(sds)
    cover = np.exp(np.sort(np.concatenate([log_sd, 0.5 * (log_sd[:-1] + log_sd[1:])])))
    CM, CS = np.meshgrid(np.append(means, UNBIASED), cover, indexing="ij")
    return _Quadrature.make(data, priors, np.log(CM.ravel()), 1.0 / CS.ravel() ** 2, n_grid)


def tipping_analysis(
    data: ModelData,
    priors: PriorConfig | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    level: float = DEFAULT_LEVEL,
    grid: int | Sequence[int] = DEFAULT_GRID,
    alpha_points: int = DEFAULT_ALPHA_POINTS,
    n_grid: int = MIN_NODES,
) -> TippingResult:
    """Where the answer flips: ``P(HR < T)`` over a grid of design-bias priors, the contour
    where it crosses ``level``, the down-weighting curve and a sentence.

    Parameters
    ----------
    data
        Studies with both designs (randomised and non-randomised).
    priors
        mu (normal) and tau priors, as for ``fit`` (default the defaults); the delta prior is
        the one varied.
    threshold
        T of ``P(HR < T)``, a hazard ratio > 0.
    level
        The probability level in (0, 1) whose crossing is the tipping point.
    grid
        ``N`` or ``(number of bias means, number of bias SDs)``, each >= 2.
    alpha_points
        Number of alpha values, evenly spaced from 0 to 1, on the down-weighting curve (>= 2).
    n_grid
        Minimum number of tau quadrature nodes (see the module docstring).

    Returns
    -------
    TippingResult

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> res = tipping_analysis(data, grid=(4, 4), alpha_points=2)
    >>> res.p_hr_below.shape, [round(a.p_hr_below, 2) for a in res.alpha_curve]
    ((4, 4), [0.11, 0.98])
    >>> print(res.sentence)  # doctest: +ELLIPSIS
    With a bias prior centred on no bias (b = 1), P(HR < 0.8) > 0.5 only if its SD is below 0.0997 ...
    """
    import time

    t0 = time.perf_counter()
    priors = resolve_priors() if priors is None else priors
    (threshold,) = check_thresholds([threshold], "threshold")
    level = check_level(level)
    alpha_grid(alpha_points)  # checks alpha_points before any computation
    _check_data(data)
    _check_priors(priors, data)
    means, sds = grid_axes(grid)
    quad = _analysis_quadrature(data, priors, means, sds, n_grid)
    M, S = np.meshgrid(means, sds, indexing="ij")
    summ = quad.summaries(np.log(M.ravel()), 1.0 / S.ravel() ** 2, threshold, shape=M.shape)
    t_grid = time.perf_counter() - t0
    contour = []
    for i, m in enumerate(means):
        contour.extend(_refine(quad, float(m), sds, summ.p_hr_below[i], threshold, level))
    ref = quad.summaries(np.full(sds.size, math.log(UNBIASED)), 1.0 / sds**2, threshold, median=False)
    unbiased = _refine(quad, UNBIASED, sds, ref.p_hr_below, threshold, level)
    regions = off_centre_regions(means, sds, summ.p_hr_below, contour, level)
    t_contour = time.perf_counter() - t0 - t_grid
    curve = alpha_curve(data, priors, threshold, alpha_grid(alpha_points).tolist())
    a_cross = alpha_crossings(data, priors, threshold, level, curve)
    notes = []
    if quad.truncated:
        notes.append("the posterior of tau reached the end of the pilot grid for some bias priors; its upper tail may be truncated")
    nr = np.asarray(data.nonrandomised, dtype=bool)
    return TippingResult(
        threshold=threshold,
        level=level,
        bias_means=means,
        bias_sds=sds,
        p_hr_below=summ.p_hr_below,
        hr_median=summ.hr_median,
        contour=contour,
        unbiased_sds=sds,
        unbiased_p=ref.p_hr_below,
        unbiased_crossings=unbiased,
        alpha_curve=curve,
        alpha_crossings=a_cross,
        sentence=" ".join([
            tipping_sentence(threshold, level, sds, ref.p_hr_below, unbiased),
            off_centre_sentence(threshold, level, means, regions),
            alpha_sentence(threshold, level, curve, a_cross),
        ]),
        off_centre=regions,
        priors={"mu": priors.mu.label, "tau": priors.tau.label},
        k=data.k,
        k_rct=int((~nr).sum()),
        source=data.source,
        notes=notes,
        timing={"grid_s": t_grid, "contour_s": t_contour, "alpha_curve_s": time.perf_counter() - t0 - t_grid - t_contour},
    )


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------
#: Grid rows the printed table shows: this many bias means (evenly picked) and SDs.
PRINTED_GRID = (5, 5)


def _picked(n: int, m: int) -> list[int]:
    return sorted(set(np.round(np.linspace(0, n - 1, min(n, m))).astype(int).tolist()))


def _alpha_txt(alpha: float) -> str:
    """An alpha of the curve to 3 significant figures (the grid is dense near 0).

    Examples
    --------
    >>> [_alpha_txt(a) for a in (0.0, 0.0025, 0.0255, 0.5625, 1.0)]
    ['0', '0.0025', '0.0255', '0.562', '1']
    """
    return f"{alpha:.3g}"


def format_tipping(res: TippingResult) -> str:
    """The analysis as ``synthesis tipping`` prints it: the sentence, a compact grid of
    P(HR < T), the contour and the down-weighting curve."""
    t = f"{res.threshold:g}"
    lines = [
        f"Tipping-point analysis: P(HR < {t}) of a randomised comparison against the design-bias prior",
        f"Model: bias (additive), k = {res.k} ({res.k_rct} randomised); mu ~ {res.priors['mu']}, tau ~ {res.priors['tau']}",
        "Bias prior: delta ~ N(log b, sd^2); b is the factor multiplying a non-randomised study's HR (HR scale), sd on the log scale",
        "",
        res.sentence,
        "",
    ]
    cols = _picked(res.bias_sds.size, PRINTED_GRID[1])
    rows = _picked(res.bias_means.size, PRINTED_GRID[0])
    n_m, n_s = res.bias_means.size, res.bias_sds.size
    if len(rows) < n_m or len(cols) < n_s:
        lines.append(
            f"P(HR < {t}) on the grid (rows: bias factor b; columns: bias SD): {len(rows)} of {n_m} rows and "
            f"{len(cols)} of {n_s} columns, evenly picked from the {n_m} x {n_s} grid; --json or --out for all"
        )
    else:
        lines.append(f"P(HR < {t}) on the grid (rows: bias factor b; columns: bias SD)")
    lines.append("  b \\ sd " + "".join(f"{res.bias_sds[j]:>8.3g}" for j in cols))
    for i in rows:
        lines.append(f"{res.bias_means[i]:>8.3g} " + "".join(f"{fmt(res.p_hr_below[i, j], 3):>8}" for j in cols))
    lines.append("")
    if res.contour:
        lines.append(f"Contour P(HR < {t}) = {res.level:g}: (b, sd)")
        shown = res.contour if len(res.contour) <= 12 else [res.contour[i] for i in _picked(len(res.contour), 12)]
        lines.extend(f"  b = {c.bias_mean:.3f}  sd = {c.bias_sd:.4f}" for c in shown)
        if len(shown) < len(res.contour):
            lines.append(f"  ({len(shown)} of {len(res.contour)} points shown; --json lists all)")
    else:
        lines.append(f"P(HR < {t}) does not cross {res.level:g} anywhere on the grid")
    lines.append("")
    lines.append("Down-weighting the non-randomised studies (alpha = 0: randomised only; 1: all as equal)")
    lines.append(f"   alpha   HR (95% CrI)              P(HR < {t})")
    for a in res.alpha_curve:
        lines.append(f"{_alpha_txt(a.alpha):>8}   {fmt(a.hr_median)} ({fmt(a.hr_q025)} to {fmt(a.hr_q975)})   {fmt(a.p_hr_below)}")
    lines.extend(f"note: {n}" for n in res.notes)
    return "\n".join(lines)
