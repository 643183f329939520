"""The exact engine's two-variance models (bias variants ``random`` and ``three-level``, 2-D
quadrature over (tau, kappa)) against brute-force quadrature of their definitions, their own
grid refinement, and (slow) the PyMC engine.

Brute force (:func:`brute_random`, :func:`brute_three_level`): the posterior of mu on a uniform
grid of mu values (Simpson's rule; CDF by cubic spline of the cumulative integral), every other
parameter integrated numerically at each grid value of mu: (tau, kappa) by a product
Gauss-Legendre rule in ``v = x / (x + s)`` (a different rule and variable from the engine's
Gauss-Lobatto rule in asinh(x / c)), delta (random) or the overall mean m (three-level) by
Gauss-Legendre on +/- 10 conditional SDs around its precision-weighted centre. The only closed
forms used are one-dimensional: theta_i out of N(y_i; theta_i, s_i^2) (each study), and in the
three-level model the non-reference design means out of their normal prior. Model definitions:
models/pymc_models.py (random: theta_i = mu + delta_i nr_i + tau z_i, delta_i = delta + kappa
w_i; three-level: mu_d = m + kappa e_d, theta_i = mu_d(i) + tau z_i, mu = mu_rct).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats
from scipy.integrate import cumulative_simpson, simpson
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from synthesis.models.exact import (
    DEFAULT_GRID_2D,
    _conditional,
    _conditional_2d,
    _design,
    _Layout,
    _lobatto,
    _lobatto_to_fine,
    barycentric_weights,
    exact_posterior,
    fit_exact,
    interpolation_matrix,
)
from synthesis.models.priors import resolve_priors
from synthesis.models.spec import ModelData, ModelSpec

#: Agreement with the brute-force references: log p(y) absolute, posterior summaries of mu
#: relative to max(|value|, 0.01). Measured: the engine's default 29 x 29 Lobatto grid agrees
#: with the references to 5e-6 (random), 4e-6 (three-level) and 1e-8 to 6e-7 in log p(y),
#: about the references' own discretisation error.
TOL = 2e-5

# Made-up log HRs: 3 rct, 2 prospective, 3 retrospective studies.
Y = np.array([-0.36, -0.12, -0.48, 0.15, -0.02, 0.32, 0.41, 0.05])
SE = np.array([0.20, 0.27, 0.23, 0.18, 0.30, 0.21, 0.35, 0.25])
DESIGNS = ("rct", "rct", "rct", "prospective", "prospective", "retrospective", "retrospective", "retrospective")
NR = np.array([d != "rct" for d in DESIGNS])
PRIORS = {"tau": "halfnormal(0.3)", "kappa": "halfnormal(0.25)", "mu": "normal(0, 1)", "delta": "normal(0, 0.5)"}
_V, _VW = np.polynomial.legendre.leggauss(24)
_VN, _VW = 0.5 * (_V + 1.0), 0.5 * _VW  # on (0, 1)
_GX, _GW = np.polynomial.legendre.leggauss(28)


def data() -> ModelData:
    return ModelData(
        studies=tuple(f"s{i}" for i in range(Y.size)), y=Y, se=SE, nonrandomised=NR, designs=DESIGNS,
        covariates=(), x=np.zeros((Y.size, 0)), centres=np.zeros(0), source="test",
    )


def spec(variant: str, **kw) -> ModelSpec:
    return ModelSpec("bias", bias_variant=variant, priors=resolve_priors(PRIORS), **kw)


def outer_rule(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """x = scale v / (1 - v) on (0, inf), Gauss-Legendre in v: nodes and weights dx."""
    x = scale * _VN / (1.0 - _VN)
    return x, _VW * scale / (1.0 - _VN) ** 2


def mu_summaries(grid: np.ndarray, dens: np.ndarray) -> dict[str, float]:
    total = simpson(dens, x=grid)
    p = dens / total
    cdf = CubicSpline(grid, np.concatenate([[0.0], cumulative_simpson(p, x=grid)]))
    mean = simpson(grid * p, x=grid)
    sd = math.sqrt(simpson((grid - mean) ** 2 * p, x=grid))
    q = {name: brentq(lambda m, a=a: cdf(m) - a, grid[0], grid[-1], xtol=1e-13)
         for name, a in (("median", 0.5), ("q025", 0.025), ("q975", 0.975))}
    return {"mean": mean, "sd": sd, **q, "p_below_0.8": float(cdf(math.log(0.8)))}, math.log(total)


MU_GRID = np.linspace(-1.6, 1.2, 241)


def brute_random(heterogeneity: bool = True) -> tuple[dict[str, float], float]:
    """theta_i = mu + delta_i nr_i + tau z_i: y_i ~ N(mu + delta nr_i, s_i^2 + tau^2 + kappa^2 nr_i)
    given (mu, delta, tau, kappa); delta by Gauss-Legendre, mu on MU_GRID, (tau, kappa) by
    :func:`outer_rule`."""
    taus, tw = outer_rule(0.2) if heterogeneity else (np.zeros(1), np.ones(1))
    kappas, kw = outer_rule(0.2)
    T, K = np.meshgrid(taus, kappas, indexing="ij")
    Wt = np.outer(tw, kw) * stats.halfnorm.pdf(K, scale=0.25)
    if heterogeneity:
        Wt = Wt * stats.halfnorm.pdf(T, scale=0.3)
    V = SE**2 + T[..., None] ** 2 + K[..., None] ** 2 * NR  # (nt, nk, k)
    dens = np.zeros(MU_GRID.size)
    for j, mu in enumerate(MU_GRID):
        # delta given mu (and tau, kappa): centre and SD of its conditional, from the data
        prec = (NR / V).sum(-1) + 1.0 / 0.5**2
        centre = ((NR * (Y - mu)) / V).sum(-1) / prec
        half = 10.0 / np.sqrt(prec)
        delta = centre[..., None] + half[..., None] * _GX  # (nt, nk, g)
        r = Y - mu - delta[..., None] * NR  # (nt, nk, g, k)
        ll = -0.5 * (np.log(2 * np.pi * V)[:, :, None, :] + r * r / V[:, :, None, :]).sum(-1)
        ll += stats.norm.logpdf(delta, 0.0, 0.5)
        inner = (np.exp(ll) * _GW).sum(-1) * half
        dens[j] = (Wt * inner).sum() * stats.norm.pdf(mu, 0.0, 1.0)
    return mu_summaries(MU_GRID, dens)


def brute_three_level() -> tuple[dict[str, float], float]:
    """mu_d = m + kappa e_d, theta_i = mu_d(i) + tau z_i, mu = mu_rct: mu_rct on MU_GRID, m by
    Gauss-Legendre, the other design means out of N(mu_d; m, kappa^2) (1-D normal identity),
    (tau, kappa) by :func:`outer_rule`."""
    taus, tw = outer_rule(0.2)
    kappas, kw = outer_rule(0.2)
    T, K = np.meshgrid(taus, kappas, indexing="ij")
    Wt = np.outer(tw, kw) * stats.halfnorm.pdf(T, scale=0.3) * stats.halfnorm.pdf(K, scale=0.25)
    V = SE**2 + T[..., None] ** 2  # (nt, nk, k)
    rct = np.array([d == "rct" for d in DESIGNS])
    groups = [np.array([d == g for d in DESIGNS]) for g in ("prospective", "retrospective")]
    # per other design: prod_i N(y_i; mu_d, V_i) integrated against N(mu_d; m, kappa^2) is
    # C_d N(ybar_d; m, v_d + kappa^2) with v_d = 1 / sum(1 / V_i), ybar_d the weighted mean
    stats_d = []
    for g in groups:
        w = 1.0 / V[..., g]
        v_d = 1.0 / w.sum(-1)
        ybar = (w * Y[g]).sum(-1) * v_d
        logc = (-0.5 * (np.log(2 * np.pi * V[..., g]) + (Y[g] - ybar[..., None]) ** 2 * w).sum(-1)
                + 0.5 * np.log(2 * np.pi * v_d))
        stats_d.append((ybar, v_d + K**2, logc))
    dens = np.zeros(MU_GRID.size)
    for j, mu in enumerate(MU_GRID):
        ll_rct = -0.5 * (np.log(2 * np.pi * V[..., rct]) + (Y[rct] - mu) ** 2 / V[..., rct]).sum(-1)
        # m given mu_rct and the other designs: a precision-weighted centre places the rule
        prec = 1.0 / K**2 + 1.0 + sum(1.0 / s[1] for s in stats_d)
        centre = (mu / K**2 + sum(s[0] / s[1] for s in stats_d)) / prec
        half = 10.0 / np.sqrt(prec)
        m = centre[..., None] + half[..., None] * _GX  # (nt, nk, g)
        lm = stats.norm.logpdf(mu, m, K[..., None]) + stats.norm.logpdf(m, 0.0, 1.0)
        for ybar, var, logc in stats_d:
            lm = lm + logc[..., None] + stats.norm.logpdf(ybar[..., None], m, np.sqrt(var)[..., None])
        inner = (np.exp(lm) * _GW).sum(-1) * half
        dens[j] = (Wt * np.exp(ll_rct) * inner).sum()
    return mu_summaries(MU_GRID, dens)


def check_against(fit, ref: dict[str, float], log_ml: float) -> None:
    mu = fit.parameters["mu"]
    ours = {"mean": mu.mean, "sd": mu.sd, "median": mu.median, "q025": mu.q025, "q975": mu.q975,
            "p_below_0.8": fit.p_hr_below["0.8"]}
    for key, val in ref.items():
        assert abs(ours[key] - val) <= TOL * max(abs(val), 0.01), (key, ours[key], val)
    assert fit.log_marginal_likelihood == pytest.approx(log_ml, abs=TOL)


def test_random_bias_against_brute_force() -> None:
    ref, log_ml = brute_random()
    check_against(fit_exact(data(), spec("random"), thresholds=(0.8,)), ref, log_ml)


def test_random_bias_common_effect_against_brute_force() -> None:
    """heterogeneity=False: tau = 0, kappa alone by quadrature (a 1-D grid in kappa)."""
    ref, log_ml = brute_random(heterogeneity=False)
    fit = fit_exact(data(), spec("random", heterogeneity=False), thresholds=(0.8,))
    check_against(fit, ref, log_ml)
    assert fit.parameters["tau"].q975 == 0.0 and fit.parameters["kappa"].median > 0


def test_three_level_against_brute_force() -> None:
    ref, log_ml = brute_three_level()
    check_against(fit_exact(data(), spec("three-level"), thresholds=(0.8,)), ref, log_ml)


def test_two_variance_conditional_reduces_to_the_one_variance_one() -> None:
    """With kappa entering nowhere (h = 0, no kappa coefficients) the scaled 2-D conditional
    model is the 1-D one (a different algebra: D A^-1 D instead of P^-1)."""
    d = _design(data(), spec("additive"))
    p = d.X.shape[1]
    d2 = type(d)(**{**d.__dict__, "layout": _Layout(np.ones(Y.size), np.zeros(Y.size), np.zeros(p, bool), np.zeros(p, bool))})
    tau = np.array([0.0, 0.05, 0.3, 2.0])
    one, two = _conditional(d, tau), _conditional_2d(d2, tau, np.full(4, 0.7))
    np.testing.assert_allclose(two.loglik, one.loglik, rtol=1e-12)
    np.testing.assert_allclose(two.b_mean, one.b_mean, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(two.b_cov, one.b_cov, rtol=1e-10, atol=1e-14)


def _flat(doc, prefix=""):
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k not in ("timing", "priors_detail", "seed", "interval", "k"):
                out.update(_flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(doc, list):
        return {k: v for i, x in enumerate(doc) for k, v in _flat(x, f"{prefix}[{i}]").items()}
    return {prefix: doc} if isinstance(doc, float) else {}


@pytest.mark.parametrize("variant", ["random", "three-level"])
def test_doubling_the_grid_changes_nothing_at_5_digits(variant: str) -> None:
    """29 -> 57 Lobatto nodes per axis (the converged value: 81 and 129 agree to 1e-10)."""
    base = _flat(fit_exact(data(), spec(variant)).to_json())
    fine = _flat(fit_exact(data(), spec(variant), n_grid=2 * DEFAULT_GRID_2D - 1).to_json())
    assert base.keys() == fine.keys() and "/kappa/median" in base and "/log_marginal_likelihood" in base
    for key, val in fine.items():
        # 5 significant digits, or 1e-6 absolute for values below 0.1 (log-HR scale)
        assert abs(base[key] - val) <= 1e-5 * max(abs(val), 0.1), (key, base[key], val)


def test_kappa_marginal_and_draws_are_consistent() -> None:
    post = exact_posterior(data(), spec("random"))
    grid, dens = post.kappa_marginal()
    assert simpson(dens, x=grid) == pytest.approx(1.0, abs=1e-3)  # Lobatto nodes: Simpson is rough
    assert float(post.kappa_grid.qweights @ dens) == pytest.approx(1.0, abs=1e-10)
    draws = post.sample(20000, np.random.default_rng(3))
    assert set(draws) >= {"mu", "tau", "delta", "kappa", "theta", "theta_new"}
    s = post.kappa_summary()
    assert np.median(draws["kappa"]) == pytest.approx(s.median, rel=0.05)
    assert np.mean(draws["mu"]) == pytest.approx(post.linear(post.contrast("mu")).mean(), abs=4 * s.sd / 100)


# ---------------------------------------------------------------------------------------------
# slow: the PyMC engine on the same models
# ---------------------------------------------------------------------------------------------
class _Table:
    def __init__(self, d: ModelData) -> None:
        self._d, self.source, self.has_design = d, "test", True

    k = property(lambda self: self._d.k)
    studies = property(lambda self: list(self._d.studies))
    y = property(lambda self: self._d.y)
    se = property(lambda self: self._d.se)
    nonrandomised = property(lambda self: self._d.nonrandomised)
    designs = property(lambda self: list(self._d.designs))

    def covariate_matrix(self, names):
        return np.zeros((self._d.k, 0))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["random", "three-level"])
def test_pymc_engine_agrees(variant: str) -> None:
    """mu, delta and kappa medians within 4 Monte Carlo SEs (+ 0.005) and P(HR < 0.8) within
    4 binomial SEs at the bulk ESS of mu, 4 chains x 5000 draws."""
    from synthesis.models.fit import fit

    exact = fit(_Table(data()), spec(variant), engine="exact", thresholds=(0.8,))
    mc = fit(_Table(data()), spec(variant), engine="pymc", thresholds=(0.8,), chains=4, draws=5000,
             tune=2000, seed=11, target_accept=0.99)
    assert mc.diagnostics is not None and mc.diagnostics.converged, mc.diagnostics
    for name in ("mu", "delta", "kappa"):
        e, m = exact.parameters[name], mc.parameters[name]
        mcse = (m.mcse_quantiles or {}).get("median") or 1.253 * m.sd / math.sqrt(m.ess_bulk)
        assert abs(e.median - m.median) <= 4 * mcse + 0.005, (name, e.median, m.median, mcse)
    p = exact.p_hr_below["0.8"]
    se = math.sqrt(p * (1 - p) / mc.parameters["mu"].ess_bulk)
    assert abs(mc.p_hr_below["0.8"] - p) <= 4 * se + 0.002


# ---------------------------------------------------------------------------------------------
# Dense-covariance references: log p(y) of any subset of studies, the three-level null model,
# leave-one-out predictive densities
# ---------------------------------------------------------------------------------------------
#: Gauss-Legendre nodes per axis of the dense references' (tau, kappa) rule (in v = x / (x + s)):
#: 48 and 64 agree to 1e-12 in log p(y) here.
N_DENSE = 48
#: Agreement of the engine's log p(y), its Bayes factors and LOO densities with the dense
#: references (measured: below 1e-11 on these tables; both rules are spectrally converged).
TOL_DENSE = 1e-8
MU0, MU_SD, KAPPA_SD, TAU_SD, DELTA_SD = 0.0, 1.0, 0.25, 0.3, 0.5  # PRIORS above


def _outer_dense(scale: float) -> tuple[np.ndarray, np.ndarray]:
    v, w = np.polynomial.legendre.leggauss(N_DENSE)
    v, w = 0.5 * (v + 1.0), 0.5 * w
    return scale * v / (1.0 - v), w * scale / (1.0 - v) ** 2


def _mvn_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) for a stack of covariance matrices (..., n, n)."""
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, np.broadcast_to(x - mean, cov.shape[:-1])[..., None])[..., 0]
    return -0.5 * (x.size * math.log(2 * math.pi) + (r * r).sum(-1)) - np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)


def dense_log_ml(variant: str, keep: np.ndarray, y=None, se=None, designs=None, *, effect: bool = True,
                 heterogeneity: bool = True) -> float:
    """log p(y[keep]) of a bias variant in the dense form: given (tau, kappa), y is normal with
    mean and covariance from the definitions (models/pymc_models.py), the location parameters
    and study effects integrated out; (tau, kappa) by Gauss-Legendre in v = x / (x + 0.2).

    random: y_i = mu + delta nr_i + kappa w_i nr_i + tau z_i + e_i (mu ~ N(0, 1), delta ~
    N(0, 0.5^2)). three-level: y_i = m + v_d(i) + tau z_i + e_i (m ~ N(0, 1), v_d ~ N(0, kappa^2)).
    The three-level null (``effect=False``) is the effect model conditioned on mu_rct = m +
    v_rct = 0 by the joint density: p(y | M0) = int p(tau) p(kappa) N((y, 0); joint) / p(mu_rct = 0),
    with p(mu_rct = 0) = int p(kappa) N(0; m0, s0^2 + kappa^2) dkappa (scipy.integrate.quad).
    """
    y = (Y if y is None else y)[keep]
    se = (SE if se is None else se)[keep]
    des = np.asarray(DESIGNS if designs is None else designs)[keep]
    nr = (des != "rct").astype(float)
    k = y.size
    taus, tw = _outer_dense(0.2) if heterogeneity else (np.zeros(1), np.ones(1))
    kappas, kw = _outer_dense(0.2)
    T, K = np.meshgrid(taus, kappas, indexing="ij")
    logw = np.log(np.outer(tw, kw)) + stats.halfnorm.logpdf(K, scale=KAPPA_SD)
    if heterogeneity:
        logw += stats.halfnorm.logpdf(T, scale=TAU_SD)
    T2, K2 = (T**2)[..., None, None], (K**2)[..., None, None]
    eye = np.eye(k)
    if variant == "random":
        assert effect
        cov = ((se**2)[None, :] * eye + T2 * eye + K2 * np.diag(nr) + MU_SD**2 + DELTA_SD**2 * np.outer(nr, nr))
        ll = _mvn_logpdf(y, np.full(k, MU0), cov)
    else:
        same = (des[:, None] == des[None, :]).astype(float)
        cov_y = (se**2)[None, :] * eye + T2 * eye + MU_SD**2 + K2 * same
        if effect:
            ll = _mvn_logpdf(y, np.full(k, MU0), cov_y)
        else:  # joint density of (y, mu_rct) at mu_rct = 0, over p(mu_rct = 0)
            rct = (des == "rct").astype(float)
            cross = MU_SD**2 + K2[..., 0] * rct  # Cov(y_i, mu_rct)
            var_r = MU_SD**2 + K2[..., 0, 0]
            full = np.zeros(T.shape + (k + 1, k + 1))
            full[..., :k, :k] = cov_y
            full[..., :k, k] = full[..., k, :k] = cross
            full[..., k, k] = var_r
            ll = _mvn_logpdf(np.append(y, 0.0), np.full(k + 1, MU0), full)
            prior0 = integrate.quad(
                lambda x: stats.halfnorm.pdf(x, scale=KAPPA_SD) * stats.norm.pdf(0.0, MU0, math.sqrt(MU_SD**2 + x * x)),
                0.0, np.inf, epsabs=0.0, epsrel=1e-13,
            )[0]
            ll = ll - math.log(prior0)
    return float(special.logsumexp(logw + ll))


@pytest.mark.parametrize("heterogeneity", [True, False])
def test_three_level_null_model_against_its_definition(heterogeneity: bool) -> None:
    """effect=False under three-level: log p(y) against the dense reference (the effect model's
    joint density of (y, mu_rct) at mu_rct = 0), and the Savage-Dickey identity BF_01 =
    p(mu_rct = 0 | y) / p(mu_rct = 0) with the effect model's exact posterior density of mu at 0
    and the prior density by quad."""
    everyone = np.ones(Y.size, dtype=bool)
    null = exact_posterior(data(), spec("three-level", effect=False, heterogeneity=heterogeneity))
    full = exact_posterior(data(), spec("three-level", heterogeneity=heterogeneity))
    ref0 = dense_log_ml("three-level", everyone, effect=False, heterogeneity=heterogeneity)
    ref1 = dense_log_ml("three-level", everyone, heterogeneity=heterogeneity)
    assert null.log_marginal_likelihood == pytest.approx(ref0, abs=TOL_DENSE)
    assert full.log_marginal_likelihood == pytest.approx(ref1, abs=TOL_DENSE)
    posterior_at_0 = float(full.linear(full.contrast("mu")).pdf(0.0))
    prior_at_0 = integrate.quad(
        lambda x: stats.halfnorm.pdf(x, scale=KAPPA_SD) * stats.norm.pdf(0.0, MU0, math.sqrt(MU_SD**2 + x * x)),
        0.0, np.inf, epsabs=0.0, epsrel=1e-13,
    )[0]
    log_bf01 = null.log_marginal_likelihood - full.log_marginal_likelihood
    assert math.log(posterior_at_0 / prior_at_0) == pytest.approx(log_bf01, abs=TOL_DENSE)
    fit = fit_exact(data(), spec("three-level", effect=False, heterogeneity=heterogeneity))
    assert fit.hr.median == 1.0 and fit.parameters["mu"].sd == 0.0
    assert fit.parameters["kappa"].median > 0 and "delta" in fit.parameters
    assert any("mu_rct = 0" in n for n in fit.notes)


def test_three_level_null_prior_at_kappa_zero() -> None:
    """kappa = 0: every design mean equals mu_rct = 0, so m's conditional prior is the point
    mass at 0 (mean and variance 0, no division by zero) and p(y | tau, kappa = 0) is the
    density of y with mean 0."""
    d = _design(data(), spec("three-level", effect=False))
    mean, var = d.layout.prior_moments(d.m0, d.s0, np.array([0.1, 0.1]), np.array([0.0, 0.5]))
    assert mean[0].tolist() == [0.0, 0.0, 0.0] and var[0].tolist() == [0.0, 0.0, 0.0]
    assert var[1, 0] == pytest.approx(0.25 / 1.25) and var[1, 1] == 0.25
    cond = _conditional_2d(d, np.array([0.1]), np.array([0.0]))
    assert cond.loglik[0] == pytest.approx(stats.norm.logpdf(Y, 0.0, np.sqrt(SE**2 + 0.01)).sum(), abs=1e-10)


# Leave-one-out data: a single rct study and a single prospective study (a refit without it has
# no study of that design), four retrospective ones.
Y_LOO = np.array([-0.30, 0.12, -0.05, 0.28, 0.40, 0.02])
SE_LOO = np.array([0.18, 0.25, 0.20, 0.22, 0.30, 0.16])
DESIGNS_LOO = ("rct", "prospective", "retrospective", "retrospective", "retrospective", "retrospective")


def loo_data() -> ModelData:
    nr = np.array([d != "rct" for d in DESIGNS_LOO])
    return ModelData(
        studies=tuple(f"t{i}" for i in range(Y_LOO.size)), y=Y_LOO, se=SE_LOO, nonrandomised=nr,
        designs=DESIGNS_LOO, covariates=(), x=np.zeros((Y_LOO.size, 0)), centres=np.zeros(0), source="test",
    )


@pytest.mark.parametrize("variant", ["random", "three-level"])
def test_exact_loo_against_dense_refits(variant: str) -> None:
    """log p(y_i | y_-i) = log p(y) - log p(y_-i), both by the dense reference (its own
    definition of the model on the k - 1 studies: a design without studies simply drops out of
    the covariance), and the full-data lppd's p_loo."""
    from synthesis.models.loo import exact_loo

    k = Y_LOO.size
    full = dense_log_ml(variant, np.ones(k, bool), Y_LOO, SE_LOO, DESIGNS_LOO)
    ref = np.array([full - dense_log_ml(variant, np.arange(k) != i, Y_LOO, SE_LOO, DESIGNS_LOO) for i in range(k)])
    res = exact_loo(loo_data(), spec(variant))
    np.testing.assert_allclose(res.elpd_i, ref, atol=TOL_DENSE)
    assert res.method == "exact" and res.k == k and math.isfinite(res.p_loo) and res.p_loo > 0


def test_predictive_for_a_design_without_a_level() -> None:
    """Two routes to a new prospective study when no prospective study was fitted: the
    posterior without that level (its offset from the prior, + kappa^2) and the posterior with
    the level kept as a column of zeros (its coefficient's posterior is its prior); and the
    refusals of contradictory arguments."""
    from synthesis.errors import InputError

    keep = np.array([d != "prospective" for d in DESIGNS])
    sub = ModelData(
        studies=tuple(f"s{i}" for i in np.flatnonzero(keep)), y=Y[keep], se=SE[keep], nonrandomised=NR[keep],
        designs=tuple(d for d, k in zip(DESIGNS, keep, strict=True) if k), covariates=(), x=np.zeros((keep.sum(), 0)),
        centres=np.zeros(0), source="test",
    )
    without = exact_posterior(sub, spec("three-level"))
    kept = exact_posterior(sub, spec("three-level"), designs=["rct", "prospective", "retrospective"])
    x = np.linspace(-1.5, 1.5, 7)
    a, b = without.predictive_for(design="prospective"), kept.predictive_for(design="prospective")
    np.testing.assert_allclose(a.pdf(x), b.pdf(x), rtol=1e-9)
    assert a.sd() > without.predictive_for(design="retrospective").sd()
    with pytest.raises(InputError, match="contradicts"):
        without.predictive_for(design="rct", nonrandomised=True)
    with pytest.raises(InputError, match="design must be one of"):
        without.predictive_for(design="cohort")
    with pytest.raises(InputError, match="needs the design"):
        without.predictive_for(nonrandomised=True)


# ---------------------------------------------------------------------------------------------
# Bit-reproducibility: the polynomial interpolation of the marginals (scipy's
# BarycentricInterpolator permutes its products with NumPy's global random state)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [5, DEFAULT_GRID_2D, 61])
def test_barycentric_weights_match_the_lobatto_closed_form(n: int) -> None:
    """Gauss-Lobatto-Legendre nodes have barycentric weights (-1)^j sqrt(lambda_j), lambda_j the
    quadrature weights (Wang H, Huybrechs D, Vandewalle S. 2014. Explicit barycentric weights for
    polynomial interpolation in the roots or extrema of classical orthogonal polynomials. Math
    Comp 83:2893-2914), up to a common factor."""
    x, lam = _lobatto(n)
    w = barycentric_weights(x)
    ratio = w / ((-1.0) ** np.arange(n) * np.sqrt(lam))
    assert ratio[0] > 0
    np.testing.assert_allclose(ratio, ratio[0], rtol=5e-12)


def test_interpolation_matrix_is_exact_and_ignores_the_global_random_state() -> None:
    x = _lobatto(DEFAULT_GRID_2D)[0] * 1.7 + 0.3
    pts = np.linspace(x[0], x[-1], 257)
    mats = []
    for seed in (0, 1, 2):
        np.random.seed(seed)  # scipy's own weights permute their products with this state
        mats.append(interpolation_matrix(x, pts))
    assert all(np.array_equal(m, mats[0]) for m in mats[1:])
    coef = np.random.default_rng(5).normal(size=DEFAULT_GRID_2D)  # degree n - 1: reproduced
    poly = np.polynomial.Polynomial(coef, domain=[x[0], x[-1]])
    np.testing.assert_allclose(mats[0] @ poly(x), poly(pts), atol=1e-10 * np.abs(poly(x)).max())


def test_marginal_tables_ignore_the_global_random_state() -> None:
    """The tau and kappa tables (CDFs, quantiles, psense) are bit-identical whatever NumPy's
    global random state is (it differs between processes; scipy's interpolator used it)."""
    post = exact_posterior(data(), spec("random"))
    tables = []
    for seed in (0, 1, 2):
        _lobatto_to_fine.cache_clear()
        np.random.seed(seed)
        tables.append(np.concatenate([post.tau_table_u()[1], post.kappa_table_u()[1], post.kappa_ppf([0.1, 0.9])]))
    assert all(np.array_equal(t, tables[0]) for t in tables[1:])
