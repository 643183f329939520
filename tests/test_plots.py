"""Figures drawn from hand-built result objects: the right rows, panels, scales and labels.

Most checks read the artists without rendering (fast); one figure is rendered to check fonts
and one small figure is written to PNG and SVG.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from test_report import BIAS_GRID, CURVE, TAU_GRID, make_result, make_sweep  # noqa: E402

from synthesis import plots  # noqa: E402
from synthesis.models.spec import threshold_key  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return make_result(tmp_path_factory.mktemp("plots"))


@pytest.fixture(scope="module")
def fits(result):
    return {run.label: result.fits[run.key] for run in result.runs}


def _visible_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


def _tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


# --------------------------------------------------------------------------------------------
# forest
# --------------------------------------------------------------------------------------------
def test_forest_has_one_row_per_study_and_per_model(result, fits):
    fig = plots.plot_forest(fits)
    ax = fig.axes[0]
    k = result.table.k
    labels = _tick_labels(ax.yaxis)
    assert len(ax.get_yticks()) == k + len(fits)
    assert labels[:k] == [s for d in ("rct", "prospective", "retrospective")
                          for s, dd in zip(result.table.studies, result.table.designs, strict=True) if dd == d]
    for label, fit in fits.items():
        pooled = next(t for t in labels if t.startswith(label))
        assert fit.spec.priors.tau.label in pooled  # every pooled row names its prior
    assert "δ ~ normal(mean=0, sd=0.5)" in next(t for t in labels if t.startswith("Design-bias"))
    assert ax.get_xscale() == "log"
    assert {"0.5", "1"} <= set(_tick_labels(ax.xaxis))
    # one diamond per model, spanning the pooled credible interval
    diamonds = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(diamonds) == len(fits)
    xs = sorted(diamonds[1].get_xy()[:, 0])
    fit = list(fits.values())[1]
    assert xs[0] == pytest.approx(fit.hr.q025) and xs[-1] == pytest.approx(fit.hr.q975)
    texts = [t.get_text() for t in fig.findobj(Text)]
    for heading in ("Randomised trials", "Prospective non-randomised studies", "Retrospective non-randomised studies"):
        assert heading in texts
    assert "← favours LRT" in texts and "favours no LRT →" in texts
    effect = list(fits.values())[0].study_effects[0]
    assert f"{effect.observed_hr:.2f} [{effect.observed_lower:.2f}, {effect.observed_upper:.2f}]" in texts
    # the prediction interval bar of each model spans its predictive HR
    bars = [c for c in ax.collections if c.get_linewidth()[0] == 6]
    assert len(bars) == len(fits)
    seg = bars[0].get_segments()[0]
    first = list(fits.values())[0]
    assert seg[0][0] == pytest.approx(first.predictive_hr.q025) and seg[1][0] == pytest.approx(first.predictive_hr.q975)


def test_forest_text_is_readable_and_height_scales(fits):
    fig = plots.plot_forest(fits)
    fig.draw_without_rendering()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert min(sizes) >= 8
    one = {"only": next(iter(fits.values()))}
    small = plots.plot_forest(one)
    assert fig.get_figheight() > small.get_figheight()


def test_forest_refuses_nothing_to_draw_and_unknown_shrinkage(fits):
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_forest({})
    with pytest.raises(ValueError, match="shrinkage_from"):
        plots.plot_forest(fits, shrinkage_from="nope")


# --------------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------------
def test_sensitivity_one_panel_per_threshold_and_one_line_per_family_and_bias_prior():
    sweep = make_sweep("Design-bias adjusted (additive)", bias=True)
    fig = plots.plot_sensitivity(sweep)
    axes = _visible_axes(fig)
    assert len(axes) == 1 + len(sweep.thresholds)
    families = {r.tau_family for r in sweep.rows}
    assert families == {"halfnormal", "halfcauchy", "turner2015"}
    n_lines = len(families) * len(BIAS_GRID)
    for ax in axes:
        assert ax.get_xscale() == "log"
        data_lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_marker() == "o"]
        assert len(data_lines) == n_lines
    assert axes[0].get_yscale() == "log"
    assert axes[1].get_ylabel() == "P(HR < 0.8)" and axes[2].get_ylabel() == "P(HR < 1)"
    # x positions are the prior medians, sorted within each family
    hn = [r for r in sweep.rows if r.tau_family == "halfnormal" and r.bias_prior == sweep.rows[0].bias_prior]
    line = next(ln for ln in axes[1].get_lines() if len(ln.get_xdata()) == len(hn) and ln.get_linestyle() == "-")
    np.testing.assert_allclose(line.get_xdata(), sorted(r.tau_prior_median for r in hn))
    styles = {ln.get_linestyle() for ln in axes[1].get_lines() if ln.get_marker() == "o"}
    assert len(styles) == len(BIAS_GRID)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "τ prior: Turner 2015 (empirical)" in legend
    assert "δ prior: normal(mean=-0.223, sd=0.25)" in legend


def test_sensitivity_chosen_thresholds_and_refusals():
    sweep = make_sweep("Random effects", bias=False)
    fig = plots.plot_sensitivity(sweep, thresholds=[1.0])
    assert len(_visible_axes(fig)) == 2
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # one shaded 95% CrI band per tau family
    assert len([ln for ln in fig.axes[1].get_lines() if ln.get_marker() == "o"]) == 3
    with pytest.raises(ValueError, match="0.7"):
        plots.plot_sensitivity(sweep, thresholds=[0.7])
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_sensitivity(type(sweep)(rows=[], thresholds=(0.8,), seconds=0.0))
    assert len(sweep.rows) == len(TAU_GRID)


# --------------------------------------------------------------------------------------------
# funnel
# --------------------------------------------------------------------------------------------
def test_funnel_inverted_se_pooled_line_and_filled_studies(result):
    pooled = result.pools["all"]["REML"]
    trimfill = SimpleNamespace(filled_y=(0.3, 0.45), filled_v=(0.04, 0.09), estimate=-0.2)
    fig = plots.plot_funnel(result.table, pooled=pooled, trimfill=trimfill)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert lo > hi == 0.0  # standard error grows downwards
    observed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None" and ln.get_markerfacecolor() != "none"]
    assert sum(len(ln.get_xdata()) for ln in observed) == result.table.k
    filled = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "none"]
    assert len(filled) == 1
    np.testing.assert_allclose(filled[0].get_xdata(), [0.3, 0.45])
    np.testing.assert_allclose(filled[0].get_ydata(), [0.2, 0.3])
    verticals = [ln.get_xdata()[0] for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1 and len(ln.get_xdata()) == 2]
    assert pooled.estimate in verticals and -0.2 in verticals
    # pseudo 95% limits: estimate +/- 1.96 se at the bottom of the funnel
    limits = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(limits) == 2
    x, y = limits[0].get_data()
    assert x[1] == pytest.approx(pooled.estimate - plots.FUNNEL_Z * y[1])


def test_funnel_without_pool_or_trimfill(result):
    fig = plots.plot_funnel(result.table)
    ax = fig.axes[0]
    assert not [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "none"]
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


# --------------------------------------------------------------------------------------------
# bubble
# --------------------------------------------------------------------------------------------
def test_bubble_band_from_hr_at_and_strip_for_missing(result):
    fit = result.fits["bias_metareg"]
    fig = plots.plot_bubble(result.table, fit, "bone_only_fraction", label="Bias-adjusted meta-regression")
    ax, strip = fig.axes
    assert ax.get_yscale() == "log"
    median = next(ln for ln in ax.get_lines() if ln.get_label() == "posterior median HR")
    np.testing.assert_allclose(median.get_xdata(), np.linspace(0, 1, len(CURVE)))
    np.testing.assert_allclose(median.get_ydata(), [s.median for s in CURVE.values()])
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    edge = band.get_paths()[0].vertices
    assert edge[:, 1].min() == pytest.approx(min(s.q025 for s in CURVE.values()))
    assert edge[:, 1].max() == pytest.approx(max(s.q975 for s in CURVE.values()))
    x = result.table.covariate("bone_only_fraction")
    n_missing = int(np.isnan(x).sum())
    assert n_missing == 2
    in_main = sum(len(c.get_offsets()) for c in ax.collections if type(c).__name__ == "PathCollection")
    in_strip = sum(len(c.get_offsets()) for c in strip.collections if type(c).__name__ == "PathCollection")
    assert (in_main, in_strip) == (result.table.k - n_missing, n_missing)
    assert "imputed/missing" in strip.get_title()
    # bubble area grows with precision (1/se^2)
    sizes = np.concatenate([c.get_sizes() for c in ax.collections if type(c).__name__ == "PathCollection"])
    assert sizes.max() > 2 * sizes.min()


def test_bubble_without_missing_values_has_no_strip(result):
    table = result.table.select(~np.isnan(result.table.covariate("bone_only_fraction")))
    fig = plots.plot_bubble(table, result.fits["bias_metareg"], "bone_only_fraction")
    assert len(fig.axes) == 1


def test_bubble_draws_the_most_precise_above_its_cap(result, monkeypatch):
    """Above BUBBLE_MAX_STUDIES only the most precise studies are bubbles, the title says how
    many of how many, and the strip still counts every study without the covariate."""
    from synthesis.plots import bubble

    monkeypatch.setattr(bubble, "BUBBLE_MAX_STUDIES", 5)
    table = result.table
    fig = plots.plot_bubble(table, result.fits["bias_metareg"], "bone_only_fraction")
    ax, strip = fig.axes
    drawn = [c for a in (ax, strip) for c in a.collections if type(c).__name__ == "PathCollection"]
    assert sum(len(c.get_offsets()) for c in drawn) == 5
    hrs = np.sort(np.concatenate([c.get_offsets()[:, 1] for c in drawn]))
    precise = np.sort(np.exp(table.y)[np.argsort(table.v)[:5]])
    np.testing.assert_allclose(hrs, precise)
    assert f"(5 most precise of {table.k:,} studies drawn)" in fig._suptitle.get_text()
    assert "(2 studies)" in strip.get_title()


# --------------------------------------------------------------------------------------------
# prior vs posterior
# --------------------------------------------------------------------------------------------
def test_prior_posterior_draws_the_given_prior_density(result, fits):
    fig = plots.plot_prior_posterior(fits)
    visible = _visible_axes(fig)
    # tau for all four models, delta for the two bias models
    assert len(visible) == 4 + 2
    bias = result.fits["bias"]
    ax = next(a for a in visible if a.get_title() == "Design-bias adjusted (additive): δ")
    posterior, prior = ax.get_lines()
    grid, density = bias.densities["delta"]
    np.testing.assert_allclose(posterior.get_ydata(), density)
    np.testing.assert_allclose(prior.get_ydata(), np.exp(bias.spec.priors.delta.logpdf(grid)))
    assert prior.get_label() == "prior: normal(mean=0, sd=0.5)"
    tau = next(a for a in visible if a.get_title() == "Random effects, all studies: τ")
    assert tau.get_lines()[1].get_label().replace("\n", " ") == f"prior: {bias.spec.priors.tau.label}"


def test_prior_posterior_single_fit_and_refusal(result):
    fig = plots.plot_prior_posterior(result.fits["re_all"])
    assert len(_visible_axes(fig)) == 1
    bare = result.fits["re_all"]
    empty = type(bare)(**{**bare.__dict__, "densities": {}, "tau_grid": None, "tau_density": None})
    with pytest.raises(ValueError, match="no fit holds a posterior density"):
        plots.plot_prior_posterior(empty)


# --------------------------------------------------------------------------------------------
# the standard set and saving
# --------------------------------------------------------------------------------------------
def test_standard_figures_draw_what_the_result_holds(result):
    figures = plots.standard_figures(result)
    assert set(figures) == {"forest", "sensitivity_re_all", "sensitivity_bias", "bias_sensitivity_bias", "funnel", "bubble", "prior_posterior"}
    labels = {run.key: run.label for run in result.runs}
    # forest: one row per study of the table (in design order), then one pooled row per model
    forest = figures["forest"].axes[0]
    k = result.table.k
    ticks = _tick_labels(forest.yaxis)
    assert len(forest.get_yticks()) == k + len(result.fits)
    assert sorted(ticks[:k]) == sorted(result.table.studies)
    assert [t.split("\n")[0] for t in ticks[k:]] == [labels[key] for key in result.fits]
    diamonds = [p for p in forest.patches if isinstance(p, Polygon)]
    for diamond, fit in zip(diamonds, result.fits.values(), strict=True):
        xs = diamond.get_xy()[:, 0]
        assert (xs.min(), xs.max()) == pytest.approx((fit.hr.q025, fit.hr.q975))
    legend = [t.get_text() for t in figures["forest"].legends[0].get_texts()]
    assert f"shrunken HR, 95% CrI ({labels['bias']})" in legend  # shrinkage under the bias model
    # sensitivity: per panel one line per (tau family, bias prior), x = the sweep's prior medians
    for key, sweep in result.sweeps.items():
        axes = _visible_axes(figures[f"sensitivity_{key}"])
        groups = {(r.tau_family, r.bias_prior) for r in sweep.rows}
        for ax, t in zip(axes[1:], sweep.thresholds, strict=True):
            lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
            assert len(lines) == len(groups)
            drawn = sorted((tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in lines)
            expected = []
            for group in groups:
                rows = sorted((r for r in sweep.rows if (r.tau_family, r.bias_prior) == group), key=lambda r: r.tau_prior_median)
                expected.append((tuple(r.tau_prior_median for r in rows), tuple(r.p_hr_below[threshold_key(t)] for r in rows)))
            assert drawn == sorted(expected)
        assert figures[f"sensitivity_{key}"].get_suptitle() == f"Prior sensitivity: {labels[key]}"
    # funnel: every study once, centred on the REML pool of all studies
    funnel = figures["funnel"].axes[0]
    points = [ln for ln in funnel.get_lines() if ln.get_linestyle() == "None"]
    assert sorted(x for ln in points for x in ln.get_xdata()) == pytest.approx(sorted(result.table.y))
    pooled = next(ln for ln in funnel.get_lines() if ln.get_label().startswith("pooled estimate"))
    assert pooled.get_xdata()[0] == pytest.approx(result.pools["all"]["REML"].estimate)
    # bubble: the meta-regression's curve; prior vs posterior: one row per fit with densities
    median = next(ln for ln in figures["bubble"].axes[0].get_lines() if ln.get_label() == "posterior median HR")
    np.testing.assert_allclose(median.get_ydata(), [s.median for s in CURVE.values()])
    titles = {ax.get_title().replace("\n", " ") for ax in _visible_axes(figures["prior_posterior"])}
    assert {f"{labels[key]}: τ" for key in result.fits} <= titles


def test_save_figure_writes_png_at_150_dpi_and_svg(tmp_path):
    from PIL import Image

    fig = Figure(figsize=(2.0, 1.0))
    fig.add_subplot().plot([1, 2], [2, 1])
    png, svg = plots.save_figure(fig, tmp_path / "sub" / "tiny")
    assert png == tmp_path / "sub" / "tiny.png" and svg == tmp_path / "sub" / "tiny.svg"
    with Image.open(png) as im:
        assert im.size == (300, 150)
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert math.isclose(fig.get_figwidth(), 2.0)


def test_bias_sensitivity_plot_from_a_real_sweep():
    """x = bias-prior SD, one line per bias-prior mean, at the default tau prior; y = the rows."""
    from synthesis.datasets import load_dataset
    from synthesis.models.spec import ModelData, ModelSpec
    from synthesis.plots import plot_bias_sensitivity
    from synthesis.sweeps import run_sweep, split_specs

    spec = ModelSpec("bias")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    sweep = run_sweep(
        data, spec, tau_priors=split_specs("halfnormal(0.5);halfcauchy(1)", [], "tau"),
        bias_priors=split_specs("normal(0, 0.1);normal(0, 1);normal(-0.223, 0.1);normal(-0.223, 1);normal(-0.223, 0.5)", [], "delta"),
        thresholds=(0.8, 1.0), progress=False,
    )
    fig = plot_bias_sensitivity(sweep)
    axes = _visible_axes(fig)
    assert len(axes) == 3
    rows = [r for r in sweep.rows if r.tau_prior == "half-normal(scale=0.5)"]
    means = sorted({r.bias_mean for r in rows})
    assert means == [-0.223, 0.0]
    for ax, value in zip(axes, ("hr", "0.8", "1.0"), strict=True):
        lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
        assert len(lines) == len(means)
        for line, mean in zip(lines, means, strict=True):
            at_mean = sorted((r for r in rows if r.bias_mean == mean), key=lambda r: r.bias_sd)
            np.testing.assert_allclose(line.get_xdata(), [r.bias_sd for r in at_mean])
            expected = [r.hr_median if value == "hr" else r.p_hr_below[value] for r in at_mean]
            np.testing.assert_allclose(line.get_ydata(), expected)
        assert ax.get_xscale() == "log"
    assert [ln.get_label() for ln in axes[0].get_lines() if ln.get_marker() == "o"] == [
        "δ prior mean -0.223 (HR ×0.80)", "δ prior mean 0 (HR ×1.00)"]
    other = plot_bias_sensitivity(sweep, tau_prior="half-Cauchy(scale=1)")
    line = next(ln for ln in other.axes[0].get_lines() if ln.get_marker() == "o")
    cauchy = sorted((r for r in sweep.rows if r.tau_prior == "half-Cauchy(scale=1)" and r.bias_mean == -0.223), key=lambda r: r.bias_sd)
    np.testing.assert_allclose(line.get_ydata(), [r.hr_median for r in cauchy])
    with pytest.raises(ValueError, match="no rows with tau prior"):
        plot_bias_sensitivity(sweep, tau_prior="uniform(0, 1)")
    with pytest.raises(ValueError, match="0.7"):
        plot_bias_sensitivity(sweep, thresholds=[0.7])
    with pytest.raises(ValueError, match="no bias priors"):
        plot_bias_sensitivity(make_sweep("Random effects", bias=False))


# --------------------------------------------------------------------------------------------
# drawing into the caller's axes or figure; the backend is the caller's
# --------------------------------------------------------------------------------------------
def _multi_panel(result, fits):
    sweep = make_sweep("Design-bias adjusted (additive)", bias=True)
    fit = result.fits["bias_metareg"]
    return {
        "forest": (lambda **kw: plots.plot_forest(fits, **kw), 2),
        "sensitivity": (lambda **kw: plots.plot_sensitivity(sweep, **kw), 3),
        "bias_sensitivity": (lambda **kw: plots.plot_bias_sensitivity(sweep, **kw), 3),
        "bubble": (lambda **kw: plots.plot_bubble(result.table, fit, "bone_only_fraction", **kw), 2),
        "prior_posterior": (lambda **kw: plots.plot_prior_posterior(fits, **kw), 8),
    }


@pytest.mark.parametrize("name", ["forest", "funnel"])
def test_plots_draw_into_a_given_ax(result, fits, name):
    import matplotlib.pyplot as plt

    draw = {
        "forest": lambda ax: plots.plot_forest(fits, ax=ax),
        "funnel": lambda ax: plots.plot_funnel(result.table, pooled=result.pools["all"]["REML"], ax=ax),
    }[name]
    fig, (left, ax) = plt.subplots(1, 2)
    fig.suptitle("user's $x^2$")
    try:
        before = plt.get_fignums()
        assert draw(ax) is ax.figure is fig
        assert plt.get_fignums() == before
        assert fig.axes == [left, ax]  # nothing added beside ax (the forest's text columns are an inset of it)
        assert not left.lines and not left.collections
        assert ax.get_xscale() == ("log" if name == "forest" else "linear") and ax.get_title()
        assert fig._suptitle.get_parse_math()  # the caller's own texts are left alone
        assert not any(t.get_parse_math() for t in ax.findobj(Text))  # ours are plain text
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", ["forest", "sensitivity", "bias_sensitivity", "bubble", "prior_posterior"])
def test_multi_panel_plots_draw_into_a_given_fig(result, fits, name):
    import matplotlib.pyplot as plt

    draw, n_axes = _multi_panel(result, fits)[name]
    fig = plt.figure(figsize=(3.0, 2.0))
    try:
        before = plt.get_fignums()
        assert draw(fig=fig) is fig
        assert plt.get_fignums() == before
        assert len(fig.axes) == n_axes
        assert tuple(fig.get_size_inches()) == (3.0, 2.0)  # the caller's size is kept
        with pytest.raises(ValueError, match="empty figure"):
            draw(fig=fig)
    finally:
        plt.close(fig)
    outer = Figure()
    sub = outer.subfigures(1, 2)[1]
    assert draw(fig=sub) is sub and len(sub.axes) == n_axes and not outer.subfigs[0].axes


def test_forest_refuses_both_fig_and_ax(fits):
    fig = Figure()
    with pytest.raises(ValueError, match="not both"):
        plots.plot_forest(fits, fig=fig, ax=fig.subplots())


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_importing_the_plots_keeps_the_users_backend():
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); import synthesis.plots; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # writes a whole report (5-9 s): CI's slow run
def test_the_cli_draws_headless_with_agg(tmp_path):
    code = (
        "import sys; from synthesis.cli import main; rc = main(sys.argv[1:]); "
        "import matplotlib; print(rc, matplotlib.get_backend().lower())"
    )
    done = _python(code, "sweep", "--tau-priors", "halfnormal(0.5);halfnormal(1)", "--quiet", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["0", "agg"]
    assert (tmp_path / "out" / "sensitivity.png").stat().st_size > 0
