"""Fit a model with PyMC/nutpie and summarise the draws into a :class:`~synthesis.models.results.FitResult`.

Every interval is equal-tailed with probability :data:`synthesis.models.spec.INTERVAL_PROB` (0.95); every
ArviZ call is given that probability explicitly. Monte Carlo diagnostics come from
``arviz_stats`` (rank-normalised split R-hat, bulk and tail ESS, MCSE of the mean, the median
and the 2.5%/97.5% quantiles; Vehtari et al. 2021, doi:10.1214/20-BA1221).

A fit is declared *not converged* when, for a headline parameter (mu, tau, delta, each beta),
R-hat > 1.01 or the bulk ESS < 400, when any transition after tuning diverged, or when a chain
has fewer than 4 draws (R-hat and ESS cannot be computed); the reasons are given in words in
``Diagnostics.messages``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import arviz_stats as azs
import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy.stats import norm

from synthesis.base import DEFAULT_THRESHOLDS, INTERVAL_PROB
from synthesis.errors import InputError
from synthesis.models.exact import mixture_quantiles
from synthesis.models.pymc_models import (
    HEADLINE,
    MARGINAL_MIN_STUDIES,
    build_model,
    marginal_study_moments,
    prior_data,
    reported_parameters,
    structural_data,
    uses_marginal_form,
)
from synthesis.models.results import Diagnostics, FitResult, ParamSummary, RatioSummary, StudyEffect
from synthesis.models.sampling import (
    ADAPTATION_CHOICES,
    DEFAULT_ADAPTATION,
    DEFAULT_TARGET_ACCEPT,
    CompiledModel,
    Sampled,
    SamplerSettings,
    sampler_versions,
)
from synthesis.models.spec import ModelData, ModelSpec, threshold_key

#: Convergence criteria (Vehtari et al. 2021): R-hat above this fails ...
MAX_R_HAT = 1.01
#: ... and so does a bulk ESS below this for a headline parameter.
MIN_ESS_BULK = 400.0
#: ... and so does a run with fewer draws per chain than this: R-hat and ESS are not computed
#: (a chain split in halves needs at least two draws per half).
MIN_DRAWS_FOR_DIAGNOSTICS = 4
#: target_accept when the user gives none: :data:`~synthesis.models.sampling.DEFAULT_TARGET_ACCEPT`
#: (0.95) ... and 0.99 for the harder geometries. Measured on the dnMBC data (diag adaptation, 4 x 2000
#: draws, 4 seeds): at 0.95 the random variant had 3-6 divergences per run, the three-level
#: variant 0-2, bias-metareg with 14 of 17 covariate values imputed 0-2; at 0.99 none had any.
TARGET_ACCEPT_HARD = 0.99
#: target_accept of a model in the marginal form (k >= MARGINAL_MIN_STUDIES; PyMC's own default):
#: without latent study effects there is no funnel for a small step size to resolve, and the
#: cost of a gradient grows with k. Measured on the 100,000-study file of
#: benchmarks/bench_scale.py (bias model, 4 x 2000 draws): 0.95 took 6.2 leapfrog steps per
#: draw (64 s), 0.8 took 3.0 (24 s), no divergences either way. The three-level variant keeps
#: its design-level latent effects and :data:`TARGET_ACCEPT_HARD`.
TARGET_ACCEPT_MARGINAL = 0.8
#: Grid length of the kernel density estimates stored in ``FitResult.densities``.
DENSITY_GRID = 256
#: At most this many posterior draws (evenly thinned over all chains) make up each study effect's
#: mixture of conditional normals in a marginal model (:func:`marginal_study_effects`). The
#: components are Rao-Blackwellised (each is the exact distribution given one draw), so a few
#: hundred suffice ...
STUDY_EFFECT_DRAWS = 400
#: ... and at most this many (draws x studies) cells are spent, with at least
#: :data:`STUDY_EFFECT_MIN_DRAWS` draws. The spread of the components shrinks like the posterior SD
#: of the global parameters, ~1/sqrt(k), so with draws = cells / k the Monte Carlo error of a
#: study-effect quantile, ~ spread / sqrt(draws), does not grow with k (measured: 400 draws at
#: k = 300 agree with the exact engine within 0.003 on the log scale; 100 draws at k = 100,000
#: take ~3 s instead of ~13 s).
STUDY_EFFECT_CELLS = 10_000_000
STUDY_EFFECT_MIN_DRAWS = 50
#: Largest (draws x studies) block of the marginal study-effect computation held at once (16 MB
#: per array), so that memory stays flat in k.
_STUDY_BLOCK_CELLS = 2_000_000
#: Global variables a marginal model's study effects depend on (those present are read).
_STUDY_EFFECT_INPUTS = ("mu", "tau", "delta", "kappa", "mu_design", "beta", "x_mean", "x_sd")
_LOWER = (1.0 - INTERVAL_PROB) / 2.0
_UPPER = 1.0 - _LOWER


@dataclass(frozen=True)
class SummaryOptions:
    """What to summarise beyond the parameters: thresholds of P(HR < T) and covariate points."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    at: Mapping[str, Mapping[str, float]] | None = None


def data_hash(data: ModelData) -> str:
    """SHA-256 of the numbers a model is fitted to (studies, log HRs, SEs, designs, covariates).

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> h = data_hash(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec))
    >>> len(h), h == data_hash(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec))
    (64, True)
    """
    h = hashlib.sha256()
    h.update(json.dumps([list(data.studies), list(data.designs), list(data.covariates), list(data.clusters)]).encode())
    for arr in (data.y, data.se, np.asarray(data.nonrandomised, dtype=float), data.x, data.centres):
        h.update(np.ascontiguousarray(np.asarray(arr, dtype=np.float64)).tobytes())
    return h.hexdigest()


def _draws(dt: xr.DataTree, name: str) -> xr.DataArray:
    return dt.posterior[name]


def _flat(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=float).reshape(-1)


def summarise_parameter(da: xr.DataArray) -> ParamSummary:
    """Posterior summary and MCMC diagnostics of one scalar parameter (dims chain, draw).

    Examples
    --------
    Draws made up for the example (2 chains of 1000 from N(-0.1, 0.05^2); no sampling):

    >>> rng = np.random.default_rng(4)
    >>> s = summarise_parameter(xr.DataArray(rng.normal(-0.1, 0.05, (2, 1000)), dims=("chain", "draw")))
    >>> round(s.mean, 2), round(s.sd, 2), s.r_hat < MAX_R_HAT, s.ess_bulk > MIN_ESS_BULK
    (-0.1, 0.05, True, True)
    """
    x = _flat(da)
    q025, median, q975 = np.quantile(x, [_LOWER, 0.5, _UPPER])

    def scalar(value: xr.DataArray | float) -> float:
        return float(np.asarray(value))

    n_chains, n_draws = da.sizes["chain"], da.sizes["draw"]
    if n_draws < MIN_DRAWS_FOR_DIAGNOSTICS:
        return ParamSummary(float(x.mean()), float(median), float(x.std(ddof=1)), float(q025), float(q975))
    mcse_q = {
        "median": scalar(azs.mcse(da, method="median")),
        "q025": scalar(azs.mcse(da, method="quantile", prob=_LOWER)),
        "q975": scalar(azs.mcse(da, method="quantile", prob=_UPPER)),
    }
    r_hat = scalar(azs.rhat(da)) if n_chains * n_draws >= 8 else math.nan
    return ParamSummary(
        mean=float(x.mean()),
        median=float(median),
        sd=float(x.std(ddof=1)),
        q025=float(q025),
        q975=float(q975),
        ess_bulk=scalar(azs.ess(da, method="bulk")),
        ess_tail=scalar(azs.ess(da, method="tail")),
        r_hat=r_hat,
        mcse_mean=scalar(azs.mcse(da, method="mean")),
        mcse_quantiles=mcse_q,
    )


def ratio_summary(log_draws: np.ndarray, thresholds: Sequence[float] | None = None) -> RatioSummary:
    """Median and equal-tailed interval of exp(draws), and P(exp(draws) < T) per threshold.

    Examples
    --------
    >>> r = ratio_summary(np.log([0.5, 0.8, 0.9, 1.1, 1.2]), thresholds=[1.0])
    >>> round(r.median, 3), r.p_below
    (0.9, {'1.0': 0.6})
    """
    x = np.asarray(log_draws, dtype=float).reshape(-1)
    q025, median, q975 = np.exp(np.quantile(x, [_LOWER, 0.5, _UPPER]))
    p_below = None
    if thresholds is not None:
        p_below = {threshold_key(t): float(np.mean(x < math.log(t))) for t in thresholds}
    return RatioSummary(float(median), float(q025), float(q975), p_below)


def _density(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid, pdf, _ = array_stats.kde(np.asarray(x, dtype=float).reshape(-1), grid_len=DENSITY_GRID)
    return np.asarray(grid), np.asarray(pdf)


def study_effect_draws(k: int, total: int) -> int:
    """How many of ``total`` posterior draws :func:`marginal_study_effects` mixes over for k
    studies: cells / k, between :data:`STUDY_EFFECT_MIN_DRAWS` and :data:`STUDY_EFFECT_DRAWS`.

    Examples
    --------
    >>> study_effect_draws(17, 8000), study_effect_draws(100_000, 8000), study_effect_draws(17, 10)
    (400, 100, 10)
    """
    wanted = min(STUDY_EFFECT_DRAWS, max(STUDY_EFFECT_MIN_DRAWS, STUDY_EFFECT_CELLS // max(k, 1)))
    return max(1, min(total, wanted))


def marginal_study_effects(dt: xr.DataTree, data: ModelData, spec: ModelSpec) -> np.ndarray:
    r"""Posterior median and equal-tailed interval of each study effect theta_i (log scale) of a
    model built in the marginal form (:func:`synthesis.models.pymc_models.build_marginal_model`).

    Given the global parameters g, theta_i is normal,
    N(m_i + B_i (y_i - m_i), B_i s_i^2) with B_i = V_i / (V_i + s_i^2)
    (:func:`~synthesis.models.pymc_models.marginal_study_moments`), so its posterior is the
    mixture of these normals over the posterior of g; the mixture over
    :func:`study_effect_draws` evenly thinned draws is a Rao-Blackwellised estimate (Gelfand &
    Smith 1990, doi:10.1080/01621459.1990.10476213) whose quantiles are solved exactly
    (:func:`synthesis.models.exact.mixture_quantiles`), in blocks of studies so that no
    k x draws array is held. Returns a (k, 3) array: median, 2.5% and 97.5% quantiles.

    Examples
    --------
    Draws made up for the example (2 chains of 1000; no sampling):

    >>> import synthesis as syn
    >>> rng = np.random.default_rng(4)
    >>> mu = xr.DataArray(rng.normal(-0.1, 0.05, (2, 1000)), dims=("chain", "draw"))
    >>> tau = xr.DataArray(np.abs(rng.normal(0.0, 0.1, (2, 1000))), dims=("chain", "draw"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "tau": tau})})
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> q = marginal_study_effects(dt, data, spec)
    >>> q.shape, bool(np.all((q[:, 1] < q[:, 0]) & (q[:, 0] < q[:, 2])))
    ((17, 3), True)
    """
    post = dt.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    keep = np.unique(np.linspace(0, total - 1, study_effect_draws(data.k, total)).round().astype(int))
    draws = {}
    for name in (n for n in _STUDY_EFFECT_INPUTS if n in post):
        values = np.asarray(post[name].values, dtype=float).reshape(total, -1)[keep]
        draws[name] = values[:, 0] if post[name].ndim == 2 else values  # scalars as (D,)
    weights = np.full(keep.size, 1.0 / keep.size)
    y = np.asarray(data.y, dtype=float)
    probs = np.array([0.5, _LOWER, _UPPER])
    block = max(1, _STUDY_BLOCK_CELLS // keep.size)
    out = np.empty((data.k, probs.size))
    for start in range(0, data.k, block):
        studies = slice(start, min(start + block, data.k))
        m, v, s2 = marginal_study_moments(draws, data, spec, studies)
        shrink = v / (v + s2)
        mean = m + shrink * (y[studies] - m)
        sd = np.maximum(np.sqrt(shrink * s2), 1e-12)  # tau -> 0: a point mass, kept finite
        out[studies] = mixture_quantiles(weights, mean, sd, probs)
    return out


def linear_predictor_at(
    dt: xr.DataTree, data: ModelData, values: Mapping[str, float]
) -> np.ndarray:
    """Draws of mu + sum_j beta_j (v_j - c_j): the randomised log HR at covariate values
    ``values`` (covariates not named stay at their centres c_j).

    Examples
    --------
    Made-up draws of mu and of the slope of ``year`` (no sampling):

    >>> import synthesis as syn
    >>> spec = ModelSpec("metareg", covariates=("year",))
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt", covariates=["year"]), spec)
    >>> mu = xr.DataArray(np.full((1, 4), -0.1), dims=("chain", "draw"))
    >>> beta = xr.DataArray(np.full((1, 4, 1), 0.02), dims=("chain", "draw", "covariate"),
    ...                     coords={"covariate": ["year"]})
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "beta": beta})})
    >>> at = float(data.centres[0]) + 5  # five years after the centre: -0.1 + 5 * 0.02
    >>> np.round(linear_predictor_at(dt, data, {"year": at}), 6).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    mu = _flat(_draws(dt, "mu"))
    if not values:
        return mu
    unknown = [c for c in values if c not in data.covariates]
    if unknown:
        known = ", ".join(data.covariates) or "none (the model has no covariates)"
        raise InputError(f"at: covariate {unknown[0]!r} is not in the model; model covariates: {known}", parameter="at")
    beta = _draws(dt, "beta")
    out = mu.copy()
    for c, v in values.items():
        j = data.covariates.index(c)
        out = out + _flat(beta.sel(covariate=c)) * (float(v) - float(data.centres[j]))
    return out


def diagnose(
    dt: xr.DataTree, parameters: Mapping[str, ParamSummary], beta: Mapping[str, ParamSummary]
) -> Diagnostics:
    """Divergences, the worst R-hat and bulk ESS over the headline parameters, in words.

    Examples
    --------
    Draws made up for the example (2 chains of 1000; no sampling):

    >>> import synthesis as syn
    >>> rng = np.random.default_rng(4)
    >>> mu = xr.DataArray(rng.normal(-0.1, 0.05, (2, 1000)), dims=("chain", "draw"))
    >>> tau = xr.DataArray(np.abs(rng.normal(0.0, 0.1, (2, 1000))), dims=("chain", "draw"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "tau": tau})})
    >>> summaries = {"mu": summarise_parameter(dt.posterior["mu"])}
    >>> d = diagnose(dt, summaries, {})
    >>> d.divergences, d.converged, d.messages
    (0, True, ())
    """
    divergences = 0
    if "sample_stats" in dt.children and "diverging" in dt.sample_stats:
        divergences = int(np.asarray(dt.sample_stats["diverging"].values, dtype=bool).sum())
    headline = {n: s for n, s in parameters.items() if n in HEADLINE}
    headline |= {f"beta[{c}]": s for c, s in beta.items()}
    r_hats = {n: s.r_hat for n, s in headline.items() if s.r_hat is not None}
    esses = {n: s.ess_bulk for n, s in headline.items() if s.ess_bulk is not None}
    messages: list[str] = []
    if divergences:
        total = dt.posterior.sizes["chain"] * dt.posterior.sizes["draw"]
        messages.append(
            f"{divergences} of {total} transitions after tuning diverged: the sampler could not "
            "explore part of the posterior, so the summaries may be biased; raise target_accept "
            "(e.g. 0.99) and check the model"
        )
    n_draws = dt.posterior.sizes["draw"]
    if n_draws < MIN_DRAWS_FOR_DIAGNOSTICS:
        messages.append(
            f"{n_draws} draw(s) per chain: R-hat and ESS cannot be computed with fewer than "
            f"{MIN_DRAWS_FOR_DIAGNOSTICS}, so convergence is unknown; raise draws"
        )
    max_r_hat = max(r_hats.values(), default=math.nan)
    min_ess = min(esses.values(), default=math.nan)
    for name, r in r_hats.items():
        if not math.isfinite(r) or r > MAX_R_HAT:
            messages.append(
                f"R-hat of {name} is {r:.3f} (> {MAX_R_HAT}): the chains disagree; "
                "sample longer (more tune and draws)"
            )
    for name, e in esses.items():
        if not math.isfinite(e) or e < MIN_ESS_BULK:
            messages.append(
                f"bulk ESS of {name} is {e:.0f} (< {MIN_ESS_BULK:.0f}): too few effectively "
                "independent draws for stable quantiles; raise draws"
            )
    converged = not messages
    return Diagnostics(
        divergences=divergences,
        max_r_hat=float(max_r_hat),
        min_ess_bulk=float(min_ess),
        converged=converged,
        messages=tuple(messages),
    )


#: Name of the observed variable and of its pointwise group variable (``log_likelihood["y"]``).
OBSERVED = "y"


def _global_draws(post: xr.Dataset) -> dict[str, np.ndarray]:
    """All draws of the global variables a study's marginal moments depend on, flattened over
    chains ((D,) for scalars, (D, n) for vectors)."""
    total = post.sizes["chain"] * post.sizes["draw"]
    out = {}
    for name in (n for n in _STUDY_EFFECT_INPUTS if n in post):
        values = np.asarray(post[name].values, dtype=float).reshape(total, -1)
        out[name] = values[:, 0] if post[name].ndim == 2 else values
    return out


def integrated_log_likelihood(dt: xr.DataTree, data: ModelData, spec: ModelSpec) -> xr.DataArray:
    r"""Pointwise log-likelihood of each study with its study effect integrated out, per draw.

    .. math::

        \log p(y_i \mid g) = \log N\!\left(y_i;\; m_i(g),\; s_i^2 + V_i(g)\right),

    with g the global parameters of one posterior draw (mu, delta, beta, tau, kappa, the design
    means of the three-level variant, and the covariate model's m_j, sigma_j), m_i and V_i the
    prior mean and variance of study i's effect given g (V_i = tau^2, + kappa^2 nr_i for the
    ``random`` variant, + (beta_j s_j sigma_j)^2 for each missing covariate value, which is
    integrated out like the study effect) and s_i^2 the within-study variance
    (:func:`~synthesis.models.pymc_models.marginal_study_moments`). The same for the latent and
    the marginal form of a model.

    This is the likelihood leave-one-out cross-validation of a hierarchical model needs: leaving
    study i out leaves its own effect theta_i (and its imputed covariate values) out too, and
    ``p(y_i | y_-i) = E[p(y_i | g) | y_-i]``. The conditional log-likelihood
    log N(y_i; theta_i, s_i^2) given the drawn theta_i makes the importance ratios of PSIS-LOO
    heavy-tailed, because theta_i is informed mostly by y_i itself, and estimates another
    quantity (measured on the dnMBC additive bias model, 4 x 2000 draws: conditional max
    Pareto k 0.77, 2 of 17 studies above 0.7, elpd_loo 6.24; integrated max k 0.50, none above
    0.7, elpd_loo 5.41; exact LOO by refits 5.39). See Vehtari, Gelman & Gabry 2017, Stat
    Comput 27:1413-1432, doi:10.1007/s11222-016-9696-4 ("integrated" LOO of hierarchical
    models); :func:`synthesis.models.loo.psis_loo` uses this group.

    Returns a DataArray named ``y`` with dims (chain, draw, study), as ``arviz_stats.loo``
    expects in the ``log_likelihood`` group. Computed in blocks of studies; the result itself
    holds chains x draws x k numbers.

    Examples
    --------
    Made-up draws (one chain of two draws; no sampling) of the random-effects model:

    >>> import synthesis as syn
    >>> from scipy.stats import norm
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> mu = xr.DataArray([[-0.1, -0.2]], dims=("chain", "draw"))
    >>> tau = xr.DataArray([[0.1, 0.3]], dims=("chain", "draw"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "tau": tau})})
    >>> ll = integrated_log_likelihood(dt, data, spec)
    >>> ll.dims, ll.shape
    (('chain', 'draw', 'study'), (1, 2, 17))
    >>> direct = norm.logpdf(data.y[0], -0.2, np.sqrt(data.se[0] ** 2 + 0.3**2))
    >>> bool(np.isclose(float(ll[0, 1, 0]), direct))
    True
    """
    post = dt.posterior
    chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    total = chains * n_draws
    draws = _global_draws(post)
    y = np.asarray(data.y, dtype=float)
    out = np.empty((total, data.k))
    block = max(1, _STUDY_BLOCK_CELLS // total)
    for start in range(0, data.k, block):
        studies = slice(start, min(start + block, data.k))
        m, v, s2 = marginal_study_moments(draws, data, spec, studies)
        var = v + s2
        out[:, studies] = -0.5 * (np.log(2.0 * np.pi * var) + (y[studies] - m) ** 2 / var)
    coords = {d: np.asarray(post.coords[d]) if d in post.coords else np.arange(n) for d, n in post.sizes.items() if d in ("chain", "draw")}
    coords["study"] = list(data.studies)
    return xr.DataArray(
        out.reshape(chains, n_draws, data.k), dims=("chain", "draw", "study"), coords=coords, name=OBSERVED
    )


def prior_variable(spec: ModelSpec, parameter: str) -> str:
    """The posterior variable that carries ``parameter``'s prior: the parameter itself, except
    ``mu`` in the three-level variant, whose prior is on the common mean ``mu_overall``.

    Examples
    --------
    >>> prior_variable(ModelSpec("bias"), "mu"), prior_variable(ModelSpec("bias", bias_variant="three-level"), "mu")
    ('mu', 'mu_overall')
    """
    if parameter == "mu" and spec.has_bias and spec.bias_variant == "three-level":
        return "mu_overall"
    return parameter


def log_prior_dataset(dt: xr.DataTree, spec: ModelSpec) -> xr.Dataset:
    """Log prior density of each draw of the parameters whose priors the user states.

    One variable per parameter of ``spec.parameters`` (mu, tau, delta, kappa, beta; named by
    :func:`prior_variable`, so ``mu_overall`` in the three-level variant), each the log density
    of its prior (:meth:`~synthesis.models.priors.PriorSpec.logpdf`) on the parameter's natural
    scale (tau and kappa themselves, no log-transform Jacobian), with the dims of the draws
    (``beta``: chain, draw, covariate). The hierarchical terms (standardised study, bias and
    design effects) and the fixed hyperpriors of the covariate model are left out: they are
    part of the model, not priors a user chooses. ``arviz_stats.psense`` power-scales the sum
    of these variables.

    Examples
    --------
    >>> from scipy.stats import halfnorm
    >>> mu = xr.DataArray([[0.0, -0.1]], dims=("chain", "draw"))
    >>> tau = xr.DataArray([[0.2, 0.3]], dims=("chain", "draw"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "tau": tau})})
    >>> lp = log_prior_dataset(dt, ModelSpec("re"))  # defaults: normal(0, 1), halfnormal(0.5)
    >>> sorted(lp.data_vars), bool(np.isclose(float(lp["tau"][0, 0]), halfnorm.logpdf(0.2, scale=0.5)))
    (['mu', 'tau'], True)
    """
    out = {}
    for parameter in spec.parameters:
        name = prior_variable(spec, parameter)
        draws = dt.posterior[name]
        prior = getattr(spec.priors, parameter)
        out[name] = xr.DataArray(prior.logpdf(np.asarray(draws.values, dtype=float)), dims=draws.dims, coords=draws.coords)
    return xr.Dataset(out)


def add_log_density(
    dt: xr.DataTree, data: ModelData, spec: ModelSpec, *, log_likelihood: bool = True, log_prior: bool = True
) -> None:
    """Add the ``log_likelihood`` group (variable ``y``, :func:`integrated_log_likelihood`) and
    the ``log_prior`` group (:func:`log_prior_dataset`) to ``dt`` in place, as ``arviz_stats``
    (``loo``, ``compare``, ``psense``) reads them.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> post = xr.Dataset({"mu": (("chain", "draw"), [[-0.1]]), "tau": (("chain", "draw"), [[0.2]])})
    >>> dt = xr.DataTree.from_dict({"posterior": post})
    >>> add_log_density(dt, data, spec)
    >>> sorted(dt.children), dt["log_likelihood"]["y"].dims
    (['log_likelihood', 'log_prior', 'posterior'], ('chain', 'draw', 'study'))
    """
    if log_likelihood:
        dt["log_likelihood"] = xr.DataTree(xr.Dataset({OBSERVED: integrated_log_likelihood(dt, data, spec)}))
    if log_prior:
        dt["log_prior"] = xr.DataTree(log_prior_dataset(dt, spec))


def summarise(
    sampled: Sampled,
    data: ModelData,
    spec: ModelSpec,
    *,
    options: SummaryOptions,
    settings: SamplerSettings,
    start: float,
) -> FitResult:
    """Turn the draws of one run into a :class:`FitResult` (posterior attrs included)."""
    dt = sampled.posterior
    thresholds = tuple(float(t) for t in options.thresholds)
    parameters = {
        name: summarise_parameter(_draws(dt, name))
        for name in reported_parameters(spec)
        if name in dt.posterior
    }
    beta: dict[str, ParamSummary] = {}
    if spec.has_covariates:
        for c in data.covariates:
            beta[c] = summarise_parameter(_draws(dt, "beta").sel(covariate=c))
    mu = _flat(_draws(dt, "mu"))
    hr = ratio_summary(mu, thresholds)
    pred = ratio_summary(_flat(_draws(dt, "theta_new")), thresholds)
    effects = study_effects(dt, data, spec)
    hr_at = {}
    for label, values in (options.at or {}).items():
        hr_at[label] = replace(ratio_summary(linear_predictor_at(dt, data, values), thresholds), point=dict(values))
    diagnostics = diagnose(dt, parameters, beta)
    densities = {}
    for name in ("mu", "tau", "delta"):
        if name in dt.posterior and dt.posterior.sizes["draw"] * dt.posterior.sizes["chain"] >= 20:
            densities[name] = _density(_flat(_draws(dt, name)))
    notes = list(sampled.notes)
    if spec.has_bias and spec.bias_variant == "three-level":
        notes.append(
            "three-level model: mu is the rct design mean (its prior is the mu prior on the common "
            "mean widened by the design-level SD kappa); delta is derived, the mean "
            "non-randomised design mean minus the rct mean (the bias prior is not used)"
        )
    marginal = "theta" not in dt.posterior
    if spec.has_covariates and data.n_missing:
        how = "integrated out analytically under" if marginal else "imputed inside the model from"
        notes.append(
            f"{data.n_missing} missing covariate value(s) {how} a normal "
            "covariate model with hyperpriors (see synthesis.models.pymc_models)"
        )
    if marginal:
        notes.append(
            f"k = {data.k} >= {MARGINAL_MIN_STUDIES}: study effects integrated out of the model "
            "(marginal form, same posterior of the global parameters); the posterior holds no "
            "per-study draws (no theta), and each study HR is summarised from its conditional "
            "normal given the global parameters, mixed over "
            f"{study_effect_draws(data.k, dt.posterior.sizes['chain'] * dt.posterior.sizes['draw'])} "
            "thinned draws"
        )
    timing = {
        "compile_s": round(sampled.compile_s, 4),
        "sample_s": round(sampled.sample_s, 4),
        "total_s": round(time.perf_counter() - start, 4),
    }
    _stamp(dt, data, spec, settings, sampled, timing)
    return FitResult(
        spec=spec,
        engine="pymc",
        k=data.k,
        parameters=parameters,
        beta=beta,
        hr=hr,
        p_hr_below=dict(hr.p_below or {}),
        predictive_hr=pred,
        p_predictive_hr_below=dict(pred.p_below or {}),
        study_effects=effects,
        seed=settings.seed,
        timing=timing,
        hr_at=hr_at,
        diagnostics=diagnostics,
        imputed=data.n_missing if spec.has_covariates else 0,
        posterior=dt,
        densities=densities,
        source=data.source,
        notes=notes,
    )


def study_effects(dt: xr.DataTree, data: ModelData, spec: ModelSpec) -> list[StudyEffect]:
    """Each study's observed HR and CI beside its posterior HR: from the draws of ``theta``, or,
    for a model in the marginal form (no ``theta``), from :func:`marginal_study_effects`.

    Examples
    --------
    Draws made up for the example (2 chains of 1000; no sampling):

    >>> import synthesis as syn
    >>> rng = np.random.default_rng(4)
    >>> mu = xr.DataArray(rng.normal(-0.1, 0.05, (2, 1000)), dims=("chain", "draw"))
    >>> tau = xr.DataArray(np.abs(rng.normal(0.0, 0.1, (2, 1000))), dims=("chain", "draw"))
    >>> dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu, "tau": tau})})
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> effects = study_effects(dt, data, spec)  # no theta draws: the marginal-form summary
    >>> len(effects), effects[0].study, effects[0].observed_hr
    (17, 'Badwe 2015 (TATA)', 1.04)
    """
    z = float(norm.ppf(_UPPER))
    if "theta" in dt.posterior:
        theta = _draws(dt, "theta")
        hrs = [ratio_summary(_flat(theta.isel(study=i))) for i in range(data.k)]
    else:
        q = np.exp(marginal_study_effects(dt, data, spec))
        hrs = [RatioSummary(float(row[0]), float(row[1]), float(row[2])) for row in q]
    effects = []
    for i, study in enumerate(data.studies):
        y, se = float(data.y[i]), float(data.se[i])
        effects.append(
            StudyEffect(
                study=study,
                design=data.designs[i],
                observed_hr=math.exp(y),
                observed_lower=math.exp(y - z * se),
                observed_upper=math.exp(y + z * se),
                hr=hrs[i],
            )
        )
    return effects


def _stamp(
    dt: xr.DataTree,
    data: ModelData,
    spec: ModelSpec,
    settings: SamplerSettings,
    sampled: Sampled,
    timing: Mapping[str, float],
) -> None:
    """Record provenance in the DataTree's root attributes (strings and numbers only)."""
    dt.attrs.update(
        {
            "data_hash": data_hash(data),
            "data_source": data.source,
            "model_spec": json.dumps(spec.describe()),
            "priors": json.dumps(spec.priors.to_dict(spec.parameters)),
            "prior_labels": json.dumps(spec.priors.labels(spec.parameters)),
            "seed": -1 if settings.seed is None else int(settings.seed),
            "sampler": sampled.sampler,
            "sampler_settings": json.dumps(settings.to_dict()),
            "versions": json.dumps(sampler_versions()),
            "timing": json.dumps(dict(timing)),
            "interval": json.dumps({"prob": INTERVAL_PROB, "kind": "equal-tailed"}),
        }
    )


def prior_updates(spec: ModelSpec, compiled: CompiledModel) -> dict[str, float]:
    """Data-container values that give ``compiled`` the priors of ``spec`` (and its
    down-weighting factor alpha).

    Examples
    --------
    An uncompiled stand-in for a compiled model is enough to list the swaps (no compile):

    >>> import synthesis as syn
    >>> from synthesis.models.priors import resolve_priors
    >>> spec = ModelSpec("re")
    >>> model = build_model(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> other = ModelSpec("re", priors=resolve_priors({"tau": "halfnormal(0.25)"}))
    >>> prior_updates(other, CompiledModel(model, None, 0.0))
    {'mu_prior_mean': 0.0, 'mu_prior_sd': 1.0, 'tau_prior_scale': 0.25}
    """
    names = set(compiled.data_names)
    updates: dict[str, float] = {}
    for parameter in spec.parameters:
        for key, value in prior_data(parameter, getattr(spec.priors, parameter)).items():
            if key in names:
                updates[key] = value
    if "alpha" in names:
        updates["alpha"] = float(spec.alpha)
    return updates


def structure_key(spec: ModelSpec) -> tuple:
    """Specs with equal keys share one compiled model (they differ in hyperparameters only).

    Examples
    --------
    >>> from synthesis.models.priors import resolve_priors
    >>> a = ModelSpec("re")
    >>> structure_key(a)
    ('re', None, (), (('mu', 'normal'), ('tau', 'halfnormal')))
    >>> structure_key(a) == structure_key(ModelSpec("re", priors=resolve_priors({"tau": "halfnormal(1)"})))
    True
    """
    families = tuple((p, getattr(spec.priors, p).family) for p in spec.parameters)
    key = (spec.model, spec.bias_variant if spec.has_bias else None, tuple(spec.covariates), families)
    if spec.multilevel:
        # the multilevel model compiles rho and the whole tau_within prior in (no swap of them)
        key += (("multilevel", spec.cluster, spec.rho, spec.tau_within.label),)
    return key


#: Compiled models of this process, by (structure, data hash, backend): a refit of the same model
#: to the same data with other priors of the same families (or other sampler settings) reuses
#: the compiled log density instead of paying the compile again.
_COMPILED: OrderedDict[tuple, CompiledModel] = OrderedDict()
COMPILED_CACHE_SIZE = 16


def default_target_accept(spec: ModelSpec, data: ModelData) -> float:
    """0.99 for the random and three-level bias variants and when covariates are imputed,
    0.95 otherwise (see :data:`TARGET_ACCEPT_HARD`); for a model in the marginal form
    (k >= MARGINAL_MIN_STUDIES) 0.8, except the three-level variant (see
    :data:`TARGET_ACCEPT_MARGINAL`).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> def target(spec):
    ...     return default_target_accept(spec, ModelData.from_table(table, spec))
    >>> target(ModelSpec("bias")), target(ModelSpec("bias", bias_variant="random"))
    (0.95, 0.99)
    """
    three_level = spec.has_bias and spec.bias_variant == "three-level"
    if uses_marginal_form(data) and not three_level and not spec.multilevel:
        return TARGET_ACCEPT_MARGINAL
    # a multilevel model is always latent (two layers of effects, funnels in tau and tau_within)
    hard = spec.multilevel or (spec.has_bias and spec.bias_variant in ("random", "three-level"))
    hard = hard or (spec.has_covariates and data.n_missing > 0)
    return TARGET_ACCEPT_HARD if hard else DEFAULT_TARGET_ACCEPT


def compile_for(
    data: ModelData, spec: ModelSpec, *, backend: str = "numba", cache: bool = True
) -> CompiledModel:
    """Build and compile the model of ``spec`` for ``data`` (or reuse this process's compile of
    the same structure and data, with ``spec``'s prior hyperparameters swapped in).

    The structural data (design indicators, centred covariates, indices) and the dims are
    frozen into the graph (:func:`synthesis.models.pymc_models.structural_data`); priors, ``log_hr``,
    ``se`` and ``alpha`` stay swappable. A model in the marginal form (k >=
    ``MARGINAL_MIN_STUDIES``, not multilevel) is compiled by
    :func:`synthesis.models.sampling.compile_pyfunc` instead, with nothing frozen: its graph
    then does not depend on the data, so PyTensor's disk cache serves every data set and
    process (a gradient costs O(k) there, so one Python call per gradient does not matter)."""
    key = (structure_key(spec), data_hash(data), backend)
    if cache and key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key].with_data(**prior_updates(spec, _COMPILED[key]))
    model = build_model(data, spec)
    if uses_marginal_form(data) and not spec.multilevel:
        # a gradient costs O(k): PyTensor's disk-cached numba function, data not frozen in
        compiled = CompiledModel.compile(model, backend=backend, mode="pyfunc")
    else:
        compiled = CompiledModel.compile(model, backend=backend, freeze=structural_data(model))
    if cache and compiled.compiled is not None:
        _COMPILED[key] = compiled
        while len(_COMPILED) > COMPILED_CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return compiled


def fit_pymc(
    data: ModelData,
    spec: ModelSpec,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    at: Mapping[str, Mapping[str, float]] | None = None,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = None,
    target_accept: float | None = None,
    compiled: CompiledModel | None = None,
    backend: str = "numba",
    adaptation: str = DEFAULT_ADAPTATION,
    log_likelihood: bool = False,
    log_prior: bool = False,
) -> FitResult:
    """Fit ``spec`` to ``data`` by NUTS (nutpie; PyMC's sampler as the fallback).

    Parameters
    ----------
    data, spec
        The data and the model (see :mod:`synthesis.models.pymc_models` for the equations).
    thresholds
        Report P(HR < T) and P(predictive HR < T) for each T.
    at
        ``{label: {covariate: value}}``: HR of a randomised comparison at those covariate values
        (others at their centres), e.g. ``{"bone_only_fraction=0.5": {"bone_only_fraction": 0.5}}``.
    chains, draws, tune, seed, target_accept
        NUTS settings (draws and tune per chain; ``target_accept=None``: the model's default,
        :func:`default_target_accept`).
    compiled
        A model compiled earlier for the same structure (see :func:`structure_key`); its
        prior hyperparameters are replaced by those of ``spec`` and nothing is recompiled.
    backend
        nutpie's compile backend ("numba"; "jax" if installed).
    adaptation
        nutpie's mass-matrix adaptation: "auto" (default: "low_rank", resampled with "diag" if
        it fails its diagnostics), "low_rank" or "diag" (see
        :data:`synthesis.models.sampling.DEFAULT_ADAPTATION`).
    log_likelihood, log_prior
        Store the ``log_likelihood`` group (the pointwise log-likelihood with the study effects
        integrated out, :func:`integrated_log_likelihood`; chains x draws x k numbers, so
        opt-in) and the ``log_prior`` group (:func:`log_prior_dataset`) in the posterior
        DataTree, for ``arviz_stats.loo`` and ``arviz_stats.psense``.

    Returns
    -------
    FitResult
        Summaries, diagnostics, timing (compile_s, sample_s, total_s) and the posterior
        DataTree with provenance attributes.
    """
    start = time.perf_counter()
    if target_accept is None:
        target_accept = default_target_accept(spec, data)
    if adaptation not in ADAPTATION_CHOICES:
        raise InputError(f"adaptation must be one of {', '.join(ADAPTATION_CHOICES)}, got {adaptation!r}", parameter="adaptation")
    auto = adaptation == "auto"
    settings = SamplerSettings(
        chains=chains, draws=draws, tune=tune, seed=seed, target_accept=target_accept,
        adaptation="low_rank" if auto else adaptation,
    )
    options = SummaryOptions(thresholds=tuple(thresholds), at=at)
    if at and not spec.has_covariates:
        raise InputError(f"at needs a meta-regression (metareg or bias-metareg); model is {spec.model!r}", parameter="at")
    if compiled is None:
        compiled = compile_for(data, spec, backend=backend)
    else:
        compiled = compiled.with_data(**prior_updates(spec, compiled))
    sampled = compiled.sample(settings)
    result = summarise(sampled, data, spec, options=options, settings=settings, start=start)
    if auto and result.diagnostics is not None and not result.diagnostics.converged:
        # "auto": low-rank adaptation failed its diagnostics; sample again with the diagonal one
        # (same compiled model, same seed) and say so.
        first = "; ".join(result.diagnostics.messages)
        settings = replace(settings, adaptation="diag")
        result = summarise(compiled.sample(settings), data, spec, options=options, settings=settings, start=start)
        result.notes.append(
            f"sampled again with diagonal mass-matrix adaptation: the low-rank run failed its diagnostics ({first})"
        )
    add_log_density(result.posterior, data, spec, log_likelihood=log_likelihood, log_prior=log_prior)
    return result


def fit_pymc_many(
    data: ModelData,
    specs: Sequence[ModelSpec],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    at: Mapping[str, Mapping[str, float]] | None = None,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = None,
    target_accept: float | None = None,
    backend: str = "numba",
    adaptation: str = DEFAULT_ADAPTATION,
) -> list[FitResult]:
    """Fit several specs that differ only in their priors, compiling once per prior-family set.

    A sweep over N half-normal scales costs one compile and N sampling runs (nutpie's
    ``with_data``); the first fit of each structure reports the compile time.
    """
    cache: dict[tuple, CompiledModel] = {}
    fits = []
    for spec in specs:
        key = structure_key(spec)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = compile_for(data, spec, backend=backend)
            fit = fit_pymc(
                data, spec, thresholds=thresholds, at=at, chains=chains, draws=draws, tune=tune,
                seed=seed, target_accept=target_accept, compiled=compiled, adaptation=adaptation,
            )
            fit.timing["compile_s"] = round(compiled.compile_s, 4)
            fit.timing["total_s"] = round(fit.timing["total_s"] + compiled.compile_s, 4)
        else:
            fit = fit_pymc(
                data, spec, thresholds=thresholds, at=at, chains=chains, draws=draws, tune=tune,
                seed=seed, target_accept=target_accept, compiled=compiled, adaptation=adaptation,
            )
        fits.append(fit)
    return fits
