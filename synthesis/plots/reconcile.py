"""The reconciliation ladder of a :class:`~synthesis.reconcile.ReconcileResult`: for each
published pool with known inputs, its printed HR and CI, then the HR with its 95% interval after
each change on the way to this tool's answer (:func:`plot_reconcile_ladder`). Nothing here
computes a statistic: the numbers drawn are those the result holds."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL
from synthesis.plots.style import (
    LINE_COLOURS,
    finite_positive,
    hr_axis,
    legend_below,
    styled,
    target_figure,
    wrap_label,
)
from synthesis.reconcile import BAYESIAN, ReconcileResult

#: Marker and colour of each kind of rung: the printed number, a frequentist pool, a posterior.
RUNG_STYLES: dict[str, dict[str, object]] = {
    "published": {"marker": "D", "color": "black", "mfc": "white", "label": "as published"},
    "frequentist": {"marker": "s", "color": LINE_COLOURS(0), "mfc": LINE_COLOURS(0),
                    "label": f"pooled HR, {INTERVAL_LABEL} CI (frequentist)"},
    "bayesian": {"marker": "o", "color": LINE_COLOURS(3), "mfc": LINE_COLOURS(3),
                 "label": f"posterior median, {INTERVAL_LABEL} equal-tailed CrI"},
}
#: Width of a wrapped step label (characters).
STEP_LABEL_WIDTH = 36
#: Figure width and height per rung (inches).
WIDTH, ROW_HEIGHT = 7.5, 0.27


@styled
def plot_reconcile_ladder(result: ReconcileResult, *, fig: Figure | None = None) -> Figure:
    """One panel per published pool with known inputs: the printed HR, then every step.

    Parameters
    ----------
    result
        The reconciliation.
    fig
        An empty figure to draw into; default a new one sized to the number of steps.

    Returns
    -------
    Figure
        Panels share the HR axis (log scale); each rung is labelled with its change and its
        ``HR (lower-upper)``; a dashed line marks HR = 1.

    Examples
    --------
    >>> from synthesis.reconcile import load_published_pools, reconcile
    >>> result = reconcile(load_published_pools()[:1])  # Gera 2020, prospective
    >>> fig = plot_reconcile_ladder(result)
    >>> len(fig.axes), fig.axes[0].get_xscale(), len(fig.axes[0].get_yticks()) == len(result.laddered[0].steps) + 1
    (1, 'log', True)
    """
    pools = result.laddered
    if not pools:
        raise ValueError("reconcile ladder: no published pool has a ladder (no inputs listed)")
    rows = [len(r.steps) + 1 for r in pools]
    fig = target_figure(fig, WIDTH, 0.9 + ROW_HEIGHT * (sum(rows) + 2.2 * len(pools)), plot="reconcile ladder")
    axes = fig.subplots(len(pools), 1, sharex=True, gridspec_kw={"height_ratios": rows})
    axes = [axes] if len(pools) == 1 else list(axes)
    values = []
    for r in pools:
        values += finite_positive(r.pool.published.values())
        values += finite_positive([v for s in r.steps for v in (s.ci_lower, s.ci_upper)])
    lo, hi = min(values) / 1.05, max(values) * 1.05
    for ax, r in zip(axes, pools, strict=True):
        pub = r.pool.published.values()
        rungs = [("as published", pub[0], pub[1], pub[2], "published")]
        rungs += [(s.change, s.hr, s.ci_lower, s.ci_upper, s.kind) for s in r.steps]
        for i, (_label, hr, a, b, kind) in enumerate(rungs):
            style = RUNG_STYLES["bayesian" if kind == BAYESIAN else kind]
            if a is not None and b is not None:
                ax.plot([a, b], [i, i], color=style["color"], linewidth=1.2)
            ax.plot([hr], [i], linestyle="none", marker=style["marker"], color=style["color"],
                    markerfacecolor=style["mfc"], markersize=5)
            ci = "" if a is None or b is None else f" ({a:.2f}-{b:.2f})"
            ax.annotate(f"{hr:.2f}{ci}", xy=(1.0, i), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize="small")
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(rungs)), [wrap_label(lab, STEP_LABEL_WIDTH) for lab, *_ in rungs])
        ax.set_ylim(len(rungs) - 0.5, -0.5)
        verdict = "reproduced within printed rounding" if r.within_rounding else "not reproduced exactly"
        ax.set_title(f"{r.pool.name}: {verdict}", loc="left", fontsize="medium")
        hr_axis(ax, lo, hi)
    axes[-1].set_xlabel("Hazard ratio (LRT vs no LRT)")
    handles = [Line2D([], [], linestyle="-", marker=s["marker"], color=s["color"], markerfacecolor=s["mfc"])
               for s in RUNG_STYLES.values()]
    legend_below(fig, handles, [str(s["label"]) for s in RUNG_STYLES.values()])
    return fig
