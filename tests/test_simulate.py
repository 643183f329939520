"""``synthesis simulate`` (issue #14): the batched exact engine against per-dataset exact fits,
analytic operating characteristics in the common-effect case, worker-split invariance, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

import synthesis as syn
from synthesis.cli import main
from synthesis.models.exact import fit_exact
from synthesis.models.operating import Analyses, Scenario, Truth, simulate_data
from synthesis.models.priors import resolve_priors
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.simulation import run_simulation

#: Batched engine (the scenario's grid: at k = 17 401 nodes over the prior's range, trapezoidal)
#: vs fit_exact (its own adaptive 257-node Simpson grid): two quadratures of the same integral.
BATCH_TOL = 1e-6
#: Monte Carlo agreement: within 4 standard errors.
MC_Z = 4.0


@pytest.fixture(scope="module")
def data():
    spec = ModelSpec("bias")
    return ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)


def _subset(data, mask):
    from synthesis.models.operating import _subset

    return _subset(data, mask)


@pytest.mark.parametrize("spec", [ModelSpec("bias"), ModelSpec("bias", bias_variant="downweight", alpha=0.3),
                                  ModelSpec("bias", heterogeneity=False),
                                  ModelSpec("bias", priors=resolve_priors({"tau": "uniform(0.1, 2)"}))],
                         ids=["additive", "downweight", "common", "tau-bounded-below"])
def test_batched_engine_matches_fit_exact(data, spec):
    sc = Scenario(0.9, 0.75, 0.2)
    analyses = Analyses.build(data, spec, Truth.of(sc, 0.1))
    Y = simulate_data(sc, 0, range(5), data.se, data.nonrandomised, tau=0.1, seed=3)
    got = analyses.p_below(Y, 0.8)
    rct = ~data.nonrandomised
    for n, y in enumerate(Y):
        one = ModelData(**{**data.__dict__, "y": y})
        refs = {
            "bias": fit_exact(one, spec, thresholds=[0.8]),
            "naive": fit_exact(one, ModelSpec("re", priors=spec.priors, heterogeneity=spec.heterogeneity), thresholds=[0.8]),
            "rct_only": fit_exact(_subset(one, rct), ModelSpec("re", priors=spec.priors, heterogeneity=spec.heterogeneity),
                                  thresholds=[0.8]),
        }
        for name, ref in refs.items():
            assert got[name][0][n] == pytest.approx(ref.p_hr_below["0.8"], abs=BATCH_TOL), name


def test_naive_pool_recommends_under_large_bias_and_rct_only_is_analytic(data):
    """Common-effect analyses, no true heterogeneity: the RCT-only decision is a linear rule in
    the data, sum w_i y_i < A, whose probability is a normal CDF; the naive pool at a true HR of 1
    with strongly biased registries recommends almost always, the design-bias model almost never."""
    spec = ModelSpec("bias", heterogeneity=False)
    T, L, n = 0.8, 0.5, 2000
    res = run_simulation(data, spec, true_hrs=[1.0, 0.8], bias_means=[0.6], bias_sds=[0.05], n_sim=n,
                         threshold=T, level=L, progress=False)
    rct = ~data.nonrandomised
    w = data.se[rct] ** -2
    prec = w.sum() + 1.0  # mu ~ normal(0, 1)
    a = prec * (math.log(T) - stats.norm.ppf(L) / math.sqrt(prec))
    for i, hr in enumerate([1.0, 0.8]):
        exact = stats.norm.cdf((a - math.log(hr) * w.sum()) / math.sqrt(w.sum()))
        got = res.p_recommend(i)["rct_only"]
        assert abs(got - exact) < MC_Z * math.sqrt(exact * (1 - exact) / n) + 1e-12
    assert res.p_recommend(0)["naive"] > 0.99
    assert res.p_recommend(0)["bias"] < 0.05


def test_same_numbers_for_one_and_two_workers(data):
    kwargs = dict(true_hrs=[1.0, 0.8], bias_means=[0.7], bias_sds=[0.2], n_sim=600, tau=0.1, level=0.5, progress=False)
    one = run_simulation(data, None, workers=1, **kwargs)
    two = run_simulation(data, None, workers=2, **kwargs)
    assert one.recommend == two.recommend
    assert one.to_json()["scenarios"] == two.to_json()["scenarios"]


@pytest.mark.slow
def test_same_numbers_on_a_dask_local_cluster(data):
    distributed = pytest.importorskip("dask.distributed")
    kwargs = dict(true_hrs=[1.0], bias_means=[0.7], bias_sds=[0.2], n_sim=1200, tau=0.1, level=0.5, progress=False)
    local = run_simulation(data, None, workers=1, **kwargs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = run_simulation(data, None, scheduler=cluster.scheduler_address, **kwargs)
    assert local.recommend == dask.recommend


def test_replicate_data_do_not_depend_on_the_split(data):
    sc = Scenario(0.8, 0.7, 0.1)
    whole = simulate_data(sc, 2, range(0, 1000), data.se, data.nonrandomised, tau=0.05, seed=11)
    parts = np.vstack([simulate_data(sc, 2, range(s, min(s + 333, 1000)), data.se, data.nonrandomised, tau=0.05, seed=11)
                       for s in range(0, 1000, 333)])
    assert np.array_equal(whole, parts)
    # the engines' study order (randomised first) draws the same data, permuted
    order = np.argsort(data.nonrandomised, kind="stable")
    assert np.array_equal(simulate_data(sc, 2, range(0, 5), data.se, data.nonrandomised, tau=0.05, seed=11, order=order),
                          whole[:5, order])
    # and the simulated truth: non-randomised studies centred at log(HR b), randomised at log HR
    nr = data.nonrandomised
    resid = whole - math.log(0.8) - nr * math.log(0.7)
    assert abs(resid.mean()) < 0.01


def _cli(capsys, *args):
    try:
        code = main(["simulate", *args])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_contract(capsys):
    code, out, err = _cli(capsys, "--n-sim", "100", "--true-hr", "1", "--bias-mean", "0.7", "--bias-sd", "0.1", "--json", "--quiet")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["rule"]) == {"threshold", "level"}
    sc = doc["scenarios"][0]
    assert set(sc) >= {"true_hr", "bias_mean", "bias_sd", "n_sim", "p_recommend", "mc_se"}
    assert set(sc["p_recommend"]) == {"bias", "naive", "rct_only"}


@pytest.mark.parametrize("args", [["--n-sim", "0"], ["--true-hr", "-1"], ["--bias-sd", "-0.1"], ["--tau", "x"],
                                  ["--level", "2"], ["--workers", "0"], ["--subset", "rct"], ["--threshold", "0"],
                                  ["--bias-variant", "random"], ["--n-sim", "20000000"]])
def test_cli_bad_options_exit_2(capsys, args):
    code, _, err = _cli(capsys, *args)
    assert code == 2, err
    assert "Traceback" not in err


def test_common_effect_has_no_grid_end_notes_and_absurd_truths_are_refused(capsys):
    """With tau fixed at 0 there is no tau grid to reach the end of (the note appeared for every
    replicate); truths beyond HR 1/100..100 or SD 5 are refused with exit 2."""
    from synthesis.cli import main

    assert main(["simulate", "--common-effect", "--true-hr", "1", "--bias-mean", "1", "--bias-sd", "0",
                 "--n-sim", "50", "--quiet", "--json"]) == 0
    out = capsys.readouterr()
    assert "end of" not in out.out + out.err
    for argv in (["--true-hr", "1e308"], ["--bias-mean", "1e-300"], ["--tau", "1e6"], ["--bias-sd", "6"]):
        with pytest.raises(SystemExit) as exc:
            main(["simulate", "--quiet", *argv])
        assert exc.value.code == 2


#: At large k the grid is the scenario's (about 60 nodes over +/- 14 expected posterior SDs):
#: the batched P(HR < T) against fit_exact's own adaptive grid per dataset (measured: within
#: 1e-13 at k = 20,000, where the former fixed 401-node grid was off by up to 5e-4).
LARGE_K_TOL = 1e-6


def _large_design(k, seed=5):
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.5, size=k)
    nr = rng.uniform(size=k) < 0.6
    return ModelData(studies=tuple(f"S{i}" for i in range(k)), y=np.zeros(k), se=se, nonrandomised=nr,
                     designs=tuple("prospective" if v else "rct" for v in nr), covariates=(), x=np.zeros((k, 0)),
                     centres=np.zeros(0))


def _check_against_fit_exact(data, analyses, Y, spec, tol):
    """Every analysis of every dataset: P(HR < T) at fit_exact's 2.5%, 50% and 97.5% HR quantiles
    (where P is most sensitive to the tau quadrature) against fit_exact itself."""
    rct = ~data.nonrandomised
    re = ModelSpec("re", priors=spec.priors, heterogeneity=spec.heterogeneity)
    for y in Y:
        one = ModelData(**{**data.__dict__, "y": y})
        for name, sp, dt in (("bias", spec, one), ("naive", re, one), ("rct_only", re, _subset(one, rct))):
            hr = fit_exact(dt, sp, thresholds=[0.8], study_effects=False).hr
            ts = [hr.q025, hr.median, hr.q975]
            ref = list(fit_exact(dt, sp, thresholds=ts, study_effects=False).p_hr_below.values())
            assert len(ref) == 3 and 0.01 < ref[0] < ref[1] < ref[2] < 0.99
            got = [analyses.p_below(y[None, :], t)[name][0][0] for t in ts]
            assert got == pytest.approx(ref, abs=tol), name


@pytest.mark.parametrize("tau_prior", ["halfnormal(0.5)", "uniform(0.1, 2)"])
def test_batched_engine_matches_fit_exact_at_moderate_k(tau_prior):
    """k = 2,000: the scenario's focused grid (not the prior's whole range) against fit_exact;
    with a prior bounded below, the randomised studies' posterior piles up at the bound (Gregory's
    end weights there: the trapezoidal rule alone was 4e-6 off at k = 20,000)."""
    data = _large_design(2000)
    spec = ModelSpec("bias", priors=resolve_priors({"tau": tau_prior}))
    sc = Scenario(0.8, 0.7, 0.2)
    analyses = Analyses.build(data, spec, Truth.of(sc, 0.05))
    assert all(e.tau[-1] < 0.5 for e in analyses.engines.values())  # the prior range ends at 2 or 5
    Y = simulate_data(sc, 0, range(1), data.se, data.nonrandomised, tau=0.05, seed=2)
    _check_against_fit_exact(data, analyses, Y, spec, LARGE_K_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("k", [20_000, 100_000])
def test_batched_engine_matches_fit_exact_at_large_k(k):
    """Scenarios with and without bias and bias heterogeneity, two datasets each."""
    data = _large_design(k)
    spec = ModelSpec("bias")
    for i, sc in enumerate([Scenario(0.8, 0.8, 0.2), Scenario(1.0, 0.65, 0.05), Scenario(0.8, 1.0, 0.05)]):
        analyses = Analyses.build(data, spec, Truth.of(sc, 0.0))
        assert all(e.tau.size <= 100 for e in analyses.engines.values())
        Y = simulate_data(sc, i, range(2), data.se, data.nonrandomised, tau=0.0, seed=1)
        _check_against_fit_exact(data, analyses, Y, spec, LARGE_K_TOL)


def test_datasets_beyond_the_scenario_grid_are_reanalysed_exactly():
    """Data from a truth far from the one the grid was placed for (tau 0.6 instead of 0): their
    posterior of tau lies beyond the grid's upper end, so they are re-analysed on their own grid
    and P(HR < T) is still fit_exact's."""
    data = _large_design(500)
    spec = ModelSpec("bias")
    analyses = Analyses.build(data, spec, Truth.of(Scenario(1.0, 1.0, 0.0), 0.0))
    Y = simulate_data(Scenario(0.8, 0.8, 0.0), 0, range(2), data.se, data.nonrandomised, tau=0.6, seed=4)
    out = analyses.p_below(Y, 0.8)
    assert all(n == 2 for _, n in out.values())
    _check_against_fit_exact(data, analyses, Y[:1], spec, LARGE_K_TOL)


def test_one_normal_per_study_has_the_model_variance(data):
    """y_i = log HR + nr_i log b + sqrt(tau^2 + nr_i sd_b^2 + s_i^2) z_i: the standardised
    residuals of 4,000 replicates have mean 0 and variance 1 for every study (4 MC SEs)."""
    sc, tau, n = Scenario(0.8, 0.7, 0.3), 0.2, 4000
    Y = simulate_data(sc, 1, range(n), data.se, data.nonrandomised, tau=tau, seed=7)
    nr = data.nonrandomised.astype(float)
    z = (Y - math.log(0.8) - nr * math.log(0.7)) / np.sqrt(tau**2 + nr * 0.3**2 + data.se**2)
    assert np.all(np.abs(z.mean(axis=0)) < MC_Z / math.sqrt(n))
    assert np.all(np.abs(z.var(axis=0) - 1.0) < MC_Z * math.sqrt(2.0 / n))


def test_notes_say_how_to_read_a_true_hr_at_the_threshold(data):
    """With the default truths (HR 1 and 0.8 = T) the result says that HR = T is the boundary of
    the rule's claim and that no scenario measures power; with a true HR below T it says neither."""
    spec = ModelSpec("bias")
    at_t = run_simulation(data, spec, true_hrs=[1.0, 0.8], bias_means=[1.0], bias_sds=[0.1], n_sim=5)
    assert any("is the threshold T itself" in n for n in at_t.notes)
    below = run_simulation(data, spec, true_hrs=[1.0, 0.65], bias_means=[1.0], bias_sds=[0.1], n_sim=5)
    assert not any("threshold T itself" in n or "not power" in n for n in below.notes)
    only_null = run_simulation(data, spec, true_hrs=[1.0], bias_means=[1.0], bias_sds=[0.1], n_sim=5)
    assert any("error rates, not power" in n for n in only_null.notes)


def test_header_states_the_analyses_and_repeats_are_refused(data, capsys):
    """The printed header names the design-bias variant and common effect as run; a repeated true
    HR and a second --threshold are refused (exit 2), not silently used; syn.simulate takes one
    number for a one-value list."""
    from synthesis.errors import InputError

    spec = ModelSpec("bias", bias_variant="downweight", alpha=0.3, heterogeneity=False)
    text = str(run_simulation(data, spec, true_hrs=[1.0, 0.65], bias_means=[1.0], bias_sds=[0.1], n_sim=5))
    assert "analyses (common effect, tau = 0): the design-bias model (downweight, alpha 0.3)" in text
    assert "at a true HR >= 0.8 is an error rate" in text
    with pytest.raises(InputError, match="repeat"):
        run_simulation(data, ModelSpec("bias"), true_hrs=[1.0, 1.0], bias_means=[1.0], bias_sds=[0.1], n_sim=5)
    for argv in (["--threshold", "0.8", "--threshold", "0.7"], ["--true-hr", "1,1"]):
        try:
            code = main(["simulate", "--n-sim", "5", "--quiet", *argv])
        except SystemExit as exc:
            code = exc.code
        assert code == 2 and "Traceback" not in capsys.readouterr().err
    one = syn.simulate(syn.load_dataset("dnmbc_lrt"), true_hrs=0.8, bias_means=0.7, bias_sds=0.1, n_sim=5)
    assert [(s.true_hr, s.bias_mean, s.bias_sd) for s in one.scenarios] == [(0.8, 0.7, 0.1)]
