"""The report folder: a self-contained HTML page, the same in Markdown, CSV tables, figures,
posterior files and a ``run.json`` provenance record, written atomically.

Layout of ``<out_dir>/``::

    report.html            self-contained (figures as base64 PNG, inline CSS, no external resources)
    report.md              the same content, figures referenced as figures/<name>.png
    decision.csv           the decision table (DecisionTable.to_frame)
    sweep_<key>.csv        one per prior-sensitivity sweep (SweepResult.to_frame)
    model_averaging.csv    posterior model probabilities (AveragingResult.to_frame)
    inclusion_bf.csv       inclusion Bayes factors with their evidence words
    mu_prior_sensitivity.csv   the model averaging under each mu prior normal(0, s) (mu_prior_records)
    stacking.csv           the bias variants' LOO and stacking weights (VariantComparison.to_frame)
    tipping_grid.csv, tipping_contour.csv, tipping_alpha.csv   the tipping-point analysis
    powerscale.csv, powerscale_alpha.csv                       power-scaling sensitivity
    studies.csv            the normalised analysis table (log_hr, se, design, covariates, ...)
    pools.csv              frequentist pooled results (one row per subset and method)
    figures/<name>.png|svg
    posteriors/<key>.nc              ArviZ DataTree of a PyMC fit (h5netcdf)
    posteriors/<key>_tau_density.csv tau grid and posterior density of an exact fit
    posteriors/<key>_summary.json    the fit's ``fit --json`` document
    run.json               inputs (path, sha256), priors, seeds, package versions, diagnostics,
                           thresholds, timing, warnings
    .synthesis-output.json the marker of a synthesis output folder (synthesis.outputs)

The folder is built in a temporary sibling and moved into place (:func:`synthesis.outputs.
atomic_directory`): an earlier report is replaced whole or left untouched, and a folder that is
not an earlier report is refused. The report reads
:class:`~synthesis.analysis.AnalysisResult` and computes no statistics; every number shown is
one the result holds.

Modules, one per job:

- :mod:`~synthesis.report.formats`: how numbers, intervals, probabilities and priors are written;
- :mod:`~synthesis.report.narrative`: the question, the plain-language answer, convergence
  problems, warnings, sweep summaries;
- :mod:`~synthesis.report.captions`: the figure captions;
- :mod:`~synthesis.report.tables`: the cells of every table;
- :mod:`~synthesis.report.console`: the decision table as ``run`` and ``report`` print it;
- :mod:`~synthesis.report.provenance`: ``run.json`` (input hash, package versions, seeds);
- :mod:`~synthesis.report.document`: the HTML and Markdown builder;
- :mod:`~synthesis.report.render`: the sections of the page;
- :mod:`~synthesis.report.writer`: the folder, written atomically (:func:`write_report`).
"""

from synthesis.report.console import console_decision_table
from synthesis.report.formats import INTERVAL_KIND
from synthesis.report.narrative import answer, convergence_problems, question
from synthesis.report.provenance import PACKAGES, package_versions, run_record
from synthesis.report.render import render_report
from synthesis.report.writer import REPORT_COMMAND, write_report

__all__ = [
    "INTERVAL_KIND",
    "PACKAGES",
    "REPORT_COMMAND",
    "answer",
    "console_decision_table",
    "convergence_problems",
    "package_versions",
    "question",
    "render_report",
    "run_record",
    "write_report",
]
