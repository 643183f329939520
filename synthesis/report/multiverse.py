"""The report section "How much the data choices matter" (the specification curve of the bundled
dataset's curation switches, :mod:`synthesis.specifications`) and the dataset's provenance table (one
row per included estimate: study, HR and CI, source citation, curation decisions). It reads the
:class:`~synthesis.specifications.MultiverseResult` and the provenance frame the analysis holds and
computes nothing; on any table but the bundled dataset it says why it is empty."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from synthesis.base import INTERVAL_LABEL
from synthesis.report.document import ReportDocument

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult
    from synthesis.specifications import MultiverseResult

MULTIVERSE_TITLE = "How much the data choices matter"
MULTIVERSE_ANCHOR = "multiverse"
PROVENANCE_TITLE = "Where each estimate comes from"
PROVENANCE_ANCHOR = "dataset-provenance"
#: The specification-curve figure's file stem (figures/specification_curve.png and .svg).
MULTIVERSE_FIGURE = "specification_curve"
#: The report's CSV files of the section.
MULTIVERSE_CSV = "multiverse_specifications.csv"
PROVENANCE_CSV = "dataset_provenance.csv"
#: A switch that moves P(HR < T) by less than this is reported as not mattering.
SHIFT_THAT_MATTERS = 0.01
SKIPPED = (
    "Not computed: the curation switches (data/curation/switches.csv) are choices about the bundled dnMBC "
    "dataset. This report is of {source}; `synthesis multiverse {source}` varies the model and the priors "
    "on it."
)


class _FigureSink(Protocol):
    png: Mapping[str, bytes]


def _multiverse(result: Any) -> MultiverseResult | None:
    return getattr(result, "multiverse", None)


def caption(mv: MultiverseResult) -> str:
    """The specification curve's caption."""
    return (
        f"Specification curve (Simonsohn, Simmons & Nelson 2020): each of the {mv.n_specifications} specifications "
        f"(one curated table x one model) sorted by P(HR < {mv.threshold:g}); above it the posterior median HR "
        f"with its {INTERVAL_LABEL} equal-tailed credible interval, below it the choices that made it. Exact "
        f"engine, default priors ({', '.join(mv.tau_priors)} for tau; {', '.join(mv.bias_priors)} for the "
        f"design bias). Table: {MULTIVERSE_CSV}."
    )


def summary(mv: MultiverseResult) -> str:
    """The sentences that open the section: the size of the multiverse, the shares and which
    switches matter.

    Examples
    --------
    >>> from synthesis.specifications import defaults_only, run_multiverse
    >>> mv = run_multiverse(switches=defaults_only(posytive=["oriented", "as_printed"]),
    ...                     models=["re-rct"], tau_priors=["halfnormal(0.5)"], workers=1)
    >>> print(summary(mv))  # doctest: +ELLIPSIS
    The bundled table was rebuilt under every combination of its curation switches ...
    """
    share = mv.share_p_above()
    t = f"P(HR < {mv.threshold:g})"
    shifts = [s for s in mv.shifts() if s["kind"] == "curation" and len(s["alternatives"]) > 1]
    shifts.sort(key=lambda s: -s["max_shift_p"])
    matter = [s for s in shifts if s["max_shift_p"] >= SHIFT_THAT_MATTERS]
    text = (
        f"The bundled table was rebuilt under every combination of its curation switches ({mv.n_tables} tables) "
        f"and fitted with {len(mv.models)} model{'s' if len(mv.models) > 1 else ''} "
        f"({', '.join(mv.models)}) at the default priors: {mv.n_specifications} specifications. "
        f"{t} exceeds 0.5 in {100 * share['0.5']:.0f}% of them and 0.9 in {100 * share['0.9']:.0f}% "
        f"(range {mv.frame['p_below'].min():.2f} to {mv.frame['p_below'].max():.2f}; posterior median HR "
        f"{mv.frame['hr_median'].min():.2f} to {mv.frame['hr_median'].max():.2f}). "
    )
    if matter:
        parts = [f"{s['name']} (up to {s['max_shift_p']:.2f} in {t}, {s['max_shift_hr']:.2f} in the HR)" for s in matter]
        text += "The switches that move the answer most, holding everything else fixed: " + "; ".join(parts) + ". "
    quiet = [s["name"] for s in shifts if s["max_shift_p"] < SHIFT_THAT_MATTERS]
    if quiet:
        text += f"Switches that move {t} by less than {SHIFT_THAT_MATTERS:g}: {', '.join(quiet)}. "
    model = next((s for s in mv.shifts() if s["name"] == "model"), None)
    if model is not None and model["max_shift_p"] > 0:
        text += (
            f"For comparison, the choice of model moves {t} by up to {model['max_shift_p']:.2f}. "
        )
    text += ("The full multiverse (every switch x 5 models x 4 tau priors x 3 bias priors) is "
             "`synthesis multiverse`.")
    return text


def switch_cells(mv: MultiverseResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the switch table: one row per curation switch."""
    header = ["Switch", "Alternatives (default first)", f"Max shift of P(HR < {mv.threshold:g})",
              "Max shift of HR", "What it does"]
    body = []
    for s in mv.shifts():
        if s["kind"] != "curation":
            continue
        body.append([s["name"], ", ".join(s["alternatives"]), f"{s['max_shift_p']:.3f}", f"{s['max_shift_hr']:.3f}",
                     mv.descriptions.get(s["name"], "")])
    return header, body


def provenance_cells(frame: Any) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the provenance table: one row per included estimate."""
    header = ["Study", "HR (CI as entered)", "Source", "Curation decisions", "Switches that change it"]
    body = [[r["study"], f"{r['hr']} ({r['ci']})", r["citation"] or r["quote"], r["decisions"], r["switches"] or "-"]
            for r in frame.to_dict("records")]
    return header, body


def multiverse_section(doc: ReportDocument, result: AnalysisResult, figures: _FigureSink) -> None:
    """Add the two sections to ``doc``: how much the curation switches move the answer (summary,
    figure when drawn, switch table) and where each included estimate comes from; a note instead
    when the analysis holds no multiverse (a table other than the bundled dataset).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> doc = ReportDocument()
    >>> multiverse_section(doc, SimpleNamespace(multiverse=None, source="mine.csv"), SimpleNamespace(png={}))
    >>> print(doc.markdown())  # doctest: +ELLIPSIS
    ## How much the data choices matter
    <BLANKLINE>
    Not computed: the curation switches ... This report is of mine.csv; ...
    """
    doc.heading(2, MULTIVERSE_TITLE, MULTIVERSE_ANCHOR)
    mv = _multiverse(result)
    if mv is None:
        doc.para(SKIPPED.format(source=result.source))
        return
    doc.para(summary(mv))
    if MULTIVERSE_FIGURE in figures.png:
        doc.figure(MULTIVERSE_FIGURE, figures.png[MULTIVERSE_FIGURE], caption(mv))
    header, body = switch_cells(mv)
    doc.table(header, body, table_id="curation-switches", multiline_cols=(4,), caption=(
        "Each curation switch of data/curation/switches.csv: the largest change of P(HR < T) and of the "
        "posterior median HR between two specifications that differ only in that switch; every "
        f"specification is in {MULTIVERSE_CSV}."))
    doc.bullets([f"Note: {n}" for n in mv.notes])
    frame = mv.provenance
    if frame is not None:
        doc.heading(3, PROVENANCE_TITLE, PROVENANCE_ANCHOR)
        header, body = provenance_cells(frame)
        doc.table(header, body, table_id="dataset-provenance", multiline_cols=(2, 3), caption=(
            "Every estimate in the analysis set: the HR and CI as entered (LRT vs no LRT), the publication, "
            "how the curation treated it, and the curation switches that can change it (se_method changes "
            f"every row). The quoted passages are in {PROVENANCE_CSV} and data/sources/evidence.csv."))


def write_multiverse_tables(result: AnalysisResult, root: Path) -> list[str]:
    """Write :data:`MULTIVERSE_CSV` and :data:`PROVENANCE_CSV` into ``root`` when the analysis
    holds them; return the names written."""
    from synthesis.spreadsheets import write_csv

    written = []
    mv = _multiverse(result)
    if mv is not None:
        write_csv(mv.to_frame(), root / MULTIVERSE_CSV)
        written.append(MULTIVERSE_CSV)
    frame = mv.provenance if mv is not None else None
    if frame is not None:
        write_csv(frame, root / PROVENANCE_CSV)
        written.append(PROVENANCE_CSV)
    return written


def multiverse_figures(result: AnalysisResult) -> dict[str, Any]:
    """``{"specification_curve": figure}`` when the analysis holds a multiverse, else ``{}``
    (for :func:`synthesis.report.write_report`)."""
    mv = _multiverse(result)
    return {} if mv is None else {MULTIVERSE_FIGURE: mv.plot_curve()}
