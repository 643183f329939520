r"""Power-scaling sensitivity: how far the posterior moves when the prior or the likelihood is
raised to a power alpha near 1, computed exactly (exact engine) or by importance weighting of
draws (arviz-stats ``psense`` on PyMC fits), and what that says about prior-data conflict.

The diagnostic (Kallioinen N, Paananen T, Bürkner P-C, Vehtari A. 2024. Detecting and
diagnosing prior and likelihood sensitivity with power-scaling. Stat Comput 34:57,
doi:10.1007/s11222-023-10366-5) perturbs one component of ``p(b, tau | y) ∝ p(b, tau) p(y | b,
tau)``,

.. math::

    p_\alpha^{\text{prior}} \propto p(b, \tau)^\alpha\, p(y \mid \theta), \qquad
    p_\alpha^{\text{lik}} \propto p(b, \tau)\, p(y \mid \theta)^\alpha,

and measures, for each reported quantity ``x``, the cumulative Jensen-Shannon distance between
the base posterior CDF ``P`` and the power-scaled one ``Q`` (Nguyen and Vreeken 2015),

.. math::

    \mathrm{CJS}(P\|Q) = \int \Big[P(x) \log_2\frac{P(x)}{\tfrac12 (P(x) + Q(x))}
        + \frac{Q(x) - P(x)}{2 \ln 2}\Big] dx, \qquad
    D(P, Q) = \sqrt{\frac{\mathrm{CJS}(P\|Q) + \mathrm{CJS}(Q\|P)}{\int (P + Q)\, dx}},

taken over ``x`` and over ``-x`` (the larger of the two), and reports the finite-difference
derivative at alpha = 1,

.. math::

    s = \frac12\Big[\frac{D(P, Q_{0.99})}{|\log_2 0.99|} + \frac{D(P, Q_{1.01})}{\log_2 1.01}\Big].

This is ``arviz_stats.psense`` (arviz-stats 1.3: ``_cjs_dist`` and ``_power_scale_sense``)
term for term. The integrals run over the range of the draws there; here, exactly, from the
base posterior's expected smallest to expected largest of :data:`REFERENCE_DRAWS` draws (Blom's
plotting positions ``(i - 0.375) / (n + 0.25)``), because the denominator grows with that range
(the numerator does not): the exact numbers are what ``psense`` gives, in expectation, on
``REFERENCE_DRAWS`` draws (tests/test_powerscale.py checks it on iid draws of the exact
posterior).

What is scaled, on the exact engine (every power-scaled posterior is another exact posterior):

* the likelihood of study ``i``, ``N(y_i; theta_i, se_i^2)^alpha ∝ N(y_i; theta_i, se_i^2 /
  alpha)`` as a function of ``theta_i``: refit with ``se_i / sqrt(alpha)`` (the likelihood
  given the study effect ``theta_i``, as the PyMC models write it; for the ``downweight`` bias
  variant the two powers multiply);
* the non-randomised studies' likelihood alone: ``se_i / sqrt(alpha)`` where ``nr_i = 1``;
* the prior: every prior of the model at once (``spec.parameters``). A normal prior
  ``N(m, s^2)^alpha ∝ N(m, s^2 / alpha)``: refit with ``s / sqrt(alpha)`` (mu, delta, beta;
  the three-level variant's mu prior is on the overall mean ``m``). The variance priors' power
  ``p(tau)^alpha`` is not refitted: given tau, the coefficients' conditional posterior does not
  involve ``p(tau)``, so the posterior under ``p(tau)^alpha`` is the grid posterior reweighted by
  ``p(tau_g)^(alpha - 1)`` (renormalised), exactly on the same quadrature rule. That holds for
  every tau prior family. The ``random`` and ``three-level`` bias variants have a second
  variance parameter kappa and a 2-D (tau, kappa) grid
  (:class:`~synthesis.models.exact.ExactPosterior2D`, whose node values, weights and densities
  are public): their nodes are reweighted by ``[p(tau_g) p(kappa_g)]^(alpha - 1)``
  (:func:`reweight_variance_priors`), and kappa gets its own row (its CDF:
  :func:`kappa_cdf`). tests/test_powerscale.py checks this against brute-force quadrature of
  the scaled models (3-D for the additive bias model; 4-D over (mu, delta, tau, kappa) for the
  random variant, agreement 3e-6), against refits with the closed-form powers of half-normal
  and exponential priors (both 2-D variants, 2e-6) and (slow) against arviz-stats ``psense``
  on iid draws of the exact posterior (random variant: kappa's prior sensitivity 0.0262
  exact, 0.0260 +- 0.0009 from 8 x 8000 draws).

A multilevel model (``spec.cluster``, a (tau, tau_within) grid) scales each cluster's joint
likelihood of its rows given their effects, ``N(y_c; theta_c, V_c)^alpha = N(y_c; theta_c, V_c /
alpha)`` (``V_c`` with its within-cluster correlation rho: every standard error divided by
``sqrt(alpha)``), reweights the nodes by ``[p(tau_g) p(tau_within_g)]^(alpha - 1)`` for the
prior, and scales the non-randomised rows' likelihood on its own only where it is a separate
factor (``rho = 0``, or no cluster holding both designs; otherwise a note says why not).
PyMC draws of a multilevel model are refused (their pointwise likelihood is per row).

Combinations this cannot do exactly: a non-normal prior on mu, delta or beta (the exact engine
refuses those models anyway; use ``engine="pymc"``), a model with mu fixed at 0 (``effect=False``:
nothing to report; refused) and the likelihood integrated over the
study effects, ``N(y_i; x_i'b, se_i^2 + tau^2)^alpha`` (a different perturbation from the one
above: it is what arviz-stats sees on a PyMC fit with k >= ``MARGINAL_MIN_STUDIES`` studies,
whose study effects are integrated out; :func:`psense_draws` says so in a note).

On draws (PyMC fits, or iid draws of the exact posterior) :func:`with_log_densities` adds the
``log_prior`` (each prior of ``spec.parameters`` at its draws: the top-level priors, not the
study effects' hierarchical distribution; the same numbers as
``synthesis.models.pymc_fit.log_prior_dataset``, computed here without importing PyMC) and
``log_likelihood`` (``N(y_i; theta_i, s_i^2)`` per study, given the drawn study effects) groups
that arviz-stats reads, and :func:`psense_draws` runs ``arviz_stats.psense`` on them. Only the
outcome likelihood is scaled (not an imputation model's covariate likelihood).

The PyMC engine's own opt-in ``log_likelihood`` group (``fit_pymc(log_likelihood=True)``) holds
the likelihood with the study effects integrated out, made for leave-one-out; power-scaling
that is the other perturbation named above, and gives larger likelihood sensitivities (dnMBC
bias model, iid exact draws, 3 x 8000: mu 0.10 instead of 0.06, tau 0.40 instead of 0.27,
delta 0.11 instead of 0.05; prior sensitivities identical). It is used only when the fit has no
study-effect draws (k >= ``MARGINAL_MIN_STUDIES``), with a note.

Diagnosis (the words of arviz-stats ``psense_summary`` and Kallioinen et al., section 5): both
sensitivities at or above the threshold (0.05): prior-data conflict; prior above and likelihood
below: the prior dominates (weak likelihood); otherwise no concern. Separately, the
non-randomised studies "drive the answer" when raising their likelihood to alpha = 0.5 or 2
moves P(HR < T) by more than :data:`NR_MOVE`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from synthesis.base import DEFAULT_THRESHOLDS
from synthesis.errors import InputError, ModelError
from synthesis.models.exact import (
    ExactPosterior,
    ExactPosterior2D,
    ExactPosteriorMultilevel,
    NormalMixture,
    exact_posterior,
    exact_unsupported_reason,
    variance_split_note,
    without_pymc_advice,
)
from synthesis.models.priors import PriorSpec, parse_prior
from synthesis.models.spec import ModelData, ModelSpec, StudySource, check_thresholds, threshold_key

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

#: The alphas of the finite-difference derivative (arviz-stats ``psense`` default).
ALPHAS: tuple[float, float] = (0.99, 1.01)
#: Sensitivity at or above which a component counts as influential (arviz-stats
#: ``psense_summary`` and Kallioinen et al. 2024, section 5).
SENSITIVITY_THRESHOLD = 0.05
#: The powers of the "how far does the answer move" table.
CURVE_ALPHAS: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)
#: The number of draws whose expected range the exact CJS integrals span: 4 chains x 2000
#: draws, the PyMC engine's default (``synthesis fit``), so the exact numbers compare with
#: ``psense`` on a default PyMC fit. 4000 draws would give values about 3% larger.
REFERENCE_DRAWS = 8000
#: A move of P(HR < T) larger than this (absolute) when the non-randomised studies' likelihood is
#: raised to 0.5 or 2 means they drive the answer.
NR_MOVE = 0.05
#: Points of the grid on which the exact CDFs are tabulated (trapezoid rule). On the bundled
#: bias model every sensitivity is within 1e-6 (relative) of its value on 8001 points.
CDF_POINTS = 1001
#: The components that are power-scaled, in table order.
COMPONENTS: tuple[str, ...] = ("prior", "likelihood", "nonrandomised_likelihood")
COMPONENT_LABELS: dict[str, str] = {
    "prior": "prior",
    "likelihood": "likelihood",
    "nonrandomised_likelihood": "non-randomised studies' likelihood",
}
#: Blom's constant: E[X_(i)] ≈ F^-1((i - 0.375) / (n + 0.25)).
_BLOM = 0.375
#: The posterior mass a reweighted tau or kappa posterior is estimated to have beyond the
#: grid's upper end (placed for the unscaled prior) above which a note says the grid may cut
#: its tail.
_TAIL_NOTE = 1e-6
_LN2 = math.log(2.0)
#: Mixture components lighter than this fraction of the heaviest are left out of the CDFs.
_PRUNE = 1e-14
#: ... and the lightest components whose weights sum to less than this.
_PRUNE_MASS = 1e-12
#: The note that starts the notes of a PyMC fit that failed its diagnostics.
NOT_CONVERGED = "THE SAMPLER DID NOT CONVERGE"
REFERENCE = (
    "Kallioinen N, Paananen T, Bürkner P-C, Vehtari A (2024). Detecting and diagnosing prior and "
    "likelihood sensitivity with power-scaling. Stat Comput 34:57, doi:10.1007/s11222-023-10366-5"
)


# --------------------------------------------------------------------------------------------
# The cumulative Jensen-Shannon distance on tabulated CDFs
# --------------------------------------------------------------------------------------------
def _trapezoid(f: np.ndarray, dx: np.ndarray) -> float:
    return float(np.sum(0.5 * (f[1:] + f[:-1]) * dx))


def _cjs_term(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``P log2(P / M) + (Q - P) / (2 ln 2)`` with ``M = (P + Q) / 2``, written as
    ``P (d - log1p(d)) / ln 2``, ``d = (Q - P) / (2P)`` (no cancellation when Q ≈ P)."""
    out = 0.5 * q / _LN2  # the limit P -> 0
    pos = p > 0
    d = (q[pos] - p[pos]) / (2.0 * p[pos])
    out[pos] = p[pos] * (d - np.log1p(d)) / _LN2
    return out


def cjs_distance(x: np.ndarray, cdf_p: np.ndarray, cdf_q: np.ndarray) -> float:
    r"""Cumulative Jensen-Shannon distance of two CDFs tabulated on an increasing grid.

    .. math::

        D(P, Q) = \sqrt{\frac{\mathrm{CJS}(P\|Q) + \mathrm{CJS}(Q\|P)}{\int (P + Q)\,dx}},
        \quad \mathrm{CJS}(P\|Q) = \int P \log_2\frac{2P}{P + Q} + \frac{Q - P}{2\ln 2}\,dx,

    the integrals over ``[x[0], x[-1]]`` by the trapezoid rule: ``arviz_stats``'s ``_cjs_dist``
    (there the CDFs are the draws' weighted ECDFs and the grid is the sorted draws). Each CJS is
    clipped at 0 as there. ``NaN`` when both CDFs integrate to 0 over the range.

    Examples
    --------
    Identical distributions are at distance 0; a shift of one SD is far:

    >>> from scipy import stats
    >>> x = np.linspace(-6, 7, 2001)
    >>> cjs_distance(x, stats.norm.cdf(x), stats.norm.cdf(x))
    0.0
    >>> round(cjs_distance(x, stats.norm.cdf(x), stats.norm.cdf(x, loc=1.0)), 3)
    0.153
    """
    x = np.asarray(x, dtype=float)
    p = np.asarray(cdf_p, dtype=float)
    q = np.asarray(cdf_q, dtype=float)
    dx = np.diff(x)
    bound = _trapezoid(p, dx) + _trapezoid(q, dx)
    if not bound > 0:
        return float("nan")
    pq = max(_trapezoid(_cjs_term(p, q), dx), 0.0)
    qp = max(_trapezoid(_cjs_term(q, p), dx), 0.0)
    return float(math.sqrt((pq + qp) / bound))


def _cjs_both(x: np.ndarray, cdf_p: np.ndarray, cdf_q: np.ndarray) -> float:
    """The larger of the distances of ``x`` and of ``-x`` (CDF of -X = 1 - CDF of X, reversed),
    as ``arviz_stats.psense`` takes."""
    flipped = cjs_distance(-x[::-1], 1.0 - cdf_p[::-1], 1.0 - cdf_q[::-1])
    return max(cjs_distance(x, cdf_p, cdf_q), flipped)


def sensitivity_from_cdfs(
    x: np.ndarray,
    base: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    alphas: tuple[float, float] = ALPHAS,
) -> float:
    r"""Power-scaling sensitivity from the base CDF and the CDFs at ``alphas`` (lower, upper).

    ``(D(P, Q_lo) / |log2 alpha_lo| + D(P, Q_hi) / log2 alpha_hi) / 2``, each distance the larger
    over ``x`` and ``-x`` (arviz-stats ``_power_scale_sense``).

    Examples
    --------
    A location shift ``Q_alpha = N(0.1 log2(alpha), 1)`` (a gradient of 0.1 SD per doubling):

    >>> from scipy import stats
    >>> x = np.linspace(-4, 4, 4001)
    >>> cdfs = [stats.norm.cdf(x, loc=0.1 * np.log2(a)) for a in (1.0, 0.99, 1.01)]
    >>> round(sensitivity_from_cdfs(x, *cdfs), 4)
    0.0202
    """
    lo, hi = alphas
    d_lo = _cjs_both(x, base, lower)
    d_hi = _cjs_both(x, base, upper)
    return float((d_lo / -math.log2(lo) + d_hi / math.log2(hi)) / 2.0)


# --------------------------------------------------------------------------------------------
# Exact power-scaled posteriors
# --------------------------------------------------------------------------------------------
def _check_power(alpha: float) -> float:
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise InputError(f"a power-scaling alpha must be a finite number > 0, got {alpha!r}", parameter="alpha")
    return alpha


def scale_data(data: ModelData, *, likelihood: float = 1.0, nonrandomised: float = 1.0) -> ModelData:
    r"""The data whose likelihood is the original's raised to a power.

    ``N(y_i; theta_i, se_i^2)^a ∝ N(y_i; theta_i, se_i^2 / a)`` as a function of ``theta_i``:
    every standard error is divided by ``sqrt(likelihood)`` and a non-randomised study's also by
    ``sqrt(nonrandomised)``.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> scaled = scale_data(data, nonrandomised=4.0)
    >>> bool(np.allclose(scaled.se, np.where(data.nonrandomised, data.se / 2, data.se)))
    True
    """
    a_all, a_nr = _check_power(likelihood), _check_power(nonrandomised)
    nr = np.asarray(data.nonrandomised, dtype=bool)
    factor = np.where(nr, math.sqrt(a_all * a_nr), math.sqrt(a_all))
    return replace(data, se=np.asarray(data.se, dtype=float) / factor)


def _scaled_normal(prior: PriorSpec, alpha: float, name: str) -> PriorSpec:
    if not prior.is_normal:
        raise ModelError(
            f"power-scaling the {name} prior exactly needs a normal prior, got {prior.label}; "
            "use engine='pymc' (importance weighting)"
        )
    m, s = prior.params
    return parse_prior(f"normal({m!r}, {s / math.sqrt(alpha)!r})", name)


def scale_location_priors(spec: ModelSpec, alpha: float) -> ModelSpec:
    r"""The spec whose normal priors on mu, delta and beta are raised to the power ``alpha``:
    ``N(m, s^2)^alpha ∝ N(m, s^2 / alpha)``. The tau prior is left alone (see
    :func:`reweight_tau_prior`).

    Examples
    --------
    >>> scale_location_priors(ModelSpec("bias"), 4.0).priors.delta.label
    'normal(mean=0, sd=0.25)'
    """
    alpha = _check_power(alpha)
    names = [n for n in ("mu", "delta", "beta") if n in spec.parameters]
    new = {n: _scaled_normal(getattr(spec.priors, n), alpha, n) for n in names}
    return replace(spec, priors=replace(spec.priors, **new))


def _log_prior_at_nodes(post: ExactPosterior, spec: ModelSpec) -> np.ndarray:
    """``log p(tau_g) + log p(kappa_g)`` at every node of the grid (the variance priors of
    ``spec.parameters``: no tau term when tau is fixed at 0, a kappa term on 2-D grids), and
    ``log p(tau_within_g)`` on a multilevel model's (tau, tau_within) grid."""
    out = np.zeros(np.asarray(post.weights).shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "tau" in spec.parameters:
            out = out + np.asarray(spec.priors.tau.logpdf(post.tau), dtype=float)
            if spec.multilevel:  # the second axis is tau_within
                if not isinstance(post, ExactPosteriorMultilevel):
                    raise ModelError("a multilevel model's posterior needs its (tau, tau_within) grid")
                out = out + np.asarray(spec.tau_within.logpdf(post.kappa), dtype=float)
        if "kappa" in spec.parameters:
            if not isinstance(post, ExactPosterior2D):
                raise ModelError("the model has a kappa prior but the posterior has no kappa grid")
            out = out + np.asarray(spec.priors.kappa.logpdf(post.kappa), dtype=float)
    return out


def _tail_beyond(u: np.ndarray, dens_u: np.ndarray) -> float:
    """The mass beyond ``u[-1]`` of a normalised density of ``u = asinh(x / c)`` tabulated at
    ``u``, extrapolating its last two nodes as an exponential tail (a power-law tail in x is
    exponential in u); ``inf`` when the density is not falling there."""
    d1, d0 = float(dens_u[-1]), float(dens_u[-2])
    if d1 <= 0.0:
        return 0.0
    if not d0 > d1:
        return math.inf
    return d1 * (u[-1] - u[-2]) / math.log(d0 / d1)


def _second_variance(post: ExactPosterior) -> str:
    """The name of a 2-D grid's second axis: tau_within (multilevel model) or kappa."""
    return "tau_within" if isinstance(post, ExactPosteriorMultilevel) else "kappa"


def _edge_mass(post: ExactPosterior) -> dict[str, bool]:
    """For tau (and kappa or tau_within on 2-D grids): is the posterior mass beyond the grid's
    upper end (:func:`_tail_beyond`) above ``_TAIL_NOTE``?"""
    out: dict[str, bool] = {}
    if post.spec.heterogeneity:
        out["tau"] = _tail_beyond(np.asarray(post.grid.u), np.asarray(post.density_u())) > _TAIL_NOTE
    if isinstance(post, ExactPosterior2D) and (post.spec.heterogeneity or not isinstance(post, ExactPosteriorMultilevel)):
        out[_second_variance(post)] = _tail_beyond(np.asarray(post.kappa_grid.u), np.asarray(post.kappa_density_u())) > _TAIL_NOTE
    return out


def reweight_variance_priors(post: ExactPosterior, spec: ModelSpec, alpha: float) -> tuple[ExactPosterior, list[str]]:
    r"""The exact posterior with the priors of the variance parameters (tau, and kappa on a
    2-D grid) raised to the power ``alpha``.

    On the grid, ``p(v_g | y) ∝ p(v_g) p(y | v_g)`` with ``v = tau`` or ``v = (tau, kappa)``
    (:class:`~synthesis.models.exact.ExactPosterior2D`: a product grid whose node values
    ``post.tau``, ``post.kappa``, normalised quadrature ``weights`` and ``density`` are per
    node), and the coefficients' conditional posterior given ``v`` does not involve the prior
    of ``v``; so under ``p(tau)^alpha p(kappa)^alpha`` the density at the nodes becomes

    .. math::

        p_\alpha(v_g \mid y) = p(v_g \mid y)\, \big[p(\tau_g)\, p(\kappa_g)\big]^{\alpha - 1} / Z,
        \qquad Z = \sum_g w_g \big[p(\tau_g)\, p(\kappa_g)\big]^{\alpha - 1},

    (``w`` the normalised quadrature weights, which become ``w_g [...]^(alpha - 1) / Z``),
    exactly on the same quadrature rule. Only the priors of ``spec.parameters`` are scaled
    (no tau term with tau fixed at 0). Returns the reweighted posterior and the parameters
    whose posterior mass beyond the grid's upper end, extrapolated from the last two nodes, is
    above ``1e-6`` (the grid, placed for the unscaled prior, may then cut its tail; only for
    ``alpha < 1``).

    Examples
    --------
    ``halfnormal(s)^2 ∝ halfnormal(s / sqrt(2))``, for tau and for kappa at once:

    >>> import synthesis as syn
    >>> spec = ModelSpec("bias", bias_variant="random")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> post, cut = reweight_variance_priors(exact_posterior(data, spec), spec, 2.0)
    >>> narrow = {n: parse_prior(f"halfnormal({getattr(spec.priors, n).params[0] / math.sqrt(2)!r})", n) for n in ("tau", "kappa")}
    >>> ref = exact_posterior(data, replace(spec, priors=replace(spec.priors, **narrow)))
    >>> cut, abs(post.tau_mean() - ref.tau_mean()) < 1e-6, bool(abs(post.kappa_ppf(0.5) - ref.kappa_ppf(0.5))[0] < 1e-6)
    ([], True, True)
    """
    alpha = _check_power(alpha)
    if alpha == 1.0 or not {"tau", "kappa"} & set(spec.parameters):
        return post, []
    log_prior = _log_prior_at_nodes(post, spec)
    weights = np.asarray(post.weights, dtype=float)
    density = np.asarray(post.density, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_w = np.where(weights > 0, np.log(weights) + (alpha - 1.0) * log_prior, -np.inf)
        log_d = np.where(density > 0, np.log(density) + (alpha - 1.0) * log_prior, -np.inf)
    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    log_d = np.where(np.isnan(log_d), -np.inf, log_d)
    top = np.max(log_w[np.isfinite(log_w)])
    w = np.exp(log_w - top)
    z = float(w.sum())
    # the same factor keeps sum_g q_g density_g = 1 (weights are q_g density_g, normalised)
    caches = {f.name: None for f in fields(post) if f.name in ("_tau_cdf", "_kappa_cdf")}
    scaled = replace(post, weights=w / z, density=np.exp(log_d - top) / z, **caches)
    cut = [name for name, flag in _edge_mass(scaled).items() if flag and alpha < 1.0]
    return scaled, cut


def reweight_tau_prior(post: ExactPosterior, prior: PriorSpec, alpha: float) -> tuple[ExactPosterior, bool]:
    r"""The exact posterior of a one-variance model (tau only) with the tau prior ``prior``
    raised to the power ``alpha`` (:func:`reweight_variance_priors`); returns it and whether
    its mass beyond the grid's upper end may exceed ``1e-6``.

    Examples
    --------
    ``halfnormal(0.5)`` squared is ``halfnormal(0.5 / sqrt(2))``:

    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> post, cut = reweight_tau_prior(exact_posterior(data, spec), spec.priors.tau, 2.0)
    >>> narrow = replace(spec, priors=replace(spec.priors, tau=parse_prior("halfnormal(0.35355339059327373)", "tau")))
    >>> ref = exact_posterior(data, narrow)
    >>> cut, abs(post.tau_mean() - ref.tau_mean()) < 1e-7
    (False, True)
    """
    if isinstance(post, ExactPosterior2D):
        raise ModelError("a model with a kappa prior: use reweight_variance_priors, which scales both priors")
    spec = replace(post.spec, priors=replace(post.spec.priors, tau=prior))
    scaled, _ = reweight_variance_priors(post, spec, alpha)
    return scaled, bool(_edge_mass(scaled).get("tau", False))


def powerscaled_posterior(
    data: ModelData,
    spec: ModelSpec,
    component: str,
    alpha: float,
    *,
    n_grid: int | None = None,
) -> ExactPosterior:
    """The exact posterior with one component raised to the power ``alpha``.

    Parameters
    ----------
    component
        ``"prior"`` (every prior of the model: :func:`scale_location_priors` then
        :func:`reweight_variance_priors`: tau, and kappa for the ``random`` and ``three-level``
        bias variants), ``"likelihood"`` (every study: :func:`scale_data`) or
        ``"nonrandomised_likelihood"`` (the non-randomised studies only).

    Examples
    --------
    The bias model with the likelihood squared is the model fitted to twice the information:

    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> base = exact_posterior(data, spec)
    >>> twice = powerscaled_posterior(data, spec, "likelihood", 2.0)
    >>> bool(twice.linear(twice.contrast("mu")).sd() < base.linear(base.contrast("mu")).sd())
    True
    """
    alpha = _check_power(alpha)
    if component == "prior":
        post = exact_posterior(data, scale_location_priors(spec, alpha), n_grid=n_grid)
        return reweight_variance_priors(post, spec, alpha)[0]
    if component == "likelihood":
        return exact_posterior(scale_data(data, likelihood=alpha), spec, n_grid=n_grid)
    if component == "nonrandomised_likelihood":
        if not np.any(data.nonrandomised):
            raise ModelError("there are no non-randomised studies whose likelihood could be scaled")
        return exact_posterior(scale_data(data, nonrandomised=alpha), spec, n_grid=n_grid)
    raise InputError(f"component must be one of {', '.join(COMPONENTS)}, got {component!r}", parameter="component")


# --------------------------------------------------------------------------------------------
# Reported quantities of an exact posterior
# --------------------------------------------------------------------------------------------
def _hr_label(t: float) -> str:
    return f"P(HR < {t:g})"


@dataclass(frozen=True)
class _Quantity:
    """One reported quantity: ``kind`` is "linear" (a coefficient), "tau", "hr" (exp(mu)) or
    "below" (the indicator HR < T, a two-point distribution on {0, 1})."""

    name: str
    kind: str
    contrast: str = "mu"
    t: float = 1.0


def _has_delta(post: ExactPosterior) -> bool:
    """Whether the model reports delta (a coefficient, or the three-level model's contrast)."""
    try:
        post.contrast("delta")
    except InputError:
        return False
    return bool(np.any(post.contrast("delta")))


def _quantities(spec: ModelSpec, post: ExactPosterior, thresholds: Sequence[float]) -> list[_Quantity]:
    out = [_Quantity("mu", "linear", "mu")]
    if spec.heterogeneity:
        out.append(_Quantity("tau", "tau"))
    if _has_delta(post):
        out.append(_Quantity("delta", "linear", "delta"))
    if isinstance(post, ExactPosterior2D) and (spec.heterogeneity or not spec.multilevel):
        out.append(_Quantity(_second_variance(post), "kappa"))
    out += [_Quantity(f"beta[{c}]", "linear", c) for c in spec.covariates]
    out.append(_Quantity("HR", "hr"))
    out += [_Quantity(_hr_label(t), "below", t=float(t)) for t in thresholds]
    return out


def _blom(n: int) -> tuple[float, float]:
    p = (1.0 - _BLOM) / (n + 1.0 - 2.0 * _BLOM)
    return p, 1.0 - p


def _support(post: ExactPosterior, q: _Quantity, n_ref: int) -> np.ndarray:
    """The grid of ``q`` over the base posterior's expected range of ``n_ref`` draws."""
    probs = np.array(_blom(n_ref))
    if q.kind == "below":
        return np.array([0.0, 1.0])
    if q.kind == "tau":
        lo, hi = post.tau_ppf(probs)
    elif q.kind == "kappa":
        lo, hi = post.kappa_ppf(probs)  # type: ignore[attr-defined]
    else:
        lo, hi = post.linear(post.contrast(q.contrast)).ppf(probs)
        if q.kind == "hr":
            lo, hi = math.exp(lo), math.exp(hi)
    return np.linspace(float(lo), float(hi), CDF_POINTS)


def _pruned(mix: NormalMixture) -> NormalMixture:
    """The mixture without components lighter than ``_PRUNE`` of the heaviest, nor the
    lightest components whose total weight is below ``_PRUNE_MASS`` (a 2-D grid's corners),
    renormalised: its CDF moves by at most that much."""
    keep = mix.weights > _PRUNE * mix.weights.max()
    order = np.argsort(mix.weights)
    light = np.cumsum(mix.weights[order]) < _PRUNE_MASS * mix.weights.sum()
    keep[order[light]] = False
    w = mix.weights[keep]
    return NormalMixture(w / w.sum(), mix.means[keep], mix.sds[keep])


def kappa_cdf(post: ExactPosterior2D, x: np.ndarray | float) -> np.ndarray:
    r"""Posterior CDF of kappa on a 2-D grid, computed as tau's is: the marginal density of
    ``u = asinh(kappa / c)`` at the Gauss-Lobatto nodes (``post.kappa_density_u()``),
    interpolated by the polynomial through its logarithm onto
    :data:`~synthesis.models.exact.FINE_POINTS` uniform points (``post.kappa_table_u()``),
    splined and integrated exactly.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias", bias_variant="random")
    >>> post = exact_posterior(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> round(float(kappa_cdf(post, post.kappa_ppf(0.3)[0])), 6)
    0.3
    """
    from scipy.interpolate import CubicSpline

    fine, table = post.kappa_table_u()
    anti = CubicSpline(fine, table).antiderivative()
    z = np.clip(np.arcsinh(np.asarray(x, dtype=float) / post.kappa_grid.c), fine[0], fine[-1])
    return np.clip(anti(z) / anti(fine[-1]), 0.0, 1.0)


def _cdf(post: ExactPosterior, q: _Quantity, x: np.ndarray) -> np.ndarray:
    if q.kind == "tau":
        return np.asarray(post.tau_cdf(x), dtype=float)
    if q.kind == "kappa":
        return np.asarray(kappa_cdf(post, x), dtype=float)  # type: ignore[arg-type]
    mix = _pruned(post.linear(post.contrast(q.contrast)))
    if q.kind == "linear":
        return np.asarray(mix.cdf(x), dtype=float)
    if q.kind == "hr":
        return np.asarray(mix.cdf(np.log(x)), dtype=float)
    p = float(mix.cdf(math.log(q.t)))
    return np.full(2, 1.0 - p)  # P(indicator <= x) = 1 - p on [0, 1)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SensitivityRow:
    """One row of the power-scaling table: a quantity, its sensitivities and the diagnosis."""

    parameter: str
    prior: float
    likelihood: float
    nonrandomised_likelihood: float | None
    diagnosis: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter,
            "prior": self.prior,
            "likelihood": self.likelihood,
            "nonrandomised_likelihood": self.nonrandomised_likelihood,
            "diagnosis": self.diagnosis,
        }


@dataclass(frozen=True)
class AlphaPoint:
    """The posterior median HR and P(HR < T) with one component raised to the power ``alpha``."""

    scaled: str
    alpha: float
    hr_median: float
    p_hr_below: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"scaled": self.scaled, "alpha": self.alpha, "hr_median": self.hr_median, "p_hr_below": dict(self.p_hr_below)}


#: Diagnosis words (arviz-stats ``psense_summary``, in plain words).
CONFLICT = "potential prior-data conflict"
PRIOR_DOMINATES = "the prior dominates (strong prior / weak likelihood)"
NO_CONCERN = "no concern"
NR_DRIVES = "moves with the non-randomised studies"
#: The diagnosis of a ``P(HR < T)`` row. The CJS distance of the indicator ``HR < T`` (a
#: two-point distribution) is about the relative change of the rarer outcome's probability, so
#: a probability near 0 or 1 reads as very sensitive although it moves by little; the 0.05
#: threshold is not applied to it (the alpha curve shows how far it moves).
PROBABILITY = "a probability: see the alpha curve"


def diagnose(prior: float, likelihood: float, nonrandomised: float | None = None, threshold: float = SENSITIVITY_THRESHOLD) -> str:
    """The diagnosis of one quantity, as arviz-stats ``psense_summary`` makes it (in words).

    Both sensitivities >= ``threshold``: prior-data conflict; prior > threshold > likelihood:
    the prior dominates (weak likelihood); otherwise no concern. A non-randomised-likelihood
    sensitivity >= ``threshold`` adds that the quantity moves with the non-randomised studies.

    Examples
    --------
    >>> diagnose(0.08, 0.12), diagnose(0.08, 0.01), diagnose(0.01, 0.1, 0.07)
    ('potential prior-data conflict', 'the prior dominates (strong prior / weak likelihood)', 'no concern; moves with the non-randomised studies')
    """
    if prior >= threshold and likelihood >= threshold:
        words = CONFLICT
    elif prior > threshold > likelihood:
        words = PRIOR_DOMINATES
    else:
        words = NO_CONCERN
    if nonrandomised is not None and nonrandomised >= threshold:
        words += f"; {NR_DRIVES}"
    return words


@dataclass
class PowerScaleResult:
    """Power-scaling sensitivity of one model: the table, the alpha curve and what they say.

    ``rows`` hold the sensitivity of each quantity to the prior, the likelihood and the
    non-randomised studies' likelihood (``None`` without such studies); ``alpha_curve`` the
    median HR and P(HR < T) with each component raised to each of :data:`CURVE_ALPHAS`.
    """

    engine: str
    spec: ModelSpec
    k: int
    rows: list[SensitivityRow]
    alpha_curve: list[AlphaPoint]
    thresholds: tuple[float, ...]
    threshold: float = SENSITIVITY_THRESHOLD
    alphas: tuple[float, float] = ALPHAS
    reference_draws: int | None = REFERENCE_DRAWS
    conflict: bool = False
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    source: str = ""
    #: A multilevel model: the number of clusters (``spec.cluster``; ``k`` counts rows).
    clusters: int | None = None

    def _size(self) -> str:
        if self.clusters is None:
            return f"k = {self.k} studies"
        return f"k = {self.k} rows in {self.clusters} clusters ({self.spec.cluster}, rho = {self.spec.rho:g})"

    def to_frame(self, what: str = "sensitivity") -> pd.DataFrame:
        """``"sensitivity"``: one row per quantity (prior, likelihood, nonrandomised_likelihood,
        diagnosis); ``"alpha"``: one row per (scaled component, alpha) with the median HR and a
        ``p_hr_below_T`` column per threshold.

        Examples
        --------
        >>> import synthesis as syn
        >>> res = power_scale(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
        >>> list(res.to_frame().columns)
        ['prior', 'likelihood', 'nonrandomised_likelihood', 'diagnosis']
        >>> res.to_frame("alpha").shape
        (15, 5)
        """
        import pandas as pd

        if what == "sensitivity":
            return pd.DataFrame.from_records([r.to_dict() for r in self.rows]).set_index("parameter")
        if what == "alpha":
            recs = []
            for p in self.alpha_curve:
                rec = {"scaled": p.scaled, "alpha": p.alpha, "hr_median": p.hr_median}
                rec |= {f"p_hr_below_{k}": v for k, v in p.p_hr_below.items()}
                recs.append(rec)
            return pd.DataFrame.from_records(recs)
        raise ValueError(f"what must be 'sensitivity' or 'alpha', got {what!r}")

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis psense --json`` document."""
        priors = self.spec.priors.labels(self.spec.parameters)
        extra: dict[str, Any] = {}
        if self.spec.multilevel:
            extra = {"cluster": self.spec.cluster, "rho": self.spec.rho, "clusters": self.clusters}
            if self.spec.heterogeneity:
                priors["tau_within"] = self.spec.tau_within.label
        return {
            "engine": self.engine,
            "model": self.spec.model,
            "k": self.k,
            **extra,
            "priors": priors,
            "threshold": self.threshold,
            "sensitivity_threshold": self.threshold,
            "alphas": list(self.alphas),
            "reference_draws": self.reference_draws,
            "rows": [r.to_dict() for r in self.rows],
            "alpha_curve": [p.to_dict() for p in self.alpha_curve],
            "conflict": self.conflict,
            "summary": self.summary,
            "notes": list(self.notes),
            "reference": REFERENCE,
        }

    def __str__(self) -> str:
        from synthesis.models.display import fmt

        what = self.spec.model + (f", bias variant {self.spec.bias_variant}" if self.spec.has_bias else "")
        how = (
            "exact (every power-scaled posterior is another exact fit)"
            if self.engine == "exact"
            else f"{self.engine} draws, importance-weighted (arviz-stats psense)"
        )
        lines = [
            f"Power-scaling sensitivity: model {what}; {self._size()} ({self.source})",
            f"Engine: {how}; alphas {self.alphas[0]:g} and {self.alphas[1]:g}; threshold {self.threshold:g}",
            "",
        ]
        width = max([len(r.parameter) for r in self.rows] + [9])
        lines.append(f"  {'parameter':<{width}}  {'prior':>7}  {'likelihood':>10}  {'non-rand.':>9}  diagnosis")
        for r in self.rows:
            lines.append(
                f"  {r.parameter:<{width}}  {fmt(r.prior):>7}  {fmt(r.likelihood):>10}  "
                f"{fmt(r.nonrandomised_likelihood, missing='-'):>9}  {r.diagnosis}"
            )
        lines += ["", "Median HR and P(HR < T) with one component raised to the power alpha:"]
        keys = list(self.alpha_curve[0].p_hr_below) if self.alpha_curve else []
        head = f"  {'scaled':<36}{'alpha':>6}{'HR median':>11}" + "".join(f"{'P(HR<' + k + ')':>13}" for k in keys)
        lines.append(head)
        for p in self.alpha_curve:
            lines.append(
                f"  {COMPONENT_LABELS.get(p.scaled, p.scaled):<36}{p.alpha:>6g}{fmt(p.hr_median):>11}"
                + "".join(f"{fmt(p.p_hr_below[k]):>13}" for k in keys)
            )
        lines += ["", self.summary]
        lines += [f"Note: {n}" for n in self.notes]
        lines.append(f"Reference: {REFERENCE}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from synthesis.models.display import fmt, html_block, html_table

        table = html_table(
            ["parameter", "prior", "likelihood", "non-randomised likelihood", "diagnosis"],
            [[r.parameter, fmt(r.prior), fmt(r.likelihood), fmt(r.nonrandomised_likelihood, missing="-"), r.diagnosis] for r in self.rows],
        )
        return html_block(f"Power-scaling sensitivity ({self.spec.model}, {self.engine})", [table], [self.summary, *self.notes])


# --------------------------------------------------------------------------------------------
# Summary sentences
# --------------------------------------------------------------------------------------------
def _join(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def _summary(
    rows: Sequence[SensitivityRow], curve: Sequence[AlphaPoint], threshold: float, bias_model: bool = False
) -> tuple[bool, str]:
    """The verdict under the table: it judges only the parameter and HR rows (the ``P(HR < T)``
    rows are shown for information and named when both their sensitivities reach ``threshold``),
    and never says the non-randomised studies do not drive the answer without naming each row
    whose non-randomised sensitivity reaches ``threshold``.

    Examples
    --------
    >>> rows = [SensitivityRow("mu", 0.01, 0.2, None, NO_CONCERN), SensitivityRow("P(HR<1)", 0.065, 0.125, None, PROBABILITY)]
    >>> print(_summary(rows, [], 0.05)[1])  # doctest: +NORMALIZE_WHITESPACE
    Judged on the parameters and HR (mu): no prior-data conflict and no dominating prior (every prior sensitivity is below 0.05).
    The P(HR < T) rows are shown for information, not judged (the sensitivity of an indicator overstates small moves; see the alpha curve);
    P(HR<1) has both its prior (0.065) and likelihood (0.125) sensitivity at or above 0.05.
    """
    judged = [r for r in rows if r.diagnosis != PROBABILITY]
    probs = [r for r in rows if r.diagnosis == PROBABILITY]
    conflict = [r.parameter for r in judged if r.diagnosis.startswith(CONFLICT)]
    dominated = [r.parameter for r in judged if r.diagnosis.startswith(PRIOR_DOMINATES)]
    parts = []
    if conflict:
        parts.append(
            f"Potential prior-data conflict for {_join(conflict)}: the posterior moves both when the "
            f"prior and when the likelihood is power-scaled (sensitivity >= {threshold:g}): the prior "
            "and the data may pull in different directions; compare the prior with what the data say "
            "(e.g. refit with a wider prior)."
        )
    if dominated:
        parts.append(
            f"The prior dominates for {_join(dominated)}: power-scaling the prior moves the posterior "
            "but power-scaling the likelihood hardly does (strong prior / weak likelihood), so the "
            "data say little about it beyond the prior."
        )
    if judged and not conflict and not dominated:
        how = (
            f"every prior sensitivity is below {threshold:g}"
            if all(r.prior < threshold for r in judged)
            else f"every prior sensitivity is at most {threshold:g}, and where it equals {threshold:g} the likelihood sensitivity is below it"
        )
        parts.append(
            f"Judged on the parameters and HR ({_join([r.parameter for r in judged])}): no prior-data "
            f"conflict and no dominating prior ({how})."
        )
    if probs:
        both = [r for r in probs if r.prior >= threshold and r.likelihood >= threshold]
        text = (
            "The P(HR < T) rows are shown for information, not judged (the sensitivity of an indicator "
            "overstates small moves; see the alpha curve)"
        )
        if both:
            text += "; " + "; ".join(
                f"{r.parameter} has both its prior ({r.prior:.3g}) and likelihood ({r.likelihood:.3g}) "
                f"sensitivity at or above {threshold:g}"
                for r in both
            )
        parts.append(text + ".")
    nr_rows = [
        r for r in rows if r.nonrandomised_likelihood is not None and r.nonrandomised_likelihood >= threshold
    ]
    base = next((p for p in curve if p.alpha == 1.0), None)
    nr = [p for p in curve if p.scaled == "nonrandomised_likelihood" and p.alpha != 1.0]
    if base is not None and nr:
        moves = [(abs(p.p_hr_below[k] - base.p_hr_below[k]), p, k) for p in nr for k in p.p_hr_below]
        size, worst, key = max(moves, key=lambda m: m[0])
        what = (
            f"raising their likelihood to the power {worst.alpha:g} moves P(HR < {key}) from "
            f"{base.p_hr_below[key]:.3f} to {worst.p_hr_below[key]:.3f} and the median HR from "
            f"{base.hr_median:.3f} to {worst.hr_median:.3f}"
        )
        within = " within this model (the additive bias term absorbs their shift)" if bias_model else ""
        flagged = ", ".join(f"{r.parameter} ({r.nonrandomised_likelihood:.3g})" for r in nr_rows)
        if size > NR_MOVE:
            parts.append(f"The non-randomised studies drive the answer{within}: {what}.")
        elif nr_rows:
            parts.append(
                f"P(HR < T) moves by at most {NR_MOVE:g} when the non-randomised studies' likelihood is "
                f"raised to a power from {min(p.alpha for p in nr):g} to {max(p.alpha for p in nr):g}{within} "
                f"({what}), but these rows have a non-randomised sensitivity at or above {threshold:g}: {flagged}."
            )
        else:
            parts.append(
                f"The non-randomised studies do not drive the answer{within} (P(HR < T) moves by at most "
                f"{NR_MOVE:g} for alpha from {min(p.alpha for p in nr):g} to {max(p.alpha for p in nr):g}): {what}."
            )
    elif nr_rows:
        parts.append(f"Rows with a non-randomised sensitivity at or above {threshold:g}: {', '.join(r.parameter for r in nr_rows)}.")
    return bool(conflict), " ".join(parts)


# --------------------------------------------------------------------------------------------
# Exact engine
# --------------------------------------------------------------------------------------------
def _curve_point(post: ExactPosterior, scaled: str, alpha: float, thresholds: Sequence[float]) -> AlphaPoint:
    mix = post.linear(post.contrast("mu"))
    p = mix.cdf(np.log(np.asarray(thresholds, dtype=float)))
    return AlphaPoint(
        scaled=scaled,
        alpha=float(alpha),
        hr_median=float(math.exp(float(mix.ppf(0.5)))),
        p_hr_below={threshold_key(t): float(v) for t, v in zip(thresholds, np.atleast_1d(p), strict=True)},
    )


def psense_exact(
    data: ModelData,
    spec: ModelSpec,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    threshold: float = SENSITIVITY_THRESHOLD,
    alphas: tuple[float, float] = ALPHAS,
    curve_alphas: Sequence[float] = CURVE_ALPHAS,
    reference_draws: int = REFERENCE_DRAWS,
    n_grid: int | None = None,
) -> PowerScaleResult:
    """Power-scaling sensitivity of an exact-engine model, computed exactly.

    Every power-scaled posterior is another exact posterior (:func:`powerscaled_posterior`);
    each quantity's sensitivity is :func:`sensitivity_from_cdfs` of the exact marginal CDFs
    over the base posterior's expected range of ``reference_draws`` draws (module docstring).

    Parameters
    ----------
    thresholds
        The hazard ratios T of the ``P(HR < T)`` rows and of the alpha curve.
    threshold
        Sensitivity at or above which a component counts as influential.
    alphas
        The powers of the finite-difference derivative (arviz-stats: 0.99 and 1.01).
    curve_alphas
        The powers of the alpha curve (1 is the base posterior).

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> res = psense_exact(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> [r.parameter for r in res.rows]
    ['mu', 'tau', 'delta', 'HR', 'P(HR < 0.8)', 'P(HR < 1)']
    >>> res.conflict
    False
    """
    reason = exact_unsupported_reason(spec, data)
    if reason is not None:
        if spec.multilevel:  # PyMC is no way out for a multilevel model (see power_scale)
            reason = without_pymc_advice(reason)
        raise ModelError(f"engine='exact': {reason}", parameter="engine")
    if not spec.effect:
        raise ModelError(
            "power-scaling sensitivity needs a model with an effect: with mu fixed at 0 "
            "(effect=False) the HR is 1 whatever is power-scaled"
        )
    thresholds = check_thresholds(thresholds)
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError(f"threshold must be a finite number > 0, got {threshold!r}", parameter="threshold")
    lo_a, hi_a = (_check_power(a) for a in alphas)
    if not lo_a < 1.0 < hi_a:
        raise InputError(f"alphas must straddle 1, got {alphas!r}", parameter="alphas")
    if int(reference_draws) < 2:
        raise InputError(f"reference_draws must be >= 2, got {reference_draws!r}", parameter="reference_draws")
    has_nr = bool(np.any(data.nonrandomised)) and not bool(np.all(data.nonrandomised))
    notes: list[str] = []
    if not has_nr:
        notes.append("no non-randomised studies (or no randomised ones): their likelihood is not scaled on its own")
    n_clusters = None
    if spec.multilevel:
        n_clusters, mixed_note = _multilevel_notes(data, spec)
        notes.append(MULTILEVEL_NOTE)
        split = variance_split_note(spec, data.clusters)
        if split is not None:
            notes.append(split)
        if has_nr and mixed_note:
            has_nr = False
            notes.append(mixed_note)
    components = [c for c in COMPONENTS if c != "nonrandomised_likelihood" or has_nr]

    base = exact_posterior(data, spec, n_grid=n_grid)
    quantities = _quantities(spec, base, thresholds)
    supports = [_support(base, q, reference_draws) for q in quantities]
    base_cdfs = [_cdf(base, q, x) for q, x in zip(quantities, supports, strict=True)]
    sens: dict[str, list[float]] = {}
    cut: set[str] = set()
    for comp in components:
        scaled = []
        for a in (lo_a, hi_a):
            post = powerscaled_posterior(data, spec, comp, a, n_grid=n_grid)
            scaled.append([_cdf(post, q, x) for q, x in zip(quantities, supports, strict=True)])
        sens[comp] = [
            sensitivity_from_cdfs(x, b, lo, hi, (lo_a, hi_a))
            for x, b, lo, hi in zip(supports, base_cdfs, scaled[0], scaled[1], strict=True)
        ]
    rows = []
    for i, q in enumerate(quantities):
        nr = sens["nonrandomised_likelihood"][i] if has_nr else None
        p, lik = sens["prior"][i], sens["likelihood"][i]
        words = PROBABILITY if q.kind == "below" else diagnose(p, lik, nr, threshold)
        rows.append(SensitivityRow(q.name, p, lik, nr, words))

    curve = []
    for comp in components:
        for a in curve_alphas:
            a = _check_power(a)
            if a == 1.0:
                post = base
            elif comp == "prior":
                post, c = reweight_variance_priors(
                    exact_posterior(data, scale_location_priors(spec, a), n_grid=n_grid), spec, a
                )
                cut.update(c)
            else:
                post = powerscaled_posterior(data, spec, comp, a, n_grid=n_grid)
            curve.append(_curve_point(post, comp, a, thresholds))
    if cut:
        names = " and ".join(sorted(cut, reverse=True))
        notes.append(
            f"with the prior raised to a power below 1 the posterior of {names} still had mass at the "
            "end of the quadrature grid; its upper tail may be truncated in the alpha curve"
        )
    conflict, summary = _summary(rows, curve, threshold, spec.has_bias)
    return PowerScaleResult(
        engine="exact",
        spec=spec,
        k=data.k,
        rows=rows,
        alpha_curve=curve,
        thresholds=tuple(thresholds),
        threshold=threshold,
        alphas=(lo_a, hi_a),
        reference_draws=int(reference_draws),
        conflict=conflict,
        summary=summary,
        notes=notes,
        source=data.source,
        clusters=n_clusters,
    )


#: What psense scales in a multilevel model (a note of every such result).
MULTILEVEL_NOTE = (
    "multilevel model: the likelihood is scaled cluster by cluster, each cluster's joint likelihood of "
    "its rows given their effects N(y_c; theta_c, V_c)^alpha = N(y_c; theta_c, V_c / alpha) (V_c: the "
    "sampling covariance with its within-cluster correlation rho; every standard error divided by "
    "sqrt(alpha)); the prior's power includes tau_within's prior"
)


def _multilevel_notes(data: ModelData, spec: ModelSpec) -> tuple[int, str | None]:
    """The number of clusters, and why the non-randomised rows' likelihood cannot be scaled on
    its own (``None`` when it can): with ``rho > 0`` a cluster holding randomised and
    non-randomised rows has correlated sampling errors across the two, so the non-randomised
    rows' likelihood is not a separate factor of the cluster's (with ``rho = 0``, or clusters of
    one kind, it is: their standard errors are divided by sqrt(alpha))."""
    labels = np.asarray(data.clusters, dtype=object)
    nr = np.asarray(data.nonrandomised, dtype=bool)
    names = list(dict.fromkeys(data.clusters))
    if spec.rho <= 0:
        return len(names), None
    mixed = [c for c in names if 0 < int(nr[labels == c].sum()) < int((labels == c).sum())]
    if not mixed:
        return len(names), None
    shown = ", ".join(mixed[:3]) + (", ..." if len(mixed) > 3 else "")
    return len(names), (
        f"the non-randomised rows' likelihood is not scaled on its own: with rho = {spec.rho:g}, "
        f"{len(mixed)} cluster{'s' if len(mixed) > 1 else ''} ({shown}) hold randomised and non-randomised "
        "rows with correlated sampling errors, so that likelihood is not a separate factor"
    )


# --------------------------------------------------------------------------------------------
# Draws (PyMC fits; iid draws of the exact posterior)
# --------------------------------------------------------------------------------------------
_SAMPLE_DIMS = ("chain", "draw")


def _prior_variable(spec: ModelSpec, name: str) -> str:
    """The posterior variable a parameter's prior is placed on (three-level: ``mu_overall``)."""
    if name == "mu" and spec.has_bias and spec.bias_variant == "three-level":
        return "mu_overall"
    return name


def within_sd(data: ModelData, spec: ModelSpec) -> np.ndarray:
    """The within-study SDs of the model's likelihood ``y_i ~ N(theta_i, s_i^2)``: ``se_i``,
    divided by ``sqrt(alpha)`` for a non-randomised study under the ``downweight`` variant.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias", bias_variant="downweight", alpha=0.25)
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> s = within_sd(data, spec)
    >>> bool(np.allclose(s[data.nonrandomised], 2 * data.se[data.nonrandomised]))
    True
    """
    se = np.asarray(data.se, dtype=float)
    if spec.has_bias and spec.bias_variant == "downweight":
        return np.where(np.asarray(data.nonrandomised, dtype=bool), se / math.sqrt(spec.alpha), se)
    return se


def with_log_densities(
    dt: xr.DataTree, data: ModelData, spec: ModelSpec, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> xr.DataTree:
    """A copy of ``dt`` with the groups arviz-stats ``psense`` reads, and the reported quantities.

    * ``log_prior``: ``log p(x)`` of each parameter of ``spec.parameters`` at its draws (the
      top-level priors; the study effects' ``N(0, tau^2)`` is part of the model, not scaled);
    * ``log_likelihood``: ``y``, ``log N(y_i; theta_i, s_i^2)`` per study (:func:`within_sd`);
      needs ``theta`` in the posterior. Without it (a PyMC fit whose study effects were
      integrated out) an existing ``log_likelihood`` group is kept (a note in
      :func:`psense_draws` says what it scales), otherwise :class:`ModelError`;
    * posterior variables ``HR`` (``exp(mu)``) and ``P(HR < T)`` (the indicator ``mu < log T``).

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", engine="exact")
    >>> dt = with_log_densities(fit.to_datatree(draws=100, seed=1), ModelData.from_table(syn.load_dataset("dnmbc_lrt"), fit.spec), fit.spec)
    >>> sorted(dt.log_prior.data_vars), list(dt.log_likelihood.data_vars), "HR" in dt.posterior
    (['delta', 'mu', 'tau'], ['y'], True)
    """
    import xarray as xr
    from scipy import stats

    post = dt["posterior"].to_dataset()
    log_prior = {}
    for name in spec.parameters:
        var = _prior_variable(spec, name)
        if var not in post:
            raise ModelError(f"the posterior has no draws of {var!r}, whose prior is to be power-scaled")
        prior: PriorSpec = getattr(spec.priors, name)
        log_prior[name] = xr.apply_ufunc(prior.logpdf, post[var])
    out = dt.copy()
    if "theta" in post:
        theta = post["theta"]
        study_dim = [d for d in theta.dims if d not in _SAMPLE_DIMS][0]
        y = xr.DataArray(np.asarray(data.y, dtype=float), dims=study_dim, coords={study_dim: theta[study_dim]})
        s = xr.DataArray(within_sd(data, spec), dims=study_dim, coords={study_dim: theta[study_dim]})
        loglik = xr.apply_ufunc(stats.norm.logpdf, y, theta, s).transpose(*_SAMPLE_DIMS, study_dim)
        out["log_likelihood"] = xr.DataTree(xr.Dataset({"y": loglik}))
    elif "log_likelihood" not in dt.children:
        raise ModelError(
            "the posterior has no study effects theta (integrated out) and no log_likelihood group: "
            "the likelihood cannot be power-scaled"
        )
    out["log_prior"] = xr.DataTree(xr.Dataset(log_prior))
    mu = post["mu"]
    derived = {"HR": np.exp(mu)}
    for t in check_thresholds(thresholds):
        derived[_hr_label(t)] = (mu < math.log(t)).astype(float)
    out["posterior"] = xr.DataTree(post.assign(derived))
    return out


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cum = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cum, 0.5 * cum[-1])])


def psense_draws(
    dt: xr.DataTree,
    data: ModelData,
    spec: ModelSpec,
    *,
    engine: str = "pymc",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    threshold: float = SENSITIVITY_THRESHOLD,
    alphas: tuple[float, float] = ALPHAS,
    curve_alphas: Sequence[float] = CURVE_ALPHAS,
    notes: Sequence[str] = (),
) -> PowerScaleResult:
    """Power-scaling sensitivity from posterior draws with arviz-stats ``psense``.

    The draws' ``log_prior`` and ``log_likelihood`` (:func:`with_log_densities`) give
    Pareto-smoothed importance weights for the prior, the likelihood and the non-randomised
    studies' likelihood (``group_coords`` = their studies) raised to each alpha; the alpha curve
    is the weighted median HR and P(HR < T) (importance weighting that far from alpha = 1 can
    be unreliable: a note gives the smallest effective sample size of the weights).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="bias", engine="exact")
    >>> res = psense_draws(fit.to_datatree(draws=100, seed=2), ModelData.from_table(table, fit.spec), fit.spec, engine="exact-draws")
    >>> res.rows[0].parameter, res.engine
    ('mu', 'exact-draws')
    """
    from arviz_stats import psense

    thresholds = check_thresholds(thresholds)
    tree = with_log_densities(dt, data, spec, thresholds)
    post = tree["posterior"].to_dataset()
    names = ["mu", "tau"] + [n for n in ("delta", "kappa") if n in post] + (["beta"] if "beta" in post else [])
    names += ["HR"] + [_hr_label(t) for t in thresholds]
    loglik = tree["log_likelihood"].to_dataset()
    study_dim = next((d for d in loglik.dims if d not in _SAMPLE_DIMS), None)
    nr_studies = [s for s, f in zip(data.studies, data.nonrandomised, strict=True) if f]
    has_nr = bool(nr_studies) and len(nr_studies) < data.k and study_dim is not None
    groups: dict[str, dict[str, Any]] = {
        "prior": {"group": "prior"},
        "likelihood": {"group": "likelihood"},
    }
    if has_nr:
        groups["nonrandomised_likelihood"] = {"group": "likelihood", "group_coords": {study_dim: nr_studies}}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # an indicator whose draws are all 0 or all 1 has no range: psense gives NaN (and warns)
        warnings.simplefilter("ignore", RuntimeWarning)
        values: dict[str, xr.Dataset] = {
            comp: psense(tree, var_names=names, alphas=alphas, **kw) for comp, kw in groups.items()
        }

    def flat(ds: xr.Dataset) -> dict[str, float]:
        out = {}
        for name in names:
            da = ds[name]
            if da.ndim == 0:
                out[name] = float(da)
            else:
                dim = da.dims[0]
                for c, v in zip(da[dim].values, da.values, strict=True):
                    out[f"{name}[{c}]"] = float(v)
        return out

    flats = {comp: flat(ds) for comp, ds in values.items()}
    probabilities = {_hr_label(t) for t in thresholds}
    rows = []
    for name, p in flats["prior"].items():
        lik = flats["likelihood"][name]
        nr = flats["nonrandomised_likelihood"][name] if has_nr else None
        words = PROBABILITY if name in probabilities else diagnose(p, lik, nr, threshold)
        rows.append(SensitivityRow(name, p, lik, nr, words))

    # alpha curve by importance weighting (PSIS, as psense)
    sums = {
        "prior": tree["log_prior"].to_dataset().to_stacked_array("v", sample_dims=_SAMPLE_DIMS).sum("v"),
        "likelihood": loglik.to_stacked_array("v", sample_dims=_SAMPLE_DIMS).sum("v"),
    }
    if has_nr:
        sums["nonrandomised_likelihood"] = loglik.sel({study_dim: nr_studies}).to_stacked_array("v", sample_dims=_SAMPLE_DIMS).sum("v")
    mu = post["mu"].transpose(*_SAMPLE_DIMS).values.ravel()
    hr = np.exp(mu)
    curve, min_ess = [], math.inf
    for comp, lp in sums.items():
        for a in curve_alphas:
            a = _check_power(a)
            if a == 1.0:
                w = np.full(mu.size, 1.0 / mu.size)
            else:
                lw = lp.azstats.power_scale_lw(alpha=a, dim=list(_SAMPLE_DIMS)).transpose(*_SAMPLE_DIMS).values.ravel()
                w = np.exp(lw - lw.max())
                w /= w.sum()
                min_ess = min(min_ess, 1.0 / float(np.sum(w * w)))
            curve.append(
                AlphaPoint(
                    scaled=comp,
                    alpha=a,
                    hr_median=_weighted_median(hr, w),
                    p_hr_below={threshold_key(t): float(w @ (mu < math.log(t))) for t in thresholds},
                )
            )
    all_notes = list(notes)
    if "theta" not in post:
        all_notes.append(
            "the study effects were integrated out of this fit: its log_likelihood is N(y_i; mean_i, "
            "se_i^2 + tau^2), so 'likelihood' scales that integrated likelihood (not the same "
            "perturbation as the exact engine's)"
        )
    if math.isfinite(min_ess):
        all_notes.append(
            f"alpha curve by importance weighting of {mu.size} draws (smallest effective sample size "
            f"of the weights {min_ess:.0f}); far from alpha = 1 an exact refit is more reliable"
        )
    if not has_nr:
        all_notes.append("no non-randomised studies (or no randomised ones): their likelihood is not scaled on its own")
    conflict, summary = _summary(rows, curve, threshold, spec.has_bias)
    return PowerScaleResult(
        engine=engine,
        spec=spec,
        k=data.k,
        rows=rows,
        alpha_curve=curve,
        thresholds=tuple(thresholds),
        threshold=threshold,
        alphas=tuple(alphas),
        reference_draws=int(mu.size),
        conflict=conflict,
        summary=summary,
        notes=all_notes,
        source=data.source,
    )


# --------------------------------------------------------------------------------------------
# Front door
# --------------------------------------------------------------------------------------------
def power_scale(
    table: StudySource,
    spec: ModelSpec,
    *,
    engine: str = "exact",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    threshold: float = SENSITIVITY_THRESHOLD,
    fit_options: Mapping[str, Any] | None = None,
) -> PowerScaleResult:
    """Power-scaling sensitivity of ``spec`` on ``table``: exactly (``engine="exact"``,
    :func:`psense_exact`) or from a PyMC fit's draws (``engine="pymc"``, :func:`psense_draws`;
    ``fit_options`` go to :func:`synthesis.models.fit.fit`: chains, draws, tune, seed, ...).

    A PyMC fit that fails its diagnostics is reported with a note saying so.

    Examples
    --------
    >>> import synthesis as syn
    >>> res = power_scale(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    >>> res.engine, res.to_json()["rows"][0]["parameter"]
    ('exact', 'mu')
    """
    thresholds = check_thresholds(thresholds)
    data = ModelData.from_table(table, spec)
    if engine == "exact":
        return psense_exact(data, spec, thresholds=thresholds, threshold=threshold)
    if engine != "pymc":
        raise InputError(f"engine must be 'exact' or 'pymc', got {engine!r}", parameter="engine")
    if spec.multilevel:
        raise InputError(
            "power-scaling a multilevel model (a cluster) needs engine='exact': the importance-weighted "
            "route on PyMC draws scales a pointwise likelihood per row, not each cluster's joint likelihood",
            parameter="engine",
        )
    from synthesis.models.fit import fit

    result = fit(table, spec, engine="pymc", thresholds=thresholds, **dict(fit_options or {}))
    if "theta" not in result.posterior["posterior"] and "log_likelihood" not in result.posterior.children:
        # the marginal form (k >= MARGINAL_MIN_STUDIES): only the integrated likelihood exists
        from synthesis.models.pymc_fit import add_log_density

        add_log_density(result.posterior, data, spec, log_prior=False)
    notes = []
    d = result.diagnostics
    if d is not None and not d.converged:
        notes.append(f"{NOT_CONVERGED}: these sensitivities are not reliable (" + "; ".join(d.messages) + ")")
    return psense_draws(result.posterior, data, spec, engine="pymc", thresholds=thresholds, threshold=threshold, notes=notes)
