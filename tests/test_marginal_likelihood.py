"""The exact engine's log marginal likelihood log p(y | model), and its null (mu = 0) and
common-effect (tau = 0) models, against independent computations.

* Brute force: ``p(y) = int p(tau) int p(b) prod_i N(y_i; x_i'b, s_i^2 + tau^2) db dtau`` from
  the model's definition (the study effects theta_i ~ N(x_i'b, tau^2) integrate out of
  N(y_i; theta_i, s_i^2) study by study), with the coefficients b = (mu[, delta]) integrated by a
  tensor Gauss-Legendre rule (48 nodes per coefficient on +/- 10 conditional SDs around the
  weighted least-squares fit at that tau: the box is placed from the data, the integrand is
  evaluated from its definition) and tau by scipy's adaptive ``quad`` on [0, inf) (QUADPACK,
  a rule unrelated to the engine's Simpson rule in asinh(tau / c)). The tau priors' densities
  come from scipy.stats directly, not from :mod:`synthesis.models.priors`.
* Closed forms: with tau = 0 the data are multivariate normal,
  ``y ~ N(X m0, diag(s^2) + X S0 X')`` (scipy.stats.multivariate_normal, a dense k x k
  covariance: the engine never forms it).
* bayesmeta (Röver 2020, doi:10.18637/jss.v093.i06; R/bayesmeta.R of the CRAN package 3.4,
  GitHub mirror cran/bayesmeta): its ``marginal.likelihood`` is computed only for proper priors,
  as ``integrate(likelihood(tau) * dprior(tau))`` with ``likelihood(tau)`` the normal density of
  y marginalised over a normal mu prior (its equation 15: the same quantity as ours), and its
  ``bayesfactor["actual", "tau=0"] = likelihood(tau = 0) / marginal.likelihood`` is our
  ``exp(logml(heterogeneity=False) - logml)``. See the bayesmeta test below for the printed
  numbers that are reproduced.

Tolerance: ``LOG_ML_TOL`` = 1e-6 absolute on log p(y), i.e. 1e-6 relative on p(y).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, stats

from synthesis.errors import ModelError
from synthesis.models.exact import fit_exact, sweep_tau_priors
from synthesis.models.fit import fit
from synthesis.models.priors import parse_prior, resolve_priors
from synthesis.models.spec import ModelData, ModelSpec

#: log p(y) agreement with the brute-force and closed-form references (1e-6 relative on p(y)).
LOG_ML_TOL = 1e-6
_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def model_data(y, se, nr=None, x=None, covariates=()) -> ModelData:
    y, se = np.asarray(y, float), np.asarray(se, float)
    k = y.size
    nr = np.zeros(k, bool) if nr is None else np.asarray(nr, bool)
    x = np.zeros((k, 0)) if x is None else np.asarray(x, float).reshape(k, -1)
    return ModelData(
        studies=tuple(f"study {i + 1}" for i in range(k)),
        y=y,
        se=se,
        nonrandomised=nr,
        designs=tuple("prospective" if n else "rct" for n in nr),
        covariates=tuple(covariates),
        x=x,
        centres=x.mean(axis=0) if x.shape[1] else np.zeros(0),
        source="test",
    )


def spec_of(model: str, tau: str, mu: str = "normal(0, 1)", delta: str = "normal(0, 0.5)", **kw) -> ModelSpec:
    return ModelSpec(model, priors=resolve_priors({"tau": tau, "mu": mu, "delta": delta}), **kw)


def log_inner(y, s2, X, m0, s0, tau: float) -> float:
    """log int p(b) prod_i N(y_i; x_i'b, s_i^2 + tau^2) db by a tensor Gauss-Legendre rule."""
    v = s2 + tau * tau
    p = X.shape[1]
    if p == 0:
        return float(stats.norm.logpdf(y, 0.0, np.sqrt(v)).sum())
    W = 1.0 / v
    P = X.T @ (W[:, None] * X) + np.diag(1.0 / s0**2)
    centre = np.linalg.solve(P, X.T @ (W * y) + m0 / s0**2)
    half = 10.0 * np.sqrt(np.diag(np.linalg.inv(P)))
    axes = [centre[j] + half[j] * _GL_X for j in range(p)]
    weights = [half[j] * _GL_W for j in range(p)]
    B = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, p)  # (n^p, p)
    Wt = np.prod(np.stack(np.meshgrid(*weights, indexing="ij"), axis=-1).reshape(-1, p), axis=1)
    resid = y[None, :] - B @ X.T
    ll = stats.norm.logpdf(resid, 0.0, np.sqrt(v)[None, :]).sum(axis=1)
    ll += stats.norm.logpdf(B, m0[None, :], s0[None, :]).sum(axis=1)
    top = ll.max()
    return float(top + math.log(Wt @ np.exp(ll - top)))


def brute_log_ml(y, se, X, m0, s0, tau_pdf, upper: float = np.inf) -> float:
    """log p(y): tau by QUADPACK over [0, upper) of p(tau) times :func:`log_inner`."""
    y, s2 = np.asarray(y, float), np.asarray(se, float) ** 2
    X, m0, s0 = np.asarray(X, float).reshape(len(y), -1), np.asarray(m0, float), np.asarray(s0, float)
    ref = max(log_inner(y, s2, X, m0, s0, t) for t in (0.0, 0.1, 0.3, 1.0))
    val, err = integrate.quad(
        lambda t: math.exp(log_inner(y, s2, X, m0, s0, t) - ref) * tau_pdf(t),
        0.0, upper, epsrel=1e-11, epsabs=0.0, limit=400,
    )
    assert err < 1e-9 * val
    return ref + math.log(val)


# ---------------------------------------------------------------------------------------------
# data: small log-HR meta-analyses (made-up numbers of the usual size)
# ---------------------------------------------------------------------------------------------
Y3, SE3 = [-0.31, 0.05, -0.52], [0.21, 0.32, 0.26]
Y6, SE6 = [-0.42, -0.11, 0.08, -0.65, -0.29, 0.21], [0.18, 0.25, 0.31, 0.22, 0.12, 0.40]
Y7, SE7, NR7 = (
    [-0.36, -0.12, -0.48, 0.15, 0.32, -0.05, 0.41],
    [0.20, 0.27, 0.23, 0.18, 0.26, 0.21, 0.35],
    [0, 0, 0, 1, 1, 1, 1],
)


def _many(k: int = 40, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """k precise studies with tau = 0.35: the tau grid starts well above 0 (lo > 0)."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.12, k)
    return -0.2 + rng.normal(0.0, 0.35, k) + rng.normal(0.0, se), se


RE_CASES = [
    # (y, se, tau prior text, scipy pdf, mu prior (mean, sd))
    (Y3, SE3, "halfnormal(0.5)", stats.halfnorm(scale=0.5).pdf, (0.0, 1.0)),
    (Y6, SE6, "halfcauchy(0.3)", stats.halfcauchy(scale=0.3).pdf, (0.2, 2.0)),
    (Y6, SE6, "exponential(4)", stats.expon(scale=0.25).pdf, (0.0, 0.5)),
    (Y3, SE3, "uniform(0, 2)", stats.uniform(0.0, 2.0).pdf, (0.0, 1.0)),
    (*_many(), "halfcauchy(1)", stats.halfcauchy(scale=1.0).pdf, (0.0, 1.0)),
]


@pytest.mark.parametrize("case", range(len(RE_CASES)))
def test_re_log_ml_against_brute_force(case: int) -> None:
    y, se, tau, pdf, (m, s) = RE_CASES[case]
    spec = spec_of("re", tau, mu=f"normal({m}, {s})")
    ours = fit_exact(model_data(y, se), spec, thresholds=(0.8,)).log_marginal_likelihood
    upper = 2.0 if tau.startswith("uniform") else np.inf
    ref = brute_log_ml(y, se, np.ones(len(y)), [m], [s], pdf, upper)
    assert ours == pytest.approx(ref, abs=LOG_ML_TOL)


@pytest.mark.parametrize(
    "tau, pdf, delta",
    [
        ("halfnormal(0.5)", stats.halfnorm(scale=0.5).pdf, (0.0, 0.5)),
        ("halfcauchy(0.2)", stats.halfcauchy(scale=0.2).pdf, (0.3, 1.0)),
    ],
)
def test_bias_additive_log_ml_against_brute_force(tau, pdf, delta) -> None:
    spec = spec_of("bias", tau, delta=f"normal({delta[0]}, {delta[1]})")
    ours = fit_exact(model_data(Y7, SE7, NR7), spec, thresholds=(0.8,)).log_marginal_likelihood
    X = np.column_stack([np.ones(7), NR7])
    ref = brute_log_ml(Y7, SE7, X, [0.0, delta[0]], [1.0, delta[1]], pdf)
    assert ours == pytest.approx(ref, abs=LOG_ML_TOL)


def test_null_models_with_heterogeneity_against_brute_force() -> None:
    """effect=False: mu = 0, tau integrated (re: no coefficient at all; bias: delta only)."""
    pdf = stats.halfnorm(scale=0.5).pdf
    re0 = fit_exact(model_data(Y6, SE6), spec_of("re", "halfnormal(0.5)", effect=False))
    assert re0.log_marginal_likelihood == pytest.approx(
        brute_log_ml(Y6, SE6, np.zeros((6, 0)), [], [], pdf), abs=LOG_ML_TOL
    )
    bias0 = fit_exact(model_data(Y7, SE7, NR7), spec_of("bias", "halfnormal(0.5)", effect=False))
    assert bias0.log_marginal_likelihood == pytest.approx(
        brute_log_ml(Y7, SE7, np.array(NR7, float)[:, None], [0.0], [0.5], pdf), abs=LOG_ML_TOL
    )


def mvn_log_ml(y, s2, X, m0, s0) -> float:
    """log N(y; X m0, diag(s2) + X S0 X'): the closed form with tau = 0."""
    X = np.asarray(X, float).reshape(len(y), -1)
    cov = np.diag(s2) + X @ np.diag(np.asarray(s0, float) ** 2) @ X.T
    return float(stats.multivariate_normal(X @ np.asarray(m0, float), cov).logpdf(y))


def test_common_effect_and_null_models_against_closed_forms() -> None:
    y, se, nr = np.array(Y7), np.array(SE7), np.array(NR7, float)
    data = model_data(y, se, nr)
    s2 = se**2
    one = np.ones(7)
    cases = [
        (spec_of("re", "halfnormal(0.5)", heterogeneity=False), s2, one[:, None], [0.0], [1.0]),
        (spec_of("bias", "halfnormal(0.5)", heterogeneity=False), s2, np.column_stack([one, nr]), [0, 0], [1, 0.5]),
        (spec_of("bias", "halfnormal(0.5)", heterogeneity=False, effect=False), s2, nr[:, None], [0.0], [0.5]),
        (spec_of("re", "halfnormal(0.5)", heterogeneity=False, effect=False), s2, np.zeros((7, 0)), [], []),
        (
            ModelSpec("bias", bias_variant="downweight", alpha=0.4, heterogeneity=False),
            np.where(nr > 0, s2 / 0.4, s2), one[:, None], [0.0], [1.0],
        ),
    ]
    for spec, v, X, m0, s0 in cases:
        ours = fit_exact(data, spec).log_marginal_likelihood
        assert ours == pytest.approx(mvn_log_ml(y, v, X, m0, s0), abs=1e-10), spec.describe()
    # a meta-regression with tau = 0 (centred covariate)
    x = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.6])
    xd = model_data(y, se, nr, x=x, covariates=("x",))
    spec = ModelSpec("bias-metareg", covariates=("x",), heterogeneity=False)
    X = np.column_stack([one, nr, x - x.mean()])
    assert fit_exact(xd, spec).log_marginal_likelihood == pytest.approx(
        mvn_log_ml(y, s2, X, [0, 0, 0], [1, 0.5, 1]), abs=1e-10
    )


def test_point_mass_summaries_and_contract() -> None:
    """effect=False: mu is a point mass at 0 (HR 1, 1, 1; P(HR < T) = 1 iff T > 1), noted; the
    JSON carries log_marginal_likelihood and the fixed parameters; heterogeneity=False: tau = 0."""
    data = model_data(Y7, SE7, NR7)
    res = fit_exact(data, spec_of("bias", "halfnormal(0.5)", effect=False), thresholds=(0.8, 1.0, 1.25))
    assert (res.hr.median, res.hr.q025, res.hr.q975) == (1.0, 1.0, 1.0)
    assert res.p_hr_below == {"0.8": 0.0, "1.0": 0.0, "1.25": 1.0}
    assert res.parameters["mu"].sd == 0.0 and "delta" in res.parameters
    assert any("effect=False" in n for n in res.notes)
    assert 0.0 < res.p_predictive_hr_below["0.8"] < 0.5  # mu + u_new = u_new: symmetric about 0
    assert res.p_predictive_hr_below["1.0"] == pytest.approx(0.5, abs=1e-12)
    doc = res.to_json()
    assert doc["log_marginal_likelihood"] == res.log_marginal_likelihood and doc["effect"] is False
    assert "mu" not in doc["priors"] and "tau" in doc["priors"]
    ce = fit_exact(data, spec_of("bias", "halfnormal(0.5)", heterogeneity=False))
    assert ce.parameters["tau"].q975 == 0.0 and ce.tau_grid is None and "tau" not in ce.densities
    # tau = 0: the predictive HR of a new study is the HR itself
    assert ce.predictive_hr.median == pytest.approx(ce.hr.median, rel=1e-12)
    assert ce.to_json()["heterogeneity"] is False
    draws = ce.draws(50, seed=1)  # tau = 0: theta_i = mu (+ delta for non-randomised) exactly
    assert np.all(draws["tau"] == 0.0)
    assert np.allclose(draws["theta"][:, 0], draws["mu"]) and np.allclose(draws["theta"][:, 6], draws["mu"] + draws["delta"])
    assert np.all(fit_exact(data, spec_of("re", "halfnormal(0.5)", effect=False)).draws(20)["mu"] == 0.0)


def test_bayes_factor_of_tau_zero_and_mu_zero_are_ratios_of_marginal_likelihoods() -> None:
    """bayesmeta's definition: BF(tau = 0) = p(y | tau = 0) / p(y), both with the mu prior
    integrated; BF(mu = 0) = p(y | mu = 0) / p(y) with tau integrated (R/bayesmeta.R,
    ``likelihood(tau=0) / marglik`` and ``likelihood(mu=0) / marglik``). Checked against a
    direct 1-D quadrature of p(y | mu = 0) = int p(tau) prod_i N(y_i; 0, s_i^2 + tau^2) dtau."""
    data = model_data(Y6, SE6)
    full = fit_exact(data, spec_of("re", "halfnormal(0.5)")).log_marginal_likelihood
    mu0 = fit_exact(data, spec_of("re", "halfnormal(0.5)", effect=False)).log_marginal_likelihood
    val = integrate.quad(
        lambda t: math.exp(stats.norm.logpdf(Y6, 0.0, np.sqrt(np.array(SE6) ** 2 + t * t)).sum())
        * stats.halfnorm.pdf(t, scale=0.5),
        0.0, np.inf, epsrel=1e-12,
    )[0]
    assert mu0 - full == pytest.approx(math.log(val) - full, abs=LOG_ML_TOL)


def test_sweep_results_carry_their_own_log_ml() -> None:
    data = model_data(Y6, SE6)
    spec = spec_of("re", "halfnormal(0.5)")
    priors = [parse_prior(t, "tau") for t in ("halfnormal(0.5)", "halfcauchy(0.3)", "uniform(0, 2)")]
    swept = sweep_tau_priors(data, spec, priors)
    for prior, res in zip(priors, swept, strict=True):
        single = fit_exact(data, replace(spec, priors=replace(spec.priors, tau=prior)))
        assert res.log_marginal_likelihood == pytest.approx(single.log_marginal_likelihood, abs=1e-8)
    with pytest.raises(ModelError, match="heterogeneity"):
        sweep_tau_priors(data, spec_of("re", "halfnormal(0.5)", heterogeneity=False), priors)


class _Table:
    """The StudySource protocol over arrays (for models.fit.fit)."""

    def __init__(self, data: ModelData) -> None:
        self._d = data
        self.source = "test"
        self.has_design = True

    k = property(lambda self: self._d.k)
    studies = property(lambda self: list(self._d.studies))
    y = property(lambda self: self._d.y)
    se = property(lambda self: self._d.se)
    nonrandomised = property(lambda self: self._d.nonrandomised)
    designs = property(lambda self: list(self._d.designs))

    def covariate_matrix(self, names):
        return np.zeros((self._d.k, 0))


@pytest.mark.parametrize("option", ["effect", "heterogeneity"])
def test_pymc_engine_refuses_fixed_parameters(option: str) -> None:
    spec = spec_of("re", "halfnormal(0.5)", **{option: False})
    with pytest.raises(ModelError, match=rf"{option}=False.*engine='exact'"):
        fit(_Table(model_data(Y6, SE6)), spec, engine="pymc")
    assert fit(_Table(model_data(Y6, SE6)), spec, engine="exact").log_marginal_likelihood is not None


# bayesmeta data/Rubin1981.R (eight schools): "effect" and "stderr" of schools A-H.
SCHOOLS_Y = [28.39, 7.94, -2.75, 6.82, -0.64, 0.63, 18.01, 12.16]
SCHOOLS_SE = [14.9, 10.2, 16.3, 11.0, 9.4, 11.4, 10.4, 17.6]


def bayesmeta_log_likelihood_tau(y, sigma, tau: float, mu_mean: float, mu_sd: float) -> float:
    """bayesmeta's ``likelihood(tau=t, log=TRUE)`` with a normal mu prior, transcribed from
    R/bayesmeta.R (``logmarglikeli``; JSS paper equation 15): the prior mean is treated as one
    more observation with variance mu_sd^2."""
    y_term = np.concatenate([[mu_mean], y])
    var_term = np.concatenate([[mu_sd**2], np.asarray(sigma) ** 2 + tau**2])
    cm = np.sum(y_term / var_term) / np.sum(1.0 / var_term)
    return float(-0.5 * ((y_term.size - 1) * math.log(2 * math.pi) + np.log(var_term).sum()
                         + np.sum((y_term - cm) ** 2 / var_term) + math.log(np.sum(1.0 / var_term))))


def test_bayesmeta_marginal_likelihood_and_bayes_factors_eight_schools() -> None:
    """bayesmeta's ``$marginal.likelihood`` and ``$bayesfactor["actual", c("tau=0", "mu=0")]``
    for its eight-schools example 1 (mu ~ N(0, 50^2), tau ~ half-Cauchy(25); vignette
    "An introduction to meta-analysis using the bayesmeta package").

    bayesmeta prints no marginal likelihood or Bayes factor in its documentation (man pages,
    vignette, JSS paper and the bmr paper of version 3.4 were searched: ``print()`` omits
    them and no ``summary()`` output is shown), so the reference here is its code: the
    marginal likelihood as ``integrate(likelihood(tau) * dprior(tau), 0, Inf)`` (R's integrate
    = QUADPACK, here scipy's), ``BF(tau = 0) = likelihood(tau = 0) / marglik`` and
    ``BF(mu = 0) = likelihood(mu = 0) / marglik`` with ``likelihood(mu = 0)`` the tau integral of
    the joint likelihood at mu = 0. bayesmeta defines the marginal likelihood only for proper
    priors (its uniform/improper mu prior gives none), which is the set-up here; its definition
    is then ours, log p(y) with every normalising constant.
    """
    y, se = np.array(SCHOOLS_Y), np.array(SCHOOLS_SE)
    data = model_data(y, se)
    spec = spec_of("re", "halfcauchy(25)", mu="normal(0, 50)")
    pdf = stats.halfcauchy(scale=25.0).pdf
    marglik = integrate.quad(
        lambda t: math.exp(bayesmeta_log_likelihood_tau(y, se, t, 0.0, 50.0)) * pdf(t), 0.0, np.inf,
        epsrel=1e-12, epsabs=0.0, limit=400,
    )[0]
    bf_tau0 = math.exp(bayesmeta_log_likelihood_tau(y, se, 0.0, 0.0, 50.0)) / marglik
    lik_mu0 = integrate.quad(
        lambda t: math.exp(stats.norm.logpdf(y, 0.0, np.sqrt(se**2 + t * t)).sum()) * pdf(t), 0.0, np.inf,
        epsrel=1e-12, epsabs=0.0, limit=400,
    )[0]
    bf_mu0 = lik_mu0 / marglik
    full = fit_exact(data, spec).log_marginal_likelihood
    assert full == pytest.approx(math.log(marglik), abs=LOG_ML_TOL)
    tau0 = fit_exact(data, replace(spec, heterogeneity=False)).log_marginal_likelihood
    mu0 = fit_exact(data, replace(spec, effect=False)).log_marginal_likelihood
    assert math.exp(tau0 - full) == pytest.approx(bf_tau0, rel=LOG_ML_TOL)
    assert math.exp(mu0 - full) == pytest.approx(bf_mu0, rel=LOG_ML_TOL)
