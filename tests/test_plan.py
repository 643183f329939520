"""``synthesis plan`` (issue #14): the exact preposterior of a new RCT against closed forms,
full refits and Monte Carlo simulation, and the command line."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pytest
from scipy import special, stats

import synthesis as syn
from synthesis.cli import main
from synthesis.models.exact import exact_posterior
from synthesis.models.preposterior import plan_trial, posterior_after, trial_se
from synthesis.models.spec import ModelData, ModelSpec

matplotlib.use("Agg")

#: Closed-form checks: the preposterior is exact up to root finding (1e-12) and quadrature.
EXACT_TOL = 1e-9
#: A refit with the new row on its own tau grid against the update on the current grid: both
#: exact engine quadratures (the grid is placed for the current posterior; 257 Simpson nodes).
REFIT_TOL = 2e-5
#: Monte Carlo agreement: within 4 standard errors (a false alarm about 1 in 16,000 runs).
MC_Z = 4.0


@pytest.fixture(scope="module")
def table():
    return syn.load_dataset("dnmbc_lrt")


def _data(table, spec):
    return ModelData.from_table(table, spec)


def _with_row(data: ModelData, y: float, se: float) -> ModelData:
    """The data with one more randomised study appended (an independent route to the refit)."""
    return ModelData(
        studies=(*data.studies, "new trial"),
        y=np.append(data.y, y),
        se=np.append(data.se, se),
        nonrandomised=np.append(data.nonrandomised, False),
        designs=(*data.designs, "rct"),
        covariates=data.covariates,
        x=np.vstack([data.x, data.centres[None, :]]) if data.x.shape[1] else np.zeros((data.k + 1, 0)),
        centres=data.centres,
        source=data.source,
        clusters=(*data.clusters, "new trial's own cluster") if data.clusters else (),
    )


def test_trial_information():
    # d r / (1 + r)^2: 1:1 is d / 4, 2:1 is 2 d / 9
    assert trial_se(400) == pytest.approx(0.1, abs=1e-15)
    assert trial_se(900, allocation=2.0) ** -2 == pytest.approx(200.0, rel=1e-12)
    with pytest.raises(syn.InputError):
        trial_se(0)


def test_conjugate_case_closed_form(table):
    """tau fixed at 0, common effect: every quantity has a closed form in Phi."""
    spec = ModelSpec("re", heterogeneity=False)
    data = _data(table, spec)
    m0, s0 = 0.0, 1.0  # default mu prior normal(0, 1)
    prec = float(np.sum(data.se**-2)) + s0**-2
    v = 1.0 / prec
    m = v * (float(np.sum(data.y / data.se**2)) + m0 / s0**2)
    T, level, alpha1 = 0.9, 0.5, 0.025
    events = [50.0, 300.0, 2000.0]
    res = plan_trial(data, spec, events=events, threshold=T, level=level, one_sided=alpha1)
    z = stats.norm.ppf(0.975)
    now = stats.norm.cdf((math.log(T) - m) / math.sqrt(v))
    assert res.p_below_now == pytest.approx(now, abs=EXACT_TOL)
    for d, row in zip(events, res.rows, strict=True):
        s2 = 4.0 / d
        s = math.sqrt(s2)
        pred = math.sqrt(v + s2)
        sig = stats.norm.cdf((-z * s - m) / pred) + stats.norm.sf((z * s - m) / pred)
        v_after = 1.0 / (1.0 / v + 1.0 / s2)
        # rule met <=> m'(y) < log T - z_level sd' with m'(y) = v' (m / v + y / s2)
        y_star = s2 * ((math.log(T) - stats.norm.ppf(level) * math.sqrt(v_after)) / v_after - m / v)
        met = stats.norm.cdf((y_star - m) / pred)
        assert row.p_trial_significant == pytest.approx(sig, abs=EXACT_TOL)
        assert row.p_trial_significant_benefit == pytest.approx(stats.norm.cdf((-z * s - m) / pred), abs=EXACT_TOL)
        assert row.p_trial_significant_one_sided == pytest.approx(
            stats.norm.cdf((stats.norm.ppf(alpha1) * s - m) / pred), abs=EXACT_TOL)
        assert row.p_rule_met_after == pytest.approx(met, abs=EXACT_TOL)
        assert row.p_decision_changes == pytest.approx(met if now <= level else 1 - met, abs=EXACT_TOL)
        assert row.expected_posterior_sd == pytest.approx(math.sqrt(v_after), abs=EXACT_TOL)
        assert row.evsi == pytest.approx(v - v_after, abs=EXACT_TOL)


@pytest.mark.parametrize("spec", [ModelSpec("bias"), ModelSpec("re"), ModelSpec("bias", bias_variant="random"),
                                  ModelSpec("re", cluster="cohort")],
                         ids=["bias", "re", "random", "multilevel"])
def test_update_equals_full_refit(table, spec):
    """The conjugate update on the current grid against exact_posterior on the data with the
    new row appended (its own pilot and grid; a 2-D grid for the random variant)."""
    data = _data(table, spec)
    post = exact_posterior(data, spec)
    se = trial_se(600)
    ys = [math.log(0.6), math.log(0.85), 0.0, math.log(1.3)]
    after = posterior_after(post, ys, se)
    for i, y in enumerate(ys):
        refit = exact_posterior(_with_row(data, y, se), spec)
        mix = refit.linear(refit.contrast("mu"))
        tol = REFIT_TOL if spec.bias_variant != "random" and spec.cluster is None else 1e-4  # 2-D Lobatto axes
        assert after.p_below(0.8)[i] == pytest.approx(float(mix.cdf(math.log(0.8))), abs=tol)
        assert after.mean()[i] == pytest.approx(mix.mean(), abs=tol)
        assert after.sd()[i] == pytest.approx(mix.sd(), rel=tol)


def test_quadratures_agree_and_martingale(table):
    """Trapezoid on the scan and Gauss-Hermite per tau component give the same expectations;
    the expected posterior mean is today's mean (a martingale) and EVSI = Var(E[mu | y, y_new])."""
    from synthesis.models import preposterior as pp

    spec = ModelSpec("bias")
    data = _data(table, spec)
    a = plan_trial(data, spec, events=[100, 2000])
    b = plan_trial(data, spec, events=[100, 2000], quadrature="gauss-hermite", gh_nodes=96)
    for ra, rb in zip(a.rows, b.rows, strict=True):
        assert ra.expected_posterior_sd == pytest.approx(rb.expected_posterior_sd, abs=1e-9)
        assert ra.evsi == pytest.approx(rb.evsi, abs=1e-9)
    cur = pp._Current.of(exact_posterior(data, spec))
    scan = pp._scan(cur, trial_se(800) ** 2, math.log(0.8), 0.9)
    assert scan.expected_mean == pytest.approx(float(cur.w @ cur.m), abs=1e-12)


def test_preposterior_matches_monte_carlo(table):
    """Draw (mu, tau) from the exact posterior (its own sampler), theta_new = mu + tau z,
    y_new ~ N(theta_new, se^2), and evaluate each quantity at the simulated y_new: the plan's
    exact integrals agree within MC_Z Monte Carlo standard errors (8,000 draws)."""
    spec = ModelSpec("bias")
    data = _data(table, spec)
    post = exact_posterior(data, spec)
    T, level, d, n = 0.9, 0.5, 500.0, 8_000
    res = plan_trial(data, spec, events=[d], threshold=T, level=level, posterior=post).rows[0]
    rng = np.random.default_rng(20261203)
    draws = post.sample(n, rng)
    se = trial_se(d)
    y = draws["mu"] + draws["tau"] * rng.standard_normal(n) + se * rng.standard_normal(n)
    after = posterior_after(post, y, se)
    met = after.p_below(T) > level
    sig = np.abs(y / se) > special.ndtri(0.975)
    for exact, sample in ((res.p_rule_met_after, met), (res.p_trial_significant, sig)):
        mc_se = math.sqrt(exact * (1 - exact) / n)
        assert abs(sample.mean() - exact) < MC_Z * mc_se
    sd = after.sd()
    assert abs(sd.mean() - res.expected_posterior_sd) < MC_Z * sd.std() / math.sqrt(n)
    evsi_mc = after.mean().var()
    assert abs(evsi_mc - res.evsi) < 0.07 * res.evsi  # a variance of 8,000 draws: SE ~1.6%


@pytest.mark.slow
def test_preposterior_matches_monte_carlo_with_full_refits(table):
    """Plain Monte Carlo: draw theta from the posterior, y_new, and refit the whole model with
    the exact engine on the data plus the new row (600 refits)."""
    spec = ModelSpec("bias")
    data = _data(table, spec)
    post = exact_posterior(data, spec)
    T, level, d, n = 0.9, 0.5, 500.0, 600
    res = plan_trial(data, spec, events=[d], threshold=T, level=level, posterior=post).rows[0]
    rng = np.random.default_rng(7)
    draws = post.sample(n, rng)
    se = trial_se(d)
    y = draws["mu"] + draws["tau"] * rng.standard_normal(n) + se * rng.standard_normal(n)
    met, sds = [], []
    for yi in y:
        refit = exact_posterior(_with_row(data, float(yi), se), spec)
        mix = refit.linear(refit.contrast("mu"))
        met.append(float(mix.cdf(math.log(T))) > level)
        sds.append(mix.sd())
    p = res.p_rule_met_after
    assert abs(np.mean(met) - p) < MC_Z * math.sqrt(p * (1 - p) / n)
    assert abs(np.mean(sds) - res.expected_posterior_sd) < MC_Z * np.std(sds) / math.sqrt(n)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``synthesis plan ARGS`` in this process: exit status, stdout, stderr."""
    try:
        code = main(["plan", *args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_contract_and_default_model(capsys):
    code, stdout, err = _cli(capsys, "--events", "200,1000", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["model"] == "bias" and doc["rule"] == {"threshold": 0.8, "level": 0.9}
    for row in doc["rows"]:
        assert {"events", "p_trial_significant", "p_rule_met_after", "p_decision_changes",
                "expected_posterior_sd"} <= set(row)
    assert [r["events"] for r in doc["rows"]] == [200.0, 1000.0]


@pytest.mark.parametrize(
    "args",
    [
        ["--events", "0"],
        ["--events", "ten"],
        ["--level", "1"],
        ["--one-sided", "1.5"],
        ["--allocation", "0"],
        ["--threshold", "0.8", "--threshold", "0.9"],
        ["--patients", "500"],
        ["--events", "100", "--patients", "100", "--event-prob", "0.5"],
        ["--model", "bias", "--subset", "rct"],
    ],
)
def test_cli_bad_options_exit_2(capsys, args):
    code, _, err = _cli(capsys, *args)
    assert code == 2, err
    assert "Traceback" not in err and "error" in err


@pytest.mark.slow  # draws and saves the figure (about 4 s)
def test_cli_falls_back_to_re_with_note(capsys, tmp_path):
    out = tmp_path / "plan_out"
    code, stdout, err = _cli(capsys, "--subset", "rct", "--patients", "400", "--event-prob", "0.5", "--json", "--out", str(out))
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["model"] == "re" and any("random effects" in n for n in doc["notes"])
    assert doc["rows"][0]["events"] == 200.0 and doc["rows"][0]["patients"] == 400.0
    assert {"plan.csv", "plan.json", "plan.png", "plan.svg"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("value", ["1e200", "1e-300", "2000"])
def test_allocation_outside_its_range_is_exit_2(value, capsys):
    """An allocation ratio beyond 1:1000 either way is refused with a message (1e200 overflowed
    (1 + r)^2 before)."""
    from synthesis.cli import main

    assert main(["plan", "--events", "500", "--allocation", value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("allocation" in err)


def test_cli_missing_covariate_values_name_the_column_not_another_engine(capsys):
    """plan has only the exact engine: missing covariate values are refused with the column and
    the count (14 rows of the bundled data lack bone_only_fraction), not advice to use PyMC."""
    code, _, err = _cli(capsys, "--model", "bias-metareg", "--covariate", "bone_only_fraction", "--events", "500")
    assert code == 2
    assert "'bone_only_fraction' (14 missing)" in err and "--engine" not in err and "Traceback" not in err
