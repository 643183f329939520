"""Prior-sensitivity sweeps (exact engine: fast) and the sweep command's contract."""

from __future__ import annotations

import json

import pytest

from synthesis.cli import main
from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.priors import parse_prior
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.sweep import run_sweep, split_specs, standard_bias_priors, standard_tau_priors


@pytest.fixture(scope="module")
def table():
    return load_dataset("dnmbc_lrt")


def test_standard_grids_cover_the_issue():
    taus = standard_tau_priors()
    assert "halfnormal(0.05)" in taus and "halfnormal(2)" in taus
    assert "halfcauchy(0.05)" in taus and "halfcauchy(2)" in taus
    assert any(t.startswith("exponential(") for t in taus)
    assert "turner2015-acm-nonpharm" in taus
    biases = [parse_prior(b, "delta") for b in standard_bias_priors()]
    assert {b.params[0] for b in biases} == {0.0, -0.223}
    assert min(b.params[1] for b in biases) == 0.1 and max(b.params[1] for b in biases) == 1.0


def test_sweep_rows_equal_single_exact_fits(table):
    """Each row of a sweep is the fit with that prior (checked against separate exact fits)."""
    spec = ModelSpec("bias")
    data = ModelData.from_table(table, spec)
    taus = split_specs("halfnormal(0.1);halfcauchy(1);turner2015-acm-nonpharm", [], "tau")
    biases = split_specs("normal(0, 0.25);normal(-0.223, 0.5)", [], "delta")
    result = run_sweep(data, spec, tau_priors=taus, bias_priors=biases, thresholds=(0.8,), progress=False)
    assert len(result.rows) == 6 and result.engines == {"exact": 6}
    for row, (b, t) in zip(result.rows, [(b, t) for b in biases for t in taus], strict=True):
        single = fit_exact(data, ModelSpec("bias", priors=spec.priors.__class__(
            mu=spec.priors.mu, tau=t, delta=b, beta=spec.priors.beta, kappa=spec.priors.kappa)), thresholds=(0.8,))
        assert row.tau_prior == t.label and row.bias_prior == b.label
        assert row.hr_median == pytest.approx(single.hr.median, rel=1e-9)
        assert row.p_hr_below["0.8"] == pytest.approx(single.p_hr_below["0.8"], rel=1e-9)
    assert result.rows[2].tau_family == "turner2015-acm-nonpharm"


def test_sweep_moves_with_the_prior(table):
    """A tighter bias prior around 0 leaves more of the observational benefit in mu: the
    posterior HR must fall (towards the observational ~0.63) as the bias SD shrinks."""
    spec = ModelSpec("bias")
    data = ModelData.from_table(table, spec)
    result = run_sweep(
        data, spec, tau_priors=split_specs("halfnormal(0.5)", [], "tau"),
        bias_priors=split_specs("normal(0, 0.1);normal(0, 1)", [], "delta"), progress=False,
    )
    tight, wide = result.rows
    assert tight.hr_median < wide.hr_median


def test_sweep_cli_json_and_out(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", "re", "--subset", "rct", "--tau-priors", "halfnormal(0.1);halfcauchy(1)",
                 "--threshold", "0.8", "--json", "--quiet", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [set(r) >= {"model", "tau_prior", "bias_prior", "hr_median", "hr_q025", "hr_q975", "p_hr_below"} for r in doc["rows"]] == [True, True]
    assert (out / "sweep.csv").is_file() and (out / "sensitivity.png").is_file() and (out / "sensitivity.svg").is_file()


def test_sweep_cli_bad_prior_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--tau-priors", "halfnormal(0.1);gamma(2)", "--out", str(out)]) == 2
    assert "gamma" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_pymc_sweep_compiles_once(table, monkeypatch):
    """A sweep of N priors over a model the exact engine cannot do (imputed covariate) compiles
    the PyMC model once and swaps the priors in as data."""
    import synthesis.models.pymc_fit as pf

    calls = []
    original = pf.CompiledModel.compile

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pf.CompiledModel, "compile", counting)
    monkeypatch.setattr(pf, "_COMPILED", type(pf._COMPILED)())
    spec = ModelSpec("bias-metareg", covariates=("bone_only_fraction",))
    data = ModelData.from_table(load_dataset("dnmbc_lrt", covariates=["bone_only_fraction"]), spec)
    taus = split_specs("halfnormal(0.1);halfnormal(1)", [], "tau")
    result = run_sweep(data, spec, tau_priors=taus, bias_priors=split_specs("normal(0, 0.5)", [], "delta"),
                       thresholds=(0.8,), draws=300, tune=300, chains=2, progress=False)
    assert result.engines == {"pymc": 2}
    assert len(calls) == 1
    assert result.rows[0].tau_median < result.rows[1].tau_median


@pytest.mark.slow
def test_sweep_on_a_dask_cluster(table):
    """``--scheduler ADDRESS`` sends the PyMC fits to an existing Dask cluster (here a local
    in-process one); the results equal the same sweep run locally with the same seed."""
    distributed = pytest.importorskip("dask.distributed")
    spec = ModelSpec("bias", bias_variant="random")
    data = ModelData.from_table(table, spec)
    taus = split_specs("halfnormal(0.25);halfnormal(1)", [], "tau")
    biases = split_specs("normal(0, 0.5)", [], "delta")
    kwargs = dict(tau_priors=taus, bias_priors=biases, thresholds=(0.8,), draws=200, tune=200, chains=2, seed=3, progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        remote = run_sweep(data, spec, scheduler=cluster.scheduler_address, **kwargs)
    local = run_sweep(data, spec, **kwargs)
    assert remote.engines == {"pymc": 2}
    assert [r.hr_median for r in remote.rows] == pytest.approx([r.hr_median for r in local.rows], rel=1e-12)
