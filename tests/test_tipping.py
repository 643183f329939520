"""The tipping-point analysis (models/tipping.py, ``synthesis tipping``).

References: the vectorised grid is checked against :func:`fit_exact` (one fit per bias prior,
the exact engine's matrix path); its limits against independent models (the ``re`` model on all
studies as the bias prior's SD goes to 0 at bias mean 1; a brute-force quadrature of the model
with a flat bias prior as the SD grows); the contour against bisection with ``fit_exact``; the
down-weighting curve's ends against the ``re`` model on the randomised studies and on all.
"""

from __future__ import annotations

import json
import math
import re

import matplotlib
import numpy as np
import pytest
from scipy import integrate, special

matplotlib.use("Agg")

from synthesis import outputs  # noqa: E402
from synthesis.cli import main  # noqa: E402
from synthesis.datasets import load_dataset  # noqa: E402
from synthesis.errors import InputError, ModelError  # noqa: E402
from synthesis.models import tipping as tp  # noqa: E402
from synthesis.models.exact import fit_exact  # noqa: E402
from synthesis.models.priors import resolve_priors  # noqa: E402
from synthesis.models.spec import ModelData, ModelSpec  # noqa: E402

#: Two quadratures of the same integral (shared vs per-point tau grids), each converged to
#: ~1e-7 relative (tests/test_exact.py): agreement well inside 1e-6.
EXACT_TOL = 1e-6
#: Brute-force Simpson quadrature (401 tau x 801 mu nodes) of the flat-bias model: halving
#: the mu spacing changes it by < 1e-7; the bias prior at SD 1e3 differs from flat by
#: ~(0.1 / 1e3)^2 relative.
BRUTE_TOL = 1e-6
#: A reported crossing SD must be within this relative distance of fit_exact's root (the
#: refinement stops at 1e-10 in log(sd); P moves by ~1e-6 over it, far above quadrature error).
CONTOUR_TOL = 1e-6
T = 0.8


@pytest.fixture(scope="module")
def data() -> ModelData:
    spec = ModelSpec("bias")
    return ModelData.from_table(load_dataset("dnmbc_lrt"), spec)


@pytest.fixture(scope="module")
def small(data):
    return tp.tipping_analysis(data, grid=(5, 4), alpha_points=5)


def _exact(data, priors, bias_mean, bias_sd):
    fit = fit_exact(data, tp.bias_spec(priors, bias_mean, bias_sd), thresholds=(T,))
    return fit.p_hr_below["0.8"], fit.hr.median


@pytest.mark.parametrize("tau_prior", ["halfnormal(0.5)", "halfcauchy(1)", "uniform(0, 2)"])
def test_grid_matches_fit_exact(data, tau_prior):
    priors = resolve_priors({"tau": tau_prior, "mu": "normal(0.1, 2)"})
    means, sds = tp.grid_axes((6, 5))
    M, S = np.meshgrid(means, sds, indexing="ij")
    out = tp.bias_prior_summaries(data, priors, M, S, T)
    for i, j in [(0, 0), (0, 4), (5, 0), (5, 4), (3, 2), (4, 1)]:  # corners and inside
        p, med = _exact(data, priors, means[i], sds[j])
        assert out.p_hr_below[i, j] == pytest.approx(p, abs=EXACT_TOL)
        assert out.hr_median[i, j] == pytest.approx(med, rel=EXACT_TOL)


def test_narrow_bias_prior_at_one_is_the_re_model_on_all(data):
    """delta ~ N(0, sd^2) -> delta = 0, the re model on every study; the gap shrinks as sd^2."""
    priors = resolve_priors()
    p_re = fit_exact(data, ModelSpec("re", priors=priors), thresholds=(T,)).p_hr_below["0.8"]
    sds = np.array([1e-2, 1e-3, 1e-4])
    gap = tp.bias_prior_summaries(data, priors, 1.0, sds, T, median=False).p_hr_below - p_re
    assert abs(gap[-1]) < 1e-6
    ratios = gap[:-1] / gap[1:]
    assert np.all((ratios > 80) & (ratios < 125)), ratios  # O(sd^2): x100 per decade


def _log_normal(y: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return -0.5 * (y - m) ** 2 / v - 0.5 * np.log(2.0 * np.pi * v)


def _flat_bias_brute_force(data, priors) -> float:
    """P(mu < log T) with a flat prior on delta, by brute-force quadrature on (mu, tau) grids:
    integrating delta out over the whole line leaves the non-randomised studies a factor
    g(tau) = int prod_NR N(y_i; e, s_i^2 + tau^2) de (e = mu + delta), computed here by
    Simpson's rule on a dense e grid; mu then sees the randomised studies only. Simpson's rule
    in tau and in mu (log T a node). The half-normal(0.5) prior puts 6e-7 above tau = 2.5."""
    y, se, nr = np.asarray(data.y), np.asarray(data.se), np.asarray(data.nonrandomised, bool)
    tau = np.linspace(0.0, 2.5, 401)
    v = se[None, :] ** 2 + tau[:, None] ** 2
    e = np.linspace(-3.0, 2.0, 801)
    log_nr = _log_normal(y[nr][None, None, :], e[None, :, None], v[:, None, nr]).sum(axis=2)
    g = integrate.simpson(np.exp(log_nr - log_nr.max()), x=e, axis=1)  # up to a constant
    cut = math.log(T)
    mu = np.concatenate([np.linspace(-2.0, cut, 401), np.linspace(cut, 1.5, 401)[1:]])
    m0, s0 = priors.mu.params
    log_rct = _log_normal(y[~nr][None, None, :], mu[None, :, None], v[:, None, ~nr]).sum(axis=2)
    logp = log_rct + _log_normal(mu, m0, s0**2)[None, :] + priors.tau.logpdf(tau)[:, None] + np.log(g)[:, None]
    joint = integrate.simpson(np.exp(logp - logp.max()), x=tau, axis=0)
    return float(integrate.simpson(joint[:401], x=mu[:401]) / integrate.simpson(joint, x=mu))


def test_wide_bias_prior_is_the_flat_bias_model(data):
    priors = resolve_priors()
    p_flat = _flat_bias_brute_force(data, priors)
    p_wide = float(tp.bias_prior_summaries(data, priors, 1.0, 1e3, T, median=False).p_hr_below)
    assert p_wide == pytest.approx(p_flat, abs=BRUTE_TOL)
    # and the grid's widest SD (1) is already near it, far from the pooled answer
    p_grid_edge = float(tp.bias_prior_summaries(data, priors, 1.0, tp.BIAS_SD_RANGE[1], T, median=False).p_hr_below)
    assert abs(p_grid_edge - p_flat) < 0.02


def _brackets_with_fit_exact(data, priors, crossing, level, rel=CONTOUR_TOL) -> bool:
    """fit_exact puts P(HR < T) on opposite sides of ``level`` at bias_sd x (1 -/+ rel): the
    root lies within ``rel`` (relative) of the reported crossing."""
    lo = _exact(data, priors, crossing.bias_mean, crossing.bias_sd * (1 - rel))[0] - level
    hi = _exact(data, priors, crossing.bias_mean, crossing.bias_sd * (1 + rel))[0] - level
    return (lo > 0) != (hi > 0) and (hi > lo) == crossing.rising


def test_contour_is_where_fit_exact_crosses_the_level(data, small):
    priors = resolve_priors()
    assert len(small.contour) == 2, "the bundled data cross P = 0.5 at the 2 largest of 5 bias means"
    for c in small.contour:
        assert _brackets_with_fit_exact(data, priors, c, 0.5)
    # the crossing the sentence reads, at bias mean 1
    (u,) = small.unbiased_crossings
    assert u.bias_mean == 1.0 and not u.rising
    assert _brackets_with_fit_exact(data, priors, u, 0.5)
    lo, hi = (math.exp(sign * special.ndtri(0.975) * u.bias_sd) for sign in (-1, 1))
    assert small.sentence.startswith(
        f"With a bias prior centred on no bias (b = 1), P(HR < 0.8) > 0.5 only if its SD is below {u.bias_sd:.3g} "
        f"on the log scale (95% prior interval of the bias factor {lo:.2f} to {hi:.2f})"
    )
    assert tp.bias_interval(u.bias_sd) == pytest.approx((lo, hi))
    assert tp.within_percent(u.bias_sd) == pytest.approx(100 * (math.exp(special.ndtri(0.975) * u.bias_sd) - 1))
    # a wrong crossing fails the check
    assert not _brackets_with_fit_exact(data, priors, tp.Crossing(1.0, u.bias_sd * 1.01, False), 0.5)


def test_alpha_curve_ends_are_the_re_models(data, small):
    priors = resolve_priors()
    rct = ModelData.from_table(load_dataset("dnmbc_lrt", subset="rct"), ModelSpec("re"))
    ends = [fit_exact(d, ModelSpec("re", priors=priors), thresholds=(T,)) for d in (rct, data)]
    for point, ref in zip((small.alpha_curve[0], small.alpha_curve[-1]), ends, strict=True):
        assert point.p_hr_below == pytest.approx(ref.p_hr_below["0.8"], abs=1e-12)
        assert (point.hr_median, point.hr_q025, point.hr_q975) == pytest.approx((ref.hr.median, ref.hr.q025, ref.hr.q975), rel=1e-12)
    assert [a.alpha for a in small.alpha_curve] == [0.0, 0.0625, 0.25, 0.5625, 1.0]
    # alpha -> 0 is continuous: the down-weighted model at alpha = 1e-7 is the RCT-only answer
    tiny = fit_exact(data, ModelSpec("bias", bias_variant="downweight", alpha=1e-7, priors=priors), thresholds=(T,))
    assert tiny.p_hr_below["0.8"] == pytest.approx(ends[0].p_hr_below["0.8"], abs=1e-4)
    # the numbers: RCT-only ~0.11, pooled-as-one ~0.98
    assert round(small.alpha_curve[0].p_hr_below, 2) == 0.11 and round(small.alpha_curve[-1].p_hr_below, 2) == 0.98
    (cross,) = small.alpha_crossings
    assert cross.rising and 0.0 < cross.alpha < 0.0625
    p = fit_exact(data, ModelSpec("bias", bias_variant="downweight", alpha=cross.alpha, priors=priors), thresholds=(T,))
    assert p.p_hr_below["0.8"] == pytest.approx(0.5, abs=1e-8)


def test_alpha_curve_inside_is_fit_exact(data, small):
    """The curve's points are fit_exact's fit of the downweight variant (same grid, same
    summaries; only the study effects are skipped): equal to rounding."""
    priors = resolve_priors()
    for point in small.alpha_curve[1:-1]:
        ref = fit_exact(data, ModelSpec("bias", bias_variant="downweight", alpha=point.alpha, priors=priors), thresholds=(T,))
        assert point.p_hr_below == pytest.approx(ref.p_hr_below["0.8"], abs=1e-12)
        assert (point.hr_median, point.hr_q025, point.hr_q975) == pytest.approx((ref.hr.median, ref.hr.q025, ref.hr.q975), rel=1e-12)


def test_analysis_sums_over_the_studies_twice(data, monkeypatch):
    """Scale (issue #9): the grid, the profile at bias mean 1 and every Brent step of the
    contour share one quadrature, so the O(k) sums run twice (pilot and final nodes) however
    many crossings are refined; the alpha curve never summarises the k study effects. The
    shared quadrature still gives fit_exact's answer at the grid points and at the points
    between SD neighbours, where Brent's method evaluates it."""
    calls = []
    real_sums = tp._sums
    monkeypatch.setattr(tp, "_sums", lambda *a: calls.append(a[-1].size) or real_sums(*a))
    real_sweep = tp.sweep_tau_priors

    def sweep(*args, **kwargs):
        assert kwargs.get("study_effects") is False
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(tp, "sweep_tau_priors", sweep)
    res = tp.tipping_analysis(data, grid=(6, 5), alpha_points=3)
    assert len(res.contour) >= 2 and res.unbiased_crossings
    assert len(calls) == 2 and calls[0] == tp.PILOT_POINTS
    priors = resolve_priors()
    mid = math.sqrt(res.bias_sds[1] * res.bias_sds[2])
    for m, sd, got in [(res.bias_means[4], res.bias_sds[3], res.p_hr_below[4, 3]),
                       (res.bias_means[5], res.bias_sds[0], res.p_hr_below[5, 0])]:
        assert got == pytest.approx(_exact(data, priors, m, sd)[0], abs=1e-9)
    # between neighbours: the contour's refinement evaluates the shared quadrature there
    monkeypatch.setattr(tp, "_sums", real_sums)
    m = res.bias_means[5]
    quad = tp._analysis_quadrature(data, priors, res.bias_means, res.bias_sds, tp.MIN_NODES)
    got = quad.summaries(np.array([math.log(m)]), np.array([mid**-2]), T, median=False).p_hr_below[0]
    assert got == pytest.approx(_exact(data, priors, m, mid)[0], abs=1e-9)


def _synthetic(y_rct, y_nr, se=0.1) -> ModelData:
    y = np.array(list(y_rct) + list(y_nr))
    nr = np.array([False] * len(y_rct) + [True] * len(y_nr))
    return ModelData(
        studies=tuple(f"s{i}" for i in range(y.size)), y=y, se=np.full(y.size, se), nonrandomised=nr,
        designs=tuple("retrospective" if n else "rct" for n in nr), covariates=(), x=np.zeros((y.size, 0)),
        centres=np.zeros(0), source="synthetic",
    )


_NUM = r"([0-9.e+-]+)"


def _in_range(x: float, text: str) -> bool:
    """``x`` within a printed range ``from A to B`` (rounded outwards) or equal to ``= A`` (3 s.f.)."""
    if m := re.fullmatch(rf"from {_NUM} to {_NUM}", text):
        return float(m[1]) <= x <= float(m[2])
    m = re.fullmatch(rf"= {_NUM}", text)
    return m is not None and f"{x:.3g}" == m[1]


def _sentence_is_true(res: tp.TippingResult) -> bool:
    """Read the sentence back against the numbers: its claim at b = 1 against the SD profile
    there (and any grid row at b = 1), and every grid point with P > level off b = 1 inside a
    (b, SD) box the sentence states for its side."""
    s, level = res.sentence, res.level
    p_txt = f"P(HR < {res.threshold:g})"
    head = f"With a bias prior centred on no bias (b = 1), {p_txt}"
    profile = list(zip(res.unbiased_sds, res.unbiased_p, strict=True))
    rows = [(s_, p) for i, m in enumerate(res.bias_means) if m == 1.0 for s_, p in zip(res.bias_sds, res.p_hr_below[i], strict=True)]
    at_one = profile + rows
    if m := re.search(rf"{re.escape(head)} > {level:g} only if its SD is (below|above) {_NUM} on the log scale", s):
        cut = float(m[2])
        ok = all((sd < cut * 1.001) if m[1] == "below" else (sd > cut * 0.999) for sd, p in at_one if p > level)
        # and the other side of the cut is at or below the level (the cut is the crossing)
        ok &= all(p <= level for sd, p in at_one if (sd > cut * 1.001 if m[1] == "below" else sd < cut * 0.999))
    elif f"{head} > {level:g} for every SD" in s:
        ok = all(p > level for _, p in at_one)
    elif f"{head} <= {level:g} for every SD" in s:
        ok = all(p <= level for _, p in at_one)
    else:
        return False
    boxes = {}
    for side, words in tp.SIDE_WORDS.items():
        if m := re.search(rf"{re.escape(words)}: b (from {_NUM} to {_NUM}|= {_NUM}) with SD (from {_NUM} to {_NUM}|= {_NUM})", s):
            boxes[side] = (m[1], m[5])
    if "No bias prior centred elsewhere on the grid" in s and boxes:
        return False
    for i, b in enumerate(res.bias_means):
        side = "below" if b < 1.0 else "above" if b > 1.0 else None
        for j, sd in enumerate(res.bias_sds):
            if side is None or res.p_hr_below[i, j] <= level:
                continue
            if side not in boxes or not (_in_range(b, boxes[side][0]) and _in_range(sd, boxes[side][1])):
                return False
    return ok


def test_sentence_is_true_on_the_grid(data):
    """Issue #11's review: the default 40 x 40 grid has P > 0.5 off b = 1 with 95% prior intervals
    outside 0.82-1.22 (e.g. b = 1.138, sd = 0.037); the sentence must cover every such point."""
    res = tp.tipping_analysis(data, alpha_points=2)
    assert _sentence_is_true(res)
    above = res.p_hr_below > 0.5
    M, S = np.meshgrid(res.bias_means, res.bias_sds, indexing="ij")
    outside = above & ((M * np.exp(-1.96 * S) < 0.82) | (M * np.exp(1.96 * S) > 1.22))
    assert outside.sum() > 100  # the old sentence's claim was false at these points
    assert {r.side for r in res.off_centre} == {"below", "above"}
    p = float(tp.bias_prior_summaries(data, resolve_priors(), 1.138, 0.037, T, median=False).p_hr_below)
    assert p > 0.99
    (hi,) = [r for r in res.off_centre if r.side == "above"]
    assert hi.bias_mean_lo <= 1.138 <= hi.bias_mean_hi and hi.bias_sd_lo <= 0.037 <= hi.bias_sd_hi
    # the check can fail: the sentence without its off-centre clause, or with a shrunken box
    for wrong in (res.sentence.split(" Centred elsewhere")[0], res.sentence.replace("with SD from 0.02 to 0.145", "with SD from 0.02 to 0.1")):
        assert wrong != res.sentence
        assert not _sentence_is_true(tp.TippingResult(**{**vars(res), "sentence": wrong}))


def test_sentence_in_every_direction():
    # RCTs favour treatment (HR ~0.7), non-randomised studies do not: trusting them pulls the
    # answer towards 1, so P(HR < 0.8) > 0.5 needs a *wide* bias prior (a rising crossing)
    d = _synthetic([-0.36, -0.34, -0.35], [0.0, 0.02, -0.02, 0.01, 0.0, -0.01])
    res = tp.tipping_analysis(d, grid=(7, 8), alpha_points=2)
    (c,) = res.unbiased_crossings
    assert c.rising
    assert res.unbiased_p[0] < 0.5 < res.unbiased_p[-1]
    assert "(b = 1), P(HR < 0.8) > 0.5 only if its SD is above" in res.sentence
    assert _sentence_is_true(res)
    assert "to or below 0.5" in res.sentence  # down-weighting: more weight, lower P
    # always / never
    always = tp.tipping_analysis(d, threshold=5.0, grid=(3, 3), alpha_points=2)
    assert not always.unbiased_crossings and "(b = 1), P(HR < 5) > 0.5 for every SD" in always.sentence
    assert "stays above 0.5" in always.sentence and _sentence_is_true(always)
    never = tp.tipping_analysis(d, threshold=0.2, grid=(3, 3), alpha_points=2)
    assert not never.unbiased_crossings and "(b = 1), P(HR < 0.2) <= 0.5 for every SD" in never.sentence
    assert not never.contour and "stays at or below 0.5" in never.sentence
    assert "No bias prior centred elsewhere on the grid" in never.sentence and _sentence_is_true(never)


def test_sentence_interval_when_the_sd_is_large(data):
    """--threshold 0.9: the crossing SD at b = 1 is large; the interval is printed as it is."""
    res = tp.tipping_analysis(data, threshold=0.9, grid=(8, 8), alpha_points=2)
    (u,) = res.unbiased_crossings
    lo, hi = tp.bias_interval(u.bias_sd)
    assert hi > 2.0 and f"95% prior interval of the bias factor {lo:.2f} to {hi:.2f})" in res.sentence
    assert "±" not in res.sentence and _sentence_is_true(res)


def test_bad_inputs(data):
    with pytest.raises(InputError, match="level"):
        tp.tipping_analysis(data, level=1.0)
    with pytest.raises(InputError, match="grid"):
        tp.tipping_analysis(data, grid=(1, 5))
    with pytest.raises(InputError, match="at most 200 a side"):
        tp.tipping_analysis(data, grid=(100000, 5))
    assert tp.check_grid(tp.MAX_GRID_SIDE) == (200, 200)
    with pytest.raises(InputError, match="hazard ratio"):
        tp.tipping_analysis(data, threshold=0.0)
    with pytest.raises(ModelError, match="both randomised and non-randomised"):
        tp.tipping_analysis(_synthetic([-0.3, -0.2], []), grid=2)
    with pytest.raises(ModelError, match="normal prior on mu"):
        tp.tipping_analysis(data, resolve_priors({"mu": "studentt(3, 0, 1)"}), grid=2)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def test_cli_json_contract(capsys):
    assert main(["tipping", "--threshold", "0.8", "--level", "0.5", "--grid", "3x2", "--alpha-points", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"threshold", "level", "grid", "contour", "alpha_curve"} <= set(doc)
    assert doc["threshold"] == 0.8 and doc["level"] == 0.5
    assert len(doc["grid"]) == 6 and set(doc["grid"][0]) == {"bias_mean", "bias_sd", "hr_median", "p_hr_below"}
    assert all(set(c) == {"bias_mean", "bias_sd"} for c in doc["contour"])
    assert len(doc["alpha_curve"]) == 3
    assert set(doc["alpha_curve"][0]) == {"alpha", "hr_median", "hr_q025", "hr_q975", "p_hr_below"}
    assert [g["bias_mean"] for g in doc["grid"][::2]] == pytest.approx([0.5, math.sqrt(0.5 * 1.25), 1.25])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threshold", "0"], "--threshold"),
        (["--threshold", "-1"], "--threshold"),
        (["--level", "1"], "--level"),
        (["--level", "0"], "--level"),
        (["--grid", "1"], "--grid"),
        (["--grid", "4x1"], "--grid"),
        (["--grid", "100000"], "--grid: must be at most 200 a side"),
        (["--grid", "3x201"], "--grid: must be at most 200 a side"),
        (["--threshold", "0.8", "--threshold", "0.9"], "--threshold: given more than once"),
        (["--subset", "rct"], "both randomised and non-randomised"),
    ],
)
def test_cli_bad_options_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) if message.startswith("--") else _no_raise():
        assert main(["tipping", *argv]) == 2
    assert message in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cli_without_designs_exit_2(tmp_path, capsys):
    csv = tmp_path / "plain.csv"
    csv.write_text("study,log_hr,se\na,-0.2,0.1\nb,-0.3,0.2\nc,0.1,0.15\n")
    assert main(["tipping", str(csv), "--grid", "2"]) == 2
    assert "design" in capsys.readouterr().err


def test_cli_out_empty_or_under_a_file_exit_2(tmp_path, capsys):
    assert main(["tipping", "--grid", "2", "--alpha-points", "2", "--out", ""]) == 2
    captured = capsys.readouterr()
    assert "--out: the folder name is empty" in captured.err and captured.out == ""
    (tmp_path / "file.txt").write_text("mine")
    assert main(["tipping", "--grid", "2", "--alpha-points", "2", "--out", str(tmp_path / "file.txt" / "sub")]) == 2
    assert f"{tmp_path / 'file.txt'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_printed_table_says_what_it_shows(small):
    """The grid is a 5 x 5 pick of a larger grid (said so); alphas print to 3 significant figures
    so no two distinct rows read alike and a crossing falls between printed values."""
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    res = tp.tipping_analysis(data, grid=(10, 9), alpha_points=21)
    text = str(res)
    assert "5 of 10 rows and 5 of 9 columns, evenly picked from the 10 x 9 grid; --json or --out for all" in text
    assert "evenly picked" not in str(tp.tipping_analysis(data, grid=(3, 3), alpha_points=2))
    start = text.index("P(HR < 0.8)\n", text.index("Down-weighting")) + len("P(HR < 0.8)\n")
    alphas = [line.split()[0] for line in text[start:].splitlines() if line.strip()]
    assert [float(a) for a in alphas] == pytest.approx([a.alpha for a in res.alpha_curve], rel=5e-3)
    assert len(set(alphas)) == len(alphas) and alphas[:3] == ["0", "0.0025", "0.01"]
    (c,) = res.alpha_crossings
    assert float(alphas[3]) < c.alpha < float(alphas[4])  # 0.0225 < 0.0255 < 0.04


def test_cli_out_refuses_a_users_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["tipping", "--grid", "2", "--alpha-points", "2", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "notes.txt" in captured.err and captured.out == ""  # refused before any computation
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_figures_draw_the_result(small):
    from synthesis.plots.tipping import plot_alpha_curve, plot_tipping_map

    fig = plot_tipping_map(small)
    ax = fig.axes[0]
    assert ax.collections[0].get_array().shape == small.p_hr_below.T.shape
    contour = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sum(len(line.get_xdata()) for line in contour) == len(small.contour)
    curve = plot_alpha_curve(small)
    assert list(curve.axes[1].get_lines()[0].get_ydata()) == [a.p_hr_below for a in small.alpha_curve]
    assert [line.get_xdata()[0] for line in curve.axes[1].get_lines()[2:]] == [c.alpha for c in small.alpha_crossings]


@pytest.mark.slow
def test_cli_out_writes_files(tmp_path, capsys):
    out = tmp_path / "tip"
    assert main(["tipping", "--grid", "3", "--alpha-points", "2", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    expected = {"tipping.csv", "alpha_curve.csv", "contour.csv", "tipping.json", "tipping_map.png", "tipping_map.svg",
                "alpha_curve.png", "alpha_curve.svg", outputs.MARKER_NAME}
    assert names == expected
    assert (out / "tipping_map.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "tipping.csv").read_text().splitlines()[0] == "bias_mean,bias_sd,hr_median,p_hr_below"
    assert len((out / "tipping.csv").read_text().splitlines()) == 10
    doc = json.loads((out / "tipping.json").read_text())
    assert doc["level"] == 0.5 and len(doc["grid"]) == 9
    # an earlier output of the command is replaced
    assert main(["tipping", "--grid", "2", "--alpha-points", "2", "--out", str(out)]) == 0
    assert len((out / "tipping.csv").read_text().splitlines()) == 5


def test_plot_methods_return_figures(small):
    """TippingResult.plot_map / plot_alpha_curve reach synthesis.plots through the registered
    loader (the model layer never imports it)."""
    from matplotlib.figure import Figure

    from synthesis import plots

    fig = small.plot_map()
    assert isinstance(fig, Figure) and fig.axes[0].collections[0].get_array().shape == small.p_hr_below.T.shape
    curve = small.plot_alpha_curve(title="mine")
    assert isinstance(curve, Figure) and curve._suptitle.get_text() == "mine"
    assert plots.plot_tipping_map is not None and plots.plot_alpha_curve is not None


def test_result_prints_and_renders(small):
    text = str(small)
    assert small.sentence in text and "Contour P(HR < 0.8) = 0.5" in text and "alpha" in text
    page = small._repr_html_()
    assert page.count("<table") == 2 and "P(HR &lt; 0.8) &gt; 0.5 only if its SD" in page
    assert small.to_frame("contour").shape == (len(small.contour), 2)
    with pytest.raises(InputError, match="what must be"):
        small.to_frame("nonsense")
