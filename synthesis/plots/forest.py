"""Posterior forest plot: observed and shrunken study HRs, pooled diamonds, prediction bars."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from synthesis.base import DESIGNS, INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.results import FitResult, StudyEffect
from synthesis.plots.style import (
    DESIGN_HEADINGS,
    DESIGN_MARKERS,
    FONT_SIZE,
    LINE_COLOURS,
    finite_positive,
    format_interval,
    hr_axis,
    legend_below,
    styled,
    target_figure,
)

#: A forest plot draws at most this many study rows: above it the most precise studies (narrowest
#: observed CI) are drawn and the title says how many of how many.
FOREST_MAX_STUDIES = 60
#: Labels either side of HR = 1 (HR < 1: the treatment arm has the lower hazard).
FAVOURS: tuple[str, str] = ("favours LRT", "favours no LRT")
#: Colour of the shrunken (posterior) study estimates.
SHRINK_COLOUR = "#b2182b"
#: x positions (axes fraction of the text panel) of its two columns.
COLUMNS: tuple[float, float] = (0.03, 0.52)
#: Label of the inset axes holding the text columns when the plot is drawn into given axes.
INSET = "forest text columns"


@dataclass(frozen=True)
class Row:
    """One line of the forest, top to bottom: a design heading, a study, the pooled heading or
    a pooled model (``payload``: heading text, :class:`StudyEffect`, ``None``, model label)."""

    kind: str
    y: float
    payload: Any


@styled
def plot_forest(
    fits: Mapping[str, FitResult],
    *,
    shrinkage_from: str | None = None,
    favours: tuple[str, str] = FAVOURS,
    title: str | None = None,
    fig: Figure | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Posterior forest plot: observed and shrunken study HRs, pooled diamonds, prediction bars.

    Each study row shows the observed HR with its 95% CI (square, black) and, just below, its
    shrunken posterior HR with its 95% equal-tailed credible interval (open circle, coloured)
    from one model. Studies are grouped by design under headers (randomised, prospective,
    retrospective). Below them, one row per model: a diamond spanning the 95% credible interval
    of the pooled HR and a translucent bar spanning the 95% prediction interval of the HR of a
    new randomised study; the label names the model and its tau (and bias) prior. Above
    ``FOREST_MAX_STUDIES`` studies only the most precise are drawn (the title says so).

    Parameters
    ----------
    fits
        Display label -> fitted model, in the order the pooled rows are drawn.
    shrinkage_from
        Label (a key of ``fits``) of the model whose shrunken study HRs are drawn; default the
        first fit with the most studies.
    favours
        Labels written left and right of HR = 1.
    title
        Figure title.
    fig
        An empty figure (or subfigure) to draw into, keeping its size; default a new figure
        whose height grows with the number of rows.
    ax
        Axes to draw the plot into instead (not with ``fig``): the text columns go in an inset
        axes at its right, the legend below it and the title above it.

    Returns
    -------
    Figure
        ``fig``, or ``ax.figure``, when given. The plot axes (one y tick per study and per
        pooled row, x axis logarithmic) and the axes of the text columns.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.fit import fit
    >>> from synthesis.models.spec import ModelSpec
    >>> from synthesis.plots import plot_forest
    >>> table = synthesis.load_dataset("dnmbc_lrt")
    >>> fits = {"Random effects": fit(table, ModelSpec("re"), engine="exact"),
    ...         "Design-bias adjusted": fit(table, ModelSpec("bias"), engine="exact")}
    >>> fig = plot_forest(fits, shrinkage_from="Design-bias adjusted")
    >>> len(fig.axes[0].get_yticks()) == table.k + len(fits)
    True

    Drawn into one half of a figure of your own:

    >>> from matplotlib.figure import Figure
    >>> outer = Figure(figsize=(16, 8), layout="constrained")
    >>> left, right = outer.subfigures(1, 2)
    >>> plot_forest(fits, fig=left) is left
    True
    >>> ax = right.subplots()
    >>> plot_forest(fits, ax=ax, title="Into axes") is right
    True
    """
    label, effects, shown_note = _studies_to_draw(fits, shrinkage_from)
    rows, y_min = _layout(effects, list(fits))
    fig, ax, tax = _forest_axes(fig, ax, 1.9 + 0.27 * (1.0 - y_min))
    values = [v for e in effects for v in (e.observed_lower, e.observed_upper, e.hr.q025, e.hr.q975)]
    values += [v for f in fits.values() for r in (f.hr, f.predictive_hr) if r is not None for v in (r.q025, r.q975)]
    values = finite_positive(values) or [0.5, 2.0]
    hr_axis(ax, min(values) / 1.15, max(values) * 1.15)
    ax.axvline(1.0, color="black", lw=0.8, zorder=1)
    tax.set_xlim(0.0, 1.0)
    tax.axis("off")

    ticks = _draw_rows(ax, tax, rows, fits)
    has_design = any(e.design is not None for e in effects)
    _label_axes(ax, ticks, (y_min, 0.8 if has_design else 1.6), favours)
    if tax.get_label() == INSET:
        ax.legend(handles=_legend_handles(label), loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncols=2, frameon=False, fontsize=FONT_SIZE)
        ax.set_title((title or "Posterior forest plot") + shown_note)
    else:
        legend_below(fig, _legend_handles(label))
        fig.suptitle((title or "Posterior forest plot") + shown_note)
    return fig


def _forest_axes(fig: Figure | None, ax: Axes | None, height: float) -> tuple[Figure, Axes, Axes]:
    """The figure, the plot axes and the axes of the text columns (sharing the plot's y).

    Into ``ax``: the text columns in an inset at its right. Else two axes side by side in
    ``fig`` or in a new figure ``height`` inches tall.
    """
    if ax is not None:
        if fig is not None:
            raise ValueError("plot_forest: give fig= or ax=, not both")
        return ax.figure, ax, ax.inset_axes((1.02, 0.0, 0.9, 1.0), sharey=ax, label=INSET)
    own = fig is None
    fig = target_figure(fig, 11.0, height, plot="plot_forest")
    ax, tax = fig.subplots(1, 2, sharey=True, width_ratios=[3.0, 2.4])
    if own:
        fig.get_layout_engine().set(wspace=0.0)
    return fig, ax, tax


def _studies_to_draw(
    fits: Mapping[str, FitResult], shrinkage_from: str | None
) -> tuple[str, list[StudyEffect], str]:
    """The model the study rows come from, its study effects in design order (at most
    ``FOREST_MAX_STUDIES``, the most precise), and the title note saying how many are shown."""
    if not fits:
        raise ValueError("plot_forest needs at least one fitted model")
    labels = list(fits)
    if shrinkage_from is None:
        shrinkage_from = max(labels, key=lambda key: len(fits[key].study_effects))
    if shrinkage_from not in fits:
        raise ValueError(f"shrinkage_from={shrinkage_from!r} is not one of the fits ({', '.join(labels)})")
    effects = sorted(fits[shrinkage_from].study_effects, key=lambda e: _design_order(e.design))
    if len(effects) <= FOREST_MAX_STUDIES:
        return shrinkage_from, effects, ""
    # Unreadable beyond the cap: the most precise studies, still in design order.
    width = [math.log(e.observed_upper / e.observed_lower) for e in effects]
    chosen = sorted(sorted(range(len(effects)), key=width.__getitem__)[:FOREST_MAX_STUDIES])
    note = f"\n({FOREST_MAX_STUDIES} most precise of {len(effects)} studies shown)"
    return shrinkage_from, [effects[i] for i in chosen], note


def _design_order(design: str | None) -> int:
    return DESIGNS.index(design) if design in DESIGNS else len(DESIGNS)


def _layout(effects: Sequence[StudyEffect], labels: Sequence[str]) -> tuple[list[Row], float]:
    """Rows top to bottom: (heading, studies) per design, a gap, the pooled heading, one row per
    model; and the lowest y the axes must show."""
    has_design = any(e.design is not None for e in effects)
    rows: list[Row] = []
    y = 0.0
    current: object = object()
    for e in effects:
        if has_design and e.design != current:
            if rows:
                y -= 0.4
            rows.append(Row("header", y, DESIGN_HEADINGS.get(e.design, str(e.design))))
            y -= 1.0
            current = e.design
        rows.append(Row("study", y, e))
        y -= 1.0
    y -= 0.5
    rows.append(Row("pooled-header", y, None))
    y -= 1.2
    for label in labels:
        rows.append(Row("pooled", y, label))
        y -= 1.6
    return rows, y + 0.6


def _draw_rows(ax: Axes, tax: Axes, rows: Sequence[Row], fits: Mapping[str, FitResult]) -> list[tuple[float, str]]:
    """Draw every row; return the (y, label) of each y tick."""
    ticks: list[tuple[float, str]] = []
    first = next((r for r in rows if r.kind in ("header", "study")), None)
    if first is not None:
        top = first.y if first.kind == "header" else first.y + 0.8
        _column_headings(tax, top, f"Observed [{INTERVAL_LABEL} CI]", f"Shrunken [{INTERVAL_LABEL} CrI]")
    labels = list(fits)
    for row in rows:
        if row.kind == "header":
            _row_heading(ax, row.y, row.payload)
        elif row.kind == "study":
            ticks.append(_draw_study(ax, tax, row.y, row.payload))
        elif row.kind == "pooled-header":
            _row_heading(ax, row.y, "Pooled (posterior)")
            ax.axhline(row.y + 0.6, color="#999999", lw=0.6)
            _column_headings(tax, row.y, f"Pooled [{INTERVAL_LABEL} CrI]", f"New RCT [{INTERVAL_LABEL} PrI]")
        else:
            colour = LINE_COLOURS(labels.index(row.payload) % 10)
            ticks.append(_draw_pooled(ax, tax, row.y, row.payload, fits[row.payload], colour))
    return ticks


def _column_text(tax: Axes, column: int, y: float, text: str, **kwargs: Any) -> None:
    tax.text(COLUMNS[column], y, text, fontsize=FONT_SIZE, va="center", transform=tax.transData, **kwargs)


def _column_headings(tax: Axes, y: float, left: str, right: str) -> None:
    _column_text(tax, 0, y, left, fontweight="bold")
    _column_text(tax, 1, y, right, fontweight="bold")


def _row_heading(ax: Axes, y: float, text: str) -> None:
    ax.text(-0.01, y, text, transform=ax.get_yaxis_transform(), ha="right", va="center",
            fontweight="bold", fontsize=FONT_SIZE)


def _draw_study(ax: Axes, tax: Axes, y: float, e: StudyEffect) -> tuple[float, str]:
    """Observed HR and CI at ``y``, shrunken HR and CrI just below, both as text too."""
    ax.hlines(y, e.observed_lower, e.observed_upper, color="black", lw=1.2, zorder=2)
    ax.plot(e.observed_hr, y, marker=DESIGN_MARKERS.get(e.design, "s"), ms=5.5, color="black", ls="none", zorder=3)
    ys = y - 0.3
    ax.hlines(ys, e.hr.q025, e.hr.q975, color=SHRINK_COLOUR, lw=1.0, zorder=2)
    ax.plot(e.hr.median, ys, marker="o", ms=4.5, mfc="white", mec=SHRINK_COLOUR, ls="none", zorder=3)
    _column_text(tax, 0, y - 0.15, format_interval(e.observed_hr, e.observed_lower, e.observed_upper))
    _column_text(tax, 1, y - 0.15, format_interval(e.hr.median, e.hr.q025, e.hr.q975), color=SHRINK_COLOUR)
    return y - 0.15, e.study


def _draw_pooled(ax: Axes, tax: Axes, y: float, label: str, fit: FitResult, colour: Any) -> tuple[float, str]:
    """Diamond over the pooled CrI, translucent bar over the prediction interval, both as text."""
    pred = fit.predictive_hr
    if pred is not None:
        ax.hlines(y, pred.q025, pred.q975, color=colour, lw=6, alpha=0.3, zorder=2)
    h = fit.hr
    ax.add_patch(Polygon(
        [(h.q025, y), (h.median, y + 0.32), (h.q975, y), (h.median, y - 0.32)],
        closed=True, facecolor=colour, edgecolor="black", lw=0.6, zorder=3,
    ))
    _column_text(tax, 0, y, format_interval(h.median, h.q025, h.q975))
    if pred is not None:
        _column_text(tax, 1, y, format_interval(pred.median, pred.q025, pred.q975))
    prior = _prior_text(fit)
    return y, f"{label}\n{prior}" if prior else label


def _prior_text(fit: FitResult, names: Sequence[str] = ("tau", "delta")) -> str:
    """Labelled priors of the parameters in ``names`` that the fit's model has."""
    labels = fit.spec.priors.labels(fit.spec.parameters)
    return "; ".join(f"{PARAMETER_SYMBOLS.get(n, n)} ~ {labels[n]}" for n in names if n in labels)


def _label_axes(ax: Axes, ticks: Sequence[tuple[float, str]], ylim: tuple[float, float], favours: tuple[str, str]) -> None:
    """Row labels as y ticks, the HR axis label and the 'favours' arrows under HR = 1."""
    positions = [t[0] for t in ticks]
    names = [t[1] for t in ticks]
    ax.set_ylim(*ylim)
    ax.yaxis.set_major_locator(FixedLocator(positions))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda _v, pos: names[pos] if pos is not None and pos < len(names) else ""))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"Hazard ratio (log scale); {INTERVAL_LABEL} intervals", labelpad=22)
    for text, dx, ha in ((f"← {favours[0]}", -6, "right"), (f"{favours[1]} →", 6, "left")):
        ax.annotate(text, xy=(1.0, 0.0), xycoords=("data", "axes fraction"), xytext=(dx, -24),
                    textcoords="offset points", ha=ha, va="top", fontsize=FONT_SIZE)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _legend_handles(shrinkage_from: str) -> list[Any]:
    return [
        Line2D([], [], color="black", marker="s", ms=5, lw=1.2, label=f"observed HR, {INTERVAL_LABEL} CI"),
        Line2D([], [], color=SHRINK_COLOUR, marker="o", mfc="white", ms=4.5, lw=1.0,
               label=f"shrunken HR, {INTERVAL_LABEL} CrI ({shrinkage_from})"),
        Patch(facecolor="#888888", edgecolor="black", label=f"pooled HR, {INTERVAL_LABEL} CrI"),
        Line2D([], [], color="#888888", lw=6, alpha=0.3, label=f"{INTERVAL_LABEL} prediction interval, new RCT"),
    ]
