"""Power-scaling sensitivity (models/powerscale.py, ``synthesis psense``).

Every expected value has an independent source:

* the CJS distance: direct numerical integration of its definition (scipy ``quad``) and
  arviz-stats' own ``_cjs_dist`` on deterministic quantile draws with importance weights;
* the exact power-scaled posteriors: brute-force 3-D Gauss-Legendre quadrature of the scaled
  model's unnormalised density (prior and likelihood terms raised to the power explicitly), and
  closed-form powers of half-normal / exponential tau priors refitted;
* the exact sensitivities: the closed-form normal posterior of a model without heterogeneity,
  and (slow) arviz-stats ``psense_summary`` / ``psense`` on iid draws of the exact posterior.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, special, stats

from synthesis.cli import main
from synthesis.models.exact import exact_posterior
from synthesis.models.fit import fit
from synthesis.models.powerscale import (
    ALPHAS,
    CONFLICT,
    PRIOR_DOMINATES,
    PROBABILITY,
    cjs_distance,
    kappa_cdf,
    power_scale,
    powerscaled_posterior,
    psense_draws,
    psense_exact,
    reweight_tau_prior,
    scale_data,
    sensitivity_from_cdfs,
    with_log_densities,
)
from synthesis.models.priors import parse_prior, resolve_priors
from synthesis.models.spec import ModelData, ModelSpec

try:
    from synthesis.datasets import load_dataset

    load_dataset("dnmbc_lrt")
    HAVE_DATA = True
except Exception:  # noqa: BLE001
    HAVE_DATA = False

needs_data = pytest.mark.skipif(not HAVE_DATA, reason="bundled dnmbc_lrt dataset not built yet")

#: A small two-design data set for the brute-force checks: 3 randomised, 3 non-randomised.
Y = np.array([-0.10, 0.05, -0.25, -0.45, -0.30, -0.60])
SE = np.array([0.15, 0.20, 0.25, 0.12, 0.18, 0.22])
NR = np.array([False, False, False, True, True, True])


def small_data(spec: ModelSpec) -> ModelData:
    return ModelData(
        studies=tuple(f"s{i}" for i in range(Y.size)),
        y=Y.copy(),
        se=SE.copy(),
        nonrandomised=NR.copy(),
        designs=tuple("prospective" if f else "rct" for f in NR),
        covariates=(),
        x=np.zeros((Y.size, 0)),
        centres=np.zeros(0),
        source="small",
    )


def with_prior(spec: ModelSpec, **priors: str) -> ModelSpec:
    return replace(spec, priors=replace(spec.priors, **{n: parse_prior(t, n) for n, t in priors.items()}))


# --------------------------------------------------------------------------------------------
# CJS distance
# --------------------------------------------------------------------------------------------
def cjs_by_quad(P, Q, lo: float, hi: float) -> float:
    """The definition, integrated by adaptive quadrature (no shared code with cjs_distance)."""

    def term(a, b):
        def f(x):
            pa, pb = a(x), b(x)
            m = 0.5 * (pa + pb)
            return (pa * math.log2(pa / m) if pa > 0 else 0.0) + (pb - pa) / (2 * math.log(2))

        return integrate.quad(f, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11)[0]

    bound = integrate.quad(P, lo, hi, epsabs=1e-13)[0] + integrate.quad(Q, lo, hi, epsabs=1e-13)[0]
    return math.sqrt((max(term(P, Q), 0) + max(term(Q, P), 0)) / bound)


@pytest.mark.parametrize(("loc", "scale"), [(0.4, 1.3), (0.02, 1.0), (-1.0, 0.5)])
def test_cjs_distance_matches_quadrature(loc, scale):
    lo, hi = -5.0, 6.0
    P = stats.norm(0, 1).cdf
    Q = stats.norm(loc, scale).cdf
    x = np.linspace(lo, hi, 20001)
    expected = cjs_by_quad(P, Q, lo, hi)
    assert cjs_distance(x, P(x), Q(x)) == pytest.approx(expected, rel=1e-6)


def test_cjs_distance_properties():
    x = np.linspace(-5, 6, 4001)
    P, Q = stats.norm.cdf(x), stats.norm.cdf(x, 0.3, 1.2)
    assert cjs_distance(x, P, P) == 0.0
    # affine invariance: numerator and denominator both scale with the range
    assert cjs_distance(3 * x + 7, P, Q) == pytest.approx(cjs_distance(x, P, Q), rel=1e-12)
    # symmetric in P and Q
    assert cjs_distance(x, Q, P) == pytest.approx(cjs_distance(x, P, Q), rel=1e-12)


@pytest.mark.slow  # importing arviz-stats costs ~1.5 s
def test_cjs_matches_arviz_cjs_dist_on_quantile_draws():
    """arviz-stats' sample CJS on deterministic draws x_i = F_P^-1((i - 0.5) / n) weighted by
    q(x_i) / p(x_i) approximates the same integrals over [x_1, x_n]."""
    from arviz_stats.base.diagnostics import _DiagnosticsBase

    n = 50_000
    p, q = stats.norm(0, 1), stats.norm(0.2, 1.1)
    draws = p.ppf((np.arange(1, n + 1) - 0.5) / n)
    weights = np.exp(q.logpdf(draws) - p.logpdf(draws))
    expected = _DiagnosticsBase._cjs_dist(draws, weights)
    x = np.linspace(draws[0], draws[-1], 20001)
    assert cjs_distance(x, p.cdf(x), q.cdf(x)) == pytest.approx(expected, rel=2e-3)
    assert cjs_distance(x, p.cdf(x), stats.norm(0.25, 1.1).cdf(x)) != pytest.approx(expected, rel=2e-3)


def test_sensitivity_of_a_location_family_is_its_derivative():
    """For Q_alpha = N(c log2(alpha), 1) the sensitivity is the derivative of the distance in
    log2(alpha), i.e. (d/dh) D(N(0,1), N(h,1)) at h = 0 times c, from the quadrature above."""
    c, lo, hi = 0.1, -4.0, 4.0
    x = np.linspace(lo, hi, 8001)
    cdfs = [stats.norm.cdf(x, loc=c * np.log2(a)) for a in (1.0, *ALPHAS)]
    h = 1e-3
    slope = cjs_by_quad(stats.norm(0, 1).cdf, stats.norm(h, 1).cdf, lo, hi) / h
    assert sensitivity_from_cdfs(x, *cdfs) == pytest.approx(c * slope, rel=2e-3)


# --------------------------------------------------------------------------------------------
# Exact power-scaled posteriors against brute force
# --------------------------------------------------------------------------------------------
def _gl(lo: float, hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    u, w = special.roots_legendre(n)
    return 0.5 * (hi - lo) * u + 0.5 * (hi + lo), 0.5 * (hi - lo) * w


def brute_force(spec: ModelSpec, prior_power: float, lik_power: np.ndarray) -> dict[str, float]:
    """Moments of mu, delta, tau and P(mu < log 0.8) of
    p(mu)^a p(delta)^a p(tau)^a prod_i int N(y_i; theta_i, se_i^2)^l_i N(theta_i; mu + delta nr_i, tau^2) dtheta_i
    on a 3-D Gauss-Legendre grid. The theta integral of a normal power is analytic:
    N(y; theta, s^2)^l ∝ N(y; theta, s^2 / l) (constants in theta dropped), so the study term is
    N(y_i; mu + delta nr_i, s_i^2 / l_i + tau^2)."""
    cut = math.log(0.8)  # split the mu rule there, so that P(mu < log 0.8) is a smooth integral
    (m1, w1), (m2, w2) = _gl(-3.0, cut, 50), _gl(cut, 2.5, 50)
    mu, wm = np.concatenate([m1, m2]), np.concatenate([w1, w2])
    de, wd = _gl(-2.5, 2.0, 70)
    ta, wt = _gl(0.0, 4.0, 80)
    M, D, T = np.meshgrid(mu, de, ta, indexing="ij")
    logp = prior_power * (
        spec.priors.mu.logpdf(M) + spec.priors.delta.logpdf(D) + spec.priors.tau.logpdf(T)
    )
    for i in range(Y.size):
        v = SE[i] ** 2 / lik_power[i] + T**2
        logp = logp + stats.norm.logpdf(Y[i], M + D * NR[i], np.sqrt(v))
    w = np.exp(logp - logp.max()) * wm[:, None, None] * wd[None, :, None] * wt[None, None, :]
    w /= w.sum()

    def mom(a):
        m = float((w * a).sum())
        return m, math.sqrt(float((w * (a - m) ** 2).sum()))

    out = {}
    for name, a in (("mu", M), ("delta", D), ("tau", T)):
        out[f"{name}_mean"], out[f"{name}_sd"] = mom(a)
    out["p_below"] = float(w[: m1.size].sum())
    return out


CASES = [
    ("prior", 0.5),
    pytest.param("prior", 2.0, marks=pytest.mark.slow),
    pytest.param("likelihood", 0.5, marks=pytest.mark.slow),
    ("nonrandomised_likelihood", 2.0),
]


@pytest.mark.parametrize(("component", "alpha"), CASES)
def test_powerscaled_posterior_matches_brute_force(component, alpha):
    spec = ModelSpec("bias")
    data = small_data(spec)
    lik = np.ones(Y.size)
    if component == "likelihood":
        lik[:] = alpha
    elif component == "nonrandomised_likelihood":
        lik[NR] = alpha
    ref = brute_force(spec, alpha if component == "prior" else 1.0, lik)
    post = powerscaled_posterior(data, spec, component, alpha)
    got = {}
    for name in ("mu", "delta"):
        mix = post.linear(post.contrast(name))
        got[f"{name}_mean"], got[f"{name}_sd"] = mix.mean(), mix.sd()
    got["tau_mean"], got["tau_sd"] = post.tau_mean(), post.tau_sd()
    got["p_below"] = float(post.linear(post.contrast("mu")).cdf(math.log(0.8)))
    for key, value in ref.items():
        # brute-force grid error < 1e-5 here; the scaled posteriors differ from the base by > 1e-3
        assert got[key] == pytest.approx(value, abs=5e-5), key
    base = exact_posterior(data, spec)
    assert abs(base.tau_mean() - got["tau_mean"]) + abs(base.linear(base.contrast("mu")).mean() - got["mu_mean"]) > 1e-3


@pytest.mark.parametrize(
    ("prior", "alpha", "closed_form"),
    [("halfnormal(0.5)", 0.5, "halfnormal(0.7071067811865476)"), ("exponential(2)", 1.5, "exponential(3)")],
)
def test_tau_prior_reweighting_equals_refit_with_the_powered_prior(prior, alpha, closed_form):
    """halfnormal(s)^a ∝ halfnormal(s / sqrt(a)); exponential(r)^a ∝ exponential(a r)."""
    spec = with_prior(ModelSpec("bias"), tau=prior)
    data = small_data(spec)
    post, cut = reweight_tau_prior(exact_posterior(data, spec), spec.priors.tau, alpha)
    ref = exact_posterior(data, with_prior(spec, tau=closed_form))
    assert not cut
    assert post.tau_mean() == pytest.approx(ref.tau_mean(), rel=1e-6)
    assert post.tau_cdf(0.2) == pytest.approx(float(ref.tau_cdf(0.2)), abs=1e-6)
    x = np.linspace(-1, 0.5, 7)
    mu, mu_ref = post.linear(post.contrast("mu")), ref.linear(ref.contrast("mu"))
    np.testing.assert_allclose(mu.cdf(x), mu_ref.cdf(x), atol=1e-7)


# --------------------------------------------------------------------------------------------
# Two variance parameters (random and three-level bias variants): the 2-D grid
# --------------------------------------------------------------------------------------------
def _rule(pieces: list[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ws = zip(*(_gl(a, b, n) for a, b, n in pieces), strict=True)
    return np.concatenate(xs), np.concatenate(ws)


#: P(kappa < KAPPA_CUT) is compared (the kappa rule is split there).
KAPPA_CUT = 0.2


def brute_force_random(spec: ModelSpec, prior_power: float, lik_power: np.ndarray, *, kappa_power: float | None = None) -> dict[str, float]:
    """Moments of mu, delta, tau, kappa, P(mu < log 0.8) and P(kappa < KAPPA_CUT) of the
    random-bias model with its priors and likelihood raised to powers, by 4-D Gauss-Legendre
    quadrature of its definition,

        p(mu)^a p(delta)^a p(tau)^a p(kappa)^a_k prod_i N(y_i; mu + delta nr_i, se_i^2 / l_i + tau^2 + kappa^2 nr_i)

    (the study effects theta_i and biases integrated out as in :func:`brute_force`; the priors'
    log densities multiplied by the powers, not refitted). Composite rules: dense where the
    posterior is, coarse out to mu = +-8 and delta = +-5 (where tau is large mu and delta
    follow their priors). Measured: these 0.8 x rules are within 3e-6 of rules 1.25 times
    finer (at most 7e-5 in kappa at prior power 2)."""
    cut = math.log(0.8)
    mu, wm = _rule([(-1.3, cut, 28), (-8.0, -1.3, 12), (cut, 1.0, 28), (1.0, 8.0, 12)])
    below = 40  # the first 40 mu nodes lie below log 0.8
    de, wd = _rule([(-2.3, 1.7, 57), (-5.0, -2.3, 9), (1.7, 5.0, 9)])
    ta, wt = _rule([(0.0, 0.6, 12), (0.6, 4.0, 12)])
    ka, wk = _rule([(0.0, KAPPA_CUT, 9), (KAPPA_CUT, 2.5, 12)])
    kappa_power = prior_power if kappa_power is None else kappa_power
    v = SE**2 / lik_power
    lp_m = prior_power * spec.priors.mu.logpdf(mu)
    lp_d = prior_power * spec.priors.delta.logpdf(de)
    lp_t = prior_power * spec.priors.tau.logpdf(ta)
    lp_k = kappa_power * spec.priors.kappa.logpdf(ka)
    rct = sum(stats.norm.logpdf(Y[i], mu[:, None], np.sqrt(v[i] + ta[None, :] ** 2)) for i in np.flatnonzero(~NR))
    mean_nr = mu[:, None] + de[None, :]
    logp = np.empty((mu.size, de.size, ta.size, ka.size))
    for j, t in enumerate(ta):
        sd = np.sqrt(v[NR][:, None] + t**2 + ka[None, :] ** 2)
        nr = sum(stats.norm.logpdf(y, mean_nr[:, :, None], s[None, None, :]) for y, s in zip(Y[NR], sd, strict=True))
        logp[:, :, j, :] = nr + rct[:, j][:, None, None] + lp_t[j]
    logp += lp_m[:, None, None, None] + lp_d[None, :, None, None] + lp_k[None, None, None, :]
    w = np.exp(logp - logp.max())
    w *= wm[:, None, None, None] * wd[None, :, None, None] * wt[None, None, :, None] * wk[None, None, None, :]
    w /= w.sum()
    out = {}
    axes = {"mu": mu[:, None, None, None], "delta": de[None, :, None, None], "tau": ta[None, None, :, None], "kappa": ka[None, None, None, :]}
    for name, a in axes.items():
        m = float((w * a).sum())
        out[f"{name}_mean"], out[f"{name}_sd"] = m, math.sqrt(float((w * (a - m) ** 2).sum()))
    out["p_below"] = float(w[:below].sum())
    out["kappa_cdf"] = float(w[:, :, :, :9].sum())
    return out


def _summaries_2d(post) -> dict[str, float]:
    got = {}
    for name in ("mu", "delta"):
        mix = post.linear(post.contrast(name))
        got[f"{name}_mean"], got[f"{name}_sd"] = mix.mean(), mix.sd()
    got["tau_mean"], got["tau_sd"] = post.tau_mean(), post.tau_sd()
    m = float(post.weights @ post.kappa)
    got["kappa_mean"], got["kappa_sd"] = m, math.sqrt(float(post.weights @ (post.kappa - m) ** 2))
    got["p_below"] = float(post.linear(post.contrast("mu")).cdf(math.log(0.8)))
    got["kappa_cdf"] = float(kappa_cdf(post, KAPPA_CUT))
    return got


CASES_2D = [
    ("prior", 0.5),
    pytest.param("prior", 2.0, marks=pytest.mark.slow),
    pytest.param("likelihood", 0.5, marks=pytest.mark.slow),
    pytest.param("nonrandomised_likelihood", 2.0, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("component", "alpha"), CASES_2D)
def test_powerscaled_random_bias_matches_brute_force(component, alpha):
    """The random bias variant (an ExactPosterior2D over (tau, kappa)) power-scaled, against
    4-D brute-force quadrature of the scaled model. Measured agreement: 2e-7 (prior 0.5),
    3e-6 (prior 2, kappa SD; the brute force's own error), 1e-7 (likelihood 0.5), 3e-6 (non-
    randomised likelihood 2). The prior case must scale kappa's prior too: the brute force with
    kappa's prior left alone is far from it (the earlier tau-only reweighting)."""
    spec = ModelSpec("bias", bias_variant="random")
    data = small_data(spec)
    lik = np.ones(Y.size)
    if component == "likelihood":
        lik[:] = alpha
    elif component == "nonrandomised_likelihood":
        lik[NR] = alpha
    ref = brute_force_random(spec, alpha if component == "prior" else 1.0, lik)
    got = _summaries_2d(powerscaled_posterior(data, spec, component, alpha))
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=2e-5), key
    base = _summaries_2d(exact_posterior(data, spec))
    assert max(abs(base[k] - got[k]) for k in ("mu_mean", "tau_mean", "kappa_mean")) > 1e-3
    if component == "prior":
        tau_only = brute_force_random(spec, alpha, lik, kappa_power=1.0)
        assert abs(tau_only["kappa_mean"] - got["kappa_mean"]) > 1e-2


@pytest.mark.parametrize("variant", ["random", "three-level"])
def test_2d_prior_reweighting_equals_refit_with_the_powered_priors(variant):
    """halfnormal(s)^a ∝ halfnormal(s / sqrt(a)) for tau and kappa, normal(m, s)^a ∝ normal(m,
    s / sqrt(a)) for mu (and delta): the reweighted 2-D posterior (on the base grid) equals a
    refit with the powered priors (on a grid placed for them), for both variants."""
    alpha = 0.7
    spec = with_prior(ModelSpec("bias", bias_variant=variant), tau="halfnormal(0.4)", kappa="halfnormal(0.3)")
    data = small_data(spec)
    post = powerscaled_posterior(data, spec, "prior", alpha)
    r = math.sqrt(alpha)
    powered = {"tau": f"halfnormal({0.4 / r!r})", "kappa": f"halfnormal({0.3 / r!r})", "mu": f"normal(0, {1 / r!r})"}
    if variant == "random":
        powered["delta"] = f"normal(0, {0.5 / r!r})"
    ref = exact_posterior(data, with_prior(spec, **powered))
    assert post.tau_mean() == pytest.approx(ref.tau_mean(), abs=2e-6)
    assert float(post.weights @ post.kappa) == pytest.approx(float(ref.weights @ ref.kappa), abs=2e-6)
    x = np.array([0.05, 0.1, 0.2, 0.4])
    np.testing.assert_allclose(kappa_cdf(post, x), kappa_cdf(ref, x), atol=2e-6)
    np.testing.assert_allclose(post.tau_cdf(x), ref.tau_cdf(x), atol=2e-6)
    for name in ("mu", "delta"):
        a, b = post.linear(post.contrast(name)), ref.linear(ref.contrast(name))
        np.testing.assert_allclose(a.cdf(np.linspace(-1, 0.5, 7)), b.cdf(np.linspace(-1, 0.5, 7)), atol=2e-6)
    base = exact_posterior(data, spec)
    assert abs(float(base.weights @ base.kappa) - float(post.weights @ post.kappa)) > 1e-3


@pytest.mark.parametrize("variant", ["random", pytest.param("three-level", marks=pytest.mark.slow)])
def test_2d_psense_has_a_kappa_row(variant):
    spec = ModelSpec("bias", bias_variant=variant)
    res = psense_exact(small_data(spec), spec)
    names = [r.parameter for r in res.rows]
    assert names[:4] == ["mu", "tau", "delta", "kappa"]
    kappa = res.rows[3]
    assert kappa.prior > 0 and kappa.likelihood >= 0 and kappa.nonrandomised_likelihood is not None
    assert res.to_json()["priors"]["kappa"].startswith("half-normal")


def test_kappa_cdf_inverts_kappa_ppf():
    spec = ModelSpec("bias", bias_variant="random")
    post = exact_posterior(small_data(spec), spec)
    q = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(kappa_cdf(post, post.kappa_ppf(q)), q, atol=1e-7)


def test_scale_data_powers_the_right_studies():
    data = small_data(ModelSpec("bias"))
    np.testing.assert_allclose(scale_data(data, likelihood=4.0).se, SE / 2)
    np.testing.assert_allclose(scale_data(data, nonrandomised=4.0).se, np.where(NR, SE / 2, SE))


def test_exact_sensitivity_without_heterogeneity_matches_closed_form():
    """With tau ~ uniform(1e-6, 1e-5) the re model is the normal-normal model up to ~1e-8
    (tau^2 / se^2): mu | y ~ N(m_a, v_a) in closed form under either power; the sensitivity is
    then the CJS of closed-form normals over the base posterior's expected range of 8000 draws
    (Blom positions)."""
    spec = with_prior(ModelSpec("re"), tau="uniform(1e-6, 1e-5)")
    data = small_data(spec)
    res = psense_exact(data, spec)
    m0, s0 = spec.priors.mu.params

    def posterior(prior_power: float, lik_power: np.ndarray) -> stats.rv_continuous:
        prec = prior_power / s0**2 + np.sum(lik_power / SE**2)
        mean = (prior_power * m0 / s0**2 + np.sum(lik_power * Y / SE**2)) / prec
        return stats.norm(mean, 1 / math.sqrt(prec))

    base = posterior(1.0, np.ones(Y.size))
    p_lo = 0.625 / 8000.25
    x = np.linspace(base.ppf(p_lo), base.ppf(1 - p_lo), 8001)
    lo, hi = ALPHAS
    expected = {
        "prior": sensitivity_from_cdfs(x, base.cdf(x), posterior(lo, np.ones(6)).cdf(x), posterior(hi, np.ones(6)).cdf(x)),
        "likelihood": sensitivity_from_cdfs(x, base.cdf(x), posterior(1, np.full(6, lo)).cdf(x), posterior(1, np.full(6, hi)).cdf(x)),
        "nonrandomised_likelihood": sensitivity_from_cdfs(
            x, base.cdf(x), posterior(1, np.where(NR, lo, 1.0)).cdf(x), posterior(1, np.where(NR, hi, 1.0)).cdf(x)
        ),
    }
    row = res.rows[0]
    assert row.parameter == "mu"
    assert row.prior == pytest.approx(expected["prior"], rel=1e-5)
    assert row.likelihood == pytest.approx(expected["likelihood"], rel=1e-5)
    assert row.nonrandomised_likelihood == pytest.approx(expected["nonrandomised_likelihood"], rel=1e-5)


def test_conflicting_prior_is_flagged():
    """Tight priors on mu (HR 1.65) and tau (no heterogeneity) against data near HR 0.75: both
    sensitivities of mu high. With the tight mu prior alone the random-effects model absorbs the
    conflict in tau: mu then follows its prior (prior dominates, likelihood sensitivity ~0)."""
    spec = with_prior(ModelSpec("re"), mu="normal(0.5, 0.1)", tau="halfnormal(0.05)")
    res = psense_exact(small_data(spec), spec)
    rows = {r.parameter: r for r in res.rows}
    assert rows["mu"].prior > 0.2 and rows["mu"].likelihood > 0.05
    assert rows["mu"].diagnosis.startswith(CONFLICT)
    assert res.conflict and "prior-data conflict" in res.summary
    assert rows["P(HR < 0.8)"].diagnosis == PROBABILITY
    spec = with_prior(ModelSpec("re"), mu="normal(0.5, 0.1)")
    res = psense_exact(small_data(spec), spec)
    assert res.rows[0].diagnosis.startswith(PRIOR_DOMINATES) and "The prior dominates for mu" in res.summary
    # the default, weak prior: no conflict on mu
    weak = psense_exact(small_data(ModelSpec("re")), ModelSpec("re"))
    assert weak.rows[0].diagnosis.startswith("no concern")


def test_alpha_curve_base_rows_equal_the_fit():
    spec = ModelSpec("bias")
    data = small_data(spec)
    res = psense_exact(data, spec)
    ref = exact_posterior(data, spec).linear(np.array([1.0, 0.0]))
    for p in (p for p in res.alpha_curve if p.alpha == 1.0):
        assert p.hr_median == pytest.approx(math.exp(float(ref.ppf(0.5))), rel=1e-9)
        assert p.p_hr_below["0.8"] == pytest.approx(float(ref.cdf(math.log(0.8))), rel=1e-9)
    assert {p.scaled for p in res.alpha_curve} == {"prior", "likelihood", "nonrandomised_likelihood"}
    frame = res.to_frame("alpha")
    assert list(frame.columns) == ["scaled", "alpha", "hr_median", "p_hr_below_0.8", "p_hr_below_1.0"]


# --------------------------------------------------------------------------------------------
# Exact sensitivities against arviz-stats on iid draws of the exact posterior
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_data
@pytest.mark.parametrize(
    ("variant", "priors"), [("additive", {}), ("additive", {"mu": "normal(0.3, 0.1)"}), ("random", {})]
)
def test_exact_sensitivity_agrees_with_arviz_psense_on_iid_draws(variant, priors):
    """psense on 4 x 2000 iid draws (the REFERENCE_DRAWS the exact range uses) over 4 seeds:
    the mean within 4 standard errors of the exact value, plus 0.006 for the positive bias of a
    Monte Carlo CJS near 0 (measured: ~0.005 for an exact 0.002). The random bias variant's
    draws come from its 2-D grid posterior and carry kappa, whose prior psense scales with the
    others (the exact engine: tau and kappa reweighted on the 2-D grid)."""
    import logging

    from arviz_stats import psense_summary

    table = load_dataset("dnmbc_lrt")
    spec = ModelSpec("bias", bias_variant=variant, priors=resolve_priors(priors))
    data = ModelData.from_table(table, spec)
    exact = {r.parameter: r for r in psense_exact(data, spec).rows}
    result = fit(table, spec, engine="exact")
    names = ["mu", "tau", "delta"] + (["kappa"] if variant == "random" else []) + ["HR"]
    got = {c: {n: [] for n in names} for c in ("prior", "likelihood", "nonrandomised_likelihood")}
    logging.getLogger("arviz_stats.psense").setLevel(logging.ERROR)
    for seed in range(4):
        dt = result.to_datatree(draws=2000, chains=4, seed=seed)
        tree = with_log_densities(dt, data, spec)
        if seed == 0:  # the log prior is the PyMC engine's (task D's) definition, number for number
            from synthesis.models.pymc_fit import log_prior_dataset

            theirs = log_prior_dataset(dt, spec)
            for v in theirs.data_vars:
                np.testing.assert_allclose(tree["log_prior"][v].values, theirs[v].values, rtol=1e-12)
        summary = psense_summary(tree, var_names=names, round_to=12)
        ours = {r.parameter: r for r in psense_draws(dt, data, spec, engine="draws").rows}
        for n in names:
            got["prior"][n].append(summary.loc[n, "prior"])
            got["likelihood"][n].append(summary.loc[n, "likelihood"])
            got["nonrandomised_likelihood"][n].append(ours[n].nonrandomised_likelihood)
            assert ours[n].prior == pytest.approx(summary.loc[n, "prior"], abs=1e-9)
    for comp, by_name in got.items():
        for n, values in by_name.items():
            v = np.array(values)
            se = v.std(ddof=1) / math.sqrt(v.size)
            want = getattr(exact[n], comp)
            assert abs(v.mean() - want) < 4 * se + 0.006, (comp, n, v, want)
    if priors:
        assert exact["mu"].diagnosis.startswith(CONFLICT)


@pytest.mark.slow
@needs_data
def test_pymc_fit_psense_close_to_exact():
    """psense on a real NUTS fit (the PyMC engine) agrees with the exact numbers up to Monte
    Carlo error (4 x 1000 draws: generous tolerance 0.03 + 25%)."""
    table = load_dataset("dnmbc_lrt")
    spec = ModelSpec("bias")
    res = power_scale(table, spec, engine="pymc", fit_options={"chains": 4, "draws": 1000, "tune": 1000, "seed": 1})
    exact = {r.parameter: r for r in psense_exact(ModelData.from_table(table, spec), spec).rows}
    assert res.engine == "pymc"
    for r in res.rows:
        if r.parameter in ("mu", "tau", "delta", "HR"):
            for comp in ("prior", "likelihood", "nonrandomised_likelihood"):
                want = getattr(exact[r.parameter], comp)
                assert abs(getattr(r, comp) - want) < 0.03 + 0.25 * want, (r.parameter, comp)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
@needs_data
def test_cli_json_contract(capsys):
    code = main(["psense", "--json", "--threshold", "0.8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert {"engine", "model", "rows", "alpha_curve", "conflict", "summary"} <= set(doc)
    assert doc["engine"] == "exact" and doc["model"] == "bias"
    assert set(doc["rows"][0]) == {"parameter", "prior", "likelihood", "nonrandomised_likelihood", "diagnosis"}
    assert [r["parameter"] for r in doc["rows"]] == ["mu", "tau", "delta", "HR", "P(HR < 0.8)"]
    assert set(doc["alpha_curve"][0]) == {"scaled", "alpha", "hr_median", "p_hr_below"}
    assert set(doc["alpha_curve"][0]["p_hr_below"]) == {"0.8"}
    assert isinstance(doc["conflict"], bool) and doc["summary"]


@needs_data
def test_cli_falls_back_to_re_without_both_designs(capsys):
    code = main(["psense", "--subset", "rct", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "re"
    assert "fitted 're' instead" in doc["notes"][0] and "fitted 're' instead" in err
    assert all(r["nonrandomised_likelihood"] is None for r in doc["rows"])


@needs_data
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subset", "rct", "--model", "bias"], "needs at least one non-randomised study"),
        (["--mu-prior", "studentt(3, 0, 1)"], "use --engine pymc"),
    ],
)
def test_cli_refuses_with_exit_2(capsys, args, message):
    code = main(["psense", *args])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err and "Traceback" not in err


def test_cli_bad_sensitivity_threshold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["psense", "--sensitivity-threshold", "0"])
    assert exc.value.code == 2
    assert "--sensitivity-threshold" in capsys.readouterr().err


# --- the summary agrees with the rows (issue #11 review) -----------------------------------
def _row(name, p, lik, nr=None, prob=False):
    from synthesis.models.powerscale import PROBABILITY, SensitivityRow, diagnose

    return SensitivityRow(name, p, lik, nr, PROBABILITY if prob else diagnose(p, lik, nr, 0.05))


def _curve(move):
    from synthesis.models.powerscale import AlphaPoint

    return [
        AlphaPoint("prior", 1.0, 0.9, {"1.0": 0.9}),
        AlphaPoint("nonrandomised_likelihood", 0.5, 0.9, {"1.0": 0.9 - move}),
        AlphaPoint("nonrandomised_likelihood", 2.0, 0.9, {"1.0": 0.9 + move}),
    ]


def test_summary_probability_row_with_both_sensitivities_is_named_not_hidden():
    from synthesis.models.powerscale import _summary

    rows = [_row("mu", 0.01, 0.2), _row("P(HR < 1)", 0.065, 0.125, prob=True)]
    conflict, text = _summary(rows, [], 0.05)
    assert not conflict
    assert "Judged on the parameters and HR (mu)" in text and "below 0.05" in text
    assert "shown for information" in text and "P(HR < 1) has both its prior (0.065) and likelihood (0.125)" in text
    # no clause claiming every prior sensitivity goes with a larger likelihood sensitivity
    assert "goes with a likelihood sensitivity" not in text


def test_summary_conflict_and_dominance_only_from_judged_rows():
    from synthesis.models.powerscale import _summary

    rows = [_row("mu", 0.08, 0.12), _row("tau", 0.08, 0.01), _row("P(HR < 1)", 0.3, 0.3, prob=True)]
    conflict, text = _summary(rows, [], 0.05)
    assert conflict and "prior-data conflict for mu" in text and "The prior dominates for tau" in text
    assert "no prior-data conflict" not in text


def test_summary_nonrandomised_rows_named_and_bias_model_qualified():
    from synthesis.models.powerscale import _summary

    rows = [_row("mu", 0.01, 0.2, 0.01), _row("tau", 0.01, 0.2, 0.085)]
    _, text = _summary(rows, _curve(0.01), 0.05, bias_model=True)
    assert "do not drive the answer" not in text and "tau (0.085)" in text
    assert "within this model (the additive bias term absorbs their shift)" in text
    rows = [_row("mu", 0.01, 0.2, 0.01), _row("tau", 0.01, 0.2, 0.02)]
    _, text = _summary(rows, _curve(0.01), 0.05, bias_model=False)
    assert "do not drive the answer (" in text and "within this model" not in text
    _, text = _summary(rows, _curve(0.2), 0.05, bias_model=True)
    assert "drive the answer within this model" in text


def test_psense_json_has_sensitivity_threshold():
    import synthesis as syn
    from synthesis.models.powerscale import power_scale
    from synthesis.models.spec import ModelSpec

    doc = power_scale(syn.load_dataset("dnmbc_lrt"), ModelSpec("re")).to_json()
    assert doc["sensitivity_threshold"] == doc["threshold"] == 0.05


# --------------------------------------------------------------------------------------------
# Multilevel models (issue #13): the cluster's joint likelihood, tau_within's prior
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_inputs():
    from synthesis.multilevel import load_all_inputs

    return load_all_inputs()


def test_multilevel_prior_power_includes_tau_within(all_inputs):
    """halfnormal(s)^a ∝ halfnormal(s / sqrt(a)) for tau and tau_within, normal(m, s)^a for mu:
    the reweighted (tau, tau_within) posterior equals a refit with the powered priors."""
    alpha = 0.7
    r = math.sqrt(alpha)
    spec = ModelSpec("re", cluster="cohort", rho=0.5, tau_within_prior=parse_prior("halfnormal(0.3)", "tau"))
    data = ModelData.from_table(all_inputs, spec)
    post = powerscaled_posterior(data, spec, "prior", alpha)
    ref_spec = replace(
        with_prior(spec, tau=f"halfnormal({0.5 / r!r})", mu=f"normal(0, {1 / r!r})"),
        tau_within_prior=parse_prior(f"halfnormal({0.3 / r!r})", "tau"),
    )
    ref = exact_posterior(data, ref_spec)
    assert post.tau_mean() == pytest.approx(ref.tau_mean(), abs=2e-6)
    assert float(post.weights @ post.kappa) == pytest.approx(float(ref.weights @ ref.kappa), abs=2e-6)
    x = np.array([0.05, 0.1, 0.2, 0.4])
    np.testing.assert_allclose(kappa_cdf(post, x), kappa_cdf(ref, x), atol=2e-6)
    base = exact_posterior(data, spec)  # the tau_within prior's power moves tau_within
    only_tau = exact_posterior(data, replace(ref_spec, tau_within_prior=spec.tau_within))
    assert abs(float(only_tau.weights @ only_tau.kappa) - float(post.weights @ post.kappa)) > 1e-4
    assert abs(float(base.weights @ base.kappa) - float(post.weights @ post.kappa)) > 1e-4


def test_multilevel_likelihood_power_is_each_clusters_joint_likelihood(all_inputs):
    """The likelihood raised to alpha, as psense scales it, is N(y; theta, V / alpha) with V the
    sampling covariance including its within-cluster correlation rho: at fixed (tau, tau_within)
    the scaled model's marginal likelihood is the dense N(y; X m0, V / alpha + tau^2 J +
    tau_within^2 I + X S0 X')."""
    from synthesis.models.exact import _conditional_ml, _design
    from synthesis.models.multilevel import Clusters

    alpha = 1.7
    spec = ModelSpec("bias", cluster="cohort", rho=0.5)
    data = ModelData.from_table(all_inputs, spec)
    d = _design(scale_data(data, likelihood=alpha), spec)
    tau, tw = np.array([0.1, 0.25]), np.array([0.05, 0.2])
    cond = _conditional_ml(d, tau, tw)
    c = Clusters.from_labels(data.clusters, rho=0.5)
    V = c.sampling_covariance(np.asarray(data.se)) / alpha
    same = (c.index[:, None] == c.index[None, :]).astype(float)
    d0 = _design(data, spec)
    for g in range(2):
        cov = V + tau[g] ** 2 * same + tw[g] ** 2 * np.eye(data.k) + d0.X @ np.diag(d0.s0**2) @ d0.X.T
        ref = stats.multivariate_normal(d0.X @ d0.m0, cov).logpdf(d0.y)
        assert cond.loglik[g] == pytest.approx(ref, rel=1e-11)


def test_multilevel_psense_rows_notes_and_refusals(all_inputs, capsys):
    spec = ModelSpec("bias", cluster="cohort", rho=0.5)
    data = ModelData.from_table(all_inputs, spec)
    res = psense_exact(data, spec, curve_alphas=(1.0, 2.0))
    assert [r.parameter for r in res.rows][:4] == ["mu", "tau", "delta", "tau_within"]
    doc = res.to_json()
    assert (doc["k"], doc["clusters"], doc["cluster"], doc["rho"]) == (30, 19, "cohort", 0.5)
    assert doc["priors"]["tau_within"].startswith("half-normal")
    assert any(n.startswith("multilevel model: the likelihood is scaled cluster by cluster") for n in res.notes)
    assert res.rows[0].nonrandomised_likelihood is not None  # every cohort is of one kind
    assert "k = 30 rows in 19 clusters (cohort, rho = 0.5)" in str(res)
    # a cohort with a randomised and a non-randomised row: with rho > 0 their likelihood is not a
    # separate factor, so it is not scaled on its own (said in a note); with rho = 0 it is
    nr = np.asarray(data.nonrandomised)
    labels = list(data.clusters)
    rct, obs = labels[int(np.flatnonzero(~nr)[0])], labels[int(np.flatnonzero(nr)[0])]
    merged = replace(data, clusters=tuple(rct if lab == obs else lab for lab in labels))
    res = psense_exact(merged, spec, curve_alphas=(1.0,))
    assert res.rows[0].nonrandomised_likelihood is None
    assert any("not scaled on its own: with rho = 0.5, 1 cluster" in n for n in res.notes)
    from synthesis.errors import InputError

    with pytest.raises(InputError, match="engine='exact'"):
        power_scale(all_inputs, spec, engine="pymc")


# --------------------------------------------------------------------------------------------
# Bit-reproducibility across processes
# --------------------------------------------------------------------------------------------
_PSENSE_JSON = """
import json
import synthesis as syn
from synthesis.datasets import dataset_path
a = syn.psense(syn.load_dataset("dnmbc_lrt"), bias_variant="random").to_json()
b = syn.psense(str(dataset_path("dnmbc_lrt_all_inputs")), cluster="cohort").to_json()
print(json.dumps([a, b], sort_keys=True))
"""


@pytest.mark.slow  # two fresh interpreters, ~15 s
def test_2d_psense_json_is_bit_identical_across_processes():
    """The random bias variant and a multilevel model (2-D grids) give the same JSON, digit for
    digit, in two fresh processes (scipy's BarycentricInterpolator once made the tau and kappa
    rows differ at 1e-14 from one process to the next)."""
    import subprocess
    import sys

    outs = [
        subprocess.run([sys.executable, "-c", _PSENSE_JSON], capture_output=True, text=True, check=True, timeout=300).stdout
        for _ in range(2)
    ]
    docs = json.loads(outs[0])
    assert [r["parameter"] for r in docs[0]["rows"]][:4] == ["mu", "tau", "delta", "kappa"]
    assert [r["parameter"] for r in docs[1]["rows"]][1] == "tau"
    assert outs[0] == outs[1]


def test_one_row_per_cluster_says_only_the_sum_of_variances_is_informed():
    """On the bundled one-row-per-cohort data a multilevel psense says, as fit does, that the
    data inform only tau^2 + tau_within^2; on the all-inputs set (several rows per cohort) not."""
    import synthesis as syn

    one = syn.psense(syn.load_dataset("dnmbc_lrt"), cluster="cohort")
    assert any("every cohort has one row" in n for n in one.notes)
    several = syn.psense(syn.load_dataset("dnmbc_lrt_all_inputs"), cluster="cohort")
    assert not any("every cohort has one row" in n for n in several.notes)
