"""Leave-one-study-out cross-validation, stacking and ``synthesis compare``.

Independent references:

* exact LOO (k refits by the exact engine) against a brute-force quadrature of each model's
  definition on a dense grid of its global parameters (Simpson's rule over mu, tau and delta
  or beta; the study effects integrated by the normal-normal convolution), predictive densities
  of each left-out study and the full-data lppd;
* the integrated pointwise log-likelihood of PyMC draws against scipy's normal density;
* stacking weights from ``arviz_stats.compare`` against the Karush-Kuhn-Tucker conditions of
  the stacking objective and an EM fixed-point optimiser written here;
* the stacked quantiles against numpy's inverted-CDF quantile of pooled draws and the mixture
  CDF evaluated with scipy;
* (slow) PSIS-LOO of a real PyMC fit against exact LOO of the same model, within a tolerance
  from the importance-sampling Monte Carlo error.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import simpson
from scipy.special import logsumexp
from scipy.stats import halfnorm, norm

from synthesis.cli import main
from synthesis.errors import ModelError
from synthesis.models.loo import (
    compare_loo,
    exact_loo,
    psis_loo,
    stacked_ratio,
    stacking_weights,
)
from synthesis.models.pymc_fit import integrated_log_likelihood, log_prior_dataset
from synthesis.models.spec import ModelData, ModelSpec

#: Five made-up studies (two non-randomised), a covariate: small enough for dense grids.
Y = np.array([-0.35, -0.05, 0.10, -0.60, -0.42])
SE = np.array([0.20, 0.15, 0.30, 0.18, 0.25])
NR = np.array([False, False, False, True, True])
X = np.array([0.2, 0.5, 0.9, 0.1, 0.6])

#: Brute-force grid: Simpson's rule over mu in +-3 (prior N(0, 1); with the data the posterior SD
#: is ~0.15-0.3), delta or beta in +-6 prior SDs (0.5 and 1) and tau in [0, TAU_MAX] (tau's
#: half-normal(0.5) prior puts 2e-9 of its mass above 3); N_2D points per axis in 2-D, N_3D in 3-D.
MU_HALF_WIDTH = 3.0
PRIOR_SDS = 6.0
TAU_MAX = 3.0
N_2D, N_3D = 401, 111
#: Tolerance on log p(y_i | y_-i): at these grid sizes the brute force agrees with the exact
#: engine to < 1e-7 (measured: 1e-9 for re, additive and downweight, 9e-8 for metareg; refining
#: to N_2D = 1601, N_3D = 241 changes nothing above 1e-9), and 1e-4 with N_3D = 81.
LOG_TOL = 1e-6


def made_up(spec: ModelSpec) -> ModelData:
    x = X[:, None] if spec.has_covariates else np.zeros((Y.size, 0))
    centres = x.mean(axis=0)
    designs = tuple("retrospective" if f else "rct" for f in NR)
    return ModelData(
        studies=tuple(f"s{i}" for i in range(Y.size)), y=Y, se=SE, nonrandomised=NR, designs=designs,
        covariates=tuple(spec.covariates), x=x, centres=centres, source="made-up",
    )


def brute_force(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """log p(y_i | y_-i) and log p(y_i | y) by quadrature of the model's definition
    (Simpson's rule on a dense grid of the global parameters):
    y_i | theta_i ~ N(theta_i, s_i^2), theta_i ~ N(mean_i, tau^2) integrated (convolution),
    priors mu ~ N(0, 1), tau ~ HN(0.5), delta ~ N(0, 0.5^2), beta ~ N(0, 1) (the defaults)."""
    s2 = SE**2
    if spec.has_bias and spec.bias_variant == "downweight":
        s2 = np.where(NR, s2 / spec.alpha, s2)
    third = spec.has_covariates or (spec.has_bias and spec.bias_variant == "additive")
    n = N_3D if third else N_2D
    mu = np.linspace(-MU_HALF_WIDTH, MU_HALF_WIDTH, n)
    tau = np.linspace(0.0, TAU_MAX, n)
    b_sd = 1.0 if spec.has_covariates else 0.5
    axes = [mu, tau] + ([np.linspace(-PRIOR_SDS * b_sd, PRIOR_SDS * b_sd, n)] if third else [])
    grids = np.meshgrid(*axes, indexing="ij")
    m, t = grids[0], grids[1]
    log_prior = norm.logpdf(m, 0, 1) + halfnorm.logpdf(t, scale=0.5)
    means = [m] * Y.size
    if third:
        b = grids[2]
        if spec.has_covariates:
            log_prior = log_prior + norm.logpdf(b, 0, b_sd)
            means = [m + b * (X[i] - X.mean()) for i in range(Y.size)]
        else:
            log_prior = log_prior + norm.logpdf(b, 0, b_sd)
            means = [m + b * NR[i] for i in range(Y.size)]
    t2 = t**2
    ll = np.stack([-0.5 * (np.log(2 * np.pi * (s2[i] + t2)) + (Y[i] - means[i]) ** 2 / (s2[i] + t2)) for i in range(Y.size)])
    total = ll.sum(axis=0)

    def integrate(log_f: np.ndarray) -> float:
        top = log_f.max()
        f = np.exp(log_f - top)
        for ax in reversed(axes):
            f = simpson(f, x=ax, axis=-1)
        return math.log(float(f)) + top

    loo = np.array([integrate(log_prior + total) - integrate(log_prior + total - ll[i]) for i in range(Y.size)])
    evidence = integrate(log_prior + total)
    lppd = np.array([integrate(log_prior + total + ll[i]) - evidence for i in range(Y.size)])
    return loo, lppd


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("re"),
        ModelSpec("bias", bias_variant="additive"),
        ModelSpec("bias", bias_variant="downweight", alpha=0.5),
        pytest.param(ModelSpec("metareg", covariates=("x",)), marks=pytest.mark.slow),
    ],
    ids=["re", "additive", "downweight", "metareg"],
)
def test_exact_loo_matches_brute_force_quadrature(spec: ModelSpec) -> None:
    res = exact_loo(made_up(spec), spec)
    loo, lppd = brute_force(spec)
    np.testing.assert_allclose(res.elpd_i, loo, atol=LOG_TOL)
    assert res.p_loo == pytest.approx(lppd.sum() - loo.sum(), abs=Y.size * LOG_TOL)
    assert res.se == pytest.approx(math.sqrt(Y.size * np.var(loo)), abs=Y.size * LOG_TOL)
    assert res.pareto_k is None and res.n_high_k is None


def test_exact_loo_refuses_what_the_exact_engine_cannot_fit() -> None:
    from synthesis.models.loo import exact_loo_unsupported_reason
    from synthesis.models.priors import resolve_priors

    spec = ModelSpec("bias", bias_variant="random", priors=resolve_priors({"delta": "studentt(3, 0, 0.5)"}))
    with pytest.raises(ModelError, match="delta has Student-t"):
        exact_loo(made_up(spec), spec)
    for variant in ("random", "three-level"):
        spec = ModelSpec("bias", bias_variant=variant)
        assert exact_loo_unsupported_reason(spec, made_up(spec)) is None
        # no limit on k any more: the downdates are O(k x nodes)
        assert exact_loo_unsupported_reason(spec, SimpleNamespace(k=100_000)) is None


def simulated(k: int, seed: int = 1) -> ModelData:
    """k studies, 40/30/30% rct/prospective/retrospective, non-randomised biased by -0.1."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.5, k)
    designs = rng.choice(np.array(["rct", "prospective", "retrospective"]), k, p=[0.4, 0.3, 0.3])
    nr = designs != "rct"
    y = -0.2 + 0.2 * rng.standard_normal(k) - 0.1 * nr + se * rng.standard_normal(k)
    return ModelData(
        studies=tuple(f"s{i}" for i in range(k)), y=y, se=se, nonrandomised=nr, designs=tuple(designs),
        covariates=(), x=np.zeros((k, 0)), centres=np.zeros(0), source="simulated",
    )


#: Downdates at the full-data grid against k refits (each with its own grid). The 1-D grid does
#: not depend on y, so they agree to rounding; the 2-D grid is placed by a pilot quadrature, and
#: agreement was measured at 4e-10 (random) and 1.4e-9 (three-level) for k = 30, 2e-11 and
#: 3e-11 on the bundled data.
@pytest.mark.parametrize(
    "spec, tol",
    [
        (ModelSpec("re"), 1e-12),
        (ModelSpec("bias", bias_variant="additive"), 1e-12),
        (ModelSpec("bias", bias_variant="downweight", alpha=0.5), 1e-12),
        (ModelSpec("bias", bias_variant="random"), 1e-8),
        (ModelSpec("bias", bias_variant="three-level"), 1e-8),
    ],
    ids=["re", "additive", "downweight", "random", "three-level"],
)
def test_exact_loo_downdates_agree_with_refits(spec: ModelSpec, tol: float) -> None:
    data = simulated(30)
    fast = exact_loo(data, spec)
    slow = exact_loo(data, spec, refit=True)
    np.testing.assert_allclose(fast.elpd_i, slow.elpd_i, rtol=0, atol=tol)
    assert fast.p_loo == pytest.approx(slow.p_loo, abs=30 * tol)


def test_exact_loo_at_scale_is_the_sum_of_its_blocks() -> None:
    """Past one block of node-study cells the pointwise values are those of the same studies
    scored within one block (the blocking only bounds memory)."""
    from synthesis.models import loo as loo_module

    spec = ModelSpec("bias", bias_variant="random")
    data = simulated(3000)
    whole = exact_loo(data, spec)
    small = loo_module._LOO_BLOCK_CELLS
    try:
        loo_module._LOO_BLOCK_CELLS = 50_000  # ~60 studies per block at 841 nodes
        blocked = exact_loo(data, spec)
    finally:
        loo_module._LOO_BLOCK_CELLS = small
    np.testing.assert_allclose(blocked.elpd_i, whole.elpd_i, rtol=0, atol=1e-12)
    assert np.isfinite(whole.elpd_i).all() and whole.k == 3000


def test_integrated_log_likelihood_random_and_downweight() -> None:
    """log N(y_i; mu + delta nr_i, s_i^2 + tau^2 + kappa^2 nr_i) per draw (random variant) and
    s_i^2 = se_i^2 / alpha for the non-randomised studies (downweight), against scipy."""
    rng = np.random.default_rng(2)
    draws = {n: rng.normal(0, 0.3, (2, 3)) for n in ("mu", "delta")}
    draws |= {n: np.abs(rng.normal(0, 0.3, (2, 3))) for n in ("tau", "kappa")}
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({n: (("chain", "draw"), v) for n, v in draws.items()})})
    spec = ModelSpec("bias", bias_variant="random")
    got = integrated_log_likelihood(dt, made_up(spec), spec).values
    mean = draws["mu"][..., None] + draws["delta"][..., None] * NR
    var = SE**2 + draws["tau"][..., None] ** 2 + draws["kappa"][..., None] ** 2 * NR
    np.testing.assert_allclose(got, norm.logpdf(Y, mean, np.sqrt(var)), rtol=1e-12)
    spec = ModelSpec("bias", bias_variant="downweight", alpha=0.25)
    got = integrated_log_likelihood(dt, made_up(spec), spec).values
    var = np.where(NR, SE**2 / 0.25, SE**2) + draws["tau"][..., None] ** 2
    np.testing.assert_allclose(got, norm.logpdf(Y, draws["mu"][..., None], np.sqrt(var)), rtol=1e-12)
    lp = log_prior_dataset(dt, ModelSpec("bias", bias_variant="random"))
    assert sorted(lp.data_vars) == ["delta", "kappa", "mu", "tau"]
    np.testing.assert_allclose(lp["kappa"].values, halfnorm.logpdf(draws["kappa"], scale=0.25))


def test_psis_loo_needs_the_log_likelihood_group() -> None:
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), np.zeros((1, 10)))})})
    with pytest.raises(ModelError, match="log_likelihood=True"):
        psis_loo(dt)


def _stacking_objective(w: np.ndarray, elpd: np.ndarray) -> float:
    return float(np.sum(logsumexp(elpd, b=w[None, :], axis=1)))


def _em_stacking(elpd: np.ndarray, steps: int = 20000) -> np.ndarray:
    """Stacking weights by the EM fixed point w_m <- w_m mean_i(p_im / sum_m' w_m' p_im'),
    which increases the concave objective monotonically (mixture-weight EM)."""
    p = np.exp(elpd - elpd.max(axis=1, keepdims=True))
    w = np.full(elpd.shape[1], 1.0 / elpd.shape[1])
    for _ in range(steps):
        new = w * np.mean(p / (p @ w)[:, None], axis=0)
        if np.max(np.abs(new - w)) < 1e-13:
            return new
        w = new
    return w


def test_stacking_weights_match_an_independent_optimiser_and_kkt() -> None:
    rng = np.random.default_rng(11)
    n = 25
    base = rng.normal(-1.0, 0.5, n)
    elpd = np.column_stack([base + rng.normal(0, 0.4, n), base + rng.normal(0.1, 0.6, n), base - 1.5])
    w = stacking_weights(elpd)
    ours = _em_stacking(elpd)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    np.testing.assert_allclose(w, ours, atol=2e-3)
    assert _stacking_objective(w, elpd) == pytest.approx(_stacking_objective(ours, elpd), abs=1e-6)
    # KKT: the gradient sum_i p_im / sum_m' w_m' p_im' equals n where w_m > 0 and is <= n where w_m = 0
    p = np.exp(elpd)
    grad = np.sum(p / (p @ ours)[:, None], axis=0)
    assert ours[2] < 1e-6 and grad[2] < n
    np.testing.assert_allclose(grad[ours > 1e-6], n, rtol=1e-6)


def test_compare_loo_differences_and_their_se() -> None:
    from synthesis.models.loo import LooResult

    studies = tuple("abcd")
    a = LooResult("exact", studies, np.array([-1.0, -0.5, -2.0, -1.2]), 1.0)
    b = LooResult("exact", studies, np.array([-1.4, -0.4, -2.5, -1.3]), 1.5)
    out = compare_loo({"a": a, "b": b})
    d = b.elpd_i - a.elpd_i
    assert out["a"].elpd_diff == 0.0
    assert out["b"].elpd_diff == pytest.approx(d.sum())
    assert out["b"].dse == pytest.approx(math.sqrt(d.size * np.var(d)))
    other = LooResult("exact", tuple("abce"), b.elpd_i, 1.5)
    with pytest.raises(ModelError, match="different studies"):
        compare_loo({"a": a, "other": other})


def _draws_fit(mu: np.ndarray, thresholds=(1.0,)) -> SimpleNamespace:
    """A stand-in for a PyMC FitResult: the draws of mu and their own summaries."""
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), mu.reshape(1, -1))})})
    q025, q975 = np.exp(np.quantile(mu, [0.025, 0.975]))
    hr = SimpleNamespace(q025=q025, q975=q975)
    return SimpleNamespace(
        engine="pymc", exact_posterior=None, posterior=dt, hr=hr,
        p_hr_below={repr(float(t)): float(np.mean(mu < math.log(t))) for t in thresholds},
    )


def test_stacked_quantiles_of_draws_and_of_exact_mixtures() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(-0.3, 0.1, 4000), rng.normal(0.1, 0.2, 4000)
    r = stacked_ratio([_draws_fit(a), _draws_fit(b)], [0.5, 0.5], thresholds=[1.0])
    pooled = np.concatenate([a, b])  # equal weights, equal sizes: the pooled draws
    expected = np.exp(np.quantile(pooled, [0.5, 0.025, 0.975], method="inverted_cdf"))
    np.testing.assert_allclose([r.median, r.q025, r.q975], expected, rtol=1e-9)
    assert r.p_below["1.0"] == pytest.approx(np.mean(pooled < 0))
    # exact fits: the stacked median solves sum_m w_m sum_g v_g Phi((x - m_g) / s_g) = 1/2
    from synthesis.models.exact import fit_exact

    specs = [ModelSpec("re"), ModelSpec("bias", bias_variant="downweight", alpha=0.5)]
    fits = [fit_exact(made_up(s), s) for s in specs]
    w = np.array([0.3, 0.7])
    r = stacked_ratio(fits, w, thresholds=[0.8])

    def cdf(x: float) -> float:
        total = 0.0
        for wm, f in zip(w, fits, strict=True):
            mix = f.exact_posterior.linear(f.exact_posterior.contrast("mu"))
            total += wm * float(np.sum(mix.weights * norm.cdf(x, mix.means, mix.sds)))
        return total

    assert cdf(math.log(r.median)) == pytest.approx(0.5, abs=1e-9)
    assert cdf(math.log(r.q975)) == pytest.approx(0.975, abs=1e-9)
    assert r.p_below["0.8"] == pytest.approx(cdf(math.log(0.8)), abs=1e-9)
    one = stacked_ratio(fits[:1], [1.0])
    assert one.median == pytest.approx(fits[0].hr.median, rel=1e-7)


#: Keys of every model row of ``compare --json`` (the issue's contract) and of the stacked row.
MODEL_KEYS = {
    "bias_variant", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "pareto_k_max",
    "n_high_k", "hr_median", "p_hr_below",
}
STACKED_KEYS = {"hr_median", "hr_q025", "hr_q975", "p_hr_below"}


def test_cli_compare_exact_json(capsys: pytest.CaptureFixture[str]) -> None:
    """All four variants exact (random and three-level by 2-D quadrature), no sampling."""
    code = main(["compare", "--engine", "exact", "--threshold", "0.9", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["engine"] == "exact" and {"models", "stacked"} <= set(out)
    assert [m["bias_variant"] for m in out["models"]] == ["additive", "random", "downweight", "three-level"]
    for m in out["models"]:
        assert MODEL_KEYS <= set(m) and m["loo_method"] == "exact" and set(m["p_hr_below"]) == {"0.9"}
        assert m["engine"] == "exact" and m["pareto_k_max"] is None and "notes" not in m
    assert not out["notes"] and out["converged"]
    assert STACKED_KEYS <= set(out["stacked"])
    assert sum(m["weight"] for m in out["models"]) == pytest.approx(1.0)
    best = max(out["models"], key=lambda m: m["elpd_loo"])
    assert best["elpd_diff"] == 0.0
    w = {m["bias_variant"]: m["weight"] for m in out["models"]}
    p = {m["bias_variant"]: m["p_hr_below"]["0.9"] for m in out["models"]}
    assert out["stacked"]["p_hr_below"]["0.9"] == pytest.approx(sum(w[v] * p[v] for v in w))


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--bias-variants", "additive,sideways"],
        ["compare", "--model", "re", "--engine", "exact"],
        ["compare", "--bias-variant", "random", "--engine", "exact"],
        ["compare", "--engine", "exact", "--tau-prior", "halfnormal(-1)"],
    ],
    ids=["unknown-variant", "not-a-bias-model", "singular-flag", "bad-prior"],
)
def test_cli_compare_bad_input_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


# --------------------------------------------------------------------------------------------
# slow: real sampling
# --------------------------------------------------------------------------------------------
def _psis_mcse(log_lik: np.ndarray, log_weights: np.ndarray, r_eff: float) -> np.ndarray:
    """Monte Carlo SE of each PSIS estimate log p_i (delta method for the self-normalised
    importance-sampling mean: var(p_hat) ~ sum_s w_s^2 (L_s - p_hat)^2 / r_eff)."""
    w = np.exp(log_weights - logsumexp(log_weights, axis=0))
    lik = np.exp(log_lik)
    p = np.sum(w * lik, axis=0)
    return np.sqrt(np.sum(w**2 * (lik - p) ** 2, axis=0) / r_eff) / p


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["additive", "random", "three-level"])
def test_psis_loo_of_a_pymc_fit_agrees_with_exact_loo(variant: str) -> None:
    """dnMBC, bias model: PSIS-LOO from 4 x 2000 NUTS draws vs the exact refits (2-D quadrature
    for random and three-level), each study within 4 Monte Carlo SE (+ 0.01 for the bias of
    PSIS with k < 0.5); the conditional log-likelihood would give k > 0.7 for most studies, the
    integrated one none."""
    import synthesis as syn
    from synthesis.models.pymc_fit import fit_pymc

    table = syn.load_dataset("dnmbc_lrt")
    spec = ModelSpec("bias", bias_variant=variant)
    data = ModelData.from_table(table, spec)
    fit = fit_pymc(data, spec, seed=20261203, log_likelihood=True)
    assert fit.diagnostics.converged
    psis = psis_loo(fit)
    exact = exact_loo(data, spec)
    assert psis.n_high_k == 0, psis.flag()
    import arviz_stats as azs

    ll = fit.posterior["log_likelihood"]["y"].stack(sample=("chain", "draw")).transpose("sample", "study")
    res = azs.loo(fit.posterior, pointwise=True)
    lw = res.log_weights.stack(sample=("chain", "draw")).transpose("sample", "study").values
    posterior = fit.posterior.posterior.to_dataset()
    globals_ = posterior[[n for n in ("mu", "tau", "delta", "kappa") if n in posterior]]
    r_eff = float(np.mean(azs.ess(globals_, method="mean").to_array())) / lw.shape[0]
    mcse = _psis_mcse(ll.values, lw, r_eff)
    np.testing.assert_array_less(np.abs(psis.elpd_i - exact.elpd_i), 4 * mcse + 0.01)
    total_mcse = math.sqrt(np.sum(mcse**2))
    assert abs(psis.elpd - exact.elpd) < 4 * total_mcse + 0.05
    assert abs(psis.p_loo - exact.p_loo) < 4 * total_mcse + 0.05


@pytest.mark.slow
def test_cli_compare_pymc_reports_pareto_k_and_exact_check(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--bias-variants", "additive,random", "--draws", "1000", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {m["bias_variant"]: m for m in out["models"]}
    for m in rows.values():
        assert m["loo_method"] == "psis" and m["pareto_k_max"] is not None and m["n_high_k"] is not None
    for v in ("additive", "random"):  # exact LOO checks PSIS for every variant now
        assert abs(rows[v]["elpd_loo"] - rows[v]["elpd_loo_exact"]) < 0.5


def test_compare_refuses_a_log_likelihood_too_large_to_hold() -> None:
    """4 chains x 2000 draws x 100,000 studies = 6.4 GB of pointwise log-likelihood: refused
    before any sampling, with the number of draws that would fit."""
    from synthesis.errors import InputError
    from synthesis.models.loo import compare_variants

    with pytest.raises(InputError, match=r"6\.4 GB; use at most 312 draws"):
        compare_variants(SimpleNamespace(k=100_000), ModelSpec("bias"), engine="pymc")


# --------------------------------------------------------------------------------------------
# review fixes (issue #11)
# --------------------------------------------------------------------------------------------
def test_syn_compare_takes_a_string_of_variants() -> None:
    """A string is a comma-separated list or 'all', not a sequence of letters (as syn.average)."""
    import synthesis as syn
    from synthesis.errors import InputError

    t = syn.load_dataset("dnmbc_lrt")
    assert [v.variant for v in syn.compare(t, engine="exact", bias_variants="additive").variants] == ["additive"]
    res = syn.compare(t, engine="exact", bias_variants="additive, downweight")
    assert [v.variant for v in res.variants] == ["additive", "downweight"]
    with pytest.raises(InputError, match="bias_variants"):
        syn.compare(t, engine="exact", bias_variants="sideways")


def test_cli_compare_accepts_all_and_states_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--engine", "exact", "--bias-variants", "all", "--alpha", "0.3"])
    out = capsys.readouterr().out
    assert code == 0
    for v in ("additive", "random", "downweight", "three-level"):
        assert f"\n{v} " in out
    assert "downweight: alpha = 0.3" in out
    assert "random and three-level: kappa ~ half-normal(scale=0.25)" in out
    assert "stacking weights are not posterior model probabilities: a weight of 0 means" in out
    assert "rest mostly on the priors" not in out  # k = 17


def test_compare_json_alpha_kappa_and_no_alpha_without_downweight(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--engine", "exact", "--bias-variants", "additive,random", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "alpha" not in doc and doc["priors"]["kappa"] == "half-normal(scale=0.25)"
    assert not any("alpha" in s for s in doc["settings"])


def test_compare_on_two_studies_warns_that_stacking_rests_on_the_priors(tmp_path, capsys) -> None:
    path = tmp_path / "two.csv"
    path.write_text("study,log_hr,se,design\na,-0.2,0.2,rct\nb,-0.1,0.3,retrospective\n")
    code = main(["compare", "--engine", "exact", "--bias-variants", "additive", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "only k = 2 studies (1 randomised): the LOO scores and stacking weights rest mostly on the priors" in out


# --------------------------------------------------------------------------------------------
# Multilevel models: leave-one-cluster-out (issue #13)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_inputs():  # noqa: ANN201
    from synthesis.multilevel import load_all_inputs

    return load_all_inputs()


def _joint_predictive(data: ModelData, spec: ModelSpec, label: str, n_grid: int) -> float:
    """log p(y_c | y_-c) as the mixture over a refit's nodes of the cluster's joint normal
    predictive, with the dense covariance V_c + tau^2 11' + tau_w^2 I + X_c C X_c' per node
    (numpy's slogdet and solve): a different formula from exact_loo's difference of marginal
    likelihoods, on a finer grid."""
    from synthesis.models.exact import _design, exact_posterior
    from synthesis.models.loo import _leave_out
    from synthesis.models.multilevel import Clusters

    rows = np.array(data.clusters) == label
    d = _design(data, spec)
    V = Clusters.from_labels(data.clusters, rho=spec.rho).sampling_covariance(np.sqrt(d.s2))[np.ix_(rows, rows)]
    post = exact_posterior(_leave_out(data, rows), spec, n_grid=n_grid)
    Xc, yc, n = d.X[rows], d.y[rows], int(rows.sum())
    g = np.flatnonzero(post.weights > 0)
    cov = (
        V + (post.tau[g] ** 2)[:, None, None] * np.ones((n, n)) + (post.kappa[g] ** 2)[:, None, None] * np.eye(n)
        + Xc @ post.cond.b_cov[g] @ Xc.T
    )
    r = yc - post.cond.b_mean[g] @ Xc.T
    _, logdet = np.linalg.slogdet(cov)
    quad = np.sum(r * np.linalg.solve(cov, r[:, :, None])[:, :, 0], axis=1)
    return float(logsumexp(np.log(post.weights[g]) - 0.5 * (n * math.log(2 * math.pi) + logdet + quad)))


@pytest.mark.parametrize(("model", "rho", "labels"), [
    ("bias", 0.5, ("SEER-1988-2009", "MF07-01")),  # six rows; two rows
    pytest.param("re", 0.0, ("E2108",), marks=pytest.mark.slow),
])
def test_leave_one_cluster_out_matches_the_joint_predictive(all_inputs, model: str, rho: float, labels: tuple) -> None:
    """exact_loo of a multilevel model leaves out whole clusters (19 cohorts, 30 rows): each
    elpd_c = log p(y) - log p(y_-c) agrees with the joint predictive mixture of the cluster's rows
    under a 91 x 91 refit within 2e-6 (SEER's rows are the only ones informing tau_within much:
    without them its posterior reaches down to 0, where a grid scaled by the bracket's lower end
    was 6.5e-4 off; tests/test_multilevel_exact.py)."""
    spec = ModelSpec(model, cluster="cohort", rho=rho)
    data = ModelData.from_table(all_inputs, spec)
    res = exact_loo(data, spec)
    assert res.unit == "cluster" and res.k == len(set(data.clusters)) == 19
    assert set(res.studies) == set(data.clusters)
    for label in labels:
        ours = float(res.elpd_i[res.studies.index(label)])
        assert abs(ours - _joint_predictive(data, spec, label, 91)) < 2e-6, label


def test_compare_with_a_cluster_refuses_the_pymc_engine(all_inputs, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import resources

    from synthesis.errors import InputError
    from synthesis.models.loo import compare_variants
    from synthesis.multilevel import ALL_INPUTS_FILE

    with pytest.raises(InputError, match="engine='exact'"):
        compare_variants(all_inputs, ModelSpec("bias", cluster="cohort", rho=0.5), engine="pymc")
    path = resources.files("synthesis.bundled") / ALL_INPUTS_FILE
    assert main(["compare", "--cluster", "cohort", str(path)]) == 2  # the PyMC default: refused
    err = capsys.readouterr().err
    assert "--engine exact" in err and "Traceback" not in err


def test_compare_with_a_cluster_never_falls_back_to_psis(all_inputs, capsys: pytest.CaptureFixture[str]) -> None:
    """engine='exact' with a cluster and a variant the exact engine cannot fit (a Student-t mu
    prior; missing covariate values) is refused: the row-wise PSIS-LOO fallback of a one-level
    model would score a cluster's dependent rows as independent. The message does not send the
    user to --engine pymc, which a cluster refuses too."""
    from importlib import resources

    from synthesis.errors import ModelError
    from synthesis.models.loo import compare_variants
    from synthesis.models.priors import parse_prior
    from synthesis.multilevel import ALL_INPUTS_FILE

    spec = ModelSpec("bias", cluster="cohort")
    spec = replace(spec, priors=replace(spec.priors, mu=parse_prior("studentt(3, 0, 1)", "mu")))
    with pytest.raises(ModelError, match="leave-one-cluster-out") as exc:
        compare_variants(all_inputs, spec, variants=["additive", "downweight"], engine="exact")
    assert "pymc" not in str(exc.value).replace("PyMC", "")
    path = str(resources.files("synthesis.bundled") / ALL_INPUTS_FILE)
    argv = ["compare", "--engine", "exact", "--cluster", "cohort", "--model", "bias-metareg", "--covariate",
            "bone_only_fraction", path]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "--engine pymc" not in err and "Traceback" not in err
    assert not any(line.startswith("warning") and "share patients" in line for line in err.splitlines())


@pytest.mark.slow
def test_compare_with_a_cluster(all_inputs) -> None:
    from synthesis.models.loo import compare_variants

    spec = ModelSpec("bias", cluster="cohort", rho=0.5)
    res = compare_variants(all_inputs, spec, engine="exact")
    assert [v.variant for v in res.variants] == ["additive", "downweight"]
    assert any("third variance parameter" in n for n in res.notes)
    doc = res.to_json()
    assert (doc["loo_unit"], doc["k"], doc["rows"], doc["cluster"], doc["rho"]) == ("cluster", 19, 30, "cohort", 0.5)
    assert "tau_within" in doc["priors"]
    assert all(v.loo.unit == "cluster" for v in res.variants)
    assert "leave-one-cluster-out" in str(res)


def test_compare_one_row_per_cluster_notes_the_variance_split() -> None:
    """compare with a cluster on one-row cohorts carries fit's note on tau^2 + tau_within^2."""
    from synthesis.datasets import load_dataset
    from synthesis.models.loo import compare_variants

    res = compare_variants(load_dataset("dnmbc_lrt"), ModelSpec("bias", cluster="cohort"),
                           variants=["additive", "downweight"], engine="exact")
    assert any("every cohort has one row" in n for n in res.notes)
