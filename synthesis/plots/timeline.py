"""Figure of a :class:`~synthesis.cumulative.TimelineResult`: the posterior HR with its 95%
credible interval (top) and P(HR < T) (bottom) against publication year, one line per model;
years where a model is not estimable are gaps, their reasons listed under the figure; scenario
trials are drawn as open markers a year after the last. Nothing here computes a statistic."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synthesis.base import INTERVAL_LABEL
from synthesis.cumulative import TIMELINE_MODELS, TimelineResult
from synthesis.plots.style import LINE_COLOURS, hr_axis, legend_below, styled, target_figure

#: Size of the timeline figure (inches).
TIMELINE_FIGSIZE: tuple[float, float] = (8.0, 6.4)
#: Horizontal offsets (years) that keep the models' intervals apart.
DODGE = 0.12
#: Scenario markers, in order.
SCENARIO_MARKERS: tuple[str, ...] = ("D", "s", "^", "v", "P", "X")


@styled
def plot_timeline(result: TimelineResult, *, title: str | None = None, fig: Figure | None = None) -> Figure:
    """HR (median, 95% CrI) and P(HR < T) against publication year for every model.

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.cumulative import run_timeline
    >>> fig = plot_timeline(run_timeline(syn.load_dataset("dnmbc_lrt", subset="rct")))
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['HR (log scale)', 'P(HR < 0.8)']
    """
    fig = target_figure(fig, *TIMELINE_FIGSIZE, plot="timeline")
    fig.set_layout_engine("constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    models = list(TIMELINE_MODELS)
    scenarios = list(dict.fromkeys(r.scenario for r in result.rows if r.scenario))
    handles, reasons = [], []
    lo, hi = 1.0, 1.0
    for j, model in enumerate(models):
        colour = LINE_COLOURS(j)
        shift = (j - (len(models) - 1) / 2) * DODGE
        rows = [r for r in result.rows if r.model == model and r.scenario is None]
        xs = [r.year + shift if r.estimable else None for r in rows]
        ys = [r.hr if r.estimable else None for r in rows]
        ps = [r.p_below if r.estimable else None for r in rows]
        xs_f = [x if x is not None else float("nan") for x in xs]
        top.plot(xs_f, [y if y is not None else float("nan") for y in ys], marker="o", markersize=3.5, color=colour,
                 linewidth=1)
        bottom.plot(xs_f, [p if p is not None else float("nan") for p in ps], marker="o", markersize=3.5, color=colour,
                    linewidth=1)
        for r, x in zip(rows, xs, strict=True):
            if r.estimable:
                top.vlines(x, r.ci_lower, r.ci_upper, color=colour, linewidth=1.2, alpha=0.8)
                lo, hi = min(lo, r.ci_lower), max(hi, r.ci_upper)
        missing = [r.year for r in rows if not r.estimable]
        if missing:
            why = sorted({r.reason for r in rows if not r.estimable})
            span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}-{missing[-1]}"
            reasons.append(f"{TIMELINE_MODELS[model].strip()}: not estimable {span} ({'; '.join(why)})")
        label = "Model-averaged, given an effect" if model == "averaged_given_effect" else TIMELINE_MODELS[model]
        handles.append(Line2D([], [], color=colour, marker="o", markersize=3.5, label=label))
        for i, scen in enumerate(scenarios):
            sr = [r for r in result.rows if r.model == model and r.scenario == scen and r.estimable]
            for r in sr:
                marker = SCENARIO_MARKERS[i % len(SCENARIO_MARKERS)]
                x = r.year + shift + 0.35 * i
                top.vlines(x, r.ci_lower, r.ci_upper, color=colour, linewidth=1.2, linestyle=":")
                top.plot([x], [r.hr], marker=marker, markerfacecolor="white", color=colour, markersize=5)
                bottom.plot([x], [r.p_below], marker=marker, markerfacecolor="white", color=colour, markersize=5)
                lo, hi = min(lo, r.ci_lower), max(hi, r.ci_upper)
    for i, scen in enumerate(scenarios):
        handles.append(Line2D([], [], color="grey", linestyle="none", marker=SCENARIO_MARKERS[i % len(SCENARIO_MARKERS)],
                              markerfacecolor="white", label=f"scenario: {scen}"))
    hr_axis(top, lo, hi, axis="y")
    top.axhline(1.0, color="grey", linewidth=0.8)
    top.axhline(result.threshold, color="grey", linewidth=0.8, linestyle="--")
    top.set_ylabel("HR (log scale)")
    top.set_title(f"Posterior median HR and {INTERVAL_LABEL} credible interval, studies up to each year", fontsize=9)
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel(f"P(HR < {result.threshold:g})")
    bottom.set_xlabel("publication year (cumulative)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    if reasons:
        bottom.text(0.0, -0.32, "\n".join(reasons), transform=bottom.transAxes, fontsize=7, va="top", color="dimgrey")
    fig.suptitle(title or "How the evidence moved as each study arrived")
    legend_below(fig, handles)
    return fig
