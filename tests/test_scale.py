"""Scale (issue #9): Begg's O(k log k) Kendall tau equals the O(k^2) pairwise definition, the
O(k) leave-one-out equals k refits, and pooling, meta-regression and the bias diagnostics run on
20,000 studies without a k x k array (tracemalloc peak). No timing assertions: see
benchmarks/bench_scale.py for time and memory of every command at k = 100,000.
"""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from scipy import stats

from synthesis.metaregression import metaregression
from synthesis.pooling import fit_model, pool
from synthesis.pubbias import (
    CLOSED_FORM_LOO,
    KENDALL_EXACT_MAX_N,
    LOO_REFIT_MAX_K,
    bias_diagnostics,
    kendall_test,
    leave_one_out,
)

#: Studies in the large-k smoke test.
LARGE_K = 20_000
#: A k x k float array at LARGE_K would take 3.2 GB; the whole analysis must stay far below.
PEAK_BYTES = 200_000_000


def pairwise_tau_b_and_z(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Kendall's tau-b and the tie-corrected z by the O(n^2) definition (sum over all pairs)."""
    n = x.size
    iu = np.triu_indices(n, 1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    sy = np.sign(y[:, None] - y[None, :])[iu]
    s = float((sx * sy).sum())
    n0 = n * (n - 1) / 2
    tx = np.unique(x, return_counts=True)[1].astype(float)
    ty = np.unique(y, return_counts=True)[1].astype(float)
    tau = s / math.sqrt((n0 - np.sum(tx * (tx - 1)) / 2) * (n0 - np.sum(ty * (ty - 1)) / 2))
    var = (
        (n * (n - 1) * (2 * n + 5) - np.sum(tx * (tx - 1) * (2 * tx + 5))
         - np.sum(ty * (ty - 1) * (2 * ty + 5))) / 18
        + np.sum(tx * (tx - 1)) * np.sum(ty * (ty - 1)) / (2 * n * (n - 1))
        + np.sum(tx * (tx - 1) * (tx - 2)) * np.sum(ty * (ty - 1) * (ty - 2)) / (9 * n * (n - 1) * (n - 2))
    )
    return tau, s / math.sqrt(var)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [3, 12, 150])
def test_kendall_equals_pairwise_definition_with_ties(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, max(2, n // 4), size=n).astype(float)  # many ties
    y = np.round(rng.normal(size=n), 1)
    x[:2], y[:2] = (0.0, 1.0), (0.0, 1.0)  # neither sample constant
    tau, z = pairwise_tau_b_and_z(x, y)
    got = kendall_test(x, y)
    assert not got.exact
    assert got.tau == pytest.approx(tau, rel=1e-12, abs=1e-14)
    assert got.p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_kendall_exact_below_and_normal_above_the_limit() -> None:
    rng = np.random.default_rng(1)
    for n, exact in ((60, True), (KENDALL_EXACT_MAX_N + 1, False)):
        x, y = rng.normal(size=n), rng.normal(size=n)
        tau, z = pairwise_tau_b_and_z(x, y)
        got = kendall_test(x, y)
        assert got.exact is exact
        assert got.tau == pytest.approx(tau, rel=1e-12, abs=1e-14)
        if not exact:
            assert got.p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


@pytest.mark.parametrize("knha", [False, True])
@pytest.mark.parametrize("method", CLOSED_FORM_LOO)
@pytest.mark.parametrize("k", [3, 40, 3000])
def test_closed_form_leave_one_out_equals_refits(method: str, knha: bool, k: int) -> None:
    """k = 3000 takes the interpolated path of the random-effects sums; the others the direct."""
    rng = np.random.default_rng(k)
    v = rng.uniform(0.003, 0.25, size=k)
    y = rng.normal(rng.normal(-0.2, 0.25, size=k), np.sqrt(v))
    y[0] += 3.0  # an outlier: its leave-one-out tau^2 is far from the others'
    got = leave_one_out(y, v, method=method, knha=knha)
    for i in sorted({0, 1, k // 2, k - 1}):
        keep = np.arange(k) != i
        fit = fit_model(y[keep], v[keep], method=method, knha=knha)
        r = got[i]
        want = (fit.beta[0], fit.se[0], fit.ci_lower[0], fit.ci_upper[0], fit.tau2, fit.q, fit.i2)
        have = (r.estimate, r.se, r.ci_lower, r.ci_upper, r.tau2, r.q, r.i2)
        np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-11, err_msg=f"study {i}")


def simulate(k: int, seed: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.05, 0.5, size=k) ** 2
    x = rng.uniform(size=k)
    y = rng.normal(-0.2 + 0.1 * x + rng.normal(0.0, 0.2, size=k), np.sqrt(v))
    x[rng.uniform(size=k) < 0.2] = np.nan
    return y, v, x


def test_large_k_runs_without_quadratic_memory() -> None:
    y, v, x = simulate(LARGE_K)
    tracemalloc.start()
    try:
        for method in ("REML", "DL", "PM"):
            assert math.isfinite(pool(y, v, method=method, hksj=True).tau2_ci_upper)
        reg = metaregression(y, v, x, ["x"], method="REML", hksj=True)
        dl = bias_diagnostics(y, v, method="DL")
        reml = bias_diagnostics(y, v, method="REML")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES
    assert reg.dropped > 0 and math.isfinite(reg.coefficients["x"].estimate)
    assert len(dl.leave_one_out) == LARGE_K and dl.begg is not None and not dl.begg.exact
    assert LARGE_K > LOO_REFIT_MAX_K and reml.leave_one_out == []
    assert any("leave-one-out not computed" in n for n in reml.notes)


def test_forest_draws_at_most_the_cap_and_says_so(tmp_path) -> None:
    from dataclasses import replace

    from test_report import make_result

    from synthesis import plots

    result = make_result(tmp_path)
    fit = next(iter(result.fits.values()))
    many = [replace(e, study=f"{e.study} #{j}") for j in range(40) for e in fit.study_effects]
    assert len(many) > plots.FOREST_MAX_STUDIES
    fig = plots.plot_forest({"many": replace(fit, study_effects=many)})
    assert len(fig.axes[0].get_yticks()) == plots.FOREST_MAX_STUDIES + 1
    assert f"{plots.FOREST_MAX_STUDIES} most precise of {len(many)} studies shown" in fig._suptitle.get_text()


def _jsonable_reference(obj):
    """The definition, one isinstance test per value (the pre-fast-path implementation)."""
    from collections.abc import Mapping
    from pathlib import Path

    if isinstance(obj, Mapping):
        return {str(k): _jsonable_reference(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable_reference(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable_reference(obj.tolist())  # (the old code failed on 0-d arrays)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def test_jsonable_fast_paths_equal_the_definition() -> None:
    from collections import OrderedDict
    from pathlib import Path

    from synthesis.outputs import jsonable

    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 3))
    a[1, 2], a[3, 0], a[0, 0] = np.nan, np.inf, -np.inf
    doc = {
        "floats": [0.5, math.nan, -math.inf, 1e308, -0.0], "ints": (1, True, None, "s"),
        3: np.float32(0.25), "arr": a, "finite": rng.normal(size=5), "f32": a.astype(np.float32),
        "ints_arr": np.arange(4, dtype=np.int32), "bools": np.array([True, False]),
        "strs": np.array(["a", "b"]), "obj": np.array([1.5, None, np.int64(2)], dtype=object),
        "np": [np.int64(7), np.float64(np.nan), np.bool_(True), np.float64(2.5)],
        "path": Path("x/y.csv"), "ordered": OrderedDict(b=np.float64(1.0)),
        "rows": [{"study": f"S{i}", "hr": {"median": float(v), "q": [float(v), math.inf]}} for i, v in enumerate(a.ravel())],
        "empty": np.zeros((0, 2)), "scalar": np.array(1.5), "nan0d": np.array(np.nan),
    }
    got = jsonable(doc)
    want = _jsonable_reference(doc)
    assert got == want
    # identical types too (== treats 1 and 1.0 and True alike)
    assert json.dumps(got, allow_nan=False) == json.dumps(want, allow_nan=False)


def test_print_json_is_compact_only_for_large_documents(capsys, monkeypatch) -> None:
    from synthesis.cli import common

    doc = {"rows": [{"i": i, "x": i / 7} for i in range(50)], "bad": math.nan}
    common.print_json(doc)
    small = capsys.readouterr().out
    assert small.startswith('{\n  "rows": [\n    {\n      "i": 0,') and small.endswith("}\n")
    monkeypatch.setattr(common, "COMPACT_JSON_CHARS", 100)
    common.print_json(doc)
    large = capsys.readouterr().out
    assert "\n" not in large[:-1] and " " not in large
    assert json.loads(large) == json.loads(small) == {"rows": [{"i": i, "x": i / 7} for i in range(50)], "bad": None}
