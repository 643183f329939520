"""The report section "How the published numbers came about": the published pooled HRs, which of
them the tool reproduces from their own inputs, and the ladder from each to the tool's answer
(:mod:`synthesis.reconcile`). It reads the :class:`~synthesis.reconcile.ReconcileResult` the
analysis holds and computes nothing; on any table but the bundled dataset it says why it is
empty."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from synthesis.base import INTERVAL_LABEL
from synthesis.report.document import ReportDocument

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult
    from synthesis.reconcile import ReconcileResult

RECONCILE_TITLE = "How the published numbers came about"
RECONCILE_ANCHOR = "reconcile"
#: The ladder figure's file stem (figures/reconcile_ladder.png and .svg).
RECONCILE_FIGURE = "reconcile_ladder"
#: The report's CSV files of the section: file name -> ``ReconcileResult.to_frame`` argument.
RECONCILE_CSVS: dict[str, str] = {"reconcile_steps.csv": "steps", "published_pools.csv": "pools"}
RECONCILE_CAPTION = (
    "How each published pool whose inputs the sources give becomes this tool's answer: the HR as published "
    "(open diamond), as reproduced from the paper's own inputs and choices, then after one change at a time "
    f"(squares: frequentist pooled HR with its {INTERVAL_LABEL} CI; circles: posterior median with its "
    f"{INTERVAL_LABEL} equal-tailed credible interval, exact engine, default priors). Table: "
    "reconcile_steps.csv."
)
SKIPPED = (
    "Not computed: the published meta-analyses pooled the studies of the bundled dnMBC dataset, and the "
    "ladder ends at that dataset as curated. This report is of {source}. `synthesis reconcile` shows the "
    "reconciliation on the bundled data."
)


class _FigureSink(Protocol):
    png: Mapping[str, bytes]


def _reconciliation(result: AnalysisResult) -> ReconcileResult | None:
    return getattr(result, "reconciliation", None)


def reconcile_section(doc: ReportDocument, result: AnalysisResult, figures: _FigureSink) -> None:
    """Add the section to ``doc``: the summary sentences, the ladder figure (when it was drawn:
    ``figures.png`` holds :data:`RECONCILE_FIGURE`), every published pool with its reproduction
    and reason, and every ladder's steps (collapsed); a note instead when the analysis holds no
    reconciliation (a table other than the bundled dataset).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> doc = ReportDocument()
    >>> reconcile_section(doc, SimpleNamespace(reconciliation=None, source="mine.csv"), SimpleNamespace(png={}))
    >>> print(doc.markdown())  # doctest: +ELLIPSIS
    ## How the published numbers came about
    <BLANKLINE>
    Not computed: the published meta-analyses pooled the studies of the bundled dnMBC dataset, ... This report is of mine.csv. ...
    """
    doc.heading(2, RECONCILE_TITLE, RECONCILE_ANCHOR)
    rec = _reconciliation(result)
    if rec is None:
        doc.para(SKIPPED.format(source=result.source))
        return
    doc.para(rec.summary)
    if RECONCILE_FIGURE in figures.png:
        doc.figure(RECONCILE_FIGURE, figures.png[RECONCILE_FIGURE], RECONCILE_CAPTION)
    header, body = pool_cells(rec)
    doc.table(header, body, table_id="published-pools", multiline_cols=(5,), caption=(
        "Every published pooled HR of the question: as printed, as reproduced from the paper's inputs "
        "(where the sources list them), whether the reproduction is within the printed rounding (half a "
        "unit of the last printed digit), and why not; file published_pools.csv."))
    header, body = step_cells(rec)
    doc.table(header, body, table_id="reconcile-steps", multiline_cols=(3,), collapsed="Every step of every ladder",
              caption=(f"HR with its {INTERVAL_LABEL} interval after each change (frequentist: CI; bayesian: "
                       "equal-tailed credible interval) and what changed; file reconcile_steps.csv."))
    doc.bullets([f"Note: {n}" for n in rec.notes])


def _hr(hr: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    if hr is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{hr:.{digits}f}"
    return f"{hr:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def pool_cells(rec: ReconcileResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the published-pools table: one row per published pool.

    Examples
    --------
    >>> from synthesis.reconcile import Reconciliation, ReconcileResult, load_published_pools
    >>> pool = load_published_pools()[1]
    >>> header, body = pool_cells(ReconcileResult((Reconciliation(pool, steps=()),), (1.0,), "none"))
    >>> header[:3], body[0][:4]
    (['Published pool', 'Published HR (95% CI)', 'Reproduced'], ['Gera 2020, all LRT', '0.6823 (0.6365-0.7314)', 'n/a', 'no'])
    """
    header = ["Published pool", f"Published HR ({INTERVAL_LABEL} CI)", "Reproduced", "Within printed rounding",
              "Estimator", "Why / how"]
    body = []
    for r in rec.reconciliations:
        s = r.reproduced
        within = {True: "yes", False: "no", None: "no"}[r.within_rounding]
        body.append([r.pool.name, r.pool.published.text(),
                     "n/a" if s is None else _hr(s.hr, s.ci_lower, s.ci_upper, 4),
                     within, r.pool.method if s is not None else "", r.pool.reason])
    return header, body


def step_cells(rec: ReconcileResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ladder table: one row per step of every ladder."""
    header = ["Published pool", "Step", f"HR ({INTERVAL_LABEL} interval)", "What changed", "k"]
    body = []
    for r in rec.laddered:
        for s in r.steps:
            body.append([r.pool.name, s.change, _hr(s.hr, s.ci_lower, s.ci_upper), s.detail, str(s.k)])
    return header, body


def write_reconcile_tables(result: AnalysisResult, root: Path) -> list[str]:
    """Write :data:`RECONCILE_CSVS` into ``root`` when the analysis holds a reconciliation;
    return the names written."""
    from synthesis.spreadsheets import write_csv

    rec = _reconciliation(result)
    if rec is None:
        return []
    for name, what in RECONCILE_CSVS.items():
        write_csv(rec.to_frame(what), root / name)
    return list(RECONCILE_CSVS)


def reconcile_figures(result: AnalysisResult) -> dict[str, Any]:
    """``{"reconcile_ladder": figure}`` when the analysis holds a reconciliation with a ladder,
    else ``{}`` (for :func:`synthesis.report.write_report`)."""
    rec = _reconciliation(result)
    if rec is None or not rec.laddered:
        return {}
    from synthesis.plots.reconcile import plot_reconcile_ladder

    return {RECONCILE_FIGURE: plot_reconcile_ladder(rec)}
