"""The report page, section by section: :func:`render_report` returns the HTML page and the
Markdown of an analysis.

Sections, in order: title and status boxes (convergence, warnings), question, answer, decision
table, figures, prior sensitivity, frequentist comparisons, publication-bias diagnostics,
data-validation warnings, provenance. Each is one function below that adds its blocks to a
:class:`~synthesis.report.document.ReportDocument`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthesis.base import INTERVAL_LABEL
from synthesis.report.document import ReportDocument
from synthesis.report.formats import INTERVAL_KIND, safe_name
from synthesis.report.narrative import (
    answer,
    convergence_problems,
    model_labels,
    question,
    sweep_summary,
    warning_groups,
)
from synthesis.report.tables import (
    decision_cells,
    metareg_blocks,
    pool_cells,
    prior_cells,
    pubbias_blocks,
    sweep_cells,
)

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult

#: The files a report folder holds, as the provenance section lists them.
FILES_NOTE = (
    "Files: decision.csv, studies.csv, pools.csv, sweep_<model>.csv, figures/ (PNG and SVG), "
    "posteriors/ (NetCDF DataTrees of MCMC fits, tau densities of exact fits, fit summaries), run.json."
)
#: Order of the figures in the "Figures" section (others follow).
MAIN_FIGURE_ORDER: dict[str, int] = {"forest": 0, "bubble": 1}


@dataclass(frozen=True)
class _Figures:
    """The report's figures: PNG bytes and caption by file stem."""

    png: Mapping[str, bytes]
    captions: Mapping[str, str]

    def add(self, doc: ReportDocument, name: str) -> None:
        doc.figure(name, self.png[name], self.captions[name])


def figure_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """Figure stems by the section that shows them: ``main``, ``sweeps`` and ``pubbias``.

    Examples
    --------
    >>> figure_groups(["funnel", "sensitivity_bias", "bubble", "forest", "bias_sensitivity_bias"])
    {'main': ['forest', 'bubble'], 'sweeps': ['sensitivity_bias', 'bias_sensitivity_bias'], 'pubbias': ['funnel']}
    """
    groups: dict[str, list[str]] = {"main": [], "sweeps": [], "pubbias": []}
    for n in names:
        if n.startswith(("sensitivity_", "bias_sensitivity_")):
            groups["sweeps"].append(n)
        elif n == "funnel":
            groups["pubbias"].append(n)
        else:
            groups["main"].append(n)
    groups["main"].sort(key=lambda n: MAIN_FIGURE_ORDER.get(n, len(MAIN_FIGURE_ORDER)))
    return groups


def _status(doc: ReportDocument, result: AnalysisResult, validation: list[str], other: list[str]) -> None:
    """The boxes under the title: convergence (failed fits, or that all passed) and warnings."""
    problems = convergence_problems(result)
    if problems:
        doc.box("alert", "Convergence problems: these fits did not pass their diagnostics (R-hat, ESS, "
                "divergences); their numbers are unreliable.",
                [f"{label}: {'; '.join(msgs)}" for label, msgs in problems])
    else:
        doc.box("ok", "Convergence", [
            "Every MCMC fit passed its diagnostics (R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences); "
            "exact-engine fits need none."])
    if validation:
        doc.box("note", "Data-validation warnings (studies flagged while reading the input)", validation)
    if other:
        doc.box("note", "Other warnings", other)


def _question_and_answer(doc: ReportDocument, result: AnalysisResult) -> None:
    doc.heading(2, "Question", "question")
    doc.para(question(result))
    doc.heading(2, "Answer in plain language", "answer")
    doc.para(answer(result), cls="answer")


def _decision(doc: ReportDocument, result: AnalysisResult) -> None:
    doc.heading(2, "Decision table", "decision")
    header, body = decision_cells(result)
    doc.table(header, body, table_id="decision-table", notes_col=1, caption=(
        f"Posterior median HR with its {INTERVAL_KIND} (CrI); predictive HR of a new randomised trial with its "
        f"{INTERVAL_LABEL} equal-tailed prediction interval (PrI); P(HR < T): posterior probability; frequentist "
        f"pooled HRs of the same studies with {INTERVAL_LABEL} confidence intervals (DL, REML, REML with "
        "Hartung-Knapp-Sidik-Jonkman)."))


def _main_figures(doc: ReportDocument, names: Sequence[str], figures: _Figures) -> None:
    if names:
        doc.heading(2, "Figures", "figures")
    for name in names:
        figures.add(doc, name)


def _sensitivity(doc: ReportDocument, result: AnalysisResult, names: Sequence[str], figures: _Figures) -> None:
    """One subsection per sweep (summary, figure, table); then figures of no sweep of this result."""
    labels = model_labels(result)
    doc.heading(2, "Prior sensitivity", "sensitivity")
    if not result.sweeps:
        doc.para("No sweep was run.")
    for key in result.sweeps:
        doc.heading(3, labels.get(key, key))
        doc.para(sweep_summary(result, key))
        if f"sensitivity_{key}" in names:
            figures.add(doc, f"sensitivity_{key}")
        header, body = sweep_cells(result, key)
        doc.table(header, body, caption=f"Every fit of the sweep ({INTERVAL_KIND}); file sweep_{safe_name(key)}.csv.",
                  collapsed=f"All {len(body)} fits of the sweep")
    for name in names:
        if name.removeprefix("sensitivity_") not in result.sweeps:
            figures.add(doc, name)


def _frequentist(doc: ReportDocument, result: AnalysisResult) -> None:
    doc.heading(2, "Frequentist comparisons", "frequentist")
    header, body = pool_cells(result)
    doc.table(header, body, caption=(
        f"Random-effects pooling of the log HR ({INTERVAL_LABEL} CI; prediction interval for a new study)."))
    lines, coef_table = metareg_blocks(result)
    doc.bullets(lines)
    if coef_table:
        doc.table(*coef_table, caption="Meta-regression coefficients (log HR per unit of the covariate).")


def _pubbias(doc: ReportDocument, result: AnalysisResult, names: Sequence[str], figures: _Figures) -> None:
    doc.heading(2, "Publication-bias diagnostics", "pubbias")
    lines, loo, notes = pubbias_blocks(result)
    doc.bullets(lines)
    for name in names:
        figures.add(doc, name)
    if loo:
        doc.table(*loo, caption="Leave-one-out pooled HRs.", collapsed="Leave-one-out analysis")
    doc.bullets([f"Note: {n}" for n in notes])


def _warnings(doc: ReportDocument, validation: list[str], other: list[str]) -> None:
    doc.heading(2, "Data-validation warnings", "warnings")
    if validation or other:
        doc.bullets(validation + other)
    else:
        doc.para("None: every study passed validation without a warning.")


def _provenance(doc: ReportDocument, result: AnalysisResult, run: Mapping[str, Any]) -> None:
    """Input file and hash, seed, thresholds, timing, package versions, the priors, the files."""
    doc.heading(2, "Provenance", "provenance")
    inputs = run["inputs"]
    doc.bullets([
        f"Input: {inputs['source']} ({inputs['k']} studies in the analysis set, {inputs['excluded']} excluded rows)",
        f"Input file: {inputs['path'] or 'not found on disk'}; SHA-256 {inputs['sha256'] or 'n/a'}",
        f"Seed: {result.seed}",
        f"Decision thresholds: {', '.join(f'{t:g}' for t in result.thresholds)}",
        "Timing (s): " + ", ".join(f"{k} {v:g}" for k, v in result.timing.items()),
        "Packages: " + ", ".join(f"{k} {v}" for k, v in run["packages"].items() if v),
    ])
    doc.table(*prior_cells(result), caption="Priors of every model.", multiline_cols=(1, 2))
    doc.para(FILES_NOTE)


def render_report(result: AnalysisResult, figure_png: Mapping[str, bytes], captions: Mapping[str, str],
                  run: Mapping[str, Any]) -> tuple[str, str]:
    """The report of ``result`` as an HTML page and as Markdown.

    Parameters
    ----------
    result
        The analysis.
    figure_png
        PNG bytes of each figure, by file stem.
    captions
        The caption of each figure, by file stem.
    run
        The run.json record (:func:`synthesis.report.provenance.run_record`): creation time,
        input file, package versions.

    Returns
    -------
    tuple of (str, str)
        The HTML page (self-contained) and the Markdown.
    """
    doc = ReportDocument()
    figures = _Figures(figure_png, captions)
    groups = figure_groups(list(figure_png))
    validation, other = warning_groups(result)
    title = f"Evidence synthesis report: {result.name}"
    doc.heading(1, title)
    doc.para(f"Generated {run['created_utc']} from {result.source}; every interval is a {INTERVAL_KIND} unless "
             f"marked as a frequentist {INTERVAL_LABEL} confidence interval (CI) or a {INTERVAL_LABEL} prediction "
             "interval (PrI).")
    _status(doc, result, validation, other)
    _question_and_answer(doc, result)
    _decision(doc, result)
    _main_figures(doc, groups["main"], figures)
    _sensitivity(doc, result, groups["sweeps"], figures)
    _frequentist(doc, result)
    _pubbias(doc, result, groups["pubbias"], figures)
    _warnings(doc, validation, other)
    _provenance(doc, result, run)
    return doc.page(title), doc.markdown()
