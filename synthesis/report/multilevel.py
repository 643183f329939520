"""The report's section "One row per cohort, or all inputs?" (issue #13): renders the
:class:`synthesis.multilevel.InputsComparison` the analysis computed (nothing is computed here)."""

from __future__ import annotations

from typing import Any

from synthesis.report.document import ReportDocument

INPUTS_TITLE = "One row per cohort, or all inputs?"
INPUTS_ANCHOR = "all-inputs"
SKIPPED = (
    "Not computed: the comparison needs an \"all inputs\" set (every row with a usable effect and its "
    "cohort), which only the bundled dnMBC dataset ships (dnmbc_lrt_all_inputs.csv). This report is of "
    "{source}. For your own table with several rows per cohort, use `synthesis fit --engine exact "
    "--cluster COLUMN` (and `synthesis pool --cluster COLUMN` for the frequentist rma.mv equivalent)."
)


def _p(value: float) -> str:
    if value < 0.01:
        return "< 0.01"
    if value > 0.99:
        return "> 0.99"
    return f"{value:.2f}"


def inputs_cells(comparison: Any) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table: one row per way of using the evidence.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> row = SimpleNamespace(label="All inputs", k=30, clusters=19, hr_median=0.89, hr_q025=0.75,
    ...                       hr_q975=1.08, p_below={"0.8": 0.11, "1.0": 0.889}, tau=0.07, tau_within=0.14)
    >>> header, body = inputs_cells(SimpleNamespace(thresholds=(0.8, 1.0), rows=[row]))
    >>> header[3:5], body[0][2:5]
    (['P(HR < 0.8)', 'P(HR < 1)'], ['0.89 (0.75-1.08)', '0.11', '0.89'])
    """
    header = ["Evidence used", "rows (clusters)", "HR (95% CrI)"]
    header += [f"P(HR < {t:g})" for t in comparison.thresholds]
    header += ["tau (between)", "tau_within"]
    body = []
    for r in comparison.rows:
        cells = [
            r.label,
            f"{r.k}" + (f" ({r.clusters})" if r.clusters else ""),
            f"{r.hr_median:.2f} ({r.hr_q025:.2f}-{r.hr_q975:.2f})",
        ]
        cells += [_p(r.p_below[repr(float(t))]) for t in comparison.thresholds]
        cells += [f"{r.tau:.3f}", "" if r.tau_within is None else f"{r.tau_within:.3f}"]
        body.append(cells)
    return header, body


def inputs_section(doc: ReportDocument, result: Any) -> None:
    """Add the section to ``doc`` (a note instead when the analysis holds no comparison).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> doc = ReportDocument()
    >>> inputs_section(doc, SimpleNamespace(inputs_comparison=None, source="mine.csv"))
    >>> print(doc.markdown())  # doctest: +ELLIPSIS
    ## One row per cohort, or all inputs?
    <BLANKLINE>
    Not computed: ... This report is of mine.csv. ...
    """
    doc.heading(2, INPUTS_TITLE, INPUTS_ANCHOR)
    comparison = getattr(result, "inputs_comparison", None)
    if comparison is None:
        doc.para(SKIPPED.format(source=result.source))
        return
    rows = {r.key: r for r in comparison.rows}
    lead = (
        "The default analysis keeps one row per cohort. The evidence holds more rows: several periods of "
        "one registry, several arms against one control, several reports of one trial. Pooling every "
        "input as if independent (as Gera et al. 2020 pooled 61 inputs from 42 studies) counts shared "
        "patients more than once; the multilevel model keeps every input and lets rows of one cohort "
        "share a cohort effect (tau between cohorts, tau_within within)."
    )
    doc.para(lead)
    if "per_cohort" in rows and "multilevel" in rows:
        a, b = rows["per_cohort"], rows["multilevel"]
        doc.para(
            f"HR of a randomised comparison: {a.hr_median:.2f} ({a.hr_q025:.2f}-{a.hr_q975:.2f}) from one row "
            f"per cohort ({a.k} rows), {b.hr_median:.2f} ({b.hr_q025:.2f}-{b.hr_q975:.2f}) from all {b.k} inputs "
            f"in {b.clusters} cohorts in the multilevel model."
        )
    header, body = inputs_cells(comparison)
    doc.table(header, body, table_id="all-inputs", caption=(
        "The same model fitted to each set of rows (exact engine, default priors): posterior median HR of a "
        "randomised comparison with its 95% equal-tailed credible interval, P(HR < T), and the posterior "
        f"medians of the heterogeneity SDs; all inputs from {comparison.source}."))
    doc.bullets([f"Note: {n}" for n in comparison.notes])
