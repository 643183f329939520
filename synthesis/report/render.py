"""The report page, section by section: :func:`render_report` returns the HTML page and the
Markdown of an analysis.

Sections, in order: title and status boxes (convergence, warnings), question, answer, decision
table, which model the data support (model averaging, stacking, tipping point, power-scaling),
figures, prior sensitivity, frequentist comparisons, publication-bias diagnostics,
data-validation warnings, provenance. Each is one function below that adds its blocks to a
:class:`~synthesis.report.document.ReportDocument`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthesis.base import INTERVAL_LABEL
from synthesis.report.document import ReportDocument
from synthesis.report.explorer import add_explorer
from synthesis.report.formats import INTERVAL_KIND, safe_name
from synthesis.report.multilevel import inputs_section
from synthesis.report.multiverse import MULTIVERSE_FIGURE, multiverse_section
from synthesis.report.narrative import (
    answer,
    averaging_summary,
    convergence_problems,
    heterogeneity_sentence,
    model_labels,
    mu_prior_summary,
    question,
    stacking_summary,
    sweep_summary,
    warning_groups,
)
from synthesis.report.reconcile import RECONCILE_FIGURE, reconcile_section
from synthesis.report.settle import SETTLE_FIGURES, settle_section
from synthesis.report.tables import (
    MU_PRIOR_CSV,
    averaging_cells,
    decision_cells,
    inclusion_cells,
    metareg_blocks,
    mu_prior_cells,
    pool_cells,
    powerscale_cells,
    prior_cells,
    pubbias_blocks,
    stacking_cells,
    sweep_cells,
)

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult

#: The files a report folder holds, as the provenance section lists them.
FILES_NOTE = (
    "Files: decision.csv, studies.csv, pools.csv, sweep_<model>.csv, model_averaging.csv, inclusion_bf.csv, "
    "stacking.csv, tipping_grid.csv, tipping_contour.csv, tipping_alpha.csv, explorer.html, powerscale.csv, "
    "powerscale_alpha.csv, reconcile_steps.csv, published_pools.csv, multiverse_specifications.csv, "
    "dataset_provenance.csv, next_trial.csv, timeline.csv, operating_characteristics.csv "
    "(those of the analyses that were run), figures/ (PNG and SVG), "
    "posteriors/ (NetCDF DataTrees of MCMC fits, tau densities of exact fits, fit summaries), run.json."
)
#: The title of the model-choice section (issue #11).
MODEL_CHOICE_TITLE = "Which model do the data support, and where does the answer flip?"
#: Its subsection on the model averaging under other mu priors (issue #11).
MU_PRIOR_TITLE = "How the evidence for an effect depends on the mu prior"
#: The figures of the model-choice section, in order.
MODEL_CHOICE_FIGURES: tuple[str, ...] = ("tipping_map", "tipping_alpha")
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
    """Figure stems by the section that shows them: ``main``, ``sweeps``, ``pubbias`` and
    ``choice`` (the tipping-point figures, in :data:`MODEL_CHOICE_FIGURES` order).

    Examples
    --------
    >>> figure_groups(["funnel", "tipping_alpha", "sensitivity_bias", "bubble", "forest", "tipping_map"])
    {'main': ['forest', 'bubble'], 'sweeps': ['sensitivity_bias'], 'pubbias': ['funnel'],
     'choice': ['tipping_map', 'tipping_alpha']}
    """
    groups: dict[str, list[str]] = {"main": [], "sweeps": [], "pubbias": [], "choice": []}
    for n in names:
        if n in MODEL_CHOICE_FIGURES:
            groups["choice"].append(n)
        elif n.startswith(("sensitivity_", "bias_sensitivity_")):
            groups["sweeps"].append(n)
        elif n == "funnel":
            groups["pubbias"].append(n)
        else:
            groups["main"].append(n)
    groups["main"].sort(key=lambda n: MAIN_FIGURE_ORDER.get(n, len(MAIN_FIGURE_ORDER)))
    groups["choice"].sort(key=MODEL_CHOICE_FIGURES.index)
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
        "Hartung-Knapp-Sidik-Jonkman). The model-averaged and stacked rows combine several models (see the "
        "next section): they have no predictive HR and no frequentist comparator (n/a)."))


def _model_choice(doc: ReportDocument, result: AnalysisResult, names: Sequence[str], figures: _Figures) -> None:
    """Model probabilities and inclusion Bayes factors, the stacked bias variants, the tipping
    point (sentence and figures) and the power-scaling table, each where it was computed."""
    doc.heading(2, MODEL_CHOICE_TITLE, "model-choice")
    choice = result.model_choice
    if choice is None:
        doc.para("Not computed in this analysis.")
        return
    avg = choice.averaging
    doc.heading(3, "Model averaging")
    if avg is None:
        doc.para("Model averaging was not computed (see the warnings).")
    else:
        doc.para(averaging_summary(avg))
        doc.table(*averaging_cells(result), table_id="model-probabilities", caption=(
            f"Posterior model probabilities over {' × '.join(avg.components)} (exact marginal likelihoods); "
            f"HR of a randomised comparison given each model ({INTERVAL_KIND}); file model_averaging.csv."))
        doc.table(*inclusion_cells(result), table_id="inclusion-bf", caption=(
            "Inclusion Bayes factors: posterior inclusion odds over prior inclusion odds; evidence words after "
            "Jeffreys (1961) as labelled by Lee and Wagenmakers (2013); file inclusion_bf.csv."))
        hetero = heterogeneity_sentence(result)
        if hetero:
            doc.para(hetero)
        doc.bullets([f"Note: {n}" for n in avg.notes])
        if choice.mu_prior:
            doc.heading(3, MU_PRIOR_TITLE)
            doc.para(mu_prior_summary(result))
            doc.table(*mu_prior_cells(result), table_id="mu-prior", caption=(
                "The model averaging repeated under each prior μ ~ normal(0, s), every other prior and the prior "
                "model probabilities unchanged: the inclusion Bayes factor of the effect with its evidence words, "
                "the posterior probability of no effect (HR exactly 1), P(HR < T) averaged over all models and "
                f"the HR given an effect ({INTERVAL_KIND}); file {MU_PRIOR_CSV}."))
    doc.heading(3, "Stacking the bias variants")
    if choice.stacking is None:
        doc.para("The bias variants were not stacked (see the warnings).")
    else:
        doc.para(stacking_summary(result))
        doc.table(*stacking_cells(result), table_id="stacking", caption=(
            "Bias variants by leave-one-study-out cross-validation: elpd_loo (sum of log predictive densities "
            f"of each study given the others), its difference to the best variant, the stacking weight; HR with "
            f"its {INTERVAL_KIND}; file stacking.csv."))
        doc.bullets([f"Note: {n}" for n in choice.stacking.notes])
    doc.heading(3, "Where the answer flips")
    if choice.tipping is None:
        doc.para("No tipping-point analysis (see the warnings).")
    else:
        doc.para(choice.tipping.sentence)
        for name in names:
            figures.add(doc, name)
        doc.bullets([f"Note: {n}" for n in choice.tipping.notes])
    doc.heading(3, "Power-scaling sensitivity")
    ps = choice.powerscale
    if ps is None:
        doc.para("No power-scaling sensitivity (see the warnings).")
    else:
        labels = model_labels(result)
        doc.para(ps.summary)
        doc.table(*powerscale_cells(result), table_id="powerscale", caption=(
            f"Power-scaling sensitivity of '{labels.get(choice.powerscale_key, choice.powerscale_key)}' "
            f"(exact; Kallioinen et al. 2024, doi:10.1007/s11222-023-10366-5): how far each posterior moves, "
            f"as the derivative of the cumulative Jensen-Shannon distance at alpha = 1, when the prior, the "
            f"likelihood or the non-randomised studies' likelihood alone is raised to the power alpha; "
            f"{ps.threshold:g} or more is sensitive; files powerscale.csv and powerscale_alpha.csv."))
        doc.bullets([f"Note: {n}" for n in ps.notes])


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
    _model_choice(doc, result, groups["choice"], figures)
    add_explorer(doc, result)
    settle_section(doc, result, figures)
    _main_figures(doc, [n for n in groups["main"] if n not in (RECONCILE_FIGURE, MULTIVERSE_FIGURE)
                        and n not in SETTLE_FIGURES], figures)
    _sensitivity(doc, result, groups["sweeps"], figures)
    _frequentist(doc, result)
    reconcile_section(doc, result, figures)
    inputs_section(doc, result)
    multiverse_section(doc, result, figures)
    _pubbias(doc, result, groups["pubbias"], figures)
    _warnings(doc, validation, other)
    _provenance(doc, result, run)
    return doc.page(title), doc.markdown()
