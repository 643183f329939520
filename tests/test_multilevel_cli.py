"""``--cluster`` / ``--rho`` / ``--tau-within-prior`` on pool, metareg, fit, sweep and average
(issue #13): JSON keys, agreement with the library (itself checked against metafor and brute-force
quadrature in test_multilevel.py / test_multilevel_exact.py) and refusals with exit status 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from synthesis.cli import main
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.multilevel import ALL_INPUTS_FILE, load_all_inputs

REF = json.loads((Path(__file__).parent / "reference" / "metafor_multilevel.json").read_text())


@pytest.fixture(scope="module")
def all_inputs() -> str:
    from synthesis.datasets import dataset_path

    return str(dataset_path("dnmbc_lrt").with_name(ALL_INPUTS_FILE))


def _json(capsys, argv: list[str]) -> dict:  # noqa: ANN001
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_pool_cluster_json_matches_rma_mv(capsys, all_inputs: str) -> None:
    ref = next(f for f in REF["fits"] if f["data"] == "all_inputs" and f["method"] == "REML" and f["rho"] == 0.5
               and not f["moderator"] and f["test"] == "t" and f["control"] == "tight")
    out = _json(capsys, ["pool", all_inputs, "--cluster", "cohort", "--rho", "0.5", "--hksj", "--json"])
    for key in ("sigma2_between", "sigma2_within"):
        assert math.isclose(out[key], ref[key], rel_tol=1e-4)
    c = ref["coefficients"]["intercept"]
    assert math.isclose(out["estimate"], c["estimate"], rel_tol=1e-5)
    assert math.isclose(out["ci_lower"], c["ci_lower"], rel_tol=1e-5)
    assert out["hr"] == pytest.approx(math.exp(c["estimate"]), rel=1e-5)
    assert out["q"] == pytest.approx(ref["qe"], rel=1e-10) and out["df"] == ref["df"]
    assert out["clusters"] == 19 and out["cluster"] == "cohort" and out["rho"] == 0.5


def test_metareg_cluster_json(capsys, all_inputs: str) -> None:
    out = _json(capsys, ["metareg", all_inputs, "--cluster", "cohort", "--covariate", "year", "--json"])
    assert {"sigma2_between", "sigma2_within", "coefficients", "qm", "qe"} <= set(out)
    assert set(out["coefficients"]) == {"intercept", "year"}


def test_fit_cluster_json_matches_library(capsys, all_inputs: str) -> None:
    out = _json(capsys, ["fit", all_inputs, "--cluster", "cohort", "--model", "bias", "--rho", "0.5",
                         "--tau-within-prior", "halfnormal(0.3)", "--json"])
    assert {"tau", "tau_within", "mu", "delta", "hr"} <= set(out)
    assert out["priors"]["tau_within"] == "half-normal(scale=0.3)" and out["cluster"] == "cohort"
    from synthesis.models.priors import parse_prior

    spec = ModelSpec("bias", cluster="cohort", rho=0.5, tau_within_prior=parse_prior("halfnormal(0.3)", "tau"))
    lib = fit_exact(ModelData.from_table(load_all_inputs(), spec), spec)
    assert out["tau_within"]["median"] == pytest.approx(lib.parameters["tau_within"].median, rel=1e-12)
    assert out["hr"]["median"] == pytest.approx(lib.hr.median, rel=1e-12)


def test_sweep_and_average_cluster(capsys, all_inputs: str) -> None:
    out = _json(capsys, ["sweep", all_inputs, "--cluster", "cohort", "--tau-priors", "halfnormal(0.5)", "--quiet", "--json"])
    assert out["multilevel"]["cluster"] == "cohort"
    avg = _json(capsys, ["average", all_inputs, "--cluster", "cohort", "--json"])
    assert avg["multilevel"]["tau_within_prior"] == "half-normal(scale=0.5)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pool", "--cluster", "cohort"], "every cohort has one row"),
        (["pool", "--cluster", "nope"], "no column named 'nope'"),
        (["pool", "--rho", "0.3"], "needs --cluster"),
        (["pool", "--cluster", "cohort", "--method", "DL"], "REML or ML"),
        (["fit", "--tau-within-prior", "halfnormal(1)"], "needs --cluster"),
        (["fit", "--cluster", "cohort", "--model", "bias", "--bias-variant", "three-level"], "third variance"),
        (["average", "--cluster", "cohort", "--bias-variants", "all"], "third variance"),
        (["fit", "--cluster", "cohort", "--tau-within-prior", "normal(0, 1)"], "not available for tau"),
    ],
)
def test_refusals_exit_2(capsys, argv: list[str], message: str) -> None:  # noqa: ANN001
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_rho_out_of_range_is_a_usage_error(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(["pool", "--cluster", "cohort", "--rho", "1"])
    assert exc.value.code == 2
    assert "[0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_pymc_multilevel_agrees_with_exact() -> None:
    """``fit --cluster --engine pymc`` samples the multilevel model (latent cluster and row
    effects, rho through a shared cluster error): its medians of mu, tau, tau_within and delta
    and P(HR < 0.8) agree with the exact engine within Monte Carlo error (4 x 2000 draws), and
    refits with other rho or tau_within priors are not served from another model's compile."""
    from synthesis.models.exact import fit_exact
    from synthesis.models.priors import parse_prior
    from synthesis.models.pymc_fit import fit_pymc
    from synthesis.models.spec import ModelData, ModelSpec

    table = load_all_inputs()
    for rho, tau_within in ((0.5, None), (0.5, "halfnormal(1)")):
        spec = ModelSpec("bias", cluster="cohort", rho=rho,
                         tau_within_prior=None if tau_within is None else parse_prior(tau_within, "tau"))
        data = ModelData.from_table(table, spec)
        exact = fit_exact(data, spec)
        sampled = fit_pymc(data, spec, draws=2000, tune=1000, seed=11)
        assert sampled.diagnostics.converged, sampled.diagnostics.messages
        assert set(sampled.parameters) == set(exact.parameters) == {"mu", "tau", "delta", "tau_within"}
        for name in ("mu", "delta"):
            assert sampled.parameters[name].median == pytest.approx(exact.parameters[name].median, abs=0.02), name
        for name in ("tau", "tau_within"):
            assert sampled.parameters[name].median == pytest.approx(exact.parameters[name].median, abs=0.03), name
        assert sampled.p_hr_below["0.8"] == pytest.approx(exact.p_hr_below["0.8"], abs=0.03)
