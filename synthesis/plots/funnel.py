"""Funnel plot: each study's observed log HR against its standard error, with the pseudo
confidence limits around the pooled estimate and the studies trim-and-fill imputed."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from synthesis.base import INTERVAL_LABEL, INTERVAL_PROB
from synthesis.plots.style import (
    DESIGN_COLOURS,
    DESIGN_MARKERS,
    FONT_SIZE,
    RASTER_MIN_POINTS,
    design_name,
    legend_below,
    styled,
    target_axes,
)
from synthesis.studies import StudyTable

#: Multiplier of the pseudo-confidence lines of a funnel plot (normal quantile of the interval).
FUNNEL_Z = NormalDist().inv_cdf(0.5 + INTERVAL_PROB / 2)


@styled
def plot_funnel(
    table: StudyTable,
    *,
    pooled: Any = None,
    trimfill: Any = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Funnel plot: each study's observed log HR against its standard error (inverted axis).

    Parameters
    ----------
    table
        The studies (``log_hr``, ``se`` and ``design`` are drawn; markers by design).
    pooled
        The pooled estimate the funnel is centred on: a frequentist result with ``estimate``
        (log HR), e.g. :class:`synthesis.pooling.PoolResult`, or a number. ``None``: no funnel.
    trimfill
        A trim-and-fill result (``filled_y`` and ``filled_se`` or ``filled_v``, and its
        adjusted ``estimate``); its imputed studies are drawn as open markers. ``None``: none.
    title
        Figure title (the axes title when drawn into ``ax``).
    ax
        Axes to draw into (the legend goes inside it); default a new figure with the legend
        below the axes.

    Returns
    -------
    Figure
        ``ax.figure`` when ``ax`` is given. The pseudo 95% limits are the lines
        ``estimate +/- FUNNEL_Z * se``.

    Examples
    --------
    >>> import synthesis
    >>> from matplotlib.figure import Figure
    >>> from synthesis.plots import plot_funnel
    >>> from synthesis.pooling import pool
    >>> from synthesis.pubbias import trim_and_fill
    >>> table = synthesis.load_dataset("dnmbc_lrt")
    >>> ax = Figure().subplots()
    >>> fig = plot_funnel(table, pooled=pool(table.y, table.v), trimfill=trim_and_fill(table.y, table.v), ax=ax)
    >>> fig is ax.figure
    True
    >>> sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() in "s^o"
    ...     and line.get_markerfacecolor() != "none") == table.k
    True
    """
    fig, ax, own = target_axes(ax, 6.5, 5.2)
    se, fy, fse = table.se, *_filled_studies(trimfill)
    se_max = float(np.max(np.concatenate([se, fse]))) * 1.08 if len(se) else 1.0
    est = _pooled_log_estimate(pooled)
    if est is not None:
        _draw_funnel(ax, est, se_max, getattr(pooled, "method", None))
    _draw_studies(ax, table)
    if fy.size:
        ax.plot(fy, fse, ls="none", marker="o", ms=6, mfc="none", mec="black", mew=1.0,
                label=f"filled by trim-and-fill ({fy.size})", zorder=3)
        adjusted = _pooled_log_estimate(trimfill)
        if adjusted is not None:
            ax.axvline(adjusted, color="black", lw=1.0, ls=":", label="trim-and-fill adjusted estimate")
    _decorate(ax, se_max)
    if own:
        legend_below(fig, *ax.get_legend_handles_labels())
        fig.suptitle(title or "Funnel plot")
    else:
        ax.legend(frameon=False, fontsize=FONT_SIZE)
        ax.set_title(title or "Funnel plot", pad=24)
    return fig


def _pooled_log_estimate(pooled: Any) -> float | None:
    """The pooled log HR a frequentist result holds (``PoolResult.estimate``), or a number."""
    if pooled is None:
        return None
    if isinstance(pooled, (int, float, np.floating)):
        return float(pooled)
    value = getattr(pooled, "estimate", None)
    return None if value is None else float(value)


def _filled_studies(trimfill: Any) -> tuple[np.ndarray, np.ndarray]:
    """Log HRs and SEs of the studies a trim-and-fill result imputed (empty when none)."""
    if trimfill is None:
        return np.zeros(0), np.zeros(0)
    y = getattr(trimfill, "filled_y", None)
    se = getattr(trimfill, "filled_se", None)
    if se is None and getattr(trimfill, "filled_v", None) is not None:
        se = np.sqrt(np.asarray(trimfill.filled_v, dtype=float))
    if y is None or se is None:
        return np.zeros(0), np.zeros(0)
    return np.asarray(y, dtype=float), np.asarray(se, dtype=float)


def _draw_funnel(ax: Axes, est: float, se_max: float, method: str | None) -> None:
    """Shaded funnel between the pseudo limits ``est +/- FUNNEL_Z se`` and the pooled line."""
    edge = np.array([0.0, se_max])
    ax.fill_betweenx(edge, est - FUNNEL_Z * edge, est + FUNNEL_Z * edge, color="#f0f0f0", lw=0, zorder=0)
    ax.plot(est - FUNNEL_Z * edge, edge, color="#777777", lw=0.8, ls="--", label=f"pseudo {INTERVAL_LABEL} limits")
    ax.plot(est + FUNNEL_Z * edge, edge, color="#777777", lw=0.8, ls="--")
    ax.axvline(est, color="black", lw=1.0, label=f"pooled estimate{f' ({method})' if method else ''}")


def _draw_studies(ax: Axes, table: StudyTable) -> None:
    """One marker per study at (log HR, se), one series per design."""
    designs = table.designs
    for design in dict.fromkeys(designs):
        mask = np.array([d == design for d in designs])
        ax.plot(table.y[mask], table.se[mask], ls="none", marker=DESIGN_MARKERS.get(design, "o"), ms=6,
                color=DESIGN_COLOURS.get(design, "#333333"), label=design_name(design), zorder=3,
                rasterized=table.k > RASTER_MIN_POINTS)


def _safe_log(v: np.ndarray) -> np.ndarray:
    """Inverse of the HR axis transform, defined for the non-positive values matplotlib probes."""
    return np.log(np.clip(np.asarray(v, dtype=float), 1e-300, None))


def _decorate(ax: Axes, se_max: float) -> None:
    """Inverted SE axis, the null line, and a secondary axis in HR units on top."""
    ax.set_ylim(se_max, 0.0)
    ax.axvline(0.0, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlabel("Observed log hazard ratio")
    ax.set_ylabel("Standard error (inverted)")
    top = ax.secondary_xaxis("top", functions=(np.exp, _safe_log))
    top.set_xlabel("Hazard ratio")
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
