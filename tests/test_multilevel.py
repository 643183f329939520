"""Several inputs per cohort (issue #13): the frequentist multilevel model against metafor's
``rma.mv`` and the "all inputs" analysis set.

References: tests/reference/metafor_multilevel.json, written by
``Rscript tests/reference/metafor_reference.R --multilevel-only`` (R 4.2.2, metafor 3.8-1; the
R and package versions are recorded in the file): ``rma.mv(yi, V, mods, random = ~ 1 |
cluster/row)`` with ``V = diag(vi)`` or ``vcalc(vi, cluster, obs = row, rho = 0.5)``, REML and
ML, with and without a moderator, test z and t, nlminb rel.tol 1e-10.
"""

from __future__ import annotations

import csv
import json
import math
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from synthesis.errors import InputError
from synthesis.models.multilevel import Clusters, check_rho, marginal_sums, within_sums
from synthesis.multilevel import fit_multilevel, pool_multilevel
from synthesis.studies import load_studies

REF = json.loads((Path(__file__).parent / "reference" / "metafor_multilevel.json").read_text())
BUNDLE = Path(str(resources.files("synthesis.bundled")))
ALL_INPUTS = BUNDLE / "dnmbc_lrt_all_inputs.csv"

#: metafor's optimiser (nlminb, rel.tol 1e-10) and ours (Newton on a central-difference stencil)
#: agree on the log-likelihood to 1e-9 relative; the variance components, flat directions of it,
#: to a few 1e-6 relative, and the fixed effects and their SEs to 1e-6.
RTOL_VARIANCE = 1e-4
RTOL = 1e-5
#: A variance component metafor puts on the boundary (it reports 1e-10 or so) is 0 here or below
#: this absolutely.
ATOL_BOUNDARY = 1e-6


def _case(fit: dict) -> tuple[np.ndarray, np.ndarray, Clusters, np.ndarray | None, tuple[str, ...]]:
    ds = REF["datasets"][fit["data"]]
    clusters = Clusters.from_labels(ds["cluster"], rho=fit["rho"])
    k = len(ds["yi"])
    X = np.column_stack([np.ones(k), ds["moderator"]]) if fit["moderator"] else None
    names = ("intercept", "moderator") if fit["moderator"] else ("intercept",)
    return np.asarray(ds["yi"]), np.asarray(ds["vi"]), clusters, X, names


def _close(ours: float, theirs: float, rtol: float, scale: float = 0.0) -> bool:
    return abs(ours - theirs) <= rtol * max(abs(theirs), scale)


TIGHT = [f for f in REF["fits"] if f["control"] == "tight" and (f["test"] == "z" or f["moderator"])]
#: The cases of the default run (one per dataset and feature; the rest are marked slow: 0.1-0.2 s each).
FAST = {
    ("konstantopoulos", "REML", 0.0, False, "z"),
    ("bornmann", "ML", 0.5, True, "t"),
    ("all_inputs", "REML", 0.5, False, "z"),
    ("all_inputs", "ML", 0.0, True, "t"),
}


def _param(f: dict):  # noqa: ANN202
    key = (f["data"], f["method"], float(f["rho"]), f["moderator"], f["test"])
    label = f"{f['data']}-{f['method']}-rho{f['rho']}-{'mod' if f['moderator'] else 'int'}-{f['test']}"
    return pytest.param(f, id=label, marks=() if key in FAST else pytest.mark.slow)


@pytest.mark.parametrize("ref", [_param(f) for f in TIGHT])
def test_matches_rma_mv(ref: dict) -> None:
    y, v, clusters, X, names = _case(ref)
    r = fit_multilevel(y, v, clusters, X, names=names, method=ref["method"], test=ref["test"])
    for name in ("sigma2_between", "sigma2_within"):
        ours, theirs = getattr(r, name), ref[name]
        if theirs < 1e-8:
            assert ours <= ATOL_BOUNDARY, (name, ours, theirs)
        else:
            assert _close(ours, theirs, RTOL_VARIANCE), (name, ours, theirs)
    assert _close(r.loglik, ref["loglik"], 1e-9), (r.loglik, ref["loglik"])
    assert _close(r.qe, ref["qe"], 1e-10) and _close(r.qe_pvalue, ref["qe_pvalue"], 1e-8, 1e-300)
    assert r.k - r.p == ref["qe_df"]
    assert r.df == (None if ref["test"] == "z" else ref["df"])
    assert _close(r.qm, ref["qm"], RTOL), (r.qm, ref["qm"])
    for name, c in ref["coefficients"].items():
        ours = r.coefficients[name]
        se = c["se"]
        for key in ("estimate", "ci_lower", "ci_upper"):  # CI ends near 0: relative to the SE
            assert _close(getattr(ours, key), c[key], RTOL, se), (name, key, getattr(ours, key), c[key])
        assert _close(ours.se, se, RTOL), (name, ours.se, se)
        assert _close(ours.statistic, c["statistic"], RTOL, 1.0)
        assert _close(ours.pvalue, c["pvalue"], 1e-4, 1e-6), (name, ours.pvalue, c["pvalue"])
    if not ref["moderator"]:
        scale = r.intercept.se
        assert _close(r.pi_lower, ref["pi_lower"], RTOL, scale) and _close(r.pi_upper, ref["pi_upper"], RTOL, scale)


def test_woodbury_sums_match_dense_covariance() -> None:
    """The per-cluster Woodbury sums against dense linear algebra on the all-inputs rows."""
    ds = REF["datasets"]["all_inputs"]
    se = np.sqrt(ds["vi"])
    Z = np.column_stack([np.ones(se.size), ds["moderator"], ds["yi"]])
    for rho in (0.0, 0.5):
        c = Clusters.from_labels(ds["cluster"], rho=rho)
        tau2, tw2 = np.array([0.0, 0.03, 0.2]), np.array([0.01, 0.0, 0.05])
        zmz, logdet = marginal_sums(c, within_sums(c, se, Z, tw2), tau2)
        for g in range(3):
            M = c.marginal_covariance(se, tau2[g], tw2[g])
            assert np.allclose(zmz[g], Z.T @ np.linalg.solve(M, Z), rtol=1e-10, atol=1e-10)
            assert math.isclose(logdet[g], np.linalg.slogdet(M)[1], rel_tol=1e-12)


def test_refusals() -> None:
    c = Clusters.from_labels(list("abcdef"))
    with pytest.raises(InputError, match="one row"):
        fit_multilevel(np.zeros(6), np.ones(6), c)
    with pytest.raises(InputError, match="REML or ML"):
        fit_multilevel(np.zeros(4), np.ones(4), Clusters.from_labels(list("aabb")), method="DL")
    for bad in (-0.1, 1.0, float("nan"), "x"):
        with pytest.raises(InputError, match=r"\[0, 1\)"):
            check_rho(bad)
    with pytest.raises(InputError, match="no cluster"):
        Clusters.from_labels(["a", "", "b"])
    table = load_studies(ALL_INPUTS)
    with pytest.raises(InputError, match="no column named 'cohrt'"):
        pool_multilevel(table, "cohrt")


# --------------------------------------------------------------------------------------------
# The "all inputs" analysis set
# --------------------------------------------------------------------------------------------
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_all_inputs_build_is_deterministic_and_committed() -> None:
    from synthesis.bundled.build_all_inputs import build_all_inputs

    text = build_all_inputs(BUNDLE / "sources", BUNDLE / "curation")
    assert text == build_all_inputs(BUNDLE / "sources", BUNDLE / "curation")
    assert text == ALL_INPUTS.read_text(encoding="utf-8")


def test_all_inputs_rows_and_default_set() -> None:
    """Every row of dnmbc_lrt.csv with an HR and CI is in the set; the default set is exactly the
    rows marked default_set (the include=true rows of dnmbc_lrt.csv); each row names its cluster,
    and a row outside the default set says why."""
    default = _rows(BUNDLE / "dnmbc_lrt.csv")
    usable = [r for r in default if r["hr"] and r["ci_lower"] and r["ci_upper"]]
    rows = _rows(ALL_INPUTS)
    assert [r["study"] for r in rows] == [r["study"] for r in usable]
    assert len(rows) == 30 and len({r["cluster"] for r in rows}) == 19
    assert all(r["include"] == "true" and r["cluster"] == r["cohort"] and r["cluster"] for r in rows)
    in_default = {r["study"] for r in rows if r["default_set"] == "true"}
    assert in_default == {r["study"] for r in default if r["include"] == "true"}
    assert all(bool(r["exclusion_reason"]) == (r["default_set"] != "true") for r in rows)
    # the fixture's all-inputs rows are these rows (same order, same log HRs)
    ref = REF["datasets"]["all_inputs"]
    assert ref["study"] == [r["study"] for r in rows]
    table = load_studies(ALL_INPUTS)
    assert np.allclose(table.y, ref["yi"], rtol=0, atol=1e-12) and np.allclose(table.v, ref["vi"], rtol=1e-12)


def test_pool_multilevel_on_the_table_matches_the_array_fit() -> None:
    table = load_studies(ALL_INPUTS)
    ref = next(f for f in REF["fits"] if f["data"] == "all_inputs" and f["method"] == "REML" and f["rho"] == 0.5
               and not f["moderator"] and f["test"] == "t" and f["control"] == "tight")
    r = pool_multilevel(table, "cohort", rho=0.5, test="t")
    assert _close(r.intercept.estimate, ref["coefficients"]["intercept"]["estimate"], RTOL)
    rec = r.to_json()
    assert rec["clusters"] == 19 and rec["hksj"] is True and rec["df"] == 29
    assert _close(rec["sigma2_within"], ref["sigma2_within"], RTOL_VARIANCE)


# --------------------------------------------------------------------------------------------
# The report's comparison: one row per cohort, or all inputs?
# --------------------------------------------------------------------------------------------
def test_inputs_comparison_rows_are_the_fits_they_name() -> None:
    from synthesis.datasets import load_dataset
    from synthesis.models.exact import fit_exact
    from synthesis.models.spec import ModelData, ModelSpec
    from synthesis.multilevel import compare_bundled_inputs, load_all_inputs
    from synthesis.report.document import ReportDocument
    from synthesis.report.multilevel import inputs_section

    cmp = compare_bundled_inputs(load_dataset(), thresholds=(0.8,))
    assert cmp is not None and cmp.model == "bias"
    rows = {r.key: r for r in cmp.rows}
    all_inputs = load_all_inputs()
    for key, table, spec in (
        ("per_cohort", load_dataset(), ModelSpec("bias")),
        ("independent", all_inputs, ModelSpec("bias")),
        ("multilevel_rho", all_inputs, ModelSpec("bias", cluster="cohort", rho=0.5)),
    ):
        fit = fit_exact(ModelData.from_table(table, spec), spec, thresholds=(0.8,), study_effects=False)
        assert rows[key].hr_median == pytest.approx(fit.hr.median, rel=1e-12)
        assert rows[key].p_below["0.8"] == pytest.approx(fit.p_hr_below["0.8"], rel=1e-12)
    assert rows["multilevel"].clusters == 19 and rows["per_cohort"].clusters is None
    doc = ReportDocument()
    inputs_section(doc, SimpleNamespace(inputs_comparison=cmp, source="x"))
    text = doc.markdown()
    assert "One row per cohort, or all inputs?" in text and f"{rows['multilevel'].hr_median:.2f}" in text
