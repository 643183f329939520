"""Figure of a :class:`~synthesis.models.preposterior.PlanResult`: predictive power and the
probability that the decision changes against the new trial's size (left), the expected
posterior SD of the randomised log HR (right). Nothing here computes a statistic: the curves are
the plan's rows."""

from __future__ import annotations

from matplotlib.figure import Figure

from synthesis.models.preposterior import PlanResult
from synthesis.plots.style import LINE_COLOURS, legend_below, styled, target_figure

#: Size of the plan figure (inches).
PLAN_FIGSIZE: tuple[float, float] = (8.0, 3.6)


@styled
def plot_plan(result: PlanResult, *, title: str | None = None, fig: Figure | None = None) -> Figure:
    """Predictive power, P(rule met after) and P(decision changes) against trial size, and the
    expected posterior SD beside them.

    Parameters
    ----------
    result
        The plan (:func:`synthesis.models.preposterior.plan_trial`).
    title
        Figure title (default: the model and the rule).
    fig
        An empty figure to draw into (default: a new one).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.preposterior import plan_trial
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> spec = ModelSpec("bias")
    >>> res = plan_trial(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec, events=[100, 500, 1000])
    >>> fig = plot_plan(res)
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['events in the new trial', 'events in the new trial']
    """
    fig = target_figure(fig, *PLAN_FIGSIZE, plot="plan")
    fig.set_layout_engine("constrained")
    left, right = fig.subplots(1, 2)
    x = [r.events for r in result.rows]
    t, lv = result.threshold, result.level
    series = [
        ("new trial significant (two-sided 5%)", [r.p_trial_significant for r in result.rows], "-"),
        ("... in favour of treatment (HR < 1)", [r.p_trial_significant_benefit for r in result.rows], ":"),
        (f"rule met after: P(HR < {t:g}) > {lv:g}", [r.p_rule_met_after for r in result.rows], "--"),
        ("decision changes from today's", [r.p_decision_changes for r in result.rows], "-."),
    ]
    if result.one_sided is not None:
        series.insert(2, (f"significant one-sided {result.one_sided:g} (benefit)",
                          [r.p_trial_significant_one_sided for r in result.rows], (0, (1, 1))))
    handles = []
    for i, (label, values, style) in enumerate(series):
        (line,) = left.plot(x, values, linestyle=style, marker="o", markersize=3, color=LINE_COLOURS(i), label=label)
        handles.append(line)
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("events in the new trial")
    left.set_ylabel("probability (predictive)")
    left.grid(alpha=0.3)
    right.plot(x, [r.expected_posterior_sd for r in result.rows], marker="o", markersize=3, color=LINE_COLOURS(5))
    right.axhline(result.posterior_sd_now, color="grey", linestyle=":", linewidth=1)
    right.annotate("today", (x[0], result.posterior_sd_now), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    right.set_xlabel("events in the new trial")
    right.set_ylabel("expected posterior SD of log HR")
    right.grid(alpha=0.3)
    fig.suptitle(title or f"The next randomised trial ({result.model} model, k = {result.k})")
    legend_below(fig, handles)
    return fig
