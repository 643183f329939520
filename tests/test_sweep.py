"""Prior-sensitivity sweeps (exact engine: fast) and the sweep command's contract."""

from __future__ import annotations

import importlib
import json
import os
import time

import pytest

from synthesis.cli import main
from synthesis.datasets import load_dataset
from synthesis.errors import InputError
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.sweeps import (
    prior_scale,
    run_sweep,
    split_specs,
    standard_bias_priors,
    standard_tau_priors,
)


@pytest.fixture(scope="module")
def table():
    return load_dataset("dnmbc_lrt")


def test_standard_grids_sweep_in_order_with_distinct_priors(table):
    """The standard grids parse, name distinct priors (no two scales printing alike), order each
    family by its prior median, and a sweep over them returns one row per pair, delta-major."""
    taus = split_specs(None, standard_tau_priors(), "tau")
    biases = split_specs(None, standard_bias_priors(), "delta")
    assert len({t.label for t in taus}) == len(taus)
    assert len({b.label for b in biases}) == len(biases)
    for family in ("halfnormal", "halfcauchy"):
        medians = [prior_scale(t) for t in taus if t.family == family]
        assert medians == sorted(medians) and len(set(medians)) == len(medians)
    rates = [prior_scale(t) for t in taus if t.family == "exponential"]
    assert rates == sorted(rates)
    spec = ModelSpec("bias")
    result = run_sweep(ModelData.from_table(table, spec), spec, tau_priors=taus, bias_priors=biases, progress=False)
    assert [(r.bias_prior, r.tau_prior) for r in result.rows] == [(b.label, t.label) for b in biases for t in taus]
    assert all(0 < r.hr_q025 < r.hr_median < r.hr_q975 for r in result.rows)


def test_bias_sweep_without_bias_priors_keeps_the_models_own(table):
    spec = ModelSpec("bias")
    data = ModelData.from_table(table, spec)
    taus = split_specs("halfnormal(0.1);halfnormal(0.5)", [], "tau")
    result = run_sweep(data, spec, tau_priors=taus, progress=False)  # was an IndexError
    assert [r.bias_prior for r in result.rows] == [spec.priors.delta.label] * 2
    single = fit_exact(data, spec, thresholds=(0.8, 1.0))
    assert result.rows[1].hr_median == pytest.approx(single.hr.median, rel=1e-9)


def test_sweep_refuses_an_unknown_engine(table, monkeypatch):
    sweep = importlib.import_module("synthesis.sweeps")  # the package exports a function of that name

    def no_pymc(*args, **kwargs):  # pragma: no cover - reached only by the defect
        raise AssertionError("an unknown engine ran PyMC")

    monkeypatch.setattr(sweep, "run_parallel", no_pymc)
    spec = ModelSpec("re")
    data = ModelData.from_table(table, spec)
    with pytest.raises(InputError, match="unknown engine 'exakt'"):
        run_sweep(data, spec, tau_priors=split_specs("halfnormal(0.5)", [], "tau"), engine="exakt", progress=False)


def _wait_for_flag(flag: str) -> bool:
    """Job for the progress test: "" returns at once; a path waits (up to 30 s) for that file,
    which the parent's progress bar creates when it counts the first finished job."""
    if not flag:
        return False
    for _ in range(3000):
        if os.path.exists(flag):
            return True
        time.sleep(0.01)
    return False


def test_progress_bar_advances_as_jobs_finish(monkeypatch, tmp_path):
    """The bar moves when the first job finishes, not after the last one (it used to wrap a
    finished ``list(pool.map(...))``): the slow job finishes only after it sees the file the
    bar writes on its first update, so it returns True only if the bar advanced mid-run."""
    sweep = importlib.import_module("synthesis.sweeps")
    flag = tmp_path / "first-update"
    updates: list[int] = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int = 1) -> None:
            updates.append(n)
            flag.touch()

    monkeypatch.setattr(sweep, "_progress_bar", lambda total, show, desc: Bar())
    results = sweep.run_parallel(_wait_for_flag, ["", str(flag)], workers=2, scheduler=None, show=True, desc="test")
    assert results == [False, True] and updates == [1, 1]


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
    # engine="pymc": the random variant is also exact now (2-D quadrature), and auto would pick it
    kwargs = dict(tau_priors=taus, bias_priors=biases, thresholds=(0.8,), draws=200, tune=200, chains=2, seed=3,
                  progress=False, engine="pymc")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        remote = run_sweep(data, spec, scheduler=cluster.scheduler_address, **kwargs)
    local = run_sweep(data, spec, **kwargs)
    assert remote.engines == {"pymc": 2}
    assert [r.hr_median for r in remote.rows] == pytest.approx([r.hr_median for r in local.rows], rel=1e-12), (
        f"remote {[(r.engine, r.converged) for r in remote.rows]}, local {[(r.engine, r.converged) for r in local.rows]}"
    )
