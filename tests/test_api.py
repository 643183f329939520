"""The Python front door (``import synthesis as syn``, issue 10): every input kind, priors as
strings and PriorSpec, keyword-only arguments, results that print as the CLI does, HTML that
escapes study names, tables, and the exact engine's iid draws in an ArviZ DataTree."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest

import synthesis as syn
from synthesis.cli import main
from synthesis.datasets import dataset_path
from synthesis.models.priors import PriorSpec, parse_prior


@pytest.fixture(scope="module")
def table():
    return syn.load_dataset("dnmbc_lrt")


@pytest.fixture(scope="module")
def frame(table):
    """The bundled CSV as a DataFrame (the analysis set: include = true rows only)."""
    return pd.read_csv(dataset_path("dnmbc_lrt"))


@pytest.fixture(params=["table", "frame", "path"])
def studies(request, table, frame):
    return {"table": table, "frame": frame, "path": dataset_path("dnmbc_lrt")}[request.param]


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.rstrip("\n")


def _no_timing(text: str) -> str:
    text = re.sub(r"Timing: .*", "Timing:", text)
    return re.sub(r"fits in [0-9.]+ s", "fits in s", text)


# --------------------------------------------------------------------------------------------
# input kinds
# --------------------------------------------------------------------------------------------
def test_every_input_kind_gives_the_same_studies(studies, table):
    loaded = syn.load_studies(studies)
    assert loaded.k == table.k == 17
    np.testing.assert_allclose(loaded.y, table.y, rtol=1e-12)
    np.testing.assert_allclose(loaded.se, table.se, rtol=1e-12)
    assert syn.pool(studies).k == 17


def test_a_dataframe_is_validated_by_the_csv_loader(frame):
    bad = frame.copy()
    bad.loc[0, "study"] = bad.loc[1, "study"]
    with pytest.raises(syn.InputError, match=r"DataFrame, line 3, column 'study': duplicate study"):
        syn.load_studies(bad)
    with pytest.raises(syn.InputError, match="StudyTable, a pandas DataFrame or a CSV path"):
        syn.pool(np.zeros(3))


def test_subset_and_covariates_on_a_loaded_table(table):
    assert syn.load_studies(table, subset="rct").k == 5
    with pytest.raises(syn.InputError, match="no column named 'nope'"):
        syn.metareg(table, covariates=["nope"])


@pytest.mark.parametrize("func", [syn.pool, syn.metareg, syn.bias_diagnostics, syn.fit, syn.sweep, syn.analyse])
def test_everything_after_the_data_is_keyword_only(func, table):
    with pytest.raises(TypeError, match="positional"):
        func(table, "REML")


def test_sweep_is_the_function_and_the_module_is_sweeps():
    """``syn.sweep`` is the front door; the module of sweeps is ``synthesis.sweeps`` (no clash)."""
    import synthesis.sweeps
    from synthesis.sweeps import run_sweep

    assert callable(syn.sweep) and syn.sweep.__module__ == "synthesis.api"
    assert synthesis.sweeps.run_sweep is run_sweep and syn.sweep is not synthesis.sweeps
    assert "models" not in sys.modules


# --------------------------------------------------------------------------------------------
# priors: strings and PriorSpec alike
# --------------------------------------------------------------------------------------------
def test_priors_as_strings_or_priorspec(table):
    as_text = syn.fit(table, model="bias", tau_prior="halfcauchy(0.5)", bias_prior="normal(0, 0.3)", engine="exact")
    as_spec = syn.fit(
        table, model="bias", engine="exact",
        tau_prior=parse_prior("halfcauchy(0.5)", "tau"), bias_prior=parse_prior("normal(0, 0.3)", "delta"),
    )
    assert isinstance(as_spec.spec.priors.tau, PriorSpec)
    assert as_text.hr == as_spec.hr
    assert as_text.spec.priors.tau == as_spec.spec.priors.tau
    with pytest.raises(syn.InputError):
        syn.fit(table, tau_prior="normal(0, 1)", engine="exact")  # not a scale family


def test_sweep_accepts_both_prior_kinds(table):
    mixed = syn.sweep(table, model="bias", tau_priors=["halfnormal(0.2)", parse_prior("halfcauchy(1)", "tau")],
                      bias_priors=[parse_prior("normal(0, 0.5)", "delta")])
    assert len(mixed.rows) == 2 and mixed.engines == {"exact": 2}
    assert mixed.to_frame().shape[0] == 2


# --------------------------------------------------------------------------------------------
# str(result) is what the CLI prints
# --------------------------------------------------------------------------------------------
def test_str_equals_the_cli(capsys, table):
    cases = [
        (syn.pool(table, method="REML", hksj=True), ["pool", "--method", "REML", "--hksj"]),
        (syn.pool(table, method="FE"), ["pool", "--method", "FE"]),
        (syn.metareg(table, covariates=["bone_only_fraction"]), ["metareg", "--covariate", "bone_only_fraction"]),
        (syn.bias_diagnostics(table), ["bias"]),
        (syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact"),
         ["fit", "--model", "bias", "--tau-prior", "halfnormal(0.5)", "--engine", "exact"]),
    ]
    for result, argv in cases:
        assert _no_timing(str(result)) == _no_timing(_cli(capsys, *argv)), argv


def test_sweep_str_equals_the_cli(capsys, table):
    result = syn.sweep(table, model="bias", tau_priors=["halfnormal(0.1)", "halfcauchy(1)"],
                       bias_priors=["normal(0, 0.5)"])
    out = _cli(capsys, "sweep", "--model", "bias", "--tau-priors", "halfnormal(0.1);halfcauchy(1)",
               "--bias-priors", "normal(0, 0.5)", "--quiet")
    assert _no_timing(str(result)) == _no_timing(out)


def test_to_json_is_the_cli_json(capsys, table):
    import json

    assert json.loads(_cli(capsys, "pool", "--json")) == syn.pool(table).to_json()
    assert json.loads(_cli(capsys, "bias", "--json")) == syn.bias_diagnostics(table).to_json()


def test_fit_effect_and_heterogeneity_keywords_are_the_cli_flags(capsys, table):
    """syn.fit(effect=False) is ``fit --no-effect``, heterogeneity=False ``--common-effect``
    (exact engine; the log ML of the model with both fixed is the closed form
    sum_i log N(y_i; 0, se_i^2): nothing left to integrate); the PyMC engine refuses them
    naming the keyword."""
    import json

    from scipy import stats

    def no_timing(doc):
        return {k: v for k, v in doc.items() if k != "timing"}

    for kw, flag in (({"effect": False}, "--no-effect"), ({"heterogeneity": False}, "--common-effect")):
        cli = json.loads(_cli(capsys, "fit", "--engine", "exact", "--model", "bias", flag, "--json"))
        ours = syn.fit(table, model="bias", engine="exact", **kw).to_json()
        assert no_timing(ours) == no_timing(cli)
    both = syn.fit(table, model="re", engine="exact", effect=False, heterogeneity=False)
    assert both.log_marginal_likelihood == pytest.approx(float(np.sum(stats.norm.logpdf(table.y, 0.0, table.se))), abs=1e-10)
    assert both.hr.median == 1.0 and both.parameters["tau"].q975 == 0.0
    with pytest.raises(syn.ModelError, match="heterogeneity=False"):
        syn.fit(table, model="re", heterogeneity=False)


# --------------------------------------------------------------------------------------------
# HTML and tables
# --------------------------------------------------------------------------------------------
def test_repr_html_escapes_study_names():
    evil = "<script>alert(1)</script>"
    frame = pd.DataFrame({
        "study": [evil, "B", "C", "D"], "design": ["rct", "rct", "retrospective", "retrospective"],
        "log_hr": [-0.1, 0.05, -0.4, -0.35], "se": [0.1, 0.12, 0.05, 0.08],
    })
    results = [syn.pool(frame), syn.bias_diagnostics(frame), syn.fit(frame, model="bias", engine="exact"),
               syn.sweep(frame, tau_priors=["halfnormal(0.5)"]), syn.metareg(frame.assign(x=[0.1, 0.2, 0.3, 0.5]),
                                                                              covariates=["x"])]
    for result in results:
        html = result._repr_html_()
        assert "<table" in html and "<script>" not in html, type(result).__name__
    assert "&lt;script&gt;" in results[1]._repr_html_() and "&lt;script&gt;" in results[2]._repr_html_()


def test_to_frame_shapes(table):
    fit = syn.fit(table, model="bias", engine="exact")
    assert fit.to_frame().shape == (3, 5) and list(fit.to_frame().index) == ["mu", "tau", "delta"]
    assert fit.to_frame("studies").shape == (17, 7)
    assert syn.pool(table).to_frame().shape[0] == 1
    assert syn.metareg(table, covariates=["bone_only_fraction"]).to_frame().shape == (2, 6)
    assert syn.bias_diagnostics(table).to_frame().shape[0] == 17


def test_plot_methods(table):
    import matplotlib.pyplot as plt

    fit = syn.fit(table, model="bias", engine="exact")
    for fig in (fit.plot_forest(), fit.plot_densities(), syn.bias_diagnostics(table).plot_funnel(),
                syn.sweep(table, tau_priors=["halfnormal(0.5)", "halfcauchy(1)"]).plot_sensitivity()):
        assert fig.axes
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# the exact engine's draws
# --------------------------------------------------------------------------------------------
def test_exact_draws_reproduce_the_exact_quantiles(table):
    """20,000 iid draws: the sample median of mu, tau and delta lies within 4 Monte Carlo SEs
    of the exact engine's median (MC SE of a median: sqrt(p (1 - p) / n) / density)."""
    fit = syn.fit(table, model="bias", engine="exact")
    n = 20_000
    draws = fit.draws(n, seed=7)
    for name in ("mu", "tau", "delta"):
        x = draws[name]
        exact = fit.parameters[name]
        width = np.quantile(x, 0.55) - np.quantile(x, 0.45)  # density at the median ~ 0.1 / width
        mcse = np.sqrt(0.25 / n) * width / 0.1
        assert abs(np.median(x) - exact.median) < 4 * mcse, name
        assert abs(np.quantile(x, 0.975) - exact.q975) < 0.02 * (exact.q975 - exact.q025), name
    hr = np.exp(draws["mu"])
    assert abs(np.mean(hr < 0.8) - fit.p_hr_below["0.8"]) < 4 * np.sqrt(0.25 / n)


def test_arviz_summary_runs_on_the_exact_datatree(table):
    from arviz_stats import summary

    fit = syn.fit(table, model="bias", engine="exact")
    dt = fit.to_datatree(draws=250, chains=4, seed=1)
    assert dict(dt.posterior.sizes) == {"chain": 4, "draw": 250, "study": 17}
    s = summary(dt, var_names=["mu", "tau", "delta"])
    assert list(s.index) == ["mu", "tau", "delta"]
    assert (s["r_hat"].astype(float) < 1.02).all()
    again = fit.to_datatree(draws=250, chains=4, seed=1)
    np.testing.assert_array_equal(again.posterior["mu"].values, dt.posterior["mu"].values)


def test_metareg_draws_have_beta_over_covariates():
    frame = pd.DataFrame({"study": list("ABCDE"), "log_hr": [-0.1, -0.3, 0.0, -0.2, -0.4],
                          "se": [0.1, 0.2, 0.15, 0.1, 0.2], "x": [0.1, 0.5, 0.0, 0.3, 0.9]})
    fit = syn.fit(frame, model="metareg", covariates=["x"], engine="exact")
    dt = fit.to_datatree(draws=100, chains=1)
    assert dt.posterior["beta"].dims == ("chain", "draw", "covariate")
    assert list(dt.posterior["covariate"].values) == ["x"]


@pytest.mark.slow
def test_arviz_summary_runs_on_the_pymc_datatree(table):
    from arviz_stats import summary

    fit = syn.fit(table, model="re", engine="pymc", chains=2, draws=200, tune=200, seed=1)
    dt = fit.to_datatree()
    assert dt is fit.posterior
    assert {"mu", "tau"} <= set(summary(dt, var_names=["mu", "tau"]).index)
    assert fit.draws()["theta"].shape == (400, 17)


def test_no_submodule_shadows_an_api_function():
    """Importing every module of the package must leave each name of ``syn.__all__`` what the
    API exports (a module ``synthesis.x`` imported later would replace a function ``syn.x``)."""
    import importlib
    import pkgutil

    import synthesis as syn

    before = {name: getattr(syn, name) for name in syn.__all__}
    for info in pkgutil.walk_packages(syn.__path__, "synthesis."):
        if not info.name.endswith("__main__"):  # the command line, which runs on import
            importlib.import_module(info.name)
    for name in syn.__all__:
        assert getattr(syn, name) is before[name], name
        assert not isinstance(getattr(syn, name), type(syn)), name


def test_plan_timeline_simulate_keywords_are_the_cli_options(capsys):
    """syn.plan / syn.timeline / syn.simulate take the options their commands take, and give the
    commands' JSON (timings aside): a multilevel common-effect plan sized in patients, a timeline
    with other priors and inclusion probabilities, a simulation with a true tau and a downweight
    analysis."""
    import json

    def same(doc):
        return {k: v for k, v in doc.items() if k not in ("seconds", "timing")}

    all_inputs = str(dataset_path("dnmbc_lrt_all_inputs"))
    cli = json.loads(_cli(capsys, "plan", all_inputs, "--cluster", "cohort", "--rho", "0.5", "--common-effect",
                          "--patients", "400,1000", "--event-prob", "0.5", "--tau-within-prior", "halfnormal(0.3)",
                          "--json"))
    ours = syn.plan(all_inputs, cluster="cohort", rho=0.5, heterogeneity=False, patients=[400, 1000],
                    event_prob=0.5, tau_within_prior="halfnormal(0.3)")
    assert same(ours.to_json()) == same(cli)
    assert [r["events"] for r in cli["rows"]] == [200.0, 500.0]
    with pytest.raises(syn.InputError, match="not both"):
        syn.plan(all_inputs, events=[100], patients=[200], event_prob=0.5)

    rct = ["--subset", "rct"]
    cli = json.loads(_cli(capsys, "timeline", *rct, "--tau-prior", "halfnormal(0.3)", "--prior-prob", "effect=0.3",
                          "--json"))
    ours = syn.timeline(syn.load_dataset("dnmbc_lrt", subset="rct"), tau_prior="halfnormal(0.3)",
                        prior_prob="effect=0.3")
    assert same(ours.to_json()) == same(cli)
    assert ours.to_json() != syn.timeline(syn.load_dataset("dnmbc_lrt", subset="rct")).to_json()

    opts = ["--true-hr", "0.8", "--bias-mean", "0.7", "--bias-sd", "0.1", "--n-sim", "50"]
    cli = json.loads(_cli(capsys, "simulate", *opts, "--tau", "0.1", "--bias-variant", "downweight", "--quiet",
                          "--json"))
    ours = syn.simulate(syn.load_dataset("dnmbc_lrt"), true_hrs=[0.8], bias_means=[0.7], bias_sds=[0.1], n_sim=50,
                        tau=0.1, bias_variant="downweight")
    assert same(ours.to_json()) == same(cli) and cli["tau"] == 0.1


def test_compare_and_psense_take_the_cluster_options(capsys):
    """syn.compare / syn.psense with cluster, rho and tau_within_prior give the commands' JSON:
    exact leave-one-cluster-out, power-scaling of whole clusters."""
    import json

    def same(doc):
        return {k: v for k, v in doc.items() if k not in ("seconds", "timing")}

    all_inputs = str(dataset_path("dnmbc_lrt_all_inputs"))
    opts = ["--cluster", "cohort", "--rho", "0.5", "--tau-within-prior", "halfnormal(0.3)"]
    kw = dict(cluster="cohort", rho=0.5, tau_within_prior="halfnormal(0.3)")
    cli = json.loads(_cli(capsys, "compare", all_inputs, "--engine", "exact", "--bias-variants", "additive,downweight",
                          *opts, "--json"))
    ours = syn.compare(all_inputs, engine="exact", bias_variants="additive,downweight", **kw).to_json()
    assert same(ours) == same(cli)
    assert "cluster" in json.dumps(cli["loo_unit"] if "loo_unit" in cli else cli)
    cli = json.loads(_cli(capsys, "psense", all_inputs, *opts, "--json"))
    assert same(syn.psense(all_inputs, **kw).to_json()) == same(cli)
    assert cli["cluster"] == "cohort" and "tau_within" in [r["parameter"] for r in cli["rows"]]


@pytest.mark.slow  # PyMC compiles the multilevel model
def test_pymc_multilevel_draws_have_tau_within_like_the_exact_fit():
    """FitResult.draws of a PyMC multilevel fit carries tau_within (the exact fit's iid draws do);
    its mean and quantiles are the fit's reported tau_within summary, from the same draws."""
    table = syn.load_dataset("dnmbc_lrt_all_inputs")
    fit = syn.fit(table, model="bias", cluster="cohort", engine="pymc", draws=200, tune=200, chains=2)
    draws = fit.draws()
    exact = syn.fit(table, model="bias", cluster="cohort", engine="exact").draws(100, seed=1)
    assert {"mu", "tau", "delta", "tau_within"} <= set(exact) & set(draws)
    tw = draws["tau_within"]
    assert tw.shape == (400,) and np.all(tw >= 0)
    s = fit.parameters["tau_within"]
    assert float(np.mean(tw)) == pytest.approx(s.mean, rel=1e-9)
    assert float(np.std(tw, ddof=1)) == pytest.approx(s.sd, rel=1e-6)
    assert float(np.median(tw)) == pytest.approx(s.median, rel=1e-9)
