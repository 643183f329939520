"""synthesis.metaregression against metafor ``rma(yi, vi, mods = ..., method, test)``
(tests/reference/metafor_metareg.json: dat.bcg with ablat, with ablat + year, and the dnMBC
dataset with bone_only_fraction, where metafor drops the rows with a missing value).

Tolerances as in test_pooling: 1e-6 relative for the closed-form estimators (FE, DL, HE, SJ),
1e-4 for REML, ML and PM against metafor run with tight convergence control.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from synthesis.errors import InputError, ModelError
from synthesis.metaregression import metaregression

REF = Path(__file__).parent / "reference"
CLOSED_FORM = {"FE", "DL", "HE", "SJ"}
CONTRACT_KEYS = {"method", "hksj", "k", "dropped", "tau2", "qm", "qm_pvalue", "coefficients"}
COEF_KEYS = ("estimate", "se", "ci_lower", "ci_upper", "statistic", "pvalue")
ATOL = {"tau2": 1e-8, "i2": 1e-5, "r2": 1e-5}


@cache
def fixture() -> dict:
    return json.loads((REF / "metafor_metareg.json").read_text())


def cases() -> list[dict]:
    return [f for f in fixture()["fits"] if f["control"] == "tight"]


def case_id(f: dict) -> str:
    return f"{f['data']}-{'+'.join(f['covariates'])}-{f['method']}-{f['test']}"


def inputs(f: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = fixture()["datasets"][f["data"]]
    Z = np.column_stack(
        [[np.nan if x is None else float(x) for x in d[c]] for c in f["covariates"]]
    )
    return np.asarray(d["yi"], dtype=float), np.asarray(d["vi"], dtype=float), Z


@pytest.mark.parametrize("f", cases(), ids=case_id)
def test_metareg_matches_metafor(f: dict) -> None:
    y, v, Z = inputs(f)
    got = metaregression(y, v, Z, f["covariates"], method=f["method"], hksj=f["test"] == "knha").to_dict()
    assert CONTRACT_KEYS <= set(got)
    assert got["k"] == f["k"]
    assert got["dropped"] == f["dropped"]
    assert list(got["coefficients"]) == ["intercept", *f["covariates"]]
    rtol = 1e-6 if f["method"] in CLOSED_FORM else 1e-4
    where = case_id(f)
    for key in ("tau2", "qm", "qm_pvalue", "qe", "qe_pvalue", "i2", "h2", "r2"):
        want = f[key]
        assert got[key] == pytest.approx(want, rel=rtol, abs=ATOL.get(key, 1e-9)), f"{where} {key}"
    assert got["qm_df"][0] == f["qm_df"][0]
    if f["test"] == "knha":
        assert got["qm_df"][1] == f["qm_df"][1]
    for name, want in f["coefficients"].items():
        for key in COEF_KEYS:
            assert got["coefficients"][name][key] == pytest.approx(
                want[key], rel=rtol, abs=1e-9
            ), f"{where} {name}.{key}"


def test_bcg_ablat_reml_headline() -> None:
    """The textbook example (metafor's rma(yi, vi, mods = ~ ablat, data = dat.bcg)): the slope
    on absolute latitude, from the fixture, with its z test."""
    f = next(
        f for f in cases()
        if f["data"] == "bcg" and f["covariates"] == ["ablat"] and f["method"] == "REML" and f["test"] == "z"
    )
    y, v, Z = inputs(f)
    r = metaregression(y, v, Z, ["ablat"])
    assert r.method == "REML" and not r.hksj
    assert r.coefficients["ablat"].estimate == pytest.approx(f["coefficients"]["ablat"]["estimate"], rel=1e-4)
    assert r.qm == pytest.approx(f["qm"], rel=1e-4)
    assert r.r2 == pytest.approx(f["r2"], rel=1e-4)


def test_missing_covariate_rows_are_dropped_and_counted() -> None:
    """Blanking ablat for two bcg studies gives metafor's fit on the other eleven: the same
    numbers as passing only those rows."""
    f = next(
        f for f in cases()
        if f["data"] == "bcg" and f["covariates"] == ["ablat"] and f["method"] == "REML" and f["test"] == "z"
    )
    y, v, Z = inputs(f)
    Z = Z.copy()
    Z[[2, 7], 0] = np.nan
    keep = ~np.isnan(Z[:, 0])
    with_nan = metaregression(y, v, Z, ["ablat"])
    subset = metaregression(y[keep], v[keep], Z[keep], ["ablat"])
    assert with_nan.dropped == 2 and subset.dropped == 0
    assert with_nan.k == subset.k == 11
    assert with_nan.to_dict()["coefficients"] == subset.to_dict()["coefficients"]


def test_constant_covariate_is_a_model_error() -> None:
    y, v, Z = inputs(cases()[0])
    with pytest.raises(ModelError, match="full rank"):
        metaregression(y, v, np.full(y.size, 7.0), ["constant"])


def test_too_few_complete_rows_is_an_input_error() -> None:
    y, v, Z = inputs(cases()[0])
    z = np.full(y.size, np.nan)
    z[:2] = [1.0, 2.0]
    with pytest.raises(InputError, match="needs at least 3"):
        metaregression(y, v, z, ["sparse"], method="REML")


def test_bad_names_are_rejected() -> None:
    y, v, Z = inputs(cases()[0])
    with pytest.raises(InputError):
        metaregression(y, v, Z[:, :1], ["intercept"])
    with pytest.raises(InputError):
        metaregression(y, v, Z[:, :1], ["a", "b"])
