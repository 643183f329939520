r"""Leave-one-study-out cross-validation, stacking of the bias variants, the stacked HR.

The quantity every model here is scored by is the expected log pointwise predictive density of
a left-out study (Vehtari, Gelman & Gabry 2017, Stat Comput 27:1413-1432,
doi:10.1007/s11222-016-9696-4),

.. math::

    \mathrm{elpd}_{loo} = \sum_i \log p(y_i \mid y_{-i}), \qquad
    p(y_i \mid y_{-i}) = \int N\!\left(y_i;\; m_i(g),\; s_i^2 + V_i(g)\right)\, p(g \mid y_{-i})\, dg,

where g are the global parameters and m_i, V_i the mean and variance of study i's true effect
given g: the study's own effect (and any of its missing covariate values) is integrated out,
because leaving a study out leaves its random effect out too ("integrated LOO").

Two estimators:

* :func:`psis_loo` — Pareto-smoothed importance sampling (``arviz_stats.loo``) on the draws of a
  PyMC fit that stored the integrated pointwise log-likelihood
  (``fit_pymc(..., log_likelihood=True)``, see
  :func:`synthesis.models.pymc_fit.integrated_log_likelihood`). Each study gets a Pareto
  shape k; above ``good_k = min(1 - 1/log10(S), 0.7)`` (S draws) the estimate for that study is
  unreliable (Vehtari et al. 2024, JMLR 25(72)).
* :func:`exact_loo` — for the models of the exact engine (``re``, every ``bias`` variant,
  meta-regressions without missing values): the full-data posterior downdated without study i
  at each node of its grid (a rank-one update of the conditional normal of the coefficients,
  and Bayes' theorem for the node weights), and ``p(y_i | y_-i)`` a normal mixture evaluated
  in closed form; ``refit=True`` refits without each study instead (the slow reference). It
  is exact up to the quadrature (no Monte Carlo error) and checks PSIS-LOO. A multilevel model
  (``spec.cluster``) is cross-validated by leaving out one cluster at a time, its rows jointly
  (they share the cluster effect and, with ``rho > 0``, correlated sampling errors):
  ``log p(y_c | y_-c) = log p(y) - log p(y_-c)`` by exact refits (``LooResult.unit == "cluster"``).

Stacking (Yao, Vehtari, Simpson & Gelman 2018, Bayesian Analysis 13(3):917-1007,
doi:10.1214/17-BA1091) chooses the weights w on the simplex that maximise
``sum_i log sum_m w_m exp(elpd_{i,m})`` (``arviz_stats.compare(method="stacking")``); the stacked
posterior of the HR is the mixture ``sum_m w_m p_m(HR | y)``, so ``P(HR < T) = sum_m w_m
P_m(HR < T)`` and its quantiles solve ``sum_m w_m F_m(x) = p`` (:func:`stacked_ratio`).
:func:`compare_variants` fits the bias variants and puts all of this together.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from synthesis.base import DEFAULT_THRESHOLDS, INTERVAL_PROB
from synthesis.errors import InputError, ModelError
from synthesis.models.averaging import ALL_VARIANTS, parse_bias_variants
from synthesis.models.display import small_sample_note
from synthesis.models.results import FitResult, RatioSummary
from synthesis.models.spec import (
    BIAS_VARIANTS,
    ModelData,
    ModelSpec,
    StudySource,
    check_thresholds,
    threshold_key,
)

#: Pareto k above which a PSIS-LOO estimate is unreliable whatever the number of draws
#: (Vehtari et al. 2024); ``arviz_stats`` lowers it to ``1 - 1/log10(S)`` for S < 2,200 draws.
HIGH_PARETO_K = 0.7
#: Threads :func:`compare_variants` fits the exact variants in (the machines here have 2 cores).
EXACT_THREADS = 2
#: Node-study cells per block of :func:`_fixed_grid_loo` (bounds its memory: ~10 arrays of
#: this many float64 numbers).
_LOO_BLOCK_CELLS = 2_000_000
#: How to read a stacking weight (printed under every comparison).
STACKING_CAVEAT = (
    "stacking weights are not posterior model probabilities: a weight of 0 means the variant adds "
    "no predictive value beside the others, not that it is refuted"
)
#: The bias variants with a second variance parameter kappa.
TWO_VARIANCE_VARIANTS: tuple[str, ...] = ("random", "three-level")
#: Bias variants whose exact LOO predictive :func:`exact_loo` knows: all of them (random and
#: three-level by the 2-D engine, the predictive with its kappa^2 term,
#: :meth:`synthesis.models.exact.ExactPosterior.predictive_for`).
EXACT_LOO_VARIANTS: tuple[str, ...] = BIAS_VARIANTS
#: Largest pointwise log-likelihood (chains x draws x k float64 numbers) :func:`compare_variants`
#: stores per PyMC fit: 1 GB (k = 100,000 with 4 x 2000 draws would be 6.4 GB); above it the
#: user is asked for fewer draws before anything is sampled.
LOG_LIK_MAX_BYTES = 1_000_000_000
#: Bisection steps of :func:`stacked_ratio`'s quantiles (the bracket shrinks by 2^-100).
_BISECTION_STEPS = 100
#: Allowance for rounding in a weighted sum of CDF values (a few ulps of 1).
_CDF_ROUNDING = 1e-12
_LOWER = (1.0 - INTERVAL_PROB) / 2.0
_UPPER = 1.0 - _LOWER
_NORM_CONST = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# One model's LOO
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LooResult:
    """Leave-one-study-out estimate of one model.

    ``method`` is ``"psis"`` (importance sampling from the posterior draws, with a Pareto k per
    study) or ``"exact"`` (k exact refits; no Pareto k). ``elpd = sum(elpd_i)``,
    ``se = sqrt(k var(elpd_i))``, ``p_loo = lppd - elpd`` (effective number of parameters).
    """

    method: str
    studies: tuple[str, ...]
    elpd_i: np.ndarray
    p_loo: float
    pareto_k: np.ndarray | None = None
    good_k: float | None = None
    n_samples: int = 0
    #: What is left out: ``"study"`` (a row), or ``"cluster"`` (every row of one cluster of a
    #: multilevel model: ``studies`` then holds the cluster labels, ``elpd_i`` one joint log
    #: predictive density per cluster; :func:`exact_loo`).
    unit: str = "study"

    @property
    def k(self) -> int:
        return int(self.elpd_i.size)

    @property
    def elpd(self) -> float:
        return float(np.sum(self.elpd_i))

    @property
    def se(self) -> float:
        return float(math.sqrt(self.k * np.var(self.elpd_i))) if self.k > 1 else math.nan

    @property
    def pareto_k_max(self) -> float | None:
        return None if self.pareto_k is None else float(np.max(self.pareto_k))

    @property
    def high_k_threshold(self) -> float:
        """The threshold k is compared with: arviz-stats' ``good_k`` (<= 0.7)."""
        return HIGH_PARETO_K if self.good_k is None else min(float(self.good_k), HIGH_PARETO_K)

    @property
    def high_k_studies(self) -> tuple[str, ...]:
        """Studies whose Pareto k exceeds :attr:`high_k_threshold` (none for exact LOO)."""
        if self.pareto_k is None:
            return ()
        return tuple(s for s, kk in zip(self.studies, self.pareto_k, strict=True) if kk > self.high_k_threshold)

    @property
    def n_high_k(self) -> int | None:
        return None if self.pareto_k is None else len(self.high_k_studies)

    def flag(self) -> str:
        """The Pareto k diagnostic in plain words ('' when every k is fine or LOO is exact)."""
        n = self.n_high_k
        if not n:
            return ""
        return (
            f"{n} of {self.k} studies have Pareto k > {self.high_k_threshold:.2f} "
            f"(max {self.pareto_k_max:.2f}): the importance-sampling estimate is unreliable for "
            f"{'it' if n == 1 else 'them'} ({', '.join(self.high_k_studies[:5])}"
            f"{', ...' if n > 5 else ''}); draw more, or use exact LOO where the model allows it"
        )

    def to_elpd_data(self) -> Any:
        """The ``arviz_stats`` container (``ELPDDataLOO``) that ``arviz_stats.compare`` reads."""
        from arviz_stats.utils import ELPDDataLOO

        coords = {"study": list(self.studies)}
        k_da = None if self.pareto_k is None else xr.DataArray(self.pareto_k, dims="study", coords=coords)
        return ELPDDataLOO(
            elpd=self.elpd,
            se=self.se,
            p=self.p_loo,
            n_samples=self.n_samples,
            n_data_points=self.k,
            scale="log",
            warning=bool(self.n_high_k),
            good_k=self.good_k,
            elpd_i=xr.DataArray(self.elpd_i, dims="study", coords=coords),
            pareto_k=k_da,
        )


def psis_loo(fit: FitResult | xr.DataTree) -> LooResult:
    """PSIS-LOO of a PyMC fit from its ``log_likelihood`` group (``arviz_stats.loo``).

    The fit must have been made with ``fit_pymc(..., log_likelihood=True)``, whose pointwise
    log-likelihood integrates each study's effect out
    (:func:`synthesis.models.pymc_fit.integrated_log_likelihood`; the conditional likelihood
    given theta_i gives heavy-tailed importance ratios and a biased elpd). Returns elpd_loo, its SE,
    p_loo, the pointwise elpd and Pareto k, and ``good_k``, arviz-stats' threshold for the
    number of draws S, ``min(1 - 1/log10(S), 0.7)``.

    Examples
    --------
    Made-up log-likelihood draws (1 chain x 2000, 3 studies; no sampling) that barely vary:
    every Pareto k is small and elpd_i is close to the log-likelihood itself.

    >>> rng = np.random.default_rng(1)
    >>> ll = xr.DataArray(rng.normal(-1.0, 0.01, (1, 2000, 3)), dims=("chain", "draw", "study"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), np.zeros((1, 2000)))}),
    ...                             "log_likelihood": xr.Dataset({"y": ll})})
    >>> res = psis_loo(dt)
    >>> res.method, round(res.elpd, 2), round(res.p_loo, 2), res.n_high_k
    ('psis', -3.0, 0.0, 0)
    """
    import arviz_stats as azs

    dt = fit.posterior if isinstance(fit, FitResult) else fit
    if dt is None or "log_likelihood" not in dt.children:
        raise ModelError(
            "PSIS-LOO needs the pointwise log-likelihood: fit with fit_pymc(..., log_likelihood=True)"
        )
    with warnings.catch_warnings():
        # arviz-stats warns about high Pareto k; LooResult.flag() says it in words instead.
        warnings.simplefilter("ignore", UserWarning)
        res = azs.loo(dt, pointwise=True, var_name="y")
    studies = tuple(str(s) for s in res.elpd_i.coords["study"].values) if "study" in res.elpd_i.coords else ()
    return LooResult(
        method="psis",
        studies=studies or tuple(str(i) for i in range(res.elpd_i.size)),
        elpd_i=np.asarray(res.elpd_i.values, dtype=float).reshape(-1),
        p_loo=float(res.p),
        pareto_k=np.asarray(res.pareto_k.values, dtype=float).reshape(-1),
        good_k=float(res.good_k),
        n_samples=int(res.n_samples),
    )


def within_variance(data: ModelData, spec: ModelSpec) -> np.ndarray:
    """s_i^2: se_i^2, or se_i^2 / alpha for a non-randomised study under ``downweight``.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias", bias_variant="downweight", alpha=0.5)
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> s2 = within_variance(data, spec)
    >>> bool(np.allclose(s2[data.nonrandomised], 2 * data.se[data.nonrandomised] ** 2))
    True
    """
    s2 = np.asarray(data.se, dtype=float) ** 2
    if spec.has_bias and spec.bias_variant == "downweight":
        nr = np.asarray(data.nonrandomised, dtype=bool)
        s2 = np.where(nr, s2 / float(spec.alpha), s2)
    return s2


def _leave_out(data: ModelData, i: int | np.ndarray) -> ModelData:
    """``data`` without study i (or without the rows where the boolean mask ``i`` is true: a
    cluster); covariate centres kept (the same parameterisation of mu)."""
    drop = np.arange(data.k) == i if np.ndim(i) == 0 else np.asarray(i, dtype=bool)
    keep = ~drop
    return replace(
        data,
        studies=tuple(s for j, s in enumerate(data.studies) if keep[j]),
        y=np.asarray(data.y)[keep],
        se=np.asarray(data.se)[keep],
        nonrandomised=np.asarray(data.nonrandomised)[keep],
        designs=tuple(d for j, d in enumerate(data.designs) if keep[j]),
        x=np.asarray(data.x)[keep],
        clusters=tuple(c for j, c in enumerate(data.clusters) if keep[j]) if data.clusters else (),
    )


def _cluster_log_predictive(post: Any, X: np.ndarray, y: np.ndarray, V: np.ndarray) -> float:
    r"""``log p(y_c | posterior post)`` of the rows of one cluster of a multilevel model, jointly:

    .. math::

        p(y_c \mid \cdot) = \sum_g w_g\, N\!\left(y_c;\; X_c \hat b_g,\;
            V_c + \tau_g^2 \mathbf 1 \mathbf 1^\top + \tau_{w,g}^2 I + X_c C_g X_c^\top\right)

    (``X``, ``y``, ``V``: the cluster's design rows, log HRs and sampling covariance; ``w``,
    ``b_g``, ``C_g``: the posterior's node weights and the coefficients' conditional mean and
    covariance; the cluster effect u_c and the row effects are integrated out), by a Cholesky
    factor per node."""
    keep = np.flatnonzero(np.asarray(post.weights) > 0)
    w = np.asarray(post.weights, dtype=float)[keep]
    tau2 = np.asarray(post.tau, dtype=float)[keep] ** 2
    tw2 = np.asarray(post.kappa, dtype=float)[keep] ** 2
    b, C = post.cond.b_mean[keep], post.cond.b_cov[keep]
    n = y.size
    cov = V[None] + tau2[:, None, None] * np.ones((n, n))[None] + tw2[:, None, None] * np.eye(n)[None]
    cov = cov + np.einsum("ip,gpq,jq->gij", X, C, X)
    L = np.linalg.cholesky(cov)
    r = y[None, :] - b @ X.T  # (G, n)
    z = np.linalg.solve(L, r[:, :, None])[:, :, 0]
    logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    terms = np.log(w) - n * _NORM_CONST - 0.5 * logdet - 0.5 * np.einsum("gi,gi->g", z, z)
    return float(logsumexp(terms))


def _cluster_loo(
    data: ModelData, spec: ModelSpec, full: Any, grid: int | None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    r"""Exact leave-one-cluster-out of a multilevel model by refits: ``(cluster labels, lppd_c,
    elpd_c)``.

    ``elpd_c = log p(y) - log p(y_-c)``: the difference of the exact marginal likelihoods of the
    full data (``full``, the full-data posterior) and of the data without cluster c, each on its
    own quadrature grid (``grid`` nodes per axis, default the engine's). ``lppd_c`` is the
    cluster's joint predictive density under the full-data posterior
    (:func:`_cluster_log_predictive`). Measured on the all-inputs set (19 cohorts; re and bias,
    rho 0 and 0.5): the default 29 x 29 grids agree with 91 x 91 ones within 5e-9 per cluster."""
    from synthesis.models.exact import _design, exact_posterior
    from synthesis.models.multilevel import Clusters

    d = _design(data, spec)
    clusters = Clusters.from_labels(data.clusters, rho=spec.rho, name=str(spec.cluster))
    V = clusters.sampling_covariance(np.sqrt(d.s2))
    lppd, elpd = np.empty(clusters.n), np.empty(clusters.n)
    for c in range(clusters.n):
        rows = clusters.index == c
        lppd[c] = _cluster_log_predictive(full, d.X[rows], d.y[rows], V[np.ix_(rows, rows)])
        rest = exact_posterior(_leave_out(data, rows), spec, n_grid=grid)
        elpd[c] = full.log_marginal_likelihood - rest.log_marginal_likelihood
    return clusters.labels, lppd, elpd


def _log_predictive(post: Any, data: ModelData, spec: ModelSpec, i: int, s2_i: float) -> float:
    """log p(y_i | posterior ``post``) = log sum_g w_g N(y_i; x_i'b_g, V_ig + s_i^2), from the
    public mixture :meth:`ExactPosterior.predictive_for` of study i's true effect (V_ig =
    x_i'C_g x_i + tau_g^2, + kappa_g^2 for a non-randomised study under the random variant, +
    kappa_g^2 for a three-level design the posterior has no level for)."""
    values = {c: float(data.x[i, j]) for j, c in enumerate(data.covariates)}
    if spec.has_bias and spec.bias_variant == "three-level":
        mix = post.predictive_for(values or None, design=data.designs[i])
    else:
        mix = post.predictive_for(values or None, nonrandomised=bool(spec.has_bias and data.nonrandomised[i]))
    var = mix.sds**2 + s2_i
    y = float(data.y[i])
    with np.errstate(divide="ignore"):
        terms = np.log(mix.weights) - _NORM_CONST - 0.5 * np.log(var) - 0.5 * (y - mix.means) ** 2 / var
    return float(logsumexp(terms))


def exact_loo_unsupported_reason(spec: ModelSpec, data: ModelData) -> str | None:
    """Why :func:`exact_loo` cannot score ``spec`` (beyond the exact engine's own reasons), or
    ``None``: a bias variant outside :data:`EXACT_LOO_VARIANTS` (any number of studies is
    scored: :func:`exact_loo` is O(k x nodes)).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias", bias_variant="random")
    >>> print(exact_loo_unsupported_reason(spec, ModelData.from_table(table, spec)))
    None
    """
    if spec.has_bias and spec.bias_variant not in EXACT_LOO_VARIANTS:  # pragma: no cover (all are)
        return f"bias variant {spec.bias_variant!r} has no exact LOO; use PSIS-LOO (engine='pymc')"
    return None


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log sum_g exp(a_g)`` down the rows of ``a`` (G, n), overwriting ``a``; -inf entries
    (zero weights) are allowed, a whole column of them gives -inf."""
    top = a.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    a -= top
    np.exp(a, out=a)
    with np.errstate(divide="ignore"):
        return np.log(a.sum(axis=0)) + top


def _fixed_grid_loo(post: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""``(lppd_i, elpd_i)`` from the full-data posterior ``post`` alone, at its grid's nodes g.

    At a node the model is linear-Gaussian, ``y = X b + e``, ``e ~ N(0, diag(v_g))`` with
    ``v_ig = s_i^2 + tau_g^2 a_i + kappa_g^2 h_i``, and ``b | g, y ~ N(\hat b_g, C_g)``. With
    ``m_ig = x_i^T \hat b_g`` and ``q_ig = x_i^T C_g x_i``, removing study i (a rank-one
    downdate, Sherman-Morrison) gives its leave-one-out predictive at the node

    .. math::

        y_i \mid y_{-i}, g \sim N\!\left(y_i - (y_i - m_{ig}) \frac{v_{ig}}{v_{ig} - q_{ig}},\;
            \frac{v_{ig}^2}{v_{ig} - q_{ig}}\right),

    and Bayes' theorem at the nodes, ``p(g | y_-i) \propto p(g | y) / p(y_i | y_-i, g)``, gives

    .. math::

        p(y_i \mid y_{-i}) = \Big[\sum_g w_g \,/\, p(y_i \mid y_{-i}, g)\Big]^{-1}

    with ``w_g`` the normalised full-data quadrature weights: exact given the quadrature rule,
    whose nodes were placed for all k studies. The 1-D engine's grid does not depend on y, so
    this equals a refit without study i to rounding; the 2-D grid is placed by a pilot
    quadrature, and refits (``exact_loo(..., refit=True)``) agree within 1e-9 on the bundled
    data and simulated k = 30 and 100 (tests/test_compare.py). O(k x nodes), in blocks of studies.
    """
    d, cond = post.design, post.cond
    tau2 = np.asarray(cond.tau, dtype=float) ** 2
    kappa2 = None if cond.kappa is None else np.asarray(cond.kappa, dtype=float) ** 2
    with np.errstate(divide="ignore"):
        logw = np.log(np.asarray(post.weights, dtype=float))[:, None]
    p = d.X.shape[1]
    ia, ib = np.triu_indices(p)
    cov_pairs = cond.b_cov[:, ia, ib] * np.where(ia == ib, 1.0, 2.0)
    k = d.y.size
    lppd = np.empty(k)
    elpd = np.empty(k)
    step = max(1, _LOO_BLOCK_CELLS // max(tau2.size, 1))
    for lo in range(0, k, step):
        sl = slice(lo, min(k, lo + step))
        if d.layout is None:
            v = d.s2[sl][None, :] + tau2[:, None]
        else:
            v = d.s2[sl][None, :] + tau2[:, None] * d.layout.a[sl] + kappa2[:, None] * d.layout.h[sl]
        q = cov_pairs @ d.features[sl, : ia.size].T
        r2 = d.y[sl][None, :] - cond.b_mean @ d.X[sl].T
        r2 *= r2  # (y_i - m_ig)^2
        full = q + v
        # lppd: log N(y; m, q + v); leave-one-out: with rest = v - q = v (1 - q/v) > 0 (the
        # downdated covariance is positive), log N(y; y - (y - m) v/rest, v^2/rest)
        # = -c - log v + log(rest)/2 - (y - m)^2 / (2 rest)
        term = logw - _NORM_CONST - 0.5 * (np.log(full) + r2 / full)
        lppd[sl] = _logsumexp_rows(term)
        rest = np.maximum(np.subtract(v, q, out=q), v * 1e-15)
        np.log(v, out=v)
        term = logw + _NORM_CONST + v - 0.5 * np.log(rest) + 0.5 * r2 / rest  # log w_g - log p_ig
        elpd[sl] = -_logsumexp_rows(term)
    return lppd, elpd


def exact_loo(
    data: ModelData | StudySource,
    spec: ModelSpec,
    *,
    n_grid: int | None = None,
    refit: bool = False,
    posterior: Any = None,
) -> LooResult:
    r"""Exact leave-one-study-out predictive densities of a model of the exact engine.

    .. math::

        p(y_i \mid y_{-i}) = \sum_g w_g^{(-i)}\,
            N\!\left(y_i;\; x_i^\top \hat b_g^{(-i)},\; x_i^\top C_g^{(-i)} x_i + \tau_g^2
            + \kappa_g^2 h_i + s_i^2\right)

    over a grid of tau, or of (tau, kappa) for the random and three-level variants (weights
    w_g, conditional mean and covariance of the coefficients b at node g given the other
    studies), with x_i study i's design row (three-level: its design mean m + v_d), ``h_i = 1``
    for a non-randomised study under the random variant (its own bias kappa w_i) and s_i^2 its
    within-study variance (:func:`within_variance`). The covariate centres of the full data are
    kept, so mu and its prior mean the same thing in every leave-one-out posterior, and so are
    the three-level model's design levels (a design whose only study is left out keeps its
    offset ``v_d ~ N(0, kappa^2)`` from the prior).

    By default the leave-one-out posteriors are downdates of the full-data posterior at its
    nodes (:func:`_fixed_grid_loo`: O(k x nodes), 100,000 studies in seconds). ``refit=True``
    refits the model to the other k - 1 studies for each i instead (k exact fits, each with its
    own grid; :meth:`synthesis.models.exact.ExactPosterior.predictive_for`): the slow reference
    the downdates are tested against. ``p_loo = lppd - elpd_loo`` with ``lppd`` the same
    mixture under the full-data posterior. There is no Monte Carlo error; the quadrature error
    is that of the exact engine (< 1e-6 relative). ``posterior``: the full-data
    :class:`~synthesis.models.exact.ExactPosterior` of ``data`` and ``spec`` when it is at hand
    (``fit_exact(...).exact_posterior``), so it is not computed twice.

    A multilevel model (``spec.cluster``) is cross-validated by leaving out one cluster at a
    time (``unit="cluster"``): its rows are dependent (a shared cluster effect, and with
    ``rho > 0`` shared sampling errors), so the unit of prediction is the cluster and
    ``elpd_c = log p(y_c | y_-c)`` is the joint density of its rows
    (:func:`_cluster_log_predictive`), from a refit without the cluster (one exact fit per
    cluster; ``refit`` is then implied), computed as ``log p(y) - log p(y_-c)``, the
    difference of two exact marginal likelihoods (:func:`_cluster_loo`; tests/test_compare.py
    checks it against the joint predictive mixture on a fine grid).

    Raises :class:`ModelError` for models the exact engine cannot fit (the reason).

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> res = exact_loo(syn.load_dataset("dnmbc_lrt"), spec)
    >>> res.method, res.k, res.pareto_k is None
    ('exact', 17, True)
    >>> round(res.elpd, 2), round(res.p_loo, 2)
    (5.39, 2.83)
    """
    from synthesis.models.exact import designs_present, exact_posterior, exact_unsupported_reason

    if not isinstance(data, ModelData):
        data = ModelData.from_table(data, spec)
    reason = exact_loo_unsupported_reason(spec, data) or exact_unsupported_reason(spec, data)
    if reason is not None:
        raise ModelError(f"exact LOO: {reason}", parameter="engine")
    if data.k < 2:
        raise ModelError("leave-one-out needs at least 2 studies")
    grid = None if n_grid is None else int(n_grid)  # None: the engine's default (1-D or 2-D)
    full = exact_posterior(data, spec, n_grid=grid) if posterior is None else posterior
    if spec.multilevel:
        if len(set(data.clusters)) < 2:
            raise ModelError("leave-one-cluster-out needs at least 2 clusters")
        labels, lppd_c, elpd_c = _cluster_loo(data, spec, full, grid)
        return LooResult(
            method="exact", studies=labels, elpd_i=elpd_c, p_loo=float(np.sum(lppd_c) - np.sum(elpd_c)),
            n_samples=int(full.tau.size), unit="cluster",
        )
    if refit:
        levels = designs_present(data) if spec.has_bias and spec.bias_variant == "three-level" else None
        s2 = within_variance(data, spec)
        lppd_i = np.array([_log_predictive(full, data, spec, i, s2[i]) for i in range(data.k)])
        elpd_i = np.empty(data.k)
        for i in range(data.k):
            post = exact_posterior(_leave_out(data, i), spec, n_grid=grid, designs=levels)
            elpd_i[i] = _log_predictive(post, data, spec, i, s2[i])
    else:
        lppd_i, elpd_i = _fixed_grid_loo(full)
    return LooResult(
        method="exact",
        studies=tuple(data.studies),
        elpd_i=elpd_i,
        p_loo=float(np.sum(lppd_i) - np.sum(elpd_i)),
        n_samples=int(full.tau.size),
    )


# --------------------------------------------------------------------------------------------
# Comparing models: elpd differences and stacking weights
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LooComparison:
    """One model's row of :func:`compare_loo`: elpd difference to the best model (<= 0), its
    SE (from the pointwise differences) and the stacking weight."""

    elpd_diff: float
    dse: float
    weight: float


def compare_loo(results: Mapping[str, LooResult]) -> dict[str, LooComparison]:
    """Differences to the best model and stacking weights (``arviz_stats.compare``,
    ``method="stacking"``; Yao et al. 2018, doi:10.1214/17-BA1091).

    ``dse = sqrt(k var(elpd_i,m - elpd_i,best))``. The weights maximise
    ``sum_i log sum_m w_m exp(elpd_i,m)`` over the simplex.

    Examples
    --------
    >>> a = LooResult("exact", ("s1", "s2"), np.array([-1.0, -1.0]), 1.0)
    >>> b = LooResult("exact", ("s1", "s2"), np.array([-1.5, -0.8]), 1.0)
    >>> out = compare_loo({"a": a, "b": b})
    >>> round(out["a"].elpd_diff, 6), round(out["b"].elpd_diff, 6), round(out["b"].dse, 6)  # sqrt(2 var(-0.5, 0.2))
    (0.0, -0.3, 0.494975)
    >>> round(out["a"].weight + out["b"].weight, 6)
    1.0
    """
    import arviz_stats as azs

    names = list(results)
    if len(names) == 1:
        return {names[0]: LooComparison(0.0, 0.0, 1.0)}
    studies = {r.studies for r in results.values()}
    if len(studies) > 1:
        raise ModelError("the models were cross-validated on different studies; compare needs the same studies")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = azs.compare({n: r.to_elpd_data() for n, r in results.items()}, method="stacking", round_to="none")
    weights = np.clip(np.asarray([float(table.loc[n, "weight"]) for n in names]), 0.0, None)
    weights = weights / weights.sum()
    return {
        n: LooComparison(float(table.loc[n, "elpd_diff"]), float(table.loc[n, "dse"]), float(w))
        for n, w in zip(names, weights, strict=True)
    }


def stacking_weights(elpd_i: np.ndarray) -> np.ndarray:
    """Stacking weights of M models from their pointwise elpd (an (n, M) array), by
    ``arviz_stats.compare(method="stacking")`` (see :func:`compare_loo`).

    Examples
    --------
    Two models, each better on half of the points, symmetric: equal weights.

    >>> w = stacking_weights(np.array([[-1.0, -2.0], [-2.0, -1.0]]))
    >>> np.round(w, 4).tolist()
    [0.5, 0.5]
    """
    e = np.asarray(elpd_i, dtype=float)
    if e.ndim != 2:
        raise InputError(f"elpd_i must be an (n, M) array, got shape {e.shape}")
    studies = tuple(f"i{j}" for j in range(e.shape[0]))
    res = {f"m{m}": LooResult("exact", studies, e[:, m], 0.0) for m in range(e.shape[1])}
    out = compare_loo(res)
    return np.array([out[f"m{m}"].weight for m in range(e.shape[1])])


# --------------------------------------------------------------------------------------------
# The stacked posterior of the HR
# --------------------------------------------------------------------------------------------
def _log_hr_cdf(fit: FitResult) -> Callable[[float], float]:
    """The posterior CDF of mu (log HR of a randomised comparison) of one fit: the exact
    engine's normal mixture, or the empirical CDF of the PyMC draws."""
    post = getattr(fit, "exact_posterior", None)
    if post is not None:
        mix = post.linear(post.contrast("mu"))
        return lambda x: float(mix.cdf(x))
    if fit.posterior is None or "mu" not in fit.posterior.posterior:
        raise ModelError(f"the {fit.engine} fit holds no posterior of mu to stack")
    draws = np.sort(np.asarray(fit.posterior.posterior["mu"].values, dtype=float).reshape(-1))
    return lambda x: float(np.searchsorted(draws, x, side="right")) / draws.size


def _mixture_quantile(cdfs: Sequence[Callable[[float], float]], weights: np.ndarray, p: float, lo: float, hi: float) -> float:
    """inf{x : sum_m w_m F_m(x) >= p} by bisection from a bracket widened until it holds p
    (the weighted sum is compared with p less :data:`_CDF_ROUNDING`, so that rounding in the
    sum cannot move the quantile of an empirical CDF to the next draw)."""

    def cdf(x: float) -> float:
        return float(sum(w * f(x) for w, f in zip(weights, cdfs, strict=True) if w > 0)) + _CDF_ROUNDING

    width = max(hi - lo, 1.0)
    while cdf(lo) >= p:
        lo -= width
        width *= 2.0
    width = max(hi - lo, 1.0)
    while cdf(hi) < p:
        hi += width
        width *= 2.0
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if cdf(mid) >= p:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            break
    return hi


def stacked_ratio(
    fits: Sequence[FitResult], weights: Sequence[float], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> RatioSummary:
    r"""The HR of a randomised comparison under the stacked posterior ``sum_m w_m p_m(mu | y)``.

    ``P(HR < T) = sum_m w_m P_m(HR < T)`` (each fit's own probability); the median and the
    equal-tailed 95% interval are the quantiles of the mixture, solved by bisection on
    ``sum_m w_m F_m(log HR)`` with F_m the exact engine's mixture CDF or the empirical CDF of a
    PyMC fit's draws (quantile = the smallest x with CDF >= p).

    Examples
    --------
    Two exact fits stacked half and half: P(HR < 1) is the average of theirs.

    >>> import synthesis as syn
    >>> from synthesis.models.exact import fit_exact
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> specs = [ModelSpec("bias"), ModelSpec("bias", bias_variant="downweight")]
    >>> fits = [fit_exact(ModelData.from_table(table, s), s) for s in specs]
    >>> r = stacked_ratio(fits, [0.5, 0.5], thresholds=[1.0])
    >>> bool(np.isclose(r.p_below["1.0"], (fits[0].p_hr_below["1.0"] + fits[1].p_hr_below["1.0"]) / 2))
    True
    >>> bool(min(f.hr.median for f in fits) <= r.median <= max(f.hr.median for f in fits))
    True
    """
    w = np.asarray(weights, dtype=float)
    if len(fits) == 0 or w.shape != (len(fits),) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise InputError("stacking needs one non-negative weight per fit, summing to 1")
    thresholds = check_thresholds(thresholds)
    cdfs = [_log_hr_cdf(f) for f in fits]
    lo = min(math.log(f.hr.q025) for f in fits)
    hi = max(math.log(f.hr.q975) for f in fits)
    q = [_mixture_quantile(cdfs, w, p, lo, hi) for p in (0.5, _LOWER, _UPPER)]
    p_below = {}
    for t in thresholds:
        key = threshold_key(t)
        probs = [f.p_hr_below.get(key) for f in fits]
        if any(p is None for p in probs):  # a threshold the fits were not summarised at
            probs = [cdf(math.log(t)) for cdf in cdfs]
        p_below[key] = float(np.dot(w, probs))
    return RatioSummary(median=math.exp(q[0]), q025=math.exp(q[1]), q975=math.exp(q[2]), p_below=p_below)


# --------------------------------------------------------------------------------------------
# The bias variants compared
# --------------------------------------------------------------------------------------------
@dataclass
class VariantFit:
    """One bias variant of :func:`compare_variants`: its fit, its LOO and its comparison row."""

    variant: str
    fit: FitResult
    loo: LooResult
    comparison: LooComparison
    exact_check: LooResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        d = self.fit.diagnostics
        return d is None or d.converged


@dataclass
class VariantComparison:
    """The bias variants' LOO table, stacking weights and stacked HR (``synthesis compare``)."""

    engine: str
    spec: ModelSpec
    variants: list[VariantFit]
    stacked: RatioSummary
    thresholds: tuple[float, ...]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return all(v.converged for v in self.variants)

    @property
    def unit(self) -> str:
        """What each LOO term leaves out: ``"study"``, or ``"cluster"`` (a multilevel model)."""
        return self.variants[0].loo.unit if self.variants else "study"

    def _what(self) -> str:
        """The cross-validation in words, for headings."""
        return "leave-one-cluster-out" if self.unit == "cluster" else "leave-one-study-out"

    def warnings(self) -> list[str]:
        """Non-convergence and high Pareto k, one sentence each."""
        out = []
        for v in self.variants:
            if not v.converged:
                out.append(
                    f"{v.variant}: the sampler did not converge - do not use its numbers as they are: "
                    + "; ".join(v.fit.diagnostics.messages)
                )
            if v.loo.flag():
                out.append(f"{v.variant}: {v.loo.flag()}")
        return out

    def settings(self) -> list[str]:
        """The variants' settings and how to read the weights, one sentence each: the downweight
        variant's alpha, the kappa prior of random / three-level, and what a stacking weight is not.

        Examples
        --------
        >>> from synthesis.models.results import RatioSummary
        >>> res = VariantComparison("exact", ModelSpec("bias"), [], RatioSummary(1.0, 1.0, 1.0), (1.0,))
        >>> res.settings()[-1][:60]
        'stacking weights are not posterior model probabilities: a we'
        """
        names = {v.variant for v in self.variants}
        out = []
        if "downweight" in names:
            out.append(
                f"downweight: alpha = {self.spec.alpha:g} (non-randomised studies' within-study variances divided by alpha)"
            )
        kappa = [v for v in TWO_VARIANCE_VARIANTS if v in names]
        if kappa:
            out.append(f"{' and '.join(kappa)}: kappa ~ {self.spec.priors.kappa.label}")
        out.append(STACKING_CAVEAT)
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis compare --json`` document."""
        models = []
        for v in self.variants:
            row: dict[str, Any] = {
                "bias_variant": v.variant,
                "engine": v.fit.engine,
                "loo_method": v.loo.method,
                "elpd_loo": v.loo.elpd,
                "se": v.loo.se,
                "p_loo": v.loo.p_loo,
                "elpd_diff": v.comparison.elpd_diff,
                "dse": v.comparison.dse,
                "weight": v.comparison.weight,
                "pareto_k_max": v.loo.pareto_k_max,
                "n_high_k": v.loo.n_high_k,
                "good_k": v.loo.good_k,
                "hr_median": v.fit.hr.median,
                "hr_q025": v.fit.hr.q025,
                "hr_q975": v.fit.hr.q975,
                "p_hr_below": dict(v.fit.p_hr_below),
                "converged": v.converged,
            }
            if v.exact_check is not None:
                row["elpd_loo_exact"] = v.exact_check.elpd
            if v.notes:
                row["notes"] = list(v.notes)
            models.append(row)
        priors = self.spec.priors.labels(self.spec.parameters)
        if any(v.variant in TWO_VARIANCE_VARIANTS for v in self.variants):
            priors["kappa"] = self.spec.priors.kappa.label
        out = {
            "engine": self.engine,
            "model": self.spec.model,
            "k": self.variants[0].loo.k if self.variants else 0,
            "loo_unit": self.unit,
            "priors": priors,
            "models": models,
            "stacked": {
                "hr_median": self.stacked.median,
                "hr_q025": self.stacked.q025,
                "hr_q975": self.stacked.q975,
                "p_hr_below": dict(self.stacked.p_below or {}),
            },
            "converged": self.converged,
            "warnings": self.warnings(),
            "notes": list(self.notes),
            "settings": self.settings(),
        }
        if any(v.variant == "downweight" for v in self.variants):
            out["alpha"] = self.spec.alpha
        if self.spec.multilevel:
            out["cluster"] = self.spec.cluster
            out["rho"] = self.spec.rho
            out["rows"] = int(self.variants[0].fit.k) if self.variants else 0
            if self.spec.heterogeneity:
                out["priors"]["tau_within"] = self.spec.tau_within.label
        return out

    _HEADER = ("variant", "engine", "LOO", "elpd_loo", "SE", "p_loo", "diff", "SE(diff)", "weight", "max k", "high k", "HR (95% CrI)")

    def _rows(self) -> list[list[str]]:
        """The LOO table as printed: one row per variant, then the stacked row."""
        from synthesis.models.display import fmt

        rows = []
        for v in self.variants:
            k_max = "-" if v.loo.pareto_k_max is None else f"{v.loo.pareto_k_max:.2f}"
            n_high = "-" if v.loo.n_high_k is None else str(v.loo.n_high_k)
            flag = "" if v.converged else " NOT CONVERGED"
            rows.append([
                v.variant + flag, v.fit.engine, v.loo.method, f"{v.loo.elpd:.2f}", f"{v.loo.se:.2f}",
                f"{v.loo.p_loo:.2f}", f"{v.comparison.elpd_diff:.2f}", f"{v.comparison.dse:.2f}",
                f"{v.comparison.weight:.3f}", k_max, n_high,
                f"{fmt(v.fit.hr.median, 2)} ({fmt(v.fit.hr.q025, 2)}-{fmt(v.fit.hr.q975, 2)})",
            ])
        s = self.stacked
        rows.append(["stacked", "", "", "", "", "", "", "", "1.000", "", "", f"{fmt(s.median, 2)} ({fmt(s.q025, 2)}-{fmt(s.q975, 2)})"])
        return rows

    def to_frame(self) -> Any:
        """One row per variant (the ``models`` entries of :meth:`to_json`, P(HR < T) as
        ``p_hr_below_T`` columns) and a last row ``stacked``.

        Examples
        --------
        >>> import synthesis as syn
        >>> res = compare_variants(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"),
        ...                        variants=["additive", "downweight"], engine="exact")
        >>> list(res.to_frame().index), "weight" in res.to_frame().columns
        (['additive', 'downweight', 'stacked'], True)
        """
        import pandas as pd

        doc = self.to_json()
        records = []
        for m in [*doc["models"], {"bias_variant": "stacked", "weight": 1.0, **doc["stacked"]}]:
            row = {k: v for k, v in m.items() if k not in ("p_hr_below", "notes")}
            row |= {f"p_hr_below_{t}": p for t, p in m["p_hr_below"].items()}
            records.append(row)
        return pd.DataFrame.from_records(records).set_index("bias_variant")

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        table = html_table(self._HEADER, self._rows(), caption=f"Bias variants by {self._what()} cross-validation")
        return html_block(f"synthesis compare ({self.source})", [table], [*self.settings(), *self.warnings(), *self.notes])

    def __str__(self) -> str:
        from synthesis.models.display import fmt

        header = list(self._HEADER)
        rows = self._rows()
        s = self.stacked
        widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
        if self.unit == "cluster":
            size = (
                f"{self.variants[0].loo.k} clusters of column {self.spec.cluster!r}, "
                f"{self.variants[0].fit.k} rows, rho = {self.spec.rho:g}"
            )
            elpd = (
                "elpd_loo: sum over clusters of log p(y_c | other clusters), the rows of a cluster jointly "
                "(they share the cluster effect and sampling correlation), every effect integrated out"
            )
        else:
            size = f"k = {self.variants[0].loo.k}"
            elpd = "elpd_loo: sum of log p(y_i | other studies), study effects integrated out"
        lines = [
            f"Bias variants of model {self.spec.model!r} compared by {self._what()} "
            f"cross-validation ({self.source}, {size})",
            f"{elpd}; diff: to the best "
            "variant; weight: stacking (Yao et al. 2018); HR: posterior median (95% equal-tailed CrI) "
            "of a randomised comparison",
            "",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        keys = list((s.p_below or {}).keys())
        lines.append("")
        lines.append("P(HR < T)  " + "  ".join(f"T={k}".rjust(8) for k in keys))
        for v in self.variants:
            lines.append(f"{v.variant:<11}" + "".join(f"{fmt(v.fit.p_hr_below.get(k), 3):>10}" for k in keys))
        lines.append(f"{'stacked':<11}" + "".join(f"{fmt((s.p_below or {})[k], 3):>10}" for k in keys))
        for v in self.variants:
            if v.exact_check is not None:
                lines.append(
                    f"check: {v.variant} exact LOO elpd {v.exact_check.elpd:.2f} vs PSIS-LOO {v.loo.elpd:.2f}"
                )
        lines += self.settings()
        for w in self.warnings():
            lines.append(f"WARNING: {w}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)


def _check_log_lik_memory(chains: int, draws: int, k: int) -> None:
    """Refuse, before anything is sampled, a PSIS-LOO whose pointwise log-likelihood would
    exceed :data:`LOG_LIK_MAX_BYTES`."""
    if chains * draws * k * 8 > LOG_LIK_MAX_BYTES:
        most = max(1, LOG_LIK_MAX_BYTES // (8 * chains * k))
        raise InputError(
            f"PSIS-LOO keeps the pointwise log-likelihood of every draw: {chains} chains x {draws} draws x "
            f"{k} studies is {chains * draws * k * 8 / 1e9:.1f} GB; use at most {most} draws per chain",
            parameter="draws",
        )


def compare_variants(
    table: StudySource,
    spec: ModelSpec,
    *,
    variants: str | Sequence[str] | None = BIAS_VARIANTS,
    engine: str = "pymc",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = None,
    exact_check: bool = True,
) -> VariantComparison:
    """Fit each bias variant of ``spec`` (a ``bias`` or ``bias-metareg`` model), cross-validate
    it, weight the variants by stacking and summarise the stacked HR.

    ``engine="exact"``: every variant is fitted exactly (random and three-level by 2-D
    quadrature over tau and kappa) and scored by :func:`exact_loo`, with no sampling; a variant
    exact LOO refuses (a prior the exact engine cannot integrate) is sampled with PyMC and scored by PSIS-LOO, with a note saying so.
    ``engine="pymc"``: every variant is sampled (``fit_pymc(..., log_likelihood=True)``) and
    scored by :func:`psis_loo`; with ``exact_check`` the variants exact LOO supports are also
    scored by :func:`exact_loo` (``elpd_loo_exact``), which checks PSIS-LOO.

    A multilevel ``spec`` (``spec.cluster``) is scored by exact leave-one-cluster-out (the rows of
    a cluster are dependent; :func:`exact_loo`), with ``engine="exact"`` only (``InputError``
    otherwise); asked for every variant, it compares additive and downweight (random and
    three-level would add a third variance parameter), with a note.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> res = compare_variants(table, ModelSpec("bias"), variants=["additive", "downweight"], engine="exact")
    >>> [v.variant for v in res.variants], round(sum(v.comparison.weight for v in res.variants), 6)
    (['additive', 'downweight'], 1.0)
    """
    from synthesis.models.exact import (
        exact_unsupported_reason,
        fit_exact,
        variance_split_note,
        without_pymc_advice,
    )
    from synthesis.models.fit import ENGINES

    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", parameter="engine")
    if not spec.has_bias:
        raise InputError(
            f"compare weighs the bias variants of the bias models (bias, bias-metareg); model is {spec.model!r}",
            parameter="model",
        )
    # None or "all": every variant; a string is a comma-separated list (as syn.average takes it)
    variants = list(parse_bias_variants(ALL_VARIANTS if variants is None else variants, BIAS_VARIANTS[0]))
    thresholds = check_thresholds(thresholds)
    k = table.k
    notes: list[str] = []
    if spec.multilevel:
        if engine != "exact":
            raise InputError(
                "compare with a cluster needs engine='exact': a multilevel model is scored by "
                "exact leave-one-cluster-out; PSIS-LOO of the PyMC fit's pointwise log-likelihood would treat "
                "the dependent rows of a cluster as independent",
                parameter="engine",
            )
        if set(variants) == set(BIAS_VARIANTS):  # every variant asked for: those a multilevel model has
            variants = [v for v in variants if v not in TWO_VARIANCE_VARIANTS]
            notes.append(
                f"{' and '.join(TWO_VARIANCE_VARIANTS)} are not compared: they add a third variance parameter "
                f"to the multilevel model ({spec.cluster})"
            )
    if engine == "pymc":
        _check_log_lik_memory(chains, draws, k)
    fitted: list[tuple[str, FitResult, LooResult, LooResult | None, list[str]]] = []
    source = ""
    prepared = []
    for variant in variants:
        s = replace(spec, bias_variant=variant)
        data = ModelData.from_table(table, s)
        prepared.append((variant, s, data, exact_loo_unsupported_reason(s, data) or exact_unsupported_reason(s, data)))
    if spec.multilevel:  # no PyMC fallback: PSIS-LOO would score a cluster's dependent rows one by one
        blocked = [(v, reason) for v, _, _, reason in prepared if reason is not None]
        if blocked:
            raise ModelError(
                "compare with a cluster scores by exact leave-one-cluster-out, and the exact engine cannot fit "
                + "; ".join(f"the {v} variant ({without_pymc_advice(reason)})" for v, reason in blocked)
                + "; PSIS-LOO of a PyMC fit would treat the dependent rows of a cluster as independent"
            )

    def exact_variant(item: tuple) -> tuple[FitResult, LooResult]:
        _, s, data, _ = item
        fit = fit_exact(data, s, thresholds=thresholds, study_effects=False)
        return fit, exact_loo(data, s, posterior=fit.exact_posterior)

    exact_items = [item for item in prepared if engine == "exact" and item[3] is None]
    # the exact variants side by side in threads (numpy's array work releases the GIL): the
    # same numbers as one after the other, in about half the time at large k on 2 cores
    with ThreadPoolExecutor(max_workers=min(EXACT_THREADS, max(1, len(exact_items)))) as pool:
        exact_fits = dict(zip((item[0] for item in exact_items), pool.map(exact_variant, exact_items), strict=True))
    for variant, s, data, reason in prepared:
        source = data.source
        exact_ok = reason is None
        v_notes: list[str] = []
        if variant in exact_fits:
            fit, loo = exact_fits[variant]
            check = None
        else:
            from synthesis.models.pymc_fit import fit_pymc

            _check_log_lik_memory(chains, draws, k)
            if engine == "exact":
                v_notes.append(f"not computable exactly ({reason}): sampled with PyMC, scored by PSIS-LOO")
            fit = fit_pymc(
                data, s, thresholds=thresholds, chains=chains, draws=draws, tune=tune, seed=seed,
                log_likelihood=True,
            )
            loo = psis_loo(fit)
            check = exact_loo(data, s) if exact_check and exact_ok else None
        fitted.append((variant, fit, loo, check, v_notes))
    comparison = compare_loo({v: loo for v, _, loo, _, _ in fitted})
    weights = [comparison[v].weight for v, *_ in fitted]
    stacked = stacked_ratio([f for _, f, *_ in fitted], weights, thresholds)
    if len({loo.method for _, _, loo, _, _ in fitted}) > 1:
        notes.append("exact and PSIS-LOO estimates are compared side by side (both estimate the same elpd_loo)")
    if spec.multilevel:
        split = variance_split_note(spec, prepared[0][2].clusters)
        if split is not None:
            notes.append(split)
    n_randomised = int(k - np.asarray(table.nonrandomised, dtype=bool).sum()) if table.has_design else None
    small = small_sample_note(int(k), n_randomised, "the LOO scores and stacking weights")
    if small is not None:
        notes.append(small)
    return VariantComparison(
        engine=engine,
        spec=spec,
        variants=[VariantFit(v, f, loo, comparison[v], check, n) for v, f, loo, check, n in fitted],
        stacked=stacked,
        thresholds=thresholds,
        source=source,
        notes=notes,
    )
