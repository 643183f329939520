"""Meta-regression bubble plot: studies as bubbles at (covariate, observed HR) and the posterior
HR curve of a randomised comparison across covariate values."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL
from synthesis.models.results import FitResult, RatioSummary
from synthesis.plots.style import (
    DESIGN_COLOURS,
    DESIGN_MARKERS,
    FONT_SIZE,
    RASTER_MIN_POINTS,
    design_name,
    finite_positive,
    hr_axis,
    legend_below,
    styled,
    target_figure,
)
from synthesis.studies import StudyTable

#: Studies without the covariate are named in the bubble plot's strip only up to this many.
STRIP_NAMES_MAX = 5
#: Above this many studies only the most precise are drawn as bubbles (the title says so; the
#: curve is the fit's, over all studies): 100,000 markers took 3.6 s to save and hide each other.
BUBBLE_MAX_STUDIES = 2000
#: Colour of the posterior curve and its band.
CURVE_COLOUR = "#1b4f8a"


def hr_curve(fit: FitResult, covariate: str) -> list[tuple[float, RatioSummary]]:
    """The ``fit.hr_at`` summaries at points that set ``covariate`` alone (read from each
    summary's structured ``point``), as (value, summary) sorted by value.

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({"study": ["A", "B", "C", "D"], "hr": [0.95, 0.85, 0.7, 0.6],
    ...                       "ci_lower": [0.7, 0.6, 0.5, 0.45], "ci_upper": [1.29, 1.2, 0.98, 0.8],
    ...                       "x": [0.0, 0.3, 0.7, 1.0]})
    >>> table = syn.load_studies(frame, covariates=["x"])
    >>> fit = syn.fit(table, model="metareg", covariates=["x"], engine="exact", at=["x=1", "x=0"])
    >>> [(x, round(summary.median, 2)) for x, summary in hr_curve(fit, "x")]
    [(0.0, 0.95), (1.0, 0.62)]
    """
    out = [
        (float(summary.point[covariate]), summary)
        for summary in fit.hr_at.values()
        if summary.point is not None and set(summary.point) == {covariate}
    ]
    return sorted(out, key=lambda item: item[0])


@styled
def plot_bubble(
    table: StudyTable,
    fit: FitResult,
    covariate: str,
    *,
    label: str | None = None,
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Meta-regression bubble plot with the posterior HR curve across covariate values.

    Studies are bubbles at (covariate value, observed HR) with area proportional to 1/se^2
    (markers by design; above ``BUBBLE_MAX_STUDIES`` studies the most precise, with a note in
    the title). Studies without the covariate are drawn in a strip at the right marked
    "imputed/missing" (the model imputes their value). The line and band are the posterior median
    and 95% equal-tailed credible band of the HR of a randomised comparison at each covariate
    value, read from ``fit.hr_at`` entries ``"<covariate>=<value>"``.

    Parameters
    ----------
    table
        The studies the model was fitted to.
    fit
        The meta-regression fit.
    covariate
        The covariate column.
    label
        Model label for the legend.
    title
        Figure title.
    fig
        An empty figure (or subfigure) to draw into; default a new figure.

    Returns
    -------
    Figure
        ``fig`` when given. The main axes and, when some studies lack the covariate, a strip
        axes.

    Examples
    --------
    >>> import numpy as np
    >>> import synthesis
    >>> from synthesis.models.fit import fit
    >>> from synthesis.models.spec import ModelSpec
    >>> from synthesis.plots import plot_bubble
    >>> table = synthesis.load_dataset("dnmbc_lrt", covariates=("bone_only_fraction",))
    >>> known = table.select(~np.isnan(table.covariate("bone_only_fraction")))
    >>> at = [f"bone_only_fraction={v}" for v in (0, 0.5, 1)]
    >>> mr = fit(known, ModelSpec("metareg", covariates=("bone_only_fraction",)), engine="exact", at=at)
    >>> fig = plot_bubble(known, mr, "bone_only_fraction")
    >>> median = next(line for line in fig.axes[0].get_lines() if line.get_label() == "posterior median HR")
    >>> [float(x) for x in median.get_xdata()]
    [0.0, 0.5, 1.0]
    """
    shown_note = ""
    n_missing = int(np.isnan(table.covariate(covariate)).sum())  # of all studies, drawn or not
    if table.k > BUBBLE_MAX_STUDIES:
        precise = np.zeros(table.k, dtype=bool)
        precise[np.argsort(np.asarray(table.v, dtype=float), kind="stable")[:BUBBLE_MAX_STUDIES]] = True
        shown_note = f"\n({BUBBLE_MAX_STUDIES:,} most precise of {table.k:,} studies drawn)"
        table = table.select(precise)
    x = table.covariate(covariate)
    fig = target_figure(fig, 8.0 if n_missing else 6.5, 5.6, plot="plot_bubble")
    if n_missing:
        ax, strip = fig.subplots(1, 2, sharey=True, width_ratios=[5.0, 1.3])
    else:
        ax, strip = fig.subplots(), None
    curve = hr_curve(fit, covariate)
    if curve:
        cx = [c[0] for c in curve]
        ax.fill_between(cx, [c[1].q025 for c in curve], [c[1].q975 for c in curve], color=CURVE_COLOUR,
                        alpha=0.18, lw=0, label=f"{INTERVAL_LABEL} credible band")
        ax.plot(cx, [c[1].median for c in curve], color=CURVE_COLOUR, lw=1.6, label="posterior median HR")
    handles = _draw_bubbles(ax, strip, table, x)
    hr = np.exp(table.y)
    values = finite_positive(list(hr) + [v for c in curve for v in (c[1].q025, c[1].q975)]) or [0.5, 2.0]
    hr_axis(ax, min(values) / 1.15, max(values) * 1.15, axis="y")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel(covariate)
    ax.set_ylabel("Hazard ratio (log scale)")
    if strip is not None:
        _decorate_strip(strip, covariate, n_missing)
    curve_handles, _ = ax.get_legend_handles_labels()
    legend_below(fig, [*curve_handles, *handles, Line2D([], [], ls="none", label="bubble area ∝ 1/SE²")])
    fig.suptitle((title or (f"{label}\n(HR of a randomised comparison)" if label else f"Meta-regression on {covariate}"))
                 + shown_note)
    return fig


def _draw_bubbles(ax: Axes, strip: Axes | None, table: StudyTable, x: np.ndarray) -> list[Any]:
    """Bubbles of the studies with the covariate in ``ax``, of those without it in ``strip``
    (spread across it in HR order, named when few); one legend handle per design."""
    hr = np.exp(table.y)
    weight = 1.0 / table.v
    area = 30.0 + 370.0 * weight / weight.max()
    missing = np.isnan(x)
    designs = np.array(table.designs, dtype=object)
    studies = np.array(table.studies, dtype=object)
    strip_x = np.full(table.k, np.nan)
    order = np.flatnonzero(missing)[np.argsort(hr[missing])]
    strip_x[order] = np.linspace(-0.7, 0.7, order.size) if order.size > 1 else 0.0
    rasterized = table.k > RASTER_MIN_POINTS
    handles: list[Any] = []
    for design in dict.fromkeys(table.designs):
        marker = DESIGN_MARKERS.get(design, "o")
        colour = DESIGN_COLOURS.get(design, "#333333")
        shown = (designs == design) & ~missing
        ax.scatter(x[shown], hr[shown], s=area[shown], marker=marker, color=colour, alpha=0.6,
                   edgecolors="black", linewidths=0.5, zorder=3, rasterized=rasterized)
        handles.append(Line2D([], [], ls="none", marker=marker, ms=7, color=colour, alpha=0.6,
                              mec="black", mew=0.5, label=design_name(design)))
        m = (designs == design) & missing
        if strip is None or not m.any():
            continue
        strip.scatter(strip_x[m], hr[m], s=area[m], marker=marker, color=colour, alpha=0.35,
                      edgecolors="black", linewidths=0.5, linestyle="--", zorder=3, rasterized=rasterized)
        if missing.sum() <= STRIP_NAMES_MAX:
            for name, x_i, hr_i in zip(studies[m], strip_x[m], hr[m], strict=True):
                strip.annotate(str(name), (x_i, hr_i), xytext=(0, -10), textcoords="offset points",
                               ha="center", va="top", fontsize=8)
    return handles


def _decorate_strip(strip: Axes, covariate: str, n_missing: int) -> None:
    strip.set_xlim(-1.0, 1.0)
    strip.set_xticks([])
    strip.axhline(1.0, color="black", lw=0.8)
    strip.set_title(f"imputed/missing\n{covariate}\n({n_missing} studies)", fontsize=FONT_SIZE)
    strip.set_facecolor("#f5f5f5")
    strip.tick_params(axis="y", left=False)
