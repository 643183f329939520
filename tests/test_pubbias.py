"""synthesis.pubbias against metafor's regtest, ranktest, trimfill, fsn and leave1out
(tests/reference/metafor_bias.json).

Tolerances: 1e-6 relative for the closed-form results (Egger, Begg, fail-safe N, and everything on
the DL fit); 1e-4 for trim and fill and for the REML fits (metafor run with tight control).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from synthesis.errors import InputError
from synthesis.pubbias import bias_diagnostics, trim_and_fill

REF = Path(__file__).parent / "reference"


@cache
def fixture() -> dict:
    return json.loads((REF / "metafor_bias.json").read_text())


def cases() -> list[tuple[str, dict]]:
    return [(name, f) for name, fs in fixture()["fits"].items() for f in fs]


def case_id(case: tuple[str, dict]) -> str:
    return f"{case[0]}-{case[1]['method']}"


def data(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    d = fixture()["datasets"][name]
    return np.asarray(d["yi"], dtype=float), np.asarray(d["vi"], dtype=float), list(d["study"])


def close(got, want, rtol: float, what: str) -> None:
    if want is None:
        assert got is None, f"{what}: expected null, got {got}"
    else:
        assert got == pytest.approx(want, rel=rtol, abs=1e-10), what


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_bias_matches_metafor(case: tuple[str, dict]) -> None:
    name, f = case
    y, v, studies = data(name)
    got = bias_diagnostics(y, v, studies, method=f["method"]).to_dict()
    rtol = 1e-6 if f["method"] == "DL" else 1e-4
    where = case_id(case)

    assert set(got) >= {"egger", "begg", "trimfill", "failsafe_n", "leave_one_out"}
    for key in ("z", "p", "limit_estimate", "limit_ci_lower", "limit_ci_upper"):
        close(got["egger"][key], f["egger"][key], rtol, f"{where} egger.{key}")
    close(got["begg"]["tau"], f["begg"]["tau"], 1e-6, f"{where} begg.tau")
    close(got["begg"]["p"], f["begg"]["p"], 1e-6, f"{where} begg.p")

    tf, want_tf = got["trimfill"], f["trimfill"]
    assert tf["k0"] == want_tf["k0"], where
    assert tf["side"] == want_tf["side"], where
    for key in ("se_k0", "estimate", "se", "ci_lower", "ci_upper", "tau2"):
        close(tf[key], want_tf[key], 1e-4, f"{where} trimfill.{key}")
    filled_y = sorted(r["log_hr"] for r in tf["filled"])
    filled_se = sorted(r["se"] for r in tf["filled"])
    np.testing.assert_allclose(filled_y, sorted(want_tf["filled_yi"]), rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(filled_se, sorted(np.sqrt(want_tf["filled_vi"])), rtol=1e-10)

    assert got["failsafe_n"]["rosenthal"] == f["failsafe_n"]["rosenthal"]
    close(got["failsafe_n"]["p"], f["failsafe_n"]["p"], 1e-6, f"{where} fsn.p")

    loo, want_loo = got["leave_one_out"], f["leave_one_out"]
    assert [r["study"] for r in loo] == studies
    for key in ("estimate", "se", "ci_lower", "ci_upper", "tau2", "q", "i2"):
        np.testing.assert_allclose(
            [r[key] for r in loo], want_loo[key], rtol=rtol, atol=1e-8, err_msg=f"{where} leave1out.{key}"
        )


def test_begg_uses_normal_approximation_with_ties() -> None:
    """hackshaw_tied (variances rounded to 2 decimals): R's cor.test falls back from the exact
    test to the tie-corrected normal approximation, and so do we."""
    f = fixture()["fits"]["hackshaw_tied"][0]
    y, v, studies = data("hackshaw_tied")
    r = bias_diagnostics(y, v, studies).begg
    assert r is not None and not r.exact
    assert r.tau == pytest.approx(f["begg"]["tau"], rel=1e-6)
    assert r.p == pytest.approx(f["begg"]["p"], rel=1e-6)
    untied = bias_diagnostics(*data("hackshaw")).begg
    assert untied is not None and untied.exact


def test_k2_has_no_egger_or_trimfill() -> None:
    """metafor's regtest and trimfill stop for a random-effects fit with k = 2; we report null
    with a note, and still give Begg, fail-safe N and leave-one-out (checked in the test above)."""
    y, v, studies = data("bcg_k2")
    r = bias_diagnostics(y, v, studies)
    d = r.to_dict()
    assert d["egger"]["z"] is None and d["trimfill"]["k0"] is None
    assert any("Egger" in n for n in r.notes) and any("trim and fill" in n for n in r.notes)


def test_trimfill_side_can_be_forced() -> None:
    """Forcing the side metafor chose reproduces its result; the other side is a different fit."""
    y, v, _ = data("hackshaw")
    f = fixture()["fits"]["hackshaw"][0]
    forced = trim_and_fill(y, v, side=f["trimfill"]["side"])
    assert forced.k0 == f["trimfill"]["k0"]
    assert forced.estimate == pytest.approx(f["trimfill"]["estimate"], rel=1e-4)
    with pytest.raises(InputError):
        trim_and_fill(y, v, side="up")


def test_unknown_method() -> None:
    y, v, _ = data("bcg")
    with pytest.raises(InputError):
        bias_diagnostics(y, v, method="nope")
