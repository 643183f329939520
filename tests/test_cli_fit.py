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


def test_strict_exits_3_and_writes_nothing(capsys, tmp_path):
    out_dir = tmp_path / "fit"
    code, out, err = run_cli(capsys, "--model", "re", *TINY, "--strict", "--out", str(out_dir), "--json")
    assert code == 3
    assert "DID NOT CONVERGE" in err and "bulk ESS" in err
    doc = json.loads(out)
    assert doc["diagnostics"]["converged"] is False and doc["diagnostics"]["messages"]
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


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
