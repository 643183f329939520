"""The ``run.json`` provenance record: the input file and its SHA-256, priors, seeds, package
versions, diagnostics, thresholds, timing and warnings of one analysis."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthesis.base import INTERVAL_PROB
from synthesis.outputs import jsonable
from synthesis.report.formats import priors_of
from synthesis.report.narrative import convergence_problems, dedupe, model_labels, warning_groups

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult, ModelRun
    from synthesis.models.results import FitResult

#: Packages whose versions run.json records (distribution names).
PACKAGES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "pandas",
    "pymc",
    "pytensor",
    "nutpie",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "arviz-plots",
    "xarray",
    "h5netcdf",
    "matplotlib",
)
#: This tool's distribution name.
DISTRIBUTION = "dnmbc-synthesis"


def source_path(result: AnalysisResult) -> Path | None:
    """The input file of an analysis (:attr:`AnalysisResult.source_path`, else the path its
    table was read from), or ``None`` when it is not on disk.

    Examples
    --------
    >>> import tempfile
    >>> from types import SimpleNamespace
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({"study": ["A", "B", "C"], "hr": [0.8, 0.7, 1.1],
    ...                       "ci_lower": [0.6, 0.5, 0.8], "ci_upper": [1.07, 0.98, 1.51]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "studies.csv"
    ...     frame.to_csv(path, index=False)
    ...     # a stand-in for an AnalysisResult: only the attributes this function reads
    ...     result = SimpleNamespace(source_path=None, table=syn.load_studies(path))
    ...     source_path(result) == path.resolve()
    True
    >>> print(source_path(result))  # the file is gone
    None
    """
    for given in (result.source_path, result.table.path):
        if given is not None and Path(given).is_file():
            return Path(given).resolve()
    return None


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "studies.csv"
    ...     _ = path.write_bytes(b"abc")
    ...     sha256(path)
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Python, the installed versions of :data:`PACKAGES` and of this tool.

    Returns
    -------
    dict
        Name -> version (``None`` for a package that is not installed).

    Examples
    --------
    >>> versions = package_versions()
    >>> list(versions)[:3], versions["python"].count(".")
    (['python', 'numpy', 'scipy'], 2)
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    out |= {name: _version(name) for name in PACKAGES}
    out[DISTRIBUTION] = _version(DISTRIBUTION)
    return out


def _model_entry(run: ModelRun, fit: FitResult | None) -> dict[str, Any]:
    """One model of run.json: its spec and, once fitted, engine, priors, seed, diagnostics."""
    entry: dict[str, Any] = {"key": run.key, "label": run.label, "subset": run.subset, **run.spec.describe()}
    if fit is not None:
        entry |= {
            "engine": fit.engine,
            "k": fit.k,
            "priors_detail": fit.spec.priors.to_dict(fit.spec.parameters),
            "seed": fit.seed,
            "timing": dict(fit.timing),
            "diagnostics": fit.diagnostics.to_dict() if fit.diagnostics is not None else None,
            "imputed": fit.imputed,
            "notes": list(fit.notes),
        }
    return entry


def _inputs(result: AnalysisResult) -> dict[str, Any]:
    """The input of run.json: source, file path, SHA-256, size, studies used and excluded."""
    path = source_path(result)
    return {
        "source": result.source,
        "path": str(path) if path else None,
        "sha256": sha256(path) if path else None,
        "bytes": path.stat().st_size if path else None,
        "k": result.table.k,
        "excluded": result.table.excluded,
        "covariate": result.covariate,
    }


def run_record(result: AnalysisResult, *, files: Sequence[str] = ()) -> dict[str, Any]:
    """The ``run.json`` document of an analysis.

    Parameters
    ----------
    result
        The analysis.
    files
        The files of the report folder (listed sorted).

    Returns
    -------
    dict
        Inputs, priors, seeds, package versions, diagnostics, thresholds, timing and warnings,
        JSON-ready (:func:`synthesis.outputs.jsonable`).

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({
    ...     "study": ["T1", "T2", "T3", "O1", "O2", "O3"],
    ...     "design": ["rct", "rct", "rct", "retrospective", "retrospective", "prospective"],
    ...     "hr": [0.95, 0.85, 1.05, 0.65, 0.6, 0.7],
    ...     "ci_lower": [0.7, 0.6, 0.8, 0.55, 0.5, 0.5], "ci_upper": [1.29, 1.2, 1.38, 0.77, 0.72, 0.98]})
    >>> record = run_record(syn.analyse(frame, name="example"), files=["report.md", "report.html"])
    >>> record["name"], record["inputs"]["k"], [m["key"] for m in record["models"]]
    ('example', 6, ['re_all', 're_rct', 'bias'])
    >>> record["priors"]["bias"]["tau"], record["files"], record["convergence_problems"]
    ('half-normal(scale=0.5)', ['report.html', 'report.md'], [])
    """
    labels = model_labels(result)
    validation, other = warning_groups(result)
    diagnostics = {
        key: fit.diagnostics.to_dict() if fit.diagnostics is not None else None for key, fit in result.fits.items()
    }
    record = {
        "name": result.name,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": _inputs(result),
        "thresholds": list(result.thresholds),
        "interval": {"prob": INTERVAL_PROB, "kind": "equal-tailed"},
        "models": [_model_entry(run, result.fits.get(run.key)) for run in result.runs],
        "priors": {key: priors_of(fit) for key, fit in result.fits.items()},
        "seeds": {"analysis": result.seed, "fits": {key: fit.seed for key, fit in result.fits.items()}},
        "packages": package_versions(),
        "diagnostics": diagnostics,
        "convergence_problems": [{"model": label, "messages": msgs} for label, msgs in convergence_problems(result)],
        "sweeps": {
            key: {"label": labels.get(key, key), "fits": len(s.rows), "seconds": s.seconds, "engines": dict(s.engines)}
            for key, s in result.sweeps.items()
        },
        "timing": dict(result.timing),
        "warnings": dedupe(list(validation) + list(result.warnings)),
        "validation_warnings": validation,
        "other_warnings": other,
        "provenance": dict(result.provenance or {}),
        "files": sorted(files),
    }
    return jsonable(record)
