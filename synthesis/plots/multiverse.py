"""The specification curve of a :class:`~synthesis.specifications.MultiverseResult` (Simonsohn,
Simmons & Nelson 2020, Nat Hum Behav 4:1208-14): every specification sorted by P(HR < T), its
posterior HR above, and beneath it the choices that made it. Nothing here computes a statistic:
the numbers drawn are those the result holds."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL
from synthesis.plots.style import (
    LINE_COLOURS,
    RASTER_MIN_POINTS,
    hr_axis,
    legend_below,
    styled,
    target_figure,
)
from synthesis.specifications import MODEL_LABELS, NO_PRIOR

#: Height (inches) of one row of the choice indicators beneath the curve.
INDICATOR_ROW_HEIGHT = 0.16
#: Reference levels of P(HR < T) drawn across the curve.
CURVE_LEVELS: tuple[float, ...] = (0.5, 0.9)


def _rows(result: Any) -> list[tuple[str, str, str]]:
    """(column, value, label) of every indicator row, top to bottom (a prior that does not vary
    gets no row: the caption names it)."""
    rows = []
    for name, alternatives in result.switches.items():
        for alt in alternatives:
            tag = " (default)" if result.defaults.get(name) == alt else ""
            rows.append((name, alt, f"{name}: {alt}{tag}"))
    for m in result.models:
        if (result.frame["model"] == m).any():
            rows.append(("model", m, MODEL_LABELS.get(m, m)))
    if len(result.tau_priors) > 1:
        rows.extend(("tau_prior", t, f"tau ~ {t}") for t in result.tau_priors)
    if len(result.bias_priors) > 1:
        rows.extend(("bias_prior", b, f"bias ~ {b}") for b in result.bias_priors)
    return [r for r in rows if r[1] != NO_PRIOR]


@styled
def plot_specification_curve(result: Any, *, fig: Figure | None = None, width: float = 8.0) -> Figure:
    """Specification curve: posterior median HR with its 95% interval (top), P(HR < T) (middle),
    both sorted by P(HR < T), and the choices of each specification (bottom: one row per
    alternative of each curation switch, model and prior; a mark where the specification uses it).

    Parameters
    ----------
    result
        A :class:`~synthesis.specifications.MultiverseResult`.
    fig
        An empty figure to draw into (default: a new one sized to the rows).
    width
        Width in inches of a new figure.

    Examples
    --------
    >>> from synthesis.specifications import defaults_only, run_multiverse
    >>> r = run_multiverse(switches=defaults_only(posytive=["oriented", "as_printed"]), models=["re-rct"],
    ...                    tau_priors=["halfnormal(0.5)"], workers=1)
    >>> fig = plot_specification_curve(r)
    >>> len(fig.axes), fig.axes[1].get_ylabel()
    (3, 'P(HR < 0.8)')
    """
    frame = result.to_frame()
    n = len(frame)
    rows = _rows(result)
    height = 3.6 + INDICATOR_ROW_HEIGHT * len(rows)
    fig = target_figure(fig, width, height, plot="specification curve")
    ax_hr, ax_p, ax_ind = fig.subplots(
        3, 1, sharex=True, height_ratios=[1.6, 1.6, max(1.0, INDICATOR_ROW_HEIGHT * len(rows) / 0.9)]
    )
    x = np.arange(n)
    raster = n * (len(rows) + 3) >= RASTER_MIN_POINTS
    models = [m for m in result.models if (frame["model"] == m).any()]
    colours = {m: LINE_COLOURS(i) for i, m in enumerate(result.models)}
    which = {m: (frame["model"] == m).to_numpy() for m in models}
    marker = 3.0 if n <= 200 else 1.2
    # one Line2D of markers per model and panel (Agg draws markers far faster than a
    # scatter collection with a colour per point)
    for m in models:
        xs = x[which[m]]
        lo, hi = frame["hr_q025"].to_numpy()[which[m]], frame["hr_q975"].to_numpy()[which[m]]
        # every interval as one path with NaN breaks (one transform for all of them)
        nan = np.full(xs.size, np.nan)
        ax_hr.plot(np.column_stack([xs, xs, nan]).ravel(), np.column_stack([lo, hi, nan]).ravel(),
                   color=colours[m], linewidth=0.4, alpha=0.35, rasterized=raster)
        style = dict(linestyle="", marker="s", markersize=marker, markeredgewidth=0, color=colours[m], rasterized=raster)
        ax_hr.plot(xs, frame["hr_median"].to_numpy()[which[m]], **style)
        ax_p.plot(xs, frame["p_below"].to_numpy()[which[m]], **style)
        marks = [
            (x[hit], np.full(int(hit.sum()), i))
            for i, (column, value, _label) in enumerate(rows)
            for hit in [which[m] & (frame[column].astype(str).to_numpy() == str(value))]
        ]
        ax_ind.plot(np.concatenate([a for a, _ in marks]), np.concatenate([b for _, b in marks]), **style)
    hr_axis(ax_hr, float(frame["hr_q025"].min()), float(frame["hr_q975"].max()), axis="y")
    ax_hr.axhline(1.0, color="0.5", linewidth=0.6)
    ax_hr.axhline(result.threshold, color="0.5", linewidth=0.6, linestyle="--")
    ax_hr.set_ylabel(f"HR ({INTERVAL_LABEL} CrI)")
    ax_hr.set_title(
        f"Specification curve: {n} specifications sorted by P(HR < {result.threshold:g})", loc="left"
    )
    for level in CURVE_LEVELS:
        ax_p.axhline(level, color="0.5", linewidth=0.6, linestyle=":")
    ax_p.set_ylim(-0.03, 1.03)
    ax_p.set_ylabel(f"P(HR < {result.threshold:g})")

    ax_ind.set_yticks(range(len(rows)), [r[2] for r in rows])
    ax_ind.set_ylim(len(rows) - 0.5, -0.5)
    ax_ind.set_xlim(-0.5, n - 0.5)
    ax_ind.set_xlabel("specification (sorted by P(HR < T), then HR)")
    ax_ind.tick_params(axis="y", length=0)
    for ax in (ax_hr, ax_p, ax_ind):
        ax.grid(False)
    handles = [Line2D([], [], marker="s", linestyle="", color=colours[m]) for m in models]
    legend_below(fig, handles, [MODEL_LABELS.get(m, m) for m in models])
    return fig
