"""Tipping-point figures of a :class:`~synthesis.models.tipping.TippingResult`: the heat map of
P(HR < T) over the design-bias prior with its contour (:func:`plot_tipping_map`), and the
down-weighting curve (:func:`plot_alpha_curve`). Nothing here computes a statistic: the numbers
drawn are those the result holds."""

from __future__ import annotations

import math

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.tipping import UNBIASED, TippingResult, bias_interval
from synthesis.plots.style import (
    LINE_COLOURS,
    finite_positive,
    hr_axis,
    legend_below,
    log_axis,
    styled,
    target_axes,
    target_figure,
)

#: Colour map of the heat map (P from 0 to 1), perceptually uniform and legible in grey.
TIPPING_CMAP = "viridis"
#: Colour of the contour line drawn over the heat map (outlined in black: legible on any cell
#: and in the legend).
CONTOUR_COLOUR = "white"
_OUTLINE = [patheffects.Stroke(linewidth=3.2, foreground="black"), patheffects.Normal()]
#: Tick values of the bias-factor (x) and bias-SD (y) axes of the heat map.
BIAS_MEAN_TICKS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
BIAS_SD_TICKS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DELTA = PARAMETER_SYMBOLS["delta"]


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced axis: geometric midpoints, the ends mirrored (drawing geometry)."""
    logs = np.log(centres)
    mid = 0.5 * (logs[1:] + logs[:-1])
    return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))


@styled
def plot_tipping_map(result: TippingResult, *, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Heat map of P(HR < T) over the bias prior's mean (HR scale, x) and SD (log scale, y),
    with the contour where P(HR < T) crosses the level.

    Parameters
    ----------
    result
        The tipping-point analysis.
    title
        Axes title (default: what is drawn).
    ax
        Axes to draw into; default a new figure (with a colour bar beside the axes).

    Returns
    -------
    Figure
        ``ax.figure`` when ``ax`` is given. The contour points are the result's ``contour``
        (joined along increasing bias mean, one line per crossing order); the crossing at bias
        mean 1 that the sentence reads is marked with a star.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> from synthesis.models.tipping import tipping_analysis
    >>> from synthesis.plots.tipping import plot_tipping_map
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(synthesis.load_dataset("dnmbc_lrt"), spec)
    >>> res = tipping_analysis(data, grid=(4, 3), alpha_points=2)
    >>> fig = plot_tipping_map(res)
    >>> fig.axes[0].get_xscale(), fig.axes[0].get_yscale(), fig.axes[0].collections[0].get_array().shape
    ('log', 'log', (3, 4))
    """
    fig, ax, own = target_axes(ax, 6.0, 4.6)
    x_edges, y_edges = _edges(result.bias_means), _edges(result.bias_sds)
    mesh = ax.pcolormesh(x_edges, y_edges, result.p_hr_below.T, cmap=TIPPING_CMAP, vmin=0.0, vmax=1.0, shading="flat")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label(f"P(HR < {result.threshold:g})")
    cbar.ax.axhline(result.level, color=CONTOUR_COLOUR, lw=1.2)
    # one line per crossing order (first crossing at each mean, second, ...)
    by_mean: dict[float, list[float]] = {}
    for c in result.contour:
        by_mean.setdefault(c.bias_mean, []).append(c.bias_sd)
    orders = max((len(v) for v in by_mean.values()), default=0)
    for k in range(orders):
        pts = sorted((m, sds[k]) for m, sds in by_mean.items() if len(sds) > k)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=CONTOUR_COLOUR, lw=1.8, marker="o", ms=2.5,
                path_effects=_OUTLINE,
                label=f"P(HR < {result.threshold:g}) = {result.level:g}" if k == 0 else None)
    ax.axvline(UNBIASED, color="#dddddd", lw=0.8, ls=":")
    for c in result.unbiased_crossings:
        ax.plot([UNBIASED], [c.bias_sd], marker="*", ms=11, color="#ff7f0e", mec="black", mew=0.6, ls="none",
                label=f"bias factor 1: SD {c.bias_sd:.3g} (95% prior interval "
                      f"{bias_interval(c.bias_sd)[0]:.2f} to {bias_interval(c.bias_sd)[1]:.2f})")
    log_axis(ax, float(x_edges[0]), float(x_edges[-1]), [t for t in BIAS_MEAN_TICKS if x_edges[0] <= t <= x_edges[-1]])
    log_axis(ax, float(y_edges[0]), float(y_edges[-1]), [t for t in BIAS_SD_TICKS if y_edges[0] <= t <= y_edges[-1]], axis="y")
    ax.set_xlabel("Bias prior mean: factor multiplying a non-randomised study's HR (log scale)")
    ax.set_ylabel(f"Bias prior SD of {DELTA} (log-HR scale; log axis)")
    ax.set_title(title or f"P(HR < {result.threshold:g}) of a randomised comparison by design-bias prior")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        if own:
            legend_below(fig, handles, labels)
        else:
            ax.legend(handles, labels, loc="upper left", fontsize="small")
    return fig


@styled
def plot_alpha_curve(result: TippingResult, *, title: str | None = None, fig: Figure | None = None) -> Figure:
    """The down-weighting curve: the posterior HR (median and 95% credible band) and
    P(HR < T) against alpha (0: randomised studies only; 1: every study as equal).

    Parameters
    ----------
    result
        The tipping-point analysis.
    title
        Figure title.
    fig
        An empty figure (or subfigure) to draw into; default a new figure.

    Returns
    -------
    Figure
        ``fig`` when given; two panels (HR, probability), the level as a dotted line and the
        alphas where P crosses it as vertical lines.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> from synthesis.models.tipping import tipping_analysis
    >>> from synthesis.plots.tipping import plot_alpha_curve
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(synthesis.load_dataset("dnmbc_lrt"), spec)
    >>> fig = plot_alpha_curve(tipping_analysis(data, grid=(2, 2), alpha_points=3))
    >>> [ax.get_title() for ax in fig.axes], len(fig.axes[1].get_lines()[0].get_xdata())
    (['Pooled HR', 'Posterior probability HR < 0.8'], 3)
    """
    fig = target_figure(fig, 8.0, 3.8, plot="plot_alpha_curve")
    ax_hr, ax_p = fig.subplots(1, 2)
    alpha = [a.alpha for a in result.alpha_curve]
    colour = LINE_COLOURS(0)
    ax_hr.fill_between(alpha, [a.hr_q025 for a in result.alpha_curve], [a.hr_q975 for a in result.alpha_curve],
                       color=colour, alpha=0.15, lw=0)
    ax_hr.plot(alpha, [a.hr_median for a in result.alpha_curve], color=colour, marker="o", ms=3, lw=1.3)
    hr_all = finite_positive([v for a in result.alpha_curve for v in (a.hr_q025, a.hr_q975)]) or [0.5, 2.0]
    hr_axis(ax_hr, min(hr_all) / 1.1, max(hr_all) * 1.1, axis="y")
    ax_hr.axhline(1.0, color="black", lw=0.8)
    if not math.isclose(result.threshold, 1.0):
        ax_hr.axhline(result.threshold, color="#777777", lw=0.6, ls=":")
    ax_hr.set_ylabel(f"Posterior median HR ({INTERVAL_LABEL} CrI band)")
    ax_hr.set_title("Pooled HR")
    ax_p.plot(alpha, [a.p_hr_below for a in result.alpha_curve], color=colour, marker="o", ms=3, lw=1.3)
    ax_p.axhline(result.level, color="#bbbbbb", lw=0.8, ls=":")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel(f"P(HR < {result.threshold:g})")
    ax_p.set_title(f"Posterior probability HR < {result.threshold:g}")
    handles = [Line2D([], [], color=colour, marker="o", ms=3, lw=1.3, label="down-weighted model (exact)")]
    for c in result.alpha_crossings:
        for ax in (ax_hr, ax_p):
            ax.axvline(c.alpha, color="#d62728", lw=0.9, ls="--")
    if result.alpha_crossings:
        handles.append(Line2D([], [], color="#d62728", lw=0.9, ls="--",
                              label=f"P(HR < {result.threshold:g}) = {result.level:g}: alpha = "
                              + ", ".join(f"{c.alpha:.3g}" for c in result.alpha_crossings)))
    for ax in (ax_hr, ax_p):
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("alpha (0: RCTs only; 1: all studies equal)")
        ax.grid(True, which="major", color="#eeeeee", lw=0.6)
    legend_below(fig, handles)
    fig.suptitle(title or "Down-weighting the non-randomised studies")
    return fig
