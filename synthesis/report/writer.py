"""Writing the report folder: figures, CSV tables, posterior files, report.html, report.md and
run.json, built in a temporary sibling and moved into place (:func:`write_report`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthesis.analysis import mu_prior_records
from synthesis.errors import SynthesisError
from synthesis.outputs import atomic_directory, check_output_target, write_json, write_posterior
from synthesis.report.captions import figure_caption
from synthesis.report.explorer import write_explorer
from synthesis.report.formats import safe_name
from synthesis.report.multiverse import multiverse_figures, write_multiverse_tables
from synthesis.report.provenance import run_record
from synthesis.report.reconcile import reconcile_figures, write_reconcile_tables
from synthesis.report.render import render_report
from synthesis.report.settle import settle_figures, write_settle_tables
from synthesis.report.tables import (
    LEAVE_ONE_OUT_CSV,
    MU_PRIOR_CSV,
    REPORT_MAX_STUDY_ROWS,
    inclusion_records,
    pool_records,
)
from synthesis.spreadsheets import write_csv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from synthesis.analysis import AnalysisResult
    from synthesis.models.results import FitResult

#: The command recorded in the marker of report folders (``report`` and ``run`` write the same).
REPORT_COMMAND = "report"
#: The files written last, after everything they list.
PAGE_FILES: tuple[str, ...] = ("report.html", "report.md", "run.json")


def _write_tables(result: AnalysisResult, root: Path) -> None:
    """decision.csv, sweep_<model>.csv, studies.csv and pools.csv; leave_one_out.csv when the
    pages list only part of that table (more than :data:`REPORT_MAX_STUDY_ROWS` studies)."""
    write_csv(result.decision.to_frame(), root / "decision.csv")
    for key, sweep in result.sweeps.items():
        write_csv(sweep.to_frame(), root / f"sweep_{safe_name(key)}.csv")
    write_csv(result.table.frame, root / "studies.csv")
    write_csv(pd.DataFrame.from_records(pool_records(result)), root / "pools.csv")
    loo = getattr(result.pubbias, "leave_one_out", None) or []
    if len(loo) > REPORT_MAX_STUDY_ROWS:
        write_csv(result.pubbias.to_frame(), root / LEAVE_ONE_OUT_CSV)
    _write_model_choice(result, root)


def _write_model_choice(result: AnalysisResult, root: Path) -> None:
    """The model-choice tables, each part that was computed: model_averaging.csv,
    inclusion_bf.csv and mu_prior_sensitivity.csv, stacking.csv, tipping_grid.csv / tipping_contour.csv / tipping_alpha.csv,
    powerscale.csv and powerscale_alpha.csv."""
    choice = result.model_choice
    if choice is None:
        return
    if choice.averaging is not None:
        write_csv(choice.averaging.to_frame(), root / "model_averaging.csv")
        write_csv(pd.DataFrame.from_records(inclusion_records(result)), root / "inclusion_bf.csv")
    if choice.mu_prior:
        write_csv(pd.DataFrame.from_records(mu_prior_records(choice.mu_prior)), root / MU_PRIOR_CSV)
    if choice.stacking is not None:
        write_csv(choice.stacking.to_frame().reset_index(), root / "stacking.csv")
    if choice.tipping is not None:
        for what in ("grid", "contour", "alpha"):
            write_csv(choice.tipping.to_frame(what), root / f"tipping_{what}.csv")
    if choice.powerscale is not None:
        write_csv(choice.powerscale.to_frame("sensitivity").reset_index(), root / "powerscale.csv")
        write_csv(choice.powerscale.to_frame("alpha"), root / "powerscale_alpha.csv")


def _write_tau_density(fit: FitResult, path: Path) -> None:
    """The tau grid and posterior density of a fit without draws (the exact engine), if it has them."""
    grid, density = fit.tau_grid, fit.tau_density
    if (grid is None or density is None) and "tau" in fit.densities:
        grid, density = fit.densities["tau"]
    if grid is not None and density is not None:
        write_csv(pd.DataFrame({"tau": np.asarray(grid), "density": np.asarray(density)}), path)


def _summary_json(fit: FitResult, studies_csv: Path) -> dict[str, Any]:
    """The fit's summary document; with more than :data:`REPORT_MAX_STUDY_ROWS` study effects
    they are written to ``studies_csv`` (one row per study) and the document names that file
    (``study_hr_csv``) instead of listing them (``study_hr``)."""
    if len(fit.study_effects) <= REPORT_MAX_STUDY_ROWS:
        return fit.to_json()
    write_csv(fit.to_frame("studies").reset_index(), studies_csv)
    doc = replace(fit, study_effects=[]).to_json()
    doc.pop("study_hr", None)
    doc["study_hr_csv"] = studies_csv.name
    return doc


def _write_posteriors(result: AnalysisResult, folder: Path) -> None:
    """Per fit: the DataTree of draws (<key>.nc) or the tau density, and the fit summary JSON
    (its study effects in <key>_studies.csv above :data:`REPORT_MAX_STUDY_ROWS` studies)."""
    folder.mkdir(exist_ok=True)
    for key, fit in result.fits.items():
        name = safe_name(key)
        if fit.posterior is not None:
            write_posterior(fit.posterior, folder / f"{name}.nc")
        else:
            _write_tau_density(fit, folder / f"{name}_tau_density.csv")
        summary = _summary_json(fit, folder / f"{name}_studies.csv")
        write_json(summary, folder / f"{name}_summary.json")


def _save_figures(result: AnalysisResult, root: Path,
                  figures: Mapping[str, Figure]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Save each figure as figures/<stem>.png and .svg; return PNG bytes and captions by stem."""
    from synthesis.plots import save_figure

    figure_png: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for name, fig in figures.items():
        stem = safe_name(name)
        png, _svg = save_figure(fig, root / "figures" / stem)
        figure_png[stem] = png.read_bytes()
        captions[stem] = figure_caption(name, fig, result)
    return figure_png, captions


def _write_all(result: AnalysisResult, root: Path, figures: Mapping[str, Figure]) -> None:
    """Every file of the report into ``root``; the pages and run.json last (run.json lists all)."""
    figure_png, captions = _save_figures(result, root, figures)
    _write_tables(result, root)
    write_reconcile_tables(result, root)
    write_multiverse_tables(result, root)
    write_settle_tables(result, root)
    _write_posteriors(result, root / "posteriors")
    write_explorer(result, root)
    listed = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    run = run_record(result, files=[*listed, *PAGE_FILES])
    page, markdown = render_report(result, figure_png, captions, run)
    (root / "report.html").write_text(page, encoding="utf-8")
    (root / "report.md").write_text(markdown, encoding="utf-8")
    write_json(run, root / "run.json")


def write_report(result: AnalysisResult, out_dir: Path, *, figures: dict[str, Figure] | None = None) -> Path:
    """Write the report folder for ``result`` atomically and return its path.

    Parameters
    ----------
    result
        The analysis (see :class:`synthesis.analysis.AnalysisResult`).
    out_dir
        The report folder. An earlier report there (one this writer made: it carries the
        :data:`synthesis.outputs.MARKER_NAME` marker) is replaced whole; anything else that is
        not an empty folder is refused (:class:`~synthesis.errors.InputError`).
    figures
        Figures to include, keyed by file stem; default :func:`synthesis.plots.standard_figures`.

    Returns
    -------
    Path
        The absolute path of the report folder.

    Notes
    -----
    Everything is written into a temporary sibling folder ``.<name>.tmp-XXXX`` first and then
    renamed into place; on any error the temporary folder is removed and an existing report
    stays as it was.
    """
    out_dir = check_output_target(out_dir, REPORT_COMMAND)
    if any(fit.posterior is not None for fit in result.fits.values()) and find_spec("h5py") is None:
        raise SynthesisError(
            "writing posterior DataTrees needs h5py (h5netcdf >= 1.8 no longer installs it): "
            "pip install 'h5netcdf[h5py]'"
        )
    if figures is None:
        from synthesis.plots import standard_figures

        figures = standard_figures(result) | reconcile_figures(result) | settle_figures(result) | multiverse_figures(result)
    with atomic_directory(out_dir, command=REPORT_COMMAND) as tmp:
        _write_all(result, tmp, figures)
    return out_dir
