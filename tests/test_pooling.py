"""synthesis.pooling against R's metafor (tests/reference/metafor_pool.json, written by
tests/reference/metafor_reference.R) and against Gera et al. 2020.

Tolerances: closed-form estimators (FE, DL, HE and the two-step SJ) and everything computed from
them at 1e-6 relative; the iterative ones (REML, ML, PM) and the Q-profile tau^2 CI at 1e-4
relative against metafor run with tight convergence control (``threshold = tol = 1e-12``). A
separate test checks that metafor's *default* control lands within its own stopping tolerance of
our values (its uniroot ``tol`` is 1.2e-4 in tau^2, so default PM and Q-profile values differ in
the fourth significant digit on some datasets).
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from synthesis.errors import InputError, ModelError
from synthesis.pooling import METHODS, estimate_tau2, fit_model, pool, q_profile_ci
from synthesis.studies import load_studies

REF = Path(__file__).parent / "reference"
CLOSED_FORM = {"FE", "DL", "HE", "SJ"}
RTOL_CLOSED = 1e-6
RTOL_ITERATIVE = 1e-4
#: absolute floors for quantities that are (close to) zero: log-scale values, tau^2, I^2 (%)
ATOL = {"tau2": 1e-8, "i2": 1e-5, "tau2_ci_lower": 1e-8, "default": 1e-9}
CONTRACT_KEYS = {
    "method", "hksj", "k", "estimate", "se", "ci_lower", "ci_upper", "hr", "hr_ci_lower",
    "hr_ci_upper", "tau2", "tau", "i2", "h2", "q", "q_pvalue", "pi_lower", "pi_upper",
    "tau2_ci_lower", "tau2_ci_upper",
}
COMPARED = (
    "estimate", "se", "ci_lower", "ci_upper", "statistic", "pvalue", "tau2", "i2", "h2", "q",
    "q_pvalue", "pi_lower", "pi_upper", "tau2_ci_lower", "tau2_ci_upper",
)


@cache
def fixture() -> dict:
    return json.loads((REF / "metafor_pool.json").read_text())


def fits(control: str = "tight") -> list[tuple[str, dict]]:
    return [
        (name, f)
        for name, fs in fixture()["fits"].items()
        for f in fs
        if f["control"] == control
    ]


def fit_id(case: tuple[str, dict]) -> str:
    name, f = case
    return f"{name}-{f['method']}-{f['test']}"


def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = fixture()["datasets"][name]
    return np.asarray(d["yi"], dtype=float), np.asarray(d["vi"], dtype=float)


def expected(f: dict, key: str) -> float | None:
    # metafor's predict() gives no prediction interval for an FE model; with tau^2 = 0 it is the CI
    if key in ("pi_lower", "pi_upper") and f["method"] == "FE":
        return f["ci" + key[2:]]
    return f[key]


def assert_close(actual, want, rtol: float, key: str, where: str) -> None:
    if want is None:
        assert actual is None, f"{where} {key}: expected null, got {actual}"
        return
    assert actual is not None, f"{where} {key}: got null, expected {want}"
    atol = ATOL.get(key, ATOL["default"])
    assert actual == pytest.approx(want, rel=rtol, abs=atol), f"{where} {key}"


def test_fixture_records_versions() -> None:
    meta = fixture()["meta"]
    assert meta["metafor"].startswith("3.") or meta["metafor"].startswith("4.")
    assert meta["R"].startswith("R version")
    assert {"bcg", "hackshaw", "hine", "cannon", "bcg_k2", "gera_rcts"} <= set(fixture()["datasets"])


@pytest.mark.parametrize("case", fits(), ids=fit_id)
def test_pool_matches_metafor(case: tuple[str, dict]) -> None:
    name, f = case
    y, v = data(name)
    got = pool(y, v, method=f["method"], hksj=f["test"] == "knha").to_dict()
    assert CONTRACT_KEYS <= set(got)
    assert got["k"] == f["k"]
    rtol = RTOL_CLOSED if f["method"] in CLOSED_FORM else RTOL_ITERATIVE
    where = fit_id(case)
    for key in COMPARED:
        # the Q-profile CI is found by root search for every estimator
        tol = RTOL_ITERATIVE if key.startswith("tau2_ci") else rtol
        assert_close(got[key], expected(f, key), tol, key, where)
    assert got["hr"] == pytest.approx(math.exp(f["estimate"]), rel=rtol)
    assert got["hr_ci_lower"] == pytest.approx(math.exp(f["ci_lower"]), rel=rtol)
    assert got["hr_ci_upper"] == pytest.approx(math.exp(f["ci_upper"]), rel=rtol)
    assert got["tau"] == pytest.approx(math.sqrt(f["tau2"]), rel=rtol, abs=1e-4)


@pytest.mark.parametrize(
    "case",
    [c for c in fits("default") if c[1]["method"] != "FE"],
    ids=fit_id,
)
def test_metafor_default_control_within_its_own_tolerance(case: tuple[str, dict]) -> None:
    """metafor's defaults stop Fisher scoring at a step < 1e-5 and uniroot at tol 1.2e-4."""
    name, f = case
    y, v = data(name)
    got = pool(y, v, method=f["method"], hksj=f["test"] == "knha").to_dict()
    uniroot_tol = 2.5e-4  # two uniroot tolerances (.Machine$double.eps^0.25 ~ 1.22e-4)
    assert got["tau2"] == pytest.approx(f["tau2"], abs=uniroot_tol)
    if f["method"] in CLOSED_FORM:
        assert got["tau2"] == pytest.approx(f["tau2"], rel=RTOL_CLOSED, abs=1e-12)
    assert got["tau2_ci_lower"] == pytest.approx(f["tau2_ci_lower"], abs=uniroot_tol)
    assert got["tau2_ci_upper"] == pytest.approx(f["tau2_ci_upper"], abs=uniroot_tol)


def test_fe_has_no_tau2_and_no_tau2_ci() -> None:
    y, v = data("bcg")
    r = pool(y, v, method="FE").to_dict()
    assert r["tau2"] == 0.0
    assert r["tau2_ci_lower"] is None and r["tau2_ci_upper"] is None


def test_k2_edge_case_as_metafor() -> None:
    """Two studies (first two of dat.bcg): DL/REML/ML/PM/HE give tau^2 = 0 there, SJ does not,
    and the Q-profile upper bound is the end of metafor's search range (100)."""
    y, v = data("bcg_k2")
    by = {(f["method"], f["test"]): f for _, f in fits() if _ == "bcg_k2"}
    for method in ("DL", "REML", "ML", "PM", "HE"):
        assert by[(method, "z")]["tau2"] == 0
        assert pool(y, v, method=method).tau2 == 0.0
    sj = pool(y, v, method="SJ")
    assert sj.tau2 == pytest.approx(by[("SJ", "z")]["tau2"], rel=RTOL_CLOSED)
    r = pool(y, v, method="REML", hksj=True)
    assert r.df == 1
    assert r.tau2_ci_upper == pytest.approx(by[("REML", "knha")]["tau2_ci_upper"]) == 100.0
    assert r.ci_upper == pytest.approx(by[("REML", "knha")]["ci_upper"], rel=RTOL_ITERATIVE)


def test_homogeneous_dataset_tau2_zero() -> None:
    """dat.hine1989 (log RR): Q < k - 1, so every estimator but SJ truncates tau^2 at 0 and
    I^2 = 0, H^2 = 1; with tau^2 = 0 the z prediction interval is the CI."""
    y, v = data("hine")
    by = {(f["method"], f["test"]): f for n, f in fits() if n == "hine"}
    for method in ("DL", "REML", "ML", "PM", "HE"):
        assert by[(method, "z")]["tau2"] == 0
        r = pool(y, v, method=method)
        assert r.tau2 == 0.0
        assert r.i2 == 0.0 and r.h2 == 1.0
        assert r.q == pytest.approx(by[(method, "z")]["q"], rel=RTOL_CLOSED)
        assert r.tau2_ci_lower == 0.0
        assert r.tau2_ci_upper == pytest.approx(by[(method, "z")]["tau2_ci_upper"], rel=RTOL_ITERATIVE)
        assert (r.pi_lower, r.pi_upper) == pytest.approx((r.ci_lower, r.ci_upper), rel=1e-12)


def test_hksj_prediction_interval_uses_t_quantile() -> None:
    """metafor's predict() after test="knha" uses qt(0.975, k - 1), not qnorm (checked on the
    fixture's numbers, not on ours)."""
    from scipy import stats

    f = next(f for n, f in fits() if n == "bcg" and f["method"] == "REML" and f["test"] == "knha")
    crit = (f["pi_upper"] - f["estimate"]) / math.sqrt(f["se"] ** 2 + f["tau2"])
    assert crit == pytest.approx(stats.t.ppf(0.975, f["k"] - 1), rel=1e-9)
    y, v = data("bcg")
    r = pool(y, v, method="REML", hksj=True)
    assert r.pi_upper == pytest.approx(f["pi_upper"], rel=RTOL_ITERATIVE)


def test_gera_2020_prospective_pool_reproduced() -> None:
    """Gera et al. 2020 (DL pool of the three RCTs Badwe 2015, Soran 2018, Fitzal 2019) report
    HR 0.8077 (0.5704 to 1.1438), Q = 5.65, I^2 = 64.6%. From the HRs and CIs as printed (two
    or three significant digits) we get HR 0.8068 (0.5697 to 1.1425), Q = 5.71, I^2 = 65.0%:
    differences of 0.1% in the HR and CI bounds, 0.06 in Q and 0.4 points in I^2, all within
    the rounding of the published inputs."""
    table = load_studies(REF / "gera2020_rcts_as_printed.csv")
    r = pool(table.y, table.v, method="DL").to_dict()
    assert r["hr"] == pytest.approx(0.8077, rel=2e-3)
    assert r["hr_ci_lower"] == pytest.approx(0.5704, rel=2e-3)
    assert r["hr_ci_upper"] == pytest.approx(1.1438, rel=2e-3)
    assert r["q"] == pytest.approx(5.65, abs=0.1)
    assert r["i2"] == pytest.approx(64.6, abs=0.5)
    # and the loader's conversion of the printed CIs is R's: same yi/vi as the fixture
    y, v = data("gera_rcts")
    np.testing.assert_allclose(table.y, y, rtol=1e-12)
    np.testing.assert_allclose(table.v, v, rtol=1e-12)


def test_fisher_scoring_fallback_gives_the_same_reml_estimate() -> None:
    """With a single scoring iteration allowed, the bracketed root search takes over and still
    lands on metafor's REML estimate (and says so)."""
    y, v = data("bcg")
    want = next(f for n, f in fits() if n == "bcg" and f["method"] == "REML" and f["test"] == "z")
    fit = fit_model(y, v, method="REML", max_iter=1)
    assert fit.tau2 == pytest.approx(want["tau2"], rel=RTOL_ITERATIVE)
    assert any("did not converge" in n for n in fit.notes)


def test_q_profile_public_function_matches_pool() -> None:
    y, v = data("hackshaw")
    want = next(f for n, f in fits() if n == "hackshaw" and f["method"] == "DL" and f["test"] == "z")
    lo, hi = q_profile_ci(y, v, tau2=want["tau2"])
    assert (lo, hi) == pytest.approx((want["tau2_ci_lower"], want["tau2_ci_upper"]), rel=RTOL_ITERATIVE, abs=1e-8)


@pytest.mark.parametrize(
    ("y", "v", "error"),
    [
        ([0.1, 0.2], [0.1, 0.0], InputError),
        ([0.1, 0.2], [0.1, -1.0], InputError),
        ([0.1, float("nan")], [0.1, 0.1], InputError),
        ([0.1, 0.2, 0.3], [0.1, 0.1], InputError),
        ([], [], InputError),
    ],
)
def test_bad_input_raises_input_error(y, v, error) -> None:
    with pytest.raises(error):
        pool(y, v, method="DL")


def test_unknown_method_and_rank_deficient_design() -> None:
    y, v = data("bcg")
    with pytest.raises(InputError, match="unknown method"):
        pool(y, v, method="XYZ")
    with pytest.raises(ModelError, match="full rank"):
        estimate_tau2(y, v, np.column_stack([np.ones(y.size), np.full(y.size, 3.0)]), "REML")


def test_methods_constant_is_the_cli_contract() -> None:
    from synthesis.cli.frequentist import METHODS as CLI_METHODS

    assert METHODS == CLI_METHODS


# ------------------------------------------------------------------------------------------
# subgroups (synthesis.subgroups) against tests/reference/metafor_subgroups.json
# ------------------------------------------------------------------------------------------


@cache
def subgroup_fixture() -> dict:
    return json.loads((REF / "metafor_subgroups.json").read_text())


@pytest.mark.parametrize(
    "f",
    subgroup_fixture()["fits"],
    ids=lambda f: f"{f['data']}-{f['groupvar']}-{f['method']}-{f['test']}",
)
def test_subgroups_match_metafor(f: dict) -> None:
    """Separate rma() per subgroup, then rma(est, sei, mods = ~group, method = "FE")$QM."""
    from synthesis.subgroups import subgroup_analysis

    d = subgroup_fixture()["datasets"][f["data"]]
    got = subgroup_analysis(
        d["yi"], d["vi"], d[f["groupvar"]], method=f["method"], hksj=f["test"] == "knha"
    ).to_dict()
    rtol = RTOL_CLOSED if f["method"] in CLOSED_FORM else RTOL_ITERATIVE
    assert got["q_between"] == pytest.approx(f["q_between"], rel=rtol)
    assert got["p"] == pytest.approx(f["p"], rel=rtol)
    assert got["df"] == f["df"]
    assert list(got["groups"]) == list(f["groups"])
    for name, want in f["groups"].items():
        g = got["groups"][name]
        assert g["k"] == want["k"]
        for key in ("estimate", "se", "ci_lower", "ci_upper", "tau2", "i2", "q"):
            assert_close(g[key], want[key], rtol, key, f"{f['data']}/{name}")


def test_by_design_needs_a_design_column() -> None:
    from synthesis.subgroups import pool_by_design

    table = load_studies(REF / "gera2020_rcts_as_printed.csv")
    only_rct = pool_by_design(table, method="DL")
    assert list(only_rct.groups) == ["rct"] and only_rct.q_between is None
    no_design = dataclasses.replace(table, has_design=False)
    with pytest.raises(InputError, match="design"):
        pool_by_design(no_design)

