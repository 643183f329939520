"""The report section "What would settle it?" (issue #14): the next randomised trial's predictive
power and chance of changing the decision over trial sizes, how the evidence moved year by year,
and, when asked, the operating characteristics of the decision rule. It reads the
:class:`~synthesis.cumulative.SettleEvidence` the analysis holds and computes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from synthesis.base import INTERVAL_LABEL
from synthesis.report.document import ReportDocument

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult
    from synthesis.cumulative import SettleEvidence

SETTLE_TITLE = "What would settle it?"
SETTLE_ANCHOR = "settle"
#: The section's figures (file stems).
PLAN_FIGURE = "next_trial"
TIMELINE_FIGURE = "timeline"
SETTLE_FIGURES: tuple[str, ...] = (PLAN_FIGURE, TIMELINE_FIGURE)
#: The section's CSV files: file name -> part of the evidence.
SETTLE_CSVS: dict[str, str] = {"next_trial.csv": "plan", "timeline.csv": "timeline",
                               "operating_characteristics.csv": "operating"}
#: The trial sizes (events) the section's sentence quotes, when the plan has them.
QUOTED_EVENTS: tuple[float, ...] = (500.0, 2000.0)


class _FigureSink(Protocol):
    png: Mapping[str, bytes]


def _evidence(result: AnalysisResult) -> SettleEvidence | None:
    return getattr(result, "settle", None)


def settle_figures(result: AnalysisResult) -> dict[str, Any]:
    """The section's figures for :func:`synthesis.report.write_report` (``{}`` when not computed)."""
    ev = _evidence(result)
    out: dict[str, Any] = {}
    if ev is None:
        return out
    if ev.plan is not None:
        from synthesis.plots.plan import plot_plan

        out[PLAN_FIGURE] = plot_plan(ev.plan)
    if ev.timeline is not None:
        from synthesis.plots.timeline import plot_timeline

        out[TIMELINE_FIGURE] = plot_timeline(ev.timeline)
    return out


def write_settle_tables(result: AnalysisResult, root: Path) -> list[str]:
    """Write the section's CSV files into ``root``; return the names written."""
    from synthesis.spreadsheets import write_csv

    ev = _evidence(result)
    written = []
    for name, part in SETTLE_CSVS.items():
        obj = getattr(ev, part, None) if ev is not None else None
        if obj is not None:
            write_csv(obj.to_frame(), root / name)
            written.append(name)
    return written


def _p(x: float) -> str:
    return "< 0.001" if x < 0.001 else "> 0.999" if x > 0.999 else f"{x:.3f}"


def plan_sentence(plan: Any) -> str:
    """The plan in words: today's probability and decision, then for the quoted sizes the
    predictive power, the chance the decision changes and the expected posterior SD.

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.preposterior import plan_trial
    >>> from synthesis.models.spec import ModelData, ModelSpec
    >>> spec = ModelSpec("bias")
    >>> plan = plan_trial(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec, events=[500, 2000])
    >>> print(plan_sentence(plan))  # doctest: +ELLIPSIS
    Under the design-bias model today P(HR < 0.8) = 0.052, so the rule 'recommend if P(HR < 0.8) > 0.9' is not met. ...
    """
    names = {"bias": "design-bias model", "re": "random-effects model"}
    t, lv = plan.threshold, plan.level
    met = "met" if plan.decision_now else "not met"
    parts = [
        f"Under the {names.get(plan.model, plan.model + ' model')} today P(HR < {t:g}) = {plan.p_below_now:.3f}, "
        f"so the rule 'recommend if P(HR < {t:g}) > {lv:g}' is {met}."
    ]
    by_events = {r.events: r for r in plan.rows}
    for d in QUOTED_EVENTS:
        r = by_events.get(d)
        if r is None:
            continue
        parts.append(
            f"A new 1:1 randomised trial with {d:g} events would on its own be significant (two-sided 5%) with "
            f"predictive probability {_p(r.p_trial_significant)} ({_p(r.p_trial_significant_benefit)} in favour "
            f"of treatment), would change the decision with probability {_p(r.p_decision_changes)} and is expected "
            f"to bring the posterior SD of the randomised log HR from {plan.posterior_sd_now:.3f} to "
            f"{r.expected_posterior_sd:.3f}."
        )
    return " ".join(parts)


def _plan_cells(plan: Any) -> tuple[list[str], list[list[str]]]:
    header = ["Events", "P(significant)", "P(significant, benefit)", "P(rule met after)", "P(decision changes)",
              "E[posterior SD]", "EVSI (variance)"]
    body = [[f"{r.events:g}", _p(r.p_trial_significant), _p(r.p_trial_significant_benefit), _p(r.p_rule_met_after),
             _p(r.p_decision_changes), f"{r.expected_posterior_sd:.4f}", f"{r.evsi:.5f}"] for r in plan.rows]
    return header, body


def _timeline_cells(tl: Any) -> tuple[list[str], list[list[str]]]:
    from synthesis.cumulative import TIMELINE_MODELS

    header = ["Year", "Model", "k", f"HR ({INTERVAL_LABEL} CrI)", f"P(HR < {tl.threshold:g})"]
    body = []
    for r in tl.rows:
        year = f"{r.year}" + (f" ({r.scenario})" if r.scenario else "")
        if r.estimable:
            body.append([year, TIMELINE_MODELS[r.model].strip(), str(r.k),
                         f"{r.hr:.2f} ({r.ci_lower:.2f}-{r.ci_upper:.2f})", _p(r.p_below)])
        else:
            body.append([year, TIMELINE_MODELS[r.model].strip(), str(r.k), f"not estimable: {r.reason}", ""])
    return header, body


def _operating_cells(oc: Any) -> tuple[list[str], list[list[str]]]:
    from synthesis.models.operating import ANALYSES

    header = ["True HR", "Bias factor b", "Bias SD (log)", "Design-bias model", "Naive pool", "RCTs only"]
    body = []
    for i, sc in enumerate(oc.scenarios):
        p, se = oc.p_recommend(i), oc.mc_se(i)
        body.append([f"{sc.true_hr:g}", f"{sc.bias_mean:g}", f"{sc.bias_sd:g}",
                     *[f"{p[a]:.3f} ± {se[a]:.3f}" for a in ANALYSES]])
    return header, body


def settle_section(doc: ReportDocument, result: AnalysisResult, figures: _FigureSink) -> None:
    """Add the section to ``doc``: the plan sentence, figure and table; the timeline figure and
    table; the operating characteristics table when computed (else how to get it).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> doc = ReportDocument()
    >>> settle_section(doc, SimpleNamespace(settle=None), SimpleNamespace(png={}))
    >>> print(doc.markdown().strip())
    ## What would settle it?
    <BLANKLINE>
    Not computed in this analysis (see the warnings).
    """
    doc.heading(2, SETTLE_TITLE, SETTLE_ANCHOR)
    ev = _evidence(result)
    if ev is None:
        doc.para("Not computed in this analysis (see the warnings).")
        return
    doc.heading(3, "The next randomised trial")
    if ev.plan is None:
        doc.para("No next-trial plan (see the notes).")
    else:
        plan = ev.plan
        doc.para(plan_sentence(plan))
        if PLAN_FIGURE in figures.png:
            doc.figure(PLAN_FIGURE, figures.png[PLAN_FIGURE], (
                "Preposterior analysis of a new two-arm 1:1 randomised trial (exact: the predictive distribution of "
                "its estimate integrated over the exact engine's tau grid, the synthesis refitted for each result). "
                "Left: probability that the trial alone is significant (two-sided 5%; in favour of treatment, HR "
                f"< 1), that the synthesis then meets the rule P(HR < {plan.threshold:g}) > {plan.level:g}, and "
                "that the decision changes from today's. Right: expected posterior SD of the randomised log HR "
                "(today's dotted). File next_trial.csv; synthesis plan computes it for other sizes and rules."))
        doc.table(*_plan_cells(plan), table_id="next-trial", collapsed="Every trial size", caption=(
            "Per trial size (events, 1:1; log-HR SE = 2 / sqrt(events)): predictive probabilities, the expected "
            "posterior SD of the randomised log HR and the expected value of sample information on the variance "
            "scale (today's posterior variance minus the expected one); file next_trial.csv."))
        doc.bullets([f"Note: {n}" for n in plan.notes])
    doc.heading(3, "How the evidence moved")
    if ev.timeline is None:
        doc.para("No timeline (see the notes).")
    else:
        tl = ev.timeline
        if TIMELINE_FIGURE in figures.png:
            doc.figure(TIMELINE_FIGURE, figures.png[TIMELINE_FIGURE], (
                f"Posterior HR (median, {INTERVAL_LABEL} equal-tailed credible interval) and P(HR < "
                f"{tl.threshold:g}) refitted after each publication year with every study published by then: "
                "random effects on the randomised studies, the design-bias model and the model average (over all "
                "models, with the no-effect spike at HR = 1, and given an effect); gaps are years a model could "
                "not be fitted, with the reason below the figure. File timeline.csv."))
        doc.table(*_timeline_cells(tl), table_id="timeline", collapsed="Every year and model", caption=(
            f"Cumulative fits by publication year ({INTERVAL_LABEL} equal-tailed credible intervals); file timeline.csv."))
        doc.bullets([f"Note: {n}" for n in tl.notes])
    doc.heading(3, "Operating characteristics of the rule")
    if ev.operating is None:
        doc.para("Not computed for this report (it simulates thousands of evidence bases): `synthesis simulate` "
                 "computes how often the rule recommends when the treatment does not work, and its power, for "
                 "the design-bias model, the naive pool and the randomised studies alone.")
    else:
        oc = ev.operating
        doc.para(
            f"How often 'recommend if P(HR < {oc.threshold:g}) > {oc.level:g}' recommends over {oc.n_sim:,} "
            f"simulated evidence bases per scenario with this table's standard errors and designs (between-study "
            f"SD {oc.tau:g}): at a true HR of 1 this is the rate of recommending a treatment that does not work; "
            "at a true HR of T, the boundary of the rule's claim (about 1 - level of the time when calibrated); below T, "
            "the power. Non-randomised studies are biased by the factor b on the HR scale, varying "
            "between studies with the SD given on the log scale.")
        doc.table(*_operating_cells(oc), table_id="operating-characteristics", caption=(
            "P(recommend) ± its Monte Carlo standard error per scenario and analysis (exact engine, batched); "
            "file operating_characteristics.csv."))
        doc.bullets([f"Note: {n}" for n in oc.notes])
    doc.bullets([f"Note: {n}" for n in ev.notes])
