"""``synthesis average`` (models/averaging.py): Bayesian model averaging with exact marginal
likelihoods, checked against an independent computation.

The reference computation here shares no code with the exact engine: each model's marginal
likelihood is the model's definition integrated with scipy's adaptive quadrature (the study effects
and the location parameters mu and delta integrated in the dense multivariate-normal form
``y ~ N(X m0, diag(se^2 + tau^2) + X S0 X')``, tau by ``scipy.integrate.quad``; one model also by a
two-dimensional Gauss-Legendre rule over (mu, tau) of the raw likelihood), and the averaged
P(HR < T) is the averaged posterior density integrated over (mu, tau) below log T (Gauss-Legendre
product rule), plus the spike where it counts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import synthesis as syn
from synthesis.cli import main
from synthesis.errors import InputError
from synthesis.models import averaging
from synthesis.models.averaging import (
    SpikeMixture,
    average_models,
    evidence_words,
    parse_prior_prob,
)
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec

#: The exact engine's quadrature changes no reported number by more than ~3e-7 relative
#: (models/exact.py, Accuracy); quad's own error is below 1e-9 here.
TOL_LOGML = 1e-6
TOL_PROB = 1e-6

# A small table: three randomised trials, two retrospective studies that look more favourable.
Y = np.array([-0.10, 0.05, -0.30, -0.45, -0.38])
SE = np.array([0.15, 0.20, 0.25, 0.10, 0.12])
NR = np.array([0, 0, 0, 1, 1], dtype=float)
MU_SD, DELTA_SD, TAU_SCALE = 1.0, 0.5, 0.5  # the default priors
TAU = stats.halfnorm(scale=TAU_SCALE)


@pytest.fixture(scope="module")
def small_table():
    frame = pd.DataFrame(
        {
            "study": [f"s{i}" for i in range(5)],
            "log_hr": Y,
            "se": SE,
            "design": ["rct", "rct", "rct", "retrospective", "retrospective"],
        }
    )
    return syn.load_studies(frame)


# --------------------------------------------------------------------------------------------
# the reference computation
# --------------------------------------------------------------------------------------------
def _mvn_logpdf(r: np.ndarray, cov: np.ndarray) -> float:
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, r)
    return float(-0.5 * (r.size * math.log(2 * math.pi) + z @ z) - np.log(np.diag(chol)).sum())


def _columns(effect: bool, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    cols, sds = [], []
    if effect:
        cols.append(np.ones_like(Y))
        sds.append(MU_SD)
    if bias:
        cols.append(NR)
        sds.append(DELTA_SD)
    X = np.column_stack(cols) if cols else np.zeros((Y.size, 0))
    return X, np.array(sds)


def _loglik_given_tau(tau: float, effect: bool, bias: bool, shift: float = 0.0, se: np.ndarray = SE) -> float:
    """log p(y - shift | tau) with the model's free location parameters integrated out (prior
    means 0), dense covariance form."""
    X, sds = _columns(effect, bias)
    cov = np.diag(se**2 + tau**2) + (X * sds**2) @ X.T
    return _mvn_logpdf(Y - shift, cov)


def brute_log_ml(effect: bool, bias: bool, het: bool, se: np.ndarray = SE) -> float:
    if not het:
        return _loglik_given_tau(0.0, effect, bias, se=se)
    ref = _loglik_given_tau(0.1, effect, bias, se=se)
    value, _ = integrate.quad(
        lambda t: TAU.pdf(t) * math.exp(_loglik_given_tau(t, effect, bias, se=se) - ref),
        0, np.inf, epsabs=0, epsrel=1e-11,
    )
    return ref + math.log(value)


#: Gauss-Legendre nodes per dimension of the reference's 2-D integrals (doubling them changes
#: the probabilities below by < 1e-12).
GL_NODES = 200
TAU_MAX = 5.0  # halfnormal(0.5) puts < 1e-23 beyond
MU_MIN = -6.0  # the posteriors of mu here have SD < 0.3 around -0.4 to 0


def _gauss_legendre(a: float, b: float, n: int = GL_NODES) -> tuple[np.ndarray, np.ndarray]:
    x, w = special.roots_legendre(n)
    return 0.5 * (b - a) * x + 0.5 * (b + a), 0.5 * (b - a) * w


def _log_density_mu_tau(mu: np.ndarray, tau: np.ndarray, bias: bool) -> np.ndarray:
    """log [p(mu) p(tau) p(y | mu, tau)] on the grid mu x tau (delta integrated in the dense form)."""
    X, sds = _columns(False, bias)
    out = np.empty((mu.size, tau.size))
    for j, t in enumerate(tau):
        chol = np.linalg.cholesky(np.diag(SE**2 + t**2) + (X * sds**2) @ X.T)
        zy, z1 = np.linalg.solve(chol, Y), np.linalg.solve(chol, np.ones_like(Y))
        z = zy[None, :] - mu[:, None] * z1[None, :]
        out[:, j] = -0.5 * (Y.size * math.log(2 * math.pi) + (z * z).sum(axis=1)) - np.log(np.diag(chol)).sum()
    return out + stats.norm.logpdf(mu, 0, MU_SD)[:, None] + TAU.logpdf(tau)[None, :]


def brute_p_mu_below(c: float, bias: bool, het: bool, log_ml: float) -> float:
    """P(mu < c | y, M) of an effect model: the joint posterior density of (mu, tau), delta
    integrated analytically, integrated over mu < c (and tau) by Gauss-Legendre rules."""
    mu, wm = _gauss_legendre(MU_MIN, c)
    if not het:
        dens = np.exp(_log_density_mu_tau(mu, np.array([0.0]), bias)[:, 0] - TAU.logpdf(0.0) - log_ml)
        return float(wm @ dens)
    tau, wt = _gauss_legendre(0.0, TAU_MAX)
    return float(wm @ np.exp(_log_density_mu_tau(mu, tau, bias) - log_ml) @ wt)


SPACE = [(e, b, h) for e in (False, True) for b in (False, True) for h in (False, True)]


@pytest.fixture(scope="module")
def reference():
    log_ml = {m: brute_log_ml(*m) for m in SPACE}
    v = np.array([log_ml[m] for m in SPACE])
    post = np.exp(v - v.max())
    post /= post.sum()
    return log_ml, dict(zip(SPACE, post, strict=True))


@pytest.fixture(scope="module")
def result(small_table):
    return average_models(small_table, thresholds=(0.8, 1.0, 1.2))


# --------------------------------------------------------------------------------------------
# against the reference
# --------------------------------------------------------------------------------------------
def test_the_dense_form_is_the_model_definition():
    """The reference's own check: the random-effects model's marginal likelihood by a
    two-dimensional quadrature of prior x likelihood over (mu, tau), nothing integrated
    analytically except the study effects."""

    mu, wm = _gauss_legendre(-3.0, 3.0, 3 * GL_NODES)  # the likelihood's width in mu is ~0.1
    tau, wt = _gauss_legendre(0.0, TAU_MAX)
    sd = np.sqrt(SE[None, None, :] ** 2 + tau[None, :, None] ** 2)
    loglik = stats.norm.logpdf(Y[None, None, :], mu[:, None, None], sd).sum(axis=2)
    joint = np.exp(loglik + stats.norm.logpdf(mu, 0, MU_SD)[:, None] + TAU.logpdf(tau)[None, :])
    assert math.log(wm @ joint @ wt) == pytest.approx(brute_log_ml(True, False, True), abs=1e-8)


def test_log_marginal_likelihoods_and_posterior_probabilities(result, reference):
    log_ml, post = reference
    assert len(result.models) == 8
    for m in result.models:
        key = (m.effect, m.bias, m.heterogeneity)
        assert m.log_marginal_likelihood == pytest.approx(log_ml[key], abs=TOL_LOGML), key
        assert m.posterior_prob == pytest.approx(post[key], abs=TOL_PROB), key
        assert m.prior_prob == pytest.approx(1 / 8)
        assert m.bias_variant == ("additive" if m.bias else None)


def test_downweight_and_several_variants(small_table, reference):
    """The downweight variant (non-randomised variances / alpha, no delta) against the reference,
    averaged with the additive one: the bias inclusion probability is split between them."""
    log_ml, _ = reference
    alpha = 0.4
    res = average_models(
        small_table, ModelSpec(bias_variant="downweight", alpha=alpha), bias_variants="additive,downweight"
    )
    assert len(res.models) == 12
    se_dw = np.where(NR > 0, SE / math.sqrt(alpha), SE)
    for m in res.models:
        if m.bias_variant == "downweight":
            expected = brute_log_ml(m.effect, False, m.heterogeneity, se=se_dw)
            assert m.prior_prob == pytest.approx(1 / 16)
        else:
            expected = log_ml[(m.effect, m.bias, m.heterogeneity)]
            assert m.prior_prob == pytest.approx(1 / 16 if m.bias else 1 / 8)
        assert m.log_marginal_likelihood == pytest.approx(expected, abs=TOL_LOGML), m.label


def test_html(small_table):
    html = average_models(small_table)._repr_html_()
    assert html.count("<table") == 3 and "Inclusion Bayes factors" in html


def test_inclusion_bayes_factors(result, reference):
    _, post = reference
    for i, name in enumerate(("effect", "bias", "heterogeneity")):
        inc = sum(p for m, p in post.items() if m[i])
        assert result.posterior_inclusion[name] == pytest.approx(inc, abs=TOL_PROB)
        # prior odds 1: the BF is the posterior inclusion odds
        assert result.inclusion_bf[name] == pytest.approx(inc / (1 - inc), rel=1e-5)


def test_averaged_probabilities_below_thresholds(result, reference):
    log_ml, post = reference
    spike = sum(p for m, p in post.items() if not m[0])
    assert result.averaged.spike == pytest.approx(spike, abs=TOL_PROB)
    effect_models = [m for m in SPACE if m[0]]
    for t in (0.8, 1.0, 1.2):
        cont = {m: brute_p_mu_below(math.log(t), m[1], m[2], log_ml[m]) for m in effect_models}
        expected = sum(post[m] * cont[m] for m in effect_models) + (spike if t > 1 else 0.0)
        assert result.averaged.p_below[repr(t)] == pytest.approx(expected, abs=1e-6), t
        total = sum(post[m] for m in effect_models)
        given = sum(post[m] * cont[m] for m in effect_models) / total
        assert result.averaged_given_effect.p_below[repr(t)] == pytest.approx(given, abs=1e-6), t


def test_each_model_matches_fit_exact(small_table, result):
    """A model's own HR is the exact engine's fit of that model (effect + heterogeneity ones)."""
    for m in result.models:
        if m.effect and m.heterogeneity:
            spec = ModelSpec("bias" if m.bias else "re")
            fit = fit_exact(ModelData.from_table(small_table, spec), spec, thresholds=(0.8, 1.0, 1.2))
            assert m.hr.median == pytest.approx(fit.hr.median, rel=1e-9)
            assert m.hr.q975 == pytest.approx(fit.hr.q975, rel=1e-9)
            assert m.hr.p_below == pytest.approx(fit.p_hr_below, abs=1e-12)


# --------------------------------------------------------------------------------------------
# invariances
# --------------------------------------------------------------------------------------------
def test_prior_probability_one_reproduces_that_models_fit():
    table = syn.load_dataset("dnmbc_lrt")
    res = average_models(table, prior_prob="effect=1,bias=1,heterogeneity=1")
    spec = ModelSpec("bias")
    fit = fit_exact(ModelData.from_table(table, spec), spec)
    chosen = [m for m in res.models if m.posterior_prob > 0]
    assert [(m.effect, m.bias, m.heterogeneity) for m in chosen] == [(True, True, True)]
    assert chosen[0].posterior_prob == 1.0
    for got in (res.averaged, res.averaged_given_effect):
        assert got.spike == 0.0
        assert (got.median, got.q025, got.q975) == pytest.approx((fit.hr.median, fit.hr.q025, fit.hr.q975), rel=1e-9)
        assert got.p_below == pytest.approx(fit.p_hr_below, abs=1e-12)
    assert res.inclusion_bf == {"effect": None, "bias": None, "heterogeneity": None}


class _SameEvidence:
    """An exact posterior whose log marginal likelihood is replaced by a constant."""

    def __init__(self, post):
        self._post = post
        self.log_marginal_likelihood = -12.5

    def __getattr__(self, name):
        return getattr(self._post, name)


def test_equal_marginal_likelihoods_give_the_prior_back(monkeypatch, small_table):
    real = averaging.exact_posterior
    monkeypatch.setattr(averaging, "exact_posterior", lambda data, spec: _SameEvidence(real(data, spec)))
    res = average_models(small_table, prior_prob="effect=0.2,bias=0.7,heterogeneity=0.4")
    for m in res.models:
        assert m.posterior_prob == pytest.approx(m.prior_prob, rel=1e-12)
    assert res.prior_inclusion == pytest.approx({"effect": 0.2, "bias": 0.7, "heterogeneity": 0.4})
    assert res.inclusion_bf == pytest.approx({"effect": 1.0, "bias": 1.0, "heterogeneity": 1.0}, rel=1e-12)


def test_no_bias_dimension_without_both_designs():
    table = syn.load_dataset("dnmbc_lrt", subset="rct")
    res = average_models(table)
    assert res.components == ("effect", "heterogeneity")
    assert len(res.models) == 4 and not any(m.bias for m in res.models)
    assert res.to_json()["inclusion_bf"]["bias"] is None
    assert any("no design-bias dimension" in n for n in res.notes)


def test_posterior_probabilities_are_stable_far_apart(monkeypatch, small_table):
    """log MLs 2000 apart: plain exponentiation would overflow; log-sum-exp does not."""
    real = averaging.exact_posterior

    def far(data, spec):
        wrapped = _SameEvidence(real(data, spec))
        wrapped.log_marginal_likelihood = 1000.0 if spec.effect and spec.heterogeneity and spec.has_bias else -1000.0
        return wrapped

    monkeypatch.setattr(averaging, "exact_posterior", far)
    res = average_models(small_table)
    probs = [m.posterior_prob for m in res.models]
    assert max(probs) == 1.0 and sorted(probs)[-2] == 0.0
    assert all(math.isfinite(v) for v in res.log_inclusion_bf.values())
    # effect: 1000 against log(4 exp(-1000)) = -1000 + log 4
    assert res.log_inclusion_bf["effect"] == pytest.approx(2000.0 - math.log(4.0), abs=1e-9)
    assert res.to_json()["inclusion_bf"]["effect"] is None  # infinite -> null in JSON


# --------------------------------------------------------------------------------------------
# the spike, and the argument parsers
# --------------------------------------------------------------------------------------------
def test_spike_quantiles_and_strict_probabilities():
    # 0.3 at 0, 0.7 N(-1, 0.5^2): F(0-) = 0.7 Phi(2) = 0.6841, F(0) = 0.9841
    mix = SpikeMixture(np.array([1.0]), np.array([-1.0]), np.array([0.5]), spike=0.3)
    below = 0.7 * stats.norm.cdf(2.0)
    assert float(mix.cdf(0.0, strict=True)) == pytest.approx(below, abs=1e-15)
    assert float(mix.cdf(0.0)) == pytest.approx(below + 0.3, abs=1e-15)
    q = mix.ppf([0.5, 0.7, 0.975, 0.99])
    assert q[0] == pytest.approx(-1 + 0.5 * stats.norm.ppf(0.5 / 0.7), abs=1e-10)
    assert q[1] == 0.0 and q[2] == 0.0  # on the spike
    assert q[3] == pytest.approx(-1 + 0.5 * stats.norm.ppf((0.99 - 0.3) / 0.7), abs=1e-10)


@pytest.mark.parametrize(
    "text, message",
    [
        ("effect=1.5", "effect must be a probability in [0, 1]"),
        ("effect=-0.1", "must be a probability"),
        ("effect=nan", "must be a probability"),
        ("size=0.5", "unknown component 'size'"),
        ("effect", "expected COMPONENT=PROBABILITY"),
        ("effect=0.5,effect=0.4", "effect given twice"),
    ],
)
def test_bad_prior_prob(text, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_prior_prob(text)


def test_evidence_words():
    assert evidence_words(2.9) == "anecdotal evidence for"
    assert evidence_words(3.0) == "moderate evidence for"
    assert evidence_words(1 / 12) == "strong evidence against"
    assert evidence_words(150.0) == "extreme evidence for"
    assert evidence_words(0.0) == "extreme evidence against"


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def test_cli_json_contract(capsys):
    code = main(["average", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert {"models", "inclusion_bf", "averaged", "averaged_given_effect"} <= set(doc)
    assert len(doc["models"]) == 8
    for m in doc["models"]:
        assert {"effect", "bias", "heterogeneity", "bias_variant", "log_marginal_likelihood",
                "prior_prob", "posterior_prob"} <= set(m)
    assert set(doc["inclusion_bf"]) == {"effect", "bias", "heterogeneity"}
    for key in ("averaged", "averaged_given_effect"):
        assert {"hr_median", "hr_q025", "hr_q975", "p_hr_below"} <= set(doc[key])
        assert set(doc[key]["p_hr_below"]) == {"0.8", "1.0"}
    assert sum(m["posterior_prob"] for m in doc["models"]) == pytest.approx(1.0, abs=1e-12)


def test_cli_text(capsys):
    code = main(["average", "--threshold", "0.9"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "Inclusion Bayes factors" in out and "spike at HR = 1" in out and "P(HR < 0.9)" in out


@pytest.mark.parametrize("value", ["effect=2", "bias=x", "tau=0.5", "effect"])
def test_cli_bad_prior_prob_exits_2(capsys, value):
    code = main(["average", "--prior-prob", value])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: --prior-prob") and "Traceback" not in err


def test_cli_bias_variants_all(capsys):
    """Every variant is averaged (20 models: effect x (no bias + 4 variants) x heterogeneity,
    the three-level no-effect models included); a variant the exact engine cannot fit in some
    cell (here a Student-t delta prior: additive and random) stops the command (exit 2) naming
    it and the variants that can be averaged, which then average (exit 0)."""
    variants = ("additive", "random", "downweight", "three-level")
    code = main(["average", "--bias-variants", "all", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["models"]) == 20
    assert {m["bias_variant"] for m in doc["models"]} == {None, *variants}
    assert "kappa" in doc["priors"]
    assert sum(m["prior_prob"] for m in doc["models"] if m["bias"]) == pytest.approx(0.5)
    assert sum(m["posterior_prob"] for m in doc["models"]) == pytest.approx(1.0, abs=1e-12)
    code = main(["average", "--bias-variants", "all", "--bias-prior", "studentt(3, 0, 0.5)", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "'additive'" in err and "'random'" in err and "--bias-variants downweight,three-level" in err
    code = main(["average", "--bias-variants", "downweight,three-level", "--bias-prior", "studentt(3, 0, 0.5)", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(json.loads(out)["models"]) == 4 * 3


KAPPA = stats.halfnorm(scale=0.25)  # the default kappa prior


def _kappa_log_ml(variant: str, effect: bool) -> float:
    """log p(y) of a random or three-level model with tau = 0 (heterogeneity=False): the dense
    normal density of y given kappa (mu, delta, the design offsets and the study biases
    integrated out), kappa by ``scipy.integrate.quad``. The three-level null is the effect model
    conditioned on mu_rct = 0 through the joint density of (y, mu_rct):
    p(y | M0) = int p(kappa) N((y, 0); joint | kappa) dkappa / int p(kappa) N(0; 0, 1 + kappa^2) dkappa."""
    rct = 1.0 - NR

    def log_dens(kappa: float) -> float:
        if variant == "random":
            cov = np.diag(SE**2 + kappa**2 * NR) + DELTA_SD**2 * np.outer(NR, NR) + effect * MU_SD**2
            return _mvn_logpdf(Y, cov)
        same = np.equal.outer(NR, NR).astype(float)
        cov = np.diag(SE**2) + MU_SD**2 + kappa**2 * same
        if effect:
            return _mvn_logpdf(Y, cov)
        full = np.empty((Y.size + 1, Y.size + 1))
        full[:-1, :-1] = cov
        full[:-1, -1] = full[-1, :-1] = MU_SD**2 + kappa**2 * rct  # Cov(y_i, mu_rct)
        full[-1, -1] = MU_SD**2 + kappa**2
        return _mvn_logpdf(np.append(Y, 0.0), full)

    ref = log_dens(0.2)
    value = integrate.quad(lambda k: KAPPA.pdf(k) * math.exp(log_dens(k) - ref), 0, np.inf, epsabs=0, epsrel=1e-11)[0]
    log_ml = ref + math.log(value)
    if variant == "three-level" and not effect:
        prior0 = integrate.quad(lambda k: KAPPA.pdf(k) * stats.norm.pdf(0.0, 0.0, math.sqrt(MU_SD**2 + k * k)),
                                0, np.inf, epsabs=0, epsrel=1e-12)[0]
        log_ml -= math.log(prior0)
    return log_ml


def test_all_variants_against_the_reference(small_table, reference):
    """bias_variants='all': 20 models, prior probabilities (the bias half split four ways), and
    the common-effect models of the random and three-level variants (with and without an effect)
    against the dense reference; the others against :func:`brute_log_ml` where it applies."""
    log_ml, _ = reference
    res = average_models(small_table, bias_variants="all")
    assert len(res.models) == 20
    checked = 0
    for m in res.models:
        assert m.prior_prob == pytest.approx(1 / 32 if m.bias else 1 / 8)
        if m.bias_variant in ("random", "three-level") and not m.heterogeneity:
            expected = _kappa_log_ml(m.bias_variant, m.effect)
        elif m.bias_variant in (None, "additive"):
            expected = log_ml[(m.effect, m.bias, m.heterogeneity)]
        else:
            continue
        checked += 1
        assert m.log_marginal_likelihood == pytest.approx(expected, abs=TOL_LOGML), m.label
    assert checked == 12
    v = np.array([m.log_marginal_likelihood + math.log(m.prior_prob) for m in res.models])
    np.testing.assert_allclose([m.posterior_prob for m in res.models], np.exp(v - special.logsumexp(v)), atol=1e-12)
    assert any("Savage-Dickey" in n for n in res.notes)


# --- review fixes (issue #11) ------------------------------------------------------------------
@pytest.mark.parametrize("p", ["0", "1"])
def test_prior_prob_zero_or_one_says_not_estimable_and_describes_printed_rows(capsys, p):
    code = main(["average", "--prior-prob", f"effect={p}"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert f"not estimable: the prior gives the effect probability {p}" in out
    assert "undefined effect" not in out
    has_second = "conditional on an effect" in out
    assert has_second == (p == "1")
    assert ("The second row" in out) == has_second


def test_observational_only_heading_and_small_k_note():
    table = syn.load_dataset("dnmbc_lrt", subset="observational")
    res = average_models(table)
    text = str(res)
    assert "randomised comparison" not in text
    assert "Model-averaged HR as the non-randomised studies estimate it" in text
    assert "randomised comparison" not in res.to_json()["estimand"]
    # the randomised subset keeps the heading
    assert "Model-averaged HR of a randomised comparison" in str(average_models(syn.load_dataset("dnmbc_lrt", subset="rct")))


def test_two_studies_warn_that_bayes_factors_rest_on_the_priors(small_table):
    frame = pd.DataFrame({"study": ["a", "b"], "log_hr": [-0.2, -0.1], "se": [0.2, 0.3], "design": ["rct", "rct"]})
    res = average_models(syn.load_studies(frame))
    assert any("only k = 2 studies (2 randomised)" in n and "rest mostly on the priors" in n for n in res.notes)
    assert not any("rest mostly on the priors" in n for n in average_models(small_table).notes)


@pytest.mark.parametrize("alpha", ["2", "nan", "0", "-1"])
def test_cli_alpha_always_validated(capsys, alpha):
    with pytest.raises(SystemExit) as exc:
        main(["average", "--alpha", alpha])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and "argument --alpha: must be a number in (0, 1]" in err and "Traceback" not in err


def test_library_alpha_always_validated(small_table):
    with pytest.raises(InputError, match="alpha"):
        average_models(small_table, ModelSpec(alpha=float("nan")))
