"""Prior-sensitivity plots of a sweep: the posterior HR and P(HR < T) against the tau prior
(:func:`plot_sensitivity`) or against the SD of the design-bias prior
(:func:`plot_bias_sensitivity`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.spec import threshold_key
from synthesis.plots.style import (
    LINE_COLOURS,
    finite_positive,
    hr_axis,
    legend_below,
    log_axis,
    styled,
    target_figure,
)
from synthesis.sweeps import SweepResult, SweepRow

#: Tick values of a log axis of prior scales (tau).
SCALE_TICKS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: A sensitivity plot shades the credible bands of at most this many lines (else draws edges).
MAX_SHADED_BANDS = 6
#: The tau prior a bias-sensitivity plot is drawn at, when the sweep has it.
DEFAULT_BIAS_PLOT_TAU_PRIOR = "half-normal(scale=0.5)"
#: Line styles, one per bias prior.
DASHES: tuple[Any, ...] = (
    "solid",
    (0, (5, 2)),
    (0, (1, 1.5)),
    (0, (6, 2, 1, 2)),
    (0, (2, 3)),
    (0, (10, 3)),
    (0, (4, 1, 1, 1, 1, 1)),
    (0, (8, 2, 2, 2, 2, 2)),
)
FAMILY_LABELS: dict[str, str] = {
    "halfnormal": "half-normal",
    "halfcauchy": "half-Cauchy",
    "halft": "half-Student-t",
    "exponential": "exponential",
    "uniform": "uniform",
    "lognormal_tau2": "log-normal on τ²",
    "invgamma": "inverse-gamma",
    "invgamma_tau2": "inverse-gamma on τ²",
    "turner2015": "Turner 2015 (empirical)",
    "turner2015-acm-nonpharm": "Turner 2015 (empirical)",
}
TAU = PARAMETER_SYMBOLS["tau"]
DELTA = PARAMETER_SYMBOLS["delta"]


@styled
def plot_sensitivity(
    sweep: SweepResult,
    *,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Prior-sensitivity plot of a sweep: the posterior HR and P(HR < T) against the tau prior.

    The x axis is the prior median of tau (``SweepRow.tau_prior_median``, log scale). The first
    panel shows the posterior median HR with its 95% equal-tailed credible band; one further
    panel per threshold shows P(HR < T). One colour per tau-prior family and, for sweeps over
    bias priors too, one line style per bias prior. Each line joins a family's rows in order of
    their prior median.

    Parameters
    ----------
    sweep
        The sweep result.
    thresholds
        Thresholds to draw (default all of ``sweep.thresholds``); each must be in the sweep.
    title
        Figure title (default: the model label of the sweep's rows).
    fig
        An empty figure (or subfigure) to draw into; default a new figure.

    Returns
    -------
    Figure
        ``fig`` when given; ``1 + len(thresholds)`` visible panels.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> from synthesis.plots import plot_sensitivity
    >>> from synthesis.sweeps import run_sweep, split_specs
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(synthesis.load_dataset("dnmbc_lrt"), spec)
    >>> taus = split_specs("halfnormal(0.25);halfnormal(0.5);halfnormal(1);halfcauchy(0.5)", [], "tau")
    >>> sweep = run_sweep(data, spec, tau_priors=taus, thresholds=(0.8, 1.0), progress=False)
    >>> fig = plot_sensitivity(sweep)
    >>> [ax.get_title() for ax in fig.axes if ax.get_visible()]
    ['Pooled HR', 'Posterior probability HR < 0.8', 'Posterior probability HR < 1']
    >>> half_normal = fig.axes[1].get_lines()[0]
    >>> [float(round(x, 3)) for x in half_normal.get_xdata()]
    [0.169, 0.337, 0.674]
    """
    if not sweep.rows:
        raise ValueError("plot_sensitivity: the sweep has no rows")
    chosen = _chosen_thresholds(sweep, thresholds, "plot_sensitivity")
    groups = _groups(sweep.rows)
    families = list(dict.fromkeys(k[0] for k in groups))
    biases = list(dict.fromkeys(k[1] for k in groups))
    colour = {f: LINE_COLOURS(i % 10) for i, f in enumerate(families)}
    style = {b: DASHES[i % len(DASHES)] for i, b in enumerate(biases)}
    legend_rows = 0.22 * (len(families) + len(biases)) / 2
    fig, axes = _panels(fig, 1 + len(chosen), 0.6 + legend_rows, "plot_sensitivity")

    # Few lines: shaded credible bands; many (bias sweeps): the band edges as thin lines, since
    # dozens of overlapping shaded bands hide each other.
    shade = len(groups) <= MAX_SHADED_BANDS
    for (fam, bias), rs in groups.items():
        x = [r.tau_prior_median for r in rs]
        _draw_hr_line(axes[0], x, rs, colour=colour[fam], ls=style[bias], shade=shade)
        for ax, t in zip(axes[1:], chosen, strict=True):
            _draw_probability_line(ax, x, rs, t, colour=colour[fam], ls=style[bias])
    hr_all = finite_positive([v for r in sweep.rows for v in (r.hr_q025, r.hr_q975)]) or [0.5, 2.0]
    _hr_panel(axes[0], hr_all, f"Posterior median HR ({INTERVAL_LABEL} CrI {'band' if shade else 'thin lines'})", "Pooled HR")
    for t in chosen:
        if t != 1.0:
            axes[0].axhline(t, color="#777777", lw=0.6, ls=":")
    _probability_panels(axes[1:], chosen)
    x_all = finite_positive([r.tau_prior_median for r in sweep.rows]) or [0.1, 1.0]
    lo, hi = min(x_all) / 1.3, max(x_all) * 1.3
    _x_axes(axes, lo, hi, [t for t in SCALE_TICKS if lo <= t <= hi], f"Prior median of {TAU} (log scale)")

    handles = [Line2D([], [], color=colour[f], marker="o", ms=3, lw=1.3, label=f"{TAU} prior: {FAMILY_LABELS.get(f, f)}")
               for f in families]
    if any(b is not None for b in biases):
        handles += [Line2D([], [], color="black", ls=style[b], lw=1.3, label=f"{DELTA} prior: {b}") for b in biases]
    legend_below(fig, handles)
    fig.suptitle(title or f"Prior sensitivity: {sweep.rows[0].model}")
    return fig


@styled
def plot_bias_sensitivity(
    sweep: SweepResult,
    *,
    tau_prior: str | None = None,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Bias-prior sensitivity of a sweep: the posterior HR and P(HR < T) against the SD of the
    design-bias prior (log scale), one line per bias-prior mean, at one tau prior.

    Parameters
    ----------
    sweep
        A sweep over bias priors (rows without a bias prior are left out; none at all is a
        ``ValueError``).
    tau_prior
        The tau-prior label of the rows drawn (default ``half-normal(scale=0.5)`` when the sweep
        has it, else the first tau prior).
    thresholds
        Thresholds to draw (default all of ``sweep.thresholds``); each must be in the sweep.
    title
        Figure title.
    fig
        An empty figure (or subfigure) to draw into; default a new figure.

    Returns
    -------
    Figure
        ``fig`` when given; ``1 + len(thresholds)`` visible panels, each with one marked line
        per bias-prior mean (ascending), its points in order of the bias-prior SD.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> from synthesis.plots import plot_bias_sensitivity
    >>> from synthesis.sweeps import run_sweep, split_specs
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(synthesis.load_dataset("dnmbc_lrt"), spec)
    >>> sweep = run_sweep(
    ...     data, spec, tau_priors=split_specs("halfnormal(0.5)", [], "tau"),
    ...     bias_priors=split_specs("normal(0, 0.1);normal(0, 1);normal(-0.2, 0.1);normal(-0.2, 1)", [], "delta"),
    ...     thresholds=(1.0,), progress=False)
    >>> fig = plot_bias_sensitivity(sweep)
    >>> [line.get_label() for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    ['δ prior mean -0.2 (HR ×0.82)', 'δ prior mean 0 (HR ×1.00)']
    >>> [float(x) for x in fig.axes[1].get_lines()[0].get_xdata()]
    [0.1, 1.0]
    """
    rows = _bias_rows(sweep, tau_prior)
    chosen = _chosen_thresholds(sweep, thresholds, "plot_bias_sensitivity")
    fig, axes = _panels(fig, 1 + len(chosen), 0.8, "plot_bias_sensitivity")
    for i, mean in enumerate(sorted({r.bias_mean for r in rows})):
        rs = sorted((r for r in rows if r.bias_mean == mean), key=lambda r: r.bias_sd)
        x = [r.bias_sd for r in rs]
        colour = LINE_COLOURS(i % 10)
        label = f"{DELTA} prior mean {mean:g} (HR ×{math.exp(mean):.2f})"
        _draw_hr_line(axes[0], x, rs, colour=colour, ls="solid", shade=True, label=label)
        for ax, t in zip(axes[1:], chosen, strict=True):
            _draw_probability_line(ax, x, rs, t, colour=colour, ls="solid")
    hr_all = finite_positive([v for r in rows for v in (r.hr_q025, r.hr_q975)]) or [0.5, 2.0]
    _hr_panel(axes[0], hr_all, f"Posterior median HR ({INTERVAL_LABEL} CrI band)", "Pooled HR of a randomised comparison")
    _probability_panels(axes[1:], chosen)
    sds = sorted({r.bias_sd for r in rows})
    _x_axes(axes, min(sds) / 1.3, max(sds) * 1.3, sds, f"SD of the design-bias prior {DELTA} (log scale)")
    handles, texts = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, texts)
    fig.suptitle(title or f"Bias-prior sensitivity: {rows[0].model} ({TAU} ~ {rows[0].tau_prior})")
    return fig


def _chosen_thresholds(sweep: SweepResult, thresholds: Sequence[float] | None, plot: str) -> tuple[float, ...]:
    """The thresholds to draw (default the sweep's); a threshold the sweep lacks is a ValueError."""
    chosen = tuple(sweep.thresholds if thresholds is None else thresholds)
    have = sweep.rows[0].p_hr_below if sweep.rows else {}
    missing = [t for t in chosen if threshold_key(t) not in have]
    if missing:
        raise ValueError(
            f"{plot}: threshold(s) {', '.join(f'{t:g}' for t in missing)} not in the sweep "
            f"(it has {', '.join(have)})"
        )
    return chosen


def _groups(rows: Sequence[SweepRow]) -> dict[tuple[str, str | None], list[SweepRow]]:
    """Rows by (tau family, bias prior), each sorted by the prior median of tau (for lines)."""
    out: dict[tuple[str, str | None], list[SweepRow]] = {}
    for r in rows:
        out.setdefault((r.tau_family, r.bias_prior), []).append(r)
    return {k: sorted(v, key=lambda r: r.tau_prior_median) for k, v in out.items()}


def _bias_rows(sweep: SweepResult, tau_prior: str | None) -> list[SweepRow]:
    """The rows with a bias prior at the chosen tau prior."""
    rows = [r for r in sweep.rows if r.bias_prior is not None and r.bias_sd is not None]
    if not rows:
        raise ValueError("plot_bias_sensitivity: the sweep has no bias priors")
    labels = list(dict.fromkeys(r.tau_prior for r in rows))
    chosen = tau_prior or (DEFAULT_BIAS_PLOT_TAU_PRIOR if DEFAULT_BIAS_PLOT_TAU_PRIOR in labels else labels[0])
    rows = [r for r in rows if r.tau_prior == chosen]
    if not rows:
        raise ValueError(f"plot_bias_sensitivity: no rows with tau prior {chosen!r}")
    return rows


def _panels(fig: Figure | None, n_panels: int, extra_height: float, plot: str) -> tuple[Figure, list[Axes]]:
    """Up to three panels a row (unused grid cells hidden); the visible ones, in order."""
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = target_figure(fig, 4.0 * ncols, 3.2 * nrows + extra_height, plot=plot)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return fig, axes[:n_panels]


def _draw_hr_line(
    ax: Axes, x: Sequence[float], rows: Sequence[SweepRow], *, colour: Any, ls: Any, shade: bool, label: str | None = None
) -> None:
    """The posterior median HR of ``rows`` with its credible band (shaded, or its edges)."""
    lower, upper = [r.hr_q025 for r in rows], [r.hr_q975 for r in rows]
    if shade:
        ax.fill_between(x, lower, upper, color=colour, alpha=0.15, lw=0)
    else:
        for edge in (lower, upper):
            ax.plot(x, edge, color=colour, ls=ls, lw=0.6, alpha=0.6)
    ax.plot(x, [r.hr_median for r in rows], color=colour, ls=ls, marker="o", ms=3, lw=1.3,
            **({} if label is None else {"label": label}))


def _draw_probability_line(ax: Axes, x: Sequence[float], rows: Sequence[SweepRow], t: float, *, colour: Any, ls: Any) -> None:
    key = threshold_key(t)
    ax.plot(x, [r.p_hr_below.get(key, np.nan) for r in rows], color=colour, ls=ls, marker="o", ms=3, lw=1.3)


def _hr_panel(ax: Axes, hr_values: Sequence[float], ylabel: str, title: str) -> None:
    hr_axis(ax, min(hr_values) / 1.1, max(hr_values) * 1.1, axis="y")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _probability_panels(axes: Sequence[Axes], thresholds: Sequence[float]) -> None:
    for ax, t in zip(axes, thresholds, strict=True):
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="#bbbbbb", lw=0.6, ls=":")
        ax.set_ylabel(f"P(HR < {t:g})")
        ax.set_title(f"Posterior probability HR < {t:g}")


def _x_axes(axes: Sequence[Axes], lo: float, hi: float, ticks: Sequence[float], label: str) -> None:
    for ax in axes:
        log_axis(ax, lo, hi, ticks)
        ax.set_xlabel(label)
        ax.grid(True, which="major", color="#eeeeee", lw=0.6)
