"""``synthesis fit`` end to end on the bundled data: the JSON contract of both engines, exit
status 3 under ``--strict``, and ``--out`` written atomically.

The PyMC runs share one compiled model (the process-level compile cache of
:mod:`synthesis.models.pymc_fit`), so the file pays a single nutpie compile.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest

from synthesis.cli import main
from synthesis.errors import InputError
from synthesis.outputs import MARKER_NAME, atomic_directory

pytest.importorskip("synthesis.datasets")

try:
    from synthesis.datasets import dataset_path

    dataset_path("dnmbc_lrt")
    HAVE_DATA = True
except Exception:  # noqa: BLE001
    HAVE_DATA = False

pytestmark = pytest.mark.skipif(not HAVE_DATA, reason="bundled dnmbc_lrt dataset not built yet")

#: Keys every ``fit --json`` document has (models/results.py, FitResult.to_json).
CONTRACT = {
    "model", "engine", "k", "priors", "priors_detail", "mu", "tau", "hr", "p_hr_below",
    "predictive_hr", "p_predictive_hr_below", "study_hr", "interval", "seed", "timing",
}
#: Tiny runs that cannot pass the diagnostics (ESS < 400 for certain).
TINY = ["--draws", "20", "--tune", "5", "--chains", "2"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["fit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_exact_engine_json(capsys):
    code, out, err = run_cli(capsys, "--engine", "exact", "--model", "bias", "--json", "--threshold", "0.8")
    assert code == 0, err
    doc = json.loads(out)
    assert CONTRACT | {"delta", "bias_variant"} <= set(doc)
    assert doc["engine"] == "exact"
    assert doc["interval"] == {"prob": 0.95, "kind": "equal-tailed"}
    assert set(doc["p_hr_below"]) == {"0.8"}
    assert doc["priors"]["tau"].startswith("half-normal")


def test_exact_engine_refuses_with_reason(capsys):
    """A non-normal location prior is not conjugate given tau: the exact engine refuses it,
    naming the parameter and its prior (the random bias variant, the earlier example, is now
    fitted exactly by 2-D quadrature)."""
    code, _, err = run_cli(capsys, "--engine", "exact", "--model", "bias", "--mu-prior", "studentt(3, 0, 1)")
    assert code == 2
    assert "--engine exact" in err and "mu has Student-t" in err and "Traceback" not in err


def test_at_errors_exit_2_before_fitting(capsys):
    code, _, err = run_cli(capsys, "--model", "metareg", "--covariate", "bone_only_fraction", "--at", "nope=1")
    assert code == 2 and "--at" in err and "not a covariate" in err
    code, _, err = run_cli(capsys, "--model", "re", "--at", "bone_only_fraction=1")
    assert code == 2 and "--at" in err


@pytest.mark.slow  # samples with PyMC (11 s)
def test_strict_exits_3_and_writes_nothing(capsys, tmp_path):
    out_dir = tmp_path / "fit"
    code, out, err = run_cli(capsys, "--model", "re", *TINY, "--strict", "--out", str(out_dir), "--json")
    assert code == 3
    assert "DID NOT CONVERGE" in err and "bulk ESS" in err
    doc = json.loads(out)
    assert doc["diagnostics"]["converged"] is False and doc["diagnostics"]["messages"]
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # samples with PyMC (about 14 s)
def test_unconverged_without_strict_warns_loudly(capsys):
    code, out, err = run_cli(capsys, "--model", "re", *TINY)
    assert code == 0
    assert "DID NOT CONVERGE" in err
    assert "NOT CONVERGED" in out
    assert "Priors:" in out and "half-normal(scale=0.5)" in out
    assert "95% equal-tailed credible interval" in out


def test_pymc_json_and_out_dir(capsys, tmp_path):
    import xarray as xr

    out_dir = tmp_path / "fit"
    args = ["--model", "re", "--draws", "300", "--tune", "300", "--json", "--out", str(out_dir), "--seed", "7"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert CONTRACT | {"diagnostics"} <= set(doc)
    assert doc["engine"] == "pymc" and doc["seed"] == 7
    assert set(doc["timing"]) == {"compile_s", "sample_s", "total_s"}
    assert {"ess_bulk", "ess_tail", "r_hat", "mcse_mean"} <= set(doc["mu"])
    assert set(doc["diagnostics"]) == {"divergences", "max_r_hat", "min_ess_bulk", "converged", "messages"}
    assert math.isclose(doc["hr"]["median"], math.exp(doc["mu"]["median"]), rel_tol=0.02)
    assert sorted(p.name for p in out_dir.iterdir()) == [MARKER_NAME, "fit.json", "posterior.nc"]
    assert json.loads((out_dir / "fit.json").read_text())["mu"] == doc["mu"]
    dt = xr.open_datatree(out_dir / "posterior.nc", engine="h5netcdf")
    assert {"/posterior", "/sample_stats", "/observed_data"} <= set(dt.groups)
    assert json.loads(dt.attrs["prior_labels"])["tau"] == "half-normal(scale=0.5)"
    assert dt.attrs["seed"] == 7 and len(dt.attrs["data_hash"]) == 64
    assert dt.posterior["mu"].shape == (4, 300)
    dt.close()
    # no temporary directories left beside the output
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]

    # a second run replaces its own earlier output as a whole
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [MARKER_NAME, "fit.json", "posterior.nc"]
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]
    # ... but not once the user has put a file of their own into it (refused before fitting)
    (out_dir / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and "notes.txt" in err and out == ""
    assert (out_dir / "notes.txt").read_text() == "mine"


def test_out_is_never_half_written(capsys, tmp_path, monkeypatch):
    import synthesis.cli.fit as cli_fit

    out_dir = tmp_path / "fit"
    with atomic_directory(out_dir, command="fit") as tmp:  # an earlier fit --out
        (tmp / "fit.json").write_text("{}")

    def boom(dt, path: Path) -> None:
        path.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli_fit, "write_posterior", boom)
    assert main(["fit", "--model", "re", *TINY, "--out", str(out_dir)]) == 2
    out, err = capsys.readouterr()
    assert "no space left" in err and "Model:" not in out  # no results printed as if it had worked
    assert sorted(p.name for p in out_dir.iterdir()) == [MARKER_NAME, "fit.json"]
    assert (out_dir / "fit.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]


def test_library_errors_name_parameters_and_the_cli_names_flags(capsys):
    """The model layer speaks of parameters (engine='pymc', at); the command line of flags."""
    import synthesis as syn
    from synthesis.errors import ModelError

    table = syn.load_dataset("dnmbc_lrt")
    with pytest.raises(ModelError) as err:
        syn.fit(table, model="bias", mu_prior="studentt(3, 0, 1)", engine="exact")
    assert "engine='pymc'" in str(err.value) and "--" not in str(err.value)
    with pytest.raises(InputError) as err:
        syn.fit(table, model="metareg", covariates=["bone_only_fraction"], engine="exact", at=["nope=1"])
    assert str(err.value).startswith("at ") and "--at" not in str(err.value)
    code = main(["fit", "--model", "bias", "--mu-prior", "studentt(3, 0, 1)", "--engine", "exact"])
    err_text = capsys.readouterr().err
    assert code == 2 and "--engine exact:" in err_text and "use --engine pymc" in err_text


# --------------------------------------------------------------------------------------------
# --no-effect and --common-effect (exact engine): the null and common-effect models
# --------------------------------------------------------------------------------------------
def _brute_force_log_ml(y, se, *, effect: bool) -> float:
    """log p(y) of the re model with mu ~ N(0, 1) (or mu = 0) and tau ~ halfnormal(0.5), by
    Gauss-Legendre quadrature of the definition p(y) = int int p(mu) p(tau) prod_i N(y_i; mu,
    se_i^2 + tau^2) dmu dtau (no conjugate algebra; tau on [0, 4]: the prior mass above is
    1e-15; mu on [-1.5, 1.5]: the likelihood of the 17 studies is negligible beyond)."""
    import numpy as np
    from scipy import special, stats

    def gl(lo, hi, n):
        x, w = special.roots_legendre(n)
        return 0.5 * (hi - lo) * x + 0.5 * (hi + lo), 0.5 * (hi - lo) * w

    tau, wt = gl(0.0, 4.0, 300)
    logp_tau = stats.halfnorm.logpdf(tau, scale=0.5)
    if effect:
        mu, wm = gl(-1.5, 1.5, 300)
    else:
        mu, wm = np.zeros(1), np.ones(1)
    M, T = np.meshgrid(mu, tau, indexing="ij")
    lp = logp_tau[None, :] + (stats.norm.logpdf(M, 0.0, 1.0) if effect else 0.0)
    for yi, si in zip(y, se, strict=True):
        lp = lp + stats.norm.logpdf(yi, M, np.sqrt(si**2 + T**2))
    top = lp.max()
    return float(top + np.log(np.sum(np.exp(lp - top) * wm[:, None] * wt[None, :])))


def test_no_effect_is_the_null_model_and_its_bayes_factor_is_savage_dickey(capsys):
    """--no-effect: HR exactly 1 and a log marginal likelihood. log p(y | mu = 0) - log p(y)
    is the log Bayes factor of the null, which for a point null nested in a model whose mu
    prior is independent of tau is the Savage-Dickey ratio p(mu = 0 | y) / p(mu = 0) (the
    exact fit's posterior mixture density of mu at 0 over the N(0, 1) density at 0); and both
    log marginal likelihoods equal brute-force quadratures of their definitions."""
    from scipy import stats

    import synthesis as syn
    from synthesis.models.exact import exact_posterior
    from synthesis.models.spec import ModelData, ModelSpec

    code, out, err = run_cli(capsys, "--engine", "exact", "--no-effect", "--json")
    assert code == 0, err
    null = json.loads(out)
    assert null["effect"] is False
    assert null["hr"]["median"] == null["hr"]["q025"] == null["hr"]["q975"] == 1.0
    assert null["mu"]["sd"] == 0.0 and null["p_hr_below"]["1.0"] == 0.0
    code, out, err = run_cli(capsys, "--engine", "exact", "--json")
    assert code == 0, err
    full = json.loads(out)
    log_bf01 = null["log_marginal_likelihood"] - full["log_marginal_likelihood"]

    table = syn.load_dataset("dnmbc_lrt")
    spec = ModelSpec("re")
    data = ModelData.from_table(table, spec)
    post = exact_posterior(data, spec)
    density_at_0 = float(post.linear(post.contrast("mu")).pdf(0.0))
    savage_dickey = math.log(density_at_0) - stats.norm.logpdf(0.0, 0.0, 1.0)
    # the two routes share only the tau grid; measured agreement 1e-15 (log BF01 = -6.72)
    assert log_bf01 == pytest.approx(savage_dickey, abs=1e-6)
    assert abs(log_bf01) > 0.5  # the data do move mu away from 0 (a test that can fail)
    # brute force: 300-point rules, measured agreement 3e-14
    assert null["log_marginal_likelihood"] == pytest.approx(_brute_force_log_ml(data.y, data.se, effect=False), abs=1e-6)
    assert full["log_marginal_likelihood"] == pytest.approx(_brute_force_log_ml(data.y, data.se, effect=True), abs=1e-6)


def test_common_effect_is_tau_zero_with_the_closed_form_marginal_likelihood(capsys):
    """--common-effect: tau = 0, and p(y) = N(y; 0, diag(se^2) + 1 1') for mu ~ N(0, 1)
    (the multivariate normal density, scipy)."""
    import numpy as np
    from scipy import stats

    import synthesis as syn
    from synthesis.models.spec import ModelData, ModelSpec

    code, out, err = run_cli(capsys, "--engine", "exact", "--common-effect", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["heterogeneity"] is False and doc["tau"]["median"] == doc["tau"]["q975"] == 0.0
    data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), ModelSpec("re"))
    cov = np.diag(data.se**2) + np.ones((data.k, data.k))
    expected = stats.multivariate_normal(np.zeros(data.k), cov).logpdf(data.y)
    assert doc["log_marginal_likelihood"] == pytest.approx(expected, abs=1e-8)
    # and the predictive HR of a new study is then the HR itself
    assert doc["predictive_hr"]["q975"] == pytest.approx(doc["hr"]["q975"], rel=1e-9)


@pytest.mark.parametrize("flag", ["--no-effect", "--common-effect"])
def test_fixed_parameter_flags_are_exact_only(capsys, flag):
    """With the (default) PyMC engine the model layer refuses; the CLI says so in flags."""
    code, out, err = run_cli(capsys, flag)
    assert code == 2 and out == ""
    assert f"--engine pymc does not fit models with {flag}" in err and "use --engine exact" in err
    assert "=False" not in err and "Traceback" not in err


def test_no_free_parameters_lists_no_priors_and_says_closed_form(capsys):
    """--no-effect --common-effect: mu = tau = 0, so no prior and no quadrature; both the
    effect and heterogeneity booleans are always in the JSON."""
    code, out, err = run_cli(capsys, "--engine", "exact", "--no-effect", "--common-effect")
    assert code == 0, err
    assert "Priors: none (no free parameters)" in out and "normal(mean=0" not in out
    assert "closed form (tau fixed at 0)" in out and "quadrature" not in out
    code, out, err = run_cli(capsys, "--engine", "exact", "--no-effect", "--common-effect", "--json")
    doc = json.loads(out)
    assert doc["priors"] == {} and doc["priors_detail"] == {}
    assert doc["effect"] is False and doc["heterogeneity"] is False
    code, out, err = run_cli(capsys, "--engine", "exact", "--json")
    doc = json.loads(out)
    assert doc["effect"] is True and doc["heterogeneity"] is True and set(doc["priors"]) == {"mu", "tau"}
