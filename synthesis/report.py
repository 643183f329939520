"""The report folder: a self-contained HTML page, the same in Markdown, CSV tables, figures,
posterior files and a ``run.json`` provenance record, written atomically.

Layout of ``<out_dir>/``::

    report.html            self-contained (figures as base64 PNG, inline CSS, no external resources)
    report.md              the same content, figures referenced as figures/<name>.png
    decision.csv           the decision table (DecisionTable.to_frame)
    sweep_<key>.csv        one per prior-sensitivity sweep (SweepResult.to_frame)
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
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import math
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthesis.errors import InputError, SynthesisError
from synthesis.models.results import FitResult
from synthesis.models.spec import INTERVAL_PROB, threshold_key
from synthesis.outputs import atomic_directory, check_output_target, jsonable, write_posterior
from synthesis.spreadsheets import write_csv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from synthesis.analysis import AnalysisResult, DecisionRow

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
PCT = f"{100 * INTERVAL_PROB:g}%"
#: How every interval in the report is described.
INTERVAL_KIND = f"{PCT} equal-tailed credible interval"
#: The command recorded in the marker of report folders (``report`` and ``run`` write the same).
REPORT_COMMAND = "report"
GREEK: dict[str, str] = {"mu": "μ", "tau": "τ", "delta": "δ", "kappa": "κ", "beta": "β"}
#: How the plain-language answer introduces each model of the standard set (in this order).
ANSWER_PHRASES: dict[str, str] = {
    "re_rct": "Among the randomised trials alone (k = {k})",
    "bias": "Using all {k} studies with the non-randomised ones adjusted for design bias",
    "bias_metareg": "Adding {covariate} as a covariate (HR at its mean, k = {k})",
    "re_all": "Pooling all {k} studies as if every design estimated the same effect",
}
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1d1d1d;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scroll{max-width:100%;overflow-x:auto;margin:.8em 0}table{border-collapse:collapse;font-size:.86em}
p.caption{font-size:.9em;color:#333;margin:.8em 0 .2em}.small{font-size:.85em;color:#555}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.alert{border-left:5px solid #b2182b;background:#fbeaea;padding:.6em 1em;margin:1em 0}
.note{border-left:5px solid #c25e00;background:#fdf3e7;padding:.6em 1em;margin:1em 0}
.ok{border-left:5px solid #1b7837;background:#eaf5ec;padding:.6em 1em;margin:1em 0}
.answer{font-size:1.05em;background:#f4f7fb;border-left:5px solid #1b4f8a;padding:.8em 1em}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;margin-top:.4em}
code{background:#f4f4f4;padding:0 .25em}details{margin:.6em 0}
"""
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.dataset.imagesLoaded = ok ? "true" : "false";
});
"""


# --------------------------------------------------------------------------------------------
# small formatting helpers
# --------------------------------------------------------------------------------------------
def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _interval(median: Any, lower: Any, upper: Any) -> str:
    return f"{_num(median)} [{_num(lower)}, {_num(upper)}]"


def _prob(p: Any) -> str:
    """A posterior probability to two decimals; '< 0.01' / '> 0.99' rather than 0.00 / 1.00."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        return _num(p)
    if 0.0 <= value < 0.005:
        return "< 0.01"
    if 0.995 < value <= 1.0:
        return "> 0.99"
    return _num(value, 2)


def _prob_relation(p: Any) -> str:
    """'= 0.42', '< 0.01' or '> 0.99' (to follow 'P(HR < T)' in a sentence)."""
    text = _prob(p)
    return text if text[0] in "<>" else f"= {text}"


def _pvalue(p: Any) -> str:
    """A test's p-value: three decimals, or '< 0.001'."""
    try:
        if 0 <= float(p) < 0.001:
            return "< 0.001"
    except (TypeError, ValueError):
        pass
    return _num(p, 3)


def _as_dict(obj: Any) -> dict[str, Any]:
    """A result object as a dict: its ``to_dict()``, a dataclass's fields, or a mapping."""
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return {"value": str(obj)}


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def _priors_of(fit: FitResult | None) -> dict[str, str]:
    if fit is None:
        return {}
    return fit.spec.priors.labels(fit.spec.parameters)


def _prior_lines(fit: FitResult | None) -> list[str]:
    return [f"{GREEK.get(n, n)} ~ {label}" for n, label in _priors_of(fit).items()]


def _prior_sources(fit: FitResult | None) -> list[str]:
    if fit is None:
        return []
    specs = {n: getattr(fit.spec.priors, n) for n in fit.spec.parameters}
    return [f"{GREEK.get(n, n)}: {p.source}" for n, p in specs.items() if p.source]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------------------------
# what the report says
# --------------------------------------------------------------------------------------------
def _labels(result: AnalysisResult) -> dict[str, str]:
    return {run.key: run.label for run in result.runs}


def _base_key(row_key: str) -> str:
    return row_key.split("@", 1)[0]


def convergence_problems(result: AnalysisResult) -> list[tuple[str, list[str]]]:
    """(model label, diagnostic messages) for every fit whose diagnostics failed."""
    labels = _labels(result)
    out = []
    for key, fit in result.fits.items():
        diag = fit.diagnostics
        if diag is not None and not diag.converged:
            out.append((labels.get(key, key), list(diag.messages) or ["diagnostics failed"]))
    return out


def _warning_groups(result: AnalysisResult) -> tuple[list[str], list[str]]:
    """(data-validation warnings, other warnings not already said by the convergence block)."""
    validation = _dedupe(result.table.warnings)
    failed = [label for label, _ in convergence_problems(result)]
    other = [
        w
        for w in _dedupe(result.warnings)
        if w not in validation and not any(w.startswith(f"{label}:") for label in failed)
    ]
    return validation, other


def question(result: AnalysisResult) -> str:
    """The question the report answers (``provenance['question']`` when the analysis gives one)."""
    given = result.provenance.get("question") if result.provenance else None
    if given:
        return str(given)
    from synthesis.datasets import DATASETS

    ts = ", ".join(f"{t:g}" for t in result.thresholds)
    what = DATASETS[result.name][1] if result.name in DATASETS else f"For the studies in {result.source}"
    return (
        f"{what}: what is the hazard ratio (HR) of a randomised comparison, and how probable is "
        f"a benefit beyond each decision threshold (HR below {ts})?"
    )


def answer(result: AnalysisResult) -> str:
    """The plain-language answer: one sentence per headline model, built from the numbers."""
    rows = [r for r in result.decision.rows if "@" not in r.key]
    order = {key: i for i, key in enumerate(ANSWER_PHRASES)}
    rows.sort(key=lambda r: order.get(r.key, len(order)))
    sentences = []
    for i, row in enumerate(rows):
        phrase = ANSWER_PHRASES.get(row.key, "{label} (k = {k})").format(
            k=row.k, covariate=result.covariate, label=row.label
        )
        probs = "; ".join(f"P(HR < {float(t):g}) {_prob_relation(p)}" for t, p in row.p_hr_below.items())
        s = (
            f"{phrase}, the posterior median HR is {_num(row.hr.median)} "
            f"({INTERVAL_KIND if i == 0 else PCT + ' CrI'} {_num(row.hr.q025)} to {_num(row.hr.q975)})"
        )
        s += f"; {probs}." if probs else "."
        if i == 0 and row.predictive_hr is not None:
            s += (
                f" The HR of a new randomised trial is predicted to lie between "
                f"{_num(row.predictive_hr.q025)} and {_num(row.predictive_hr.q975)} ({PCT} prediction interval)."
            )
        if row.converged is False:
            s += " This fit failed its convergence checks: treat it with caution."
        sentences.append(s)
    if not sentences:
        return "No model was fitted."
    sentences.append(
        "Each result depends on the priors listed beside it in the decision table; the sensitivity "
        "section shows how it moves when the prior on the between-study SD τ changes."
    )
    return " ".join(sentences)


def _thresholds(result: AnalysisResult) -> list[str]:
    return [threshold_key(t) for t in result.thresholds]


def _freq_methods(rows: Sequence[DecisionRow]) -> list[str]:
    return list(dict.fromkeys(m for r in rows for m in r.frequentist))


def _decision_cells(result: AnalysisResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the decision table as text (priors as '; '-joined labels)."""
    rows = result.decision.rows
    methods = _freq_methods(rows)
    header = ["Model", "Priors", "Engine", "k", f"Posterior HR [{PCT} CrI]", f"Predictive HR, new RCT [{PCT} PrI]"]
    header += [f"P(HR < {float(t):g})" for t in _thresholds(result)]
    header += [f"{m.upper()} HR [{PCT} CI]" for m in methods]
    header += ["Converged", "Note"]
    body = []
    for r in rows:
        fit = result.fits.get(_base_key(r.key))
        pred = r.predictive_hr
        cells = [
            r.label,
            "; ".join(_prior_lines(fit)),
            r.engine,
            str(r.k),
            _interval(r.hr.median, r.hr.q025, r.hr.q975),
            _interval(pred.median, pred.q025, pred.q975) if pred is not None else "n/a",
        ]
        cells += [_prob(r.p_hr_below.get(t)) for t in _thresholds(result)]
        cells += [_interval(*r.frequentist[m]) if m in r.frequentist else "n/a" for m in methods]
        cells.append({True: "yes", False: "NO", None: "n/a (exact engine)"}[r.converged])
        cells.append(r.note)
        body.append(cells)
    return header, body


def _sweep_cells(result: AnalysisResult, key: str) -> tuple[list[str], list[list[str]]]:
    sweep = result.sweeps[key]
    has_bias = any(r.bias_prior is not None for r in sweep.rows)
    keys = [threshold_key(t) for t in sweep.thresholds]
    header = ["τ prior"] + (["δ prior"] if has_bias else []) + [f"Posterior HR [{PCT} CrI]"]
    header += [f"P(HR < {float(t):g})" for t in keys] + ["Posterior median τ", "Engine"]
    body = []
    for r in sweep.rows:
        cells = [r.tau_prior] + ([r.bias_prior or "n/a"] if has_bias else [])
        cells.append(_interval(r.hr_median, r.hr_q025, r.hr_q975))
        cells += [_prob(r.p_hr_below.get(t)) for t in keys]
        cells += [_num(r.tau_median, 3), r.engine]
        body.append(cells)
    return header, body


def _sweep_summary(result: AnalysisResult, key: str) -> str:
    """Range over the sweep's rows of the numbers each row holds."""
    sweep = result.sweeps[key]
    if not sweep.rows:
        return "The sweep has no rows."
    meds = [r.hr_median for r in sweep.rows]
    parts = [
        f"Across {len(sweep.rows)} prior settings the posterior median HR ranges from "
        f"{_num(min(meds))} to {_num(max(meds))}"
    ]
    for t in sweep.thresholds:
        ps = [r.p_hr_below.get(threshold_key(t)) for r in sweep.rows]
        ps = [p for p in ps if p is not None]
        if ps:
            parts.append(f"P(HR < {t:g}) from {_prob(min(ps))} to {_prob(max(ps))}")
    engines = ", ".join(f"{n} {e}" for e, n in sweep.engines.items())
    return "; ".join(parts) + f" ({engines + ' fits, ' if engines else ''}{sweep.seconds:.2f} s)."


def _pool_records(result: AnalysisResult) -> list[dict[str, Any]]:
    records = []
    for subset, methods in result.pools.items():
        for name, pooled in (methods or {}).items():
            rec: dict[str, Any] = {"subset": subset, "method": name}
            for k, v in _as_dict(pooled).items():
                if isinstance(v, (list, tuple)):
                    v = "; ".join(str(x) for x in v)
                if k == "method":
                    k = "estimator"
                rec[k] = v
            records.append(rec)
    return records


def _pool_cells(result: AnalysisResult) -> tuple[list[str], list[list[str]]]:
    header = ["Studies", "Method", "k", f"HR [{PCT} CI]", f"{PCT} prediction interval", "τ²", "I² (%)", "Q (p)"]
    body = []
    for rec in _pool_records(result):
        i2 = rec.get("i2")
        body.append([
            str(rec["subset"]),
            str(rec["method"]),
            str(rec.get("k", "n/a")),
            _interval(rec.get("hr"), rec.get("hr_ci_lower"), rec.get("hr_ci_upper")),
            f"{_num(rec.get('pi_hr_lower'))} to {_num(rec.get('pi_hr_upper'))}",
            _num(rec.get("tau2"), 4),
            _num(i2, 1),
            f"{_num(rec.get('q'))} ({_pvalue(rec.get('q_pvalue'))})",
        ])
    return header, body


def _pubbias_blocks(result: AnalysisResult) -> tuple[list[str], tuple[list[str], list[list[str]]] | None, list[str]]:
    """(summary lines, leave-one-out table or None, notes) of the publication-bias diagnostics."""
    d = _as_dict(result.pubbias)
    if not d:
        return [], None, ["no publication-bias diagnostics in this analysis"]
    lines = []
    method = d.get("method", "")
    if d.get("egger"):
        e = d["egger"]
        lines.append(f"Egger's regression test ({method} model): z = {_num(e.get('z'))}, p = {_pvalue(e.get('p'))}.")
    if d.get("begg"):
        b = d["begg"]
        lines.append(f"Begg and Mazumdar's rank correlation: Kendall's τ = {_num(b.get('tau'))}, p = {_pvalue(b.get('p'))}.")
    tf = d.get("trimfill") or {}
    if tf.get("k0") is not None:
        lines.append(
            f"Trim and fill (L0, {method}): {tf['k0']} stud{'y' if tf['k0'] == 1 else 'ies'} filled on the "
            f"{tf.get('side')} side; adjusted HR {_interval(tf.get('hr'), tf.get('hr_ci_lower'), tf.get('hr_ci_upper'))} ({PCT} CI)."
        )
    fsn = d.get("failsafe_n") or {}
    if fsn.get("rosenthal") is not None:
        lines.append(f"Rosenthal's fail-safe N: {fsn['rosenthal']} (combined p = {_pvalue(fsn.get('p'))}).")
    loo = d.get("leave_one_out") or []
    table = None
    if loo:
        header = ["Study left out", f"HR [{PCT} CI]", "τ²", "I² (%)"]
        body = [
            [str(r.get("study")), _interval(r.get("hr"), r.get("hr_ci_lower"), r.get("hr_ci_upper")),
             _num(r.get("tau2"), 4), _num(r.get("i2"), 1)]
            for r in loo
        ]
        table = (header, body)
    return lines, table, [str(n) for n in d.get("notes") or []]


def _metareg_blocks(result: AnalysisResult) -> tuple[list[str], tuple[list[str], list[list[str]]] | None]:
    d = _as_dict(result.metareg)
    if not d:
        return [], None
    lines = [
        f"Frequentist mixed-effects meta-regression ({d.get('method', '')}"
        f"{', Knapp-Hartung' if d.get('hksj') else ''}; k = {d.get('k')}"
        f"{', ' + str(d.get('dropped')) + ' studies without the covariate dropped' if d.get('dropped') else ''}): "
        f"residual τ² = {_num(d.get('tau2'), 4)}, QM p = {_pvalue(d.get('qm_pvalue'))}, "
        f"R² = {_num(d.get('r2'), 1)}%."
    ]
    coefs = d.get("coefficients") or {}
    header = ["Coefficient", "Estimate (log HR)", f"{PCT} CI", "p"]
    body = [
        [name, _num(c.get("estimate"), 3), f"{_num(c.get('ci_lower'), 3)} to {_num(c.get('ci_upper'), 3)}", _pvalue(c.get("pvalue"))]
        for name, c in coefs.items()
    ]
    lines += [str(n) for n in d.get("notes") or []]
    return lines, (header, body) if body else None


def _caption(name: str, fig: Figure, result: AnalysisResult) -> str:
    labels = _labels(result)
    if name == "forest":
        return (
            f"Posterior forest plot. Each study's observed HR with its {PCT} confidence interval (black) and "
            f"its shrunken posterior HR with its {INTERVAL_KIND} (red); diamonds: pooled posterior HR of each "
            f"model ({INTERVAL_KIND}); translucent bars: {PCT} prediction interval of the HR of a new "
            "randomised trial. The priors are written under each model label. Log scale."
        )
    if name.startswith("sensitivity_"):
        key = name.removeprefix("sensitivity_")
        return (
            f"Prior sensitivity of '{labels.get(key, key)}': posterior median HR with its {INTERVAL_KIND} "
            "(band) and P(HR < T), against the prior median of τ (log scale); one colour per τ-prior family, "
            "one line style per bias prior."
        )
    if name.startswith("bias_sensitivity_"):
        key = name.removeprefix("bias_sensitivity_")
        return (
            f"Bias-prior sensitivity of '{labels.get(key, key)}': posterior median HR of a randomised comparison "
            f"with its {INTERVAL_KIND} (band) and P(HR < T) against the SD of the design-bias prior δ (log scale), "
            "one line per prior mean (0: no expected direction; log 0.8: non-randomised studies expected to "
            "exaggerate the benefit by 20%), at the default τ prior."
        )
    if name == "funnel":
        method = getattr(result.pubbias, "method", "REML")
        return (
            f"Funnel plot: observed log HR against its standard error (inverted), centred on the pooled {method} "
            "estimate with pseudo 95% limits (estimate ± 1.96 SE); open circles: studies imputed by trim and fill."
        )
    if name == "bubble":
        return (
            f"Meta-regression on {result.covariate}: observed study HRs (bubble area ∝ 1/SE²) and the posterior "
            f"median HR of a randomised comparison with its {INTERVAL_KIND} across covariate values; studies "
            "without the covariate (imputed inside the model) are in the strip at the right."
        )
    if name.startswith("prior_posterior"):
        return (
            "Prior (dashed, labelled) and posterior (solid) densities of the between-study SD τ and of "
            "the design bias δ (log HR scale), one row per model; the posterior densities are the engines' own."
        )
    return fig.get_suptitle() or name


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------
def _source_path(result: AnalysisResult) -> Path | None:
    """The input file: ``provenance['source_path']``, the source string itself when it names a
    file, or the bundled dataset a display name like ``dnmbc_lrt (bundled dnmbc_lrt.csv)`` names."""
    given = result.provenance.get("source_path") if result.provenance else None
    candidates = [given] if given else []
    source = re.sub(r" \[[a-z]+\]$", "", str(result.source))
    candidates.append(source)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    m = re.match(r"^(\S+) \(bundled ", source)
    if m:
        from synthesis.datasets import dataset_path

        try:
            return dataset_path(m.group(1))
        except InputError:
            return None
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_versions() -> dict[str, str | None]:
    """Python and the installed versions of :data:`PACKAGES` (``None`` when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        out["dnmbc-synthesis"] = metadata.version("dnmbc-synthesis")
    except metadata.PackageNotFoundError:
        out["dnmbc-synthesis"] = None
    return out


def run_record(result: AnalysisResult, *, files: Sequence[str] = ()) -> dict[str, Any]:
    """The ``run.json`` document: inputs, priors, seeds, versions, diagnostics, thresholds,
    timing, warnings (JSON-ready)."""
    path = _source_path(result)
    labels = _labels(result)
    validation, other = _warning_groups(result)
    models = []
    for run in result.runs:
        fit = result.fits.get(run.key)
        entry: dict[str, Any] = {
            "key": run.key,
            "label": run.label,
            "subset": run.subset,
            **run.spec.describe(),
        }
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
        models.append(entry)
    record = {
        "name": result.name,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "source": result.source,
            "path": str(path) if path else None,
            "sha256": _sha256(path) if path else None,
            "bytes": path.stat().st_size if path else None,
            "k": result.table.k,
            "excluded": result.table.excluded,
            "covariate": result.covariate,
        },
        "thresholds": list(result.thresholds),
        "interval": {"prob": INTERVAL_PROB, "kind": "equal-tailed"},
        "models": models,
        "priors": {key: _priors_of(fit) for key, fit in result.fits.items()},
        "seeds": {"analysis": result.seed, "fits": {key: fit.seed for key, fit in result.fits.items()}},
        "packages": package_versions(),
        "diagnostics": {
            key: fit.diagnostics.to_dict() if fit.diagnostics is not None else None
            for key, fit in result.fits.items()
        },
        "convergence_problems": [
            {"model": label, "messages": msgs} for label, msgs in convergence_problems(result)
        ],
        "sweeps": {
            key: {"label": labels.get(key, key), "fits": len(s.rows), "seconds": s.seconds, "engines": dict(s.engines)}
            for key, s in result.sweeps.items()
        },
        "timing": dict(result.timing),
        "warnings": _dedupe(list(validation) + list(result.warnings)),
        "validation_warnings": validation,
        "other_warnings": other,
        "provenance": dict(result.provenance or {}),
        "files": sorted(files),
    }
    return jsonable(record)


# --------------------------------------------------------------------------------------------
# HTML and Markdown
# --------------------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]], *, table_id: str | None = None,
                caption: str | None = None, multiline_cols: Iterable[int] = (),
                notes_col: int | None = None) -> str:
    """An HTML table (in a horizontally scrolling box). Cells of ``multiline_cols`` break at
    each '; '; column ``notes_col`` is written under the first cell in small type instead."""
    multi = set(multiline_cols)
    attrs = f' id="{_e(table_id)}"' if table_id else ""
    out = [f'<p class="caption">{_e(caption)}</p>'] if caption else []
    out.append(f'<div class="scroll"><table{attrs}>')
    shown = [j for j in range(len(header)) if j != notes_col]
    out.append("<thead><tr>" + "".join(f"<th>{_e(header[j])}</th>" for j in shown) + "</tr></thead><tbody>")
    for row in body:
        cells = []
        for j in shown:
            c = row[j]
            text = "<br>".join(_e(part) for part in str(c).split("; ")) if j in multi else _e(c)
            if j == shown[0] and notes_col is not None and row[notes_col]:
                notes = "<br>".join(_e(part) for part in str(row[notes_col]).split("; "))
                text += f'<br><span class="small">{notes}</span>'
            cls = ' class="num"' if re.match(r"^[-0-9.\[\], n/a<>]+$", str(c)) else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


#: "<" that would open raw HTML in Markdown (a tag, closing tag, comment, declaration or
#: autolink): CommonMark passes such HTML through to the page.
_MD_HTML_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def _md(text: Any) -> str:
    """Text for the Markdown report: no raw HTML can come through (study names, file names and
    covariate names are the user's; report.html escapes them with :func:`_e`).

    Every "<" that could open a tag, comment or autolink becomes ``&lt;`` (which Markdown shows
    as "<"); other text, e.g. "P(HR < 0.8)", stays as written.
    """
    return _MD_HTML_OPEN.sub("&lt;", str(text))


def _md_line(text: Any) -> str:
    """:func:`_md` on one line (a list item, heading or caption: a line break would end it)."""
    return " ".join(_md(text).splitlines())


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def cell(c: Any) -> str:
        return _md(c).replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _figure_groups(names: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {"main": [], "sweeps": [], "pubbias": []}
    for n in names:
        if n.startswith(("sensitivity_", "bias_sensitivity_")):
            groups["sweeps"].append(n)
        elif n == "funnel":
            groups["pubbias"].append(n)
        else:
            groups["main"].append(n)
    order = {"forest": 0, "bubble": 1}
    groups["main"].sort(key=lambda n: order.get(n, 2))
    return groups


class _Doc:
    """Builds the HTML and the Markdown of the report side by side."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        ident = f' id="{_e(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{_e(text)}</h{level}>")
        self.md.append("#" * level + " " + _md_line(text) + "\n")

    def para(self, text: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{attr}>{_e(text)}</p>")
        self.md.append(_md(text) + "\n")

    def box(self, cls: str, title: str, items: Sequence[str]) -> None:
        lis = "".join(f"<li>{_e(i)}</li>" for i in items)
        self.html.append(f'<div class="{cls}"><strong>{_e(title)}</strong><ul>{lis}</ul></div>')
        self.md.append(f"> **{_md_line(title)}**\n>\n" + "\n".join(f"> - {_md_line(i)}" for i in items) + "\n")

    def bullets(self, items: Sequence[str]) -> None:
        if not items:
            return
        self.html.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>")
        self.md.append("\n".join(f"- {_md_line(i)}" for i in items) + "\n")

    def table(self, header: Sequence[str], body: Sequence[Sequence[str]], *, table_id: str | None = None,
              caption: str | None = None, collapsed: str | None = None,
              multiline_cols: Iterable[int] = (), notes_col: int | None = None) -> None:
        block = _html_table(header, body, table_id=table_id, caption=caption, multiline_cols=multiline_cols,
                            notes_col=notes_col)
        if collapsed:
            block = f"<details><summary>{_e(collapsed)}</summary>{block}</details>"
        self.html.append(block)
        if caption:
            self.md.append(f"*{_md_line(caption)}*\n")
        self.md.append(_md_table(header, body) + "\n")

    def figure(self, name: str, png: bytes, caption: str) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.html.append(
            f'<figure id="fig-{_e(name)}"><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)} (Vector version: figures/{_e(name)}.svg.)</figcaption></figure>"
        )
        self.md.append(f"![{name}](figures/{name}.png)\n\n*{_md_line(caption)}* ([SVG](figures/{name}.svg))\n")


def _render(result: AnalysisResult, figure_png: Mapping[str, bytes], captions: Mapping[str, str],
            run: Mapping[str, Any]) -> tuple[str, str]:
    doc = _Doc()
    labels = _labels(result)
    title = f"Evidence synthesis report: {result.name}"
    doc.heading(1, title)
    doc.para(f"Generated {run['created_utc']} from {result.source}; every interval is a {INTERVAL_KIND} "
             f"unless marked as a frequentist {PCT} confidence interval (CI) or a {PCT} prediction interval (PrI).")

    problems = convergence_problems(result)
    validation, other = _warning_groups(result)
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

    doc.heading(2, "Question", "question")
    doc.para(question(result))
    doc.heading(2, "Answer in plain language", "answer")
    doc.para(answer(result), cls="answer")

    doc.heading(2, "Decision table", "decision")
    header, body = _decision_cells(result)
    doc.table(header, body, table_id="decision-table", notes_col=1, caption=(
        f"Posterior median HR with its {INTERVAL_KIND} (CrI); predictive HR of a new randomised trial with its "
        f"{PCT} equal-tailed prediction interval (PrI); P(HR < T): posterior probability; frequentist pooled HRs "
        f"of the same studies with {PCT} confidence intervals (DL, REML, REML with Hartung-Knapp-Sidik-Jonkman)."))

    groups = _figure_groups(list(figure_png))
    if groups["main"]:
        doc.heading(2, "Figures", "figures")
        for name in groups["main"]:
            doc.figure(name, figure_png[name], captions[name])

    doc.heading(2, "Prior sensitivity", "sensitivity")
    if not result.sweeps:
        doc.para("No sweep was run.")
    for key in result.sweeps:
        doc.heading(3, labels.get(key, key))
        doc.para(_sweep_summary(result, key))
        for name in groups["sweeps"]:
            if name == f"sensitivity_{key}":
                doc.figure(name, figure_png[name], captions[name])
        header, body = _sweep_cells(result, key)
        doc.table(header, body, caption=f"Every fit of the sweep ({INTERVAL_KIND}); file sweep_{_safe_name(key)}.csv.",
                  collapsed=f"All {len(body)} fits of the sweep")
    for name in groups["sweeps"]:
        if name.removeprefix("sensitivity_") not in result.sweeps:
            doc.figure(name, figure_png[name], captions[name])

    doc.heading(2, "Frequentist comparisons", "frequentist")
    header, body = _pool_cells(result)
    doc.table(header, body, caption=f"Random-effects pooling of the log HR ({PCT} CI; prediction interval for a new study).")
    lines, coef_table = _metareg_blocks(result)
    if lines:
        doc.bullets(lines)
    if coef_table:
        doc.table(*coef_table, caption="Meta-regression coefficients (log HR per unit of the covariate).")

    doc.heading(2, "Publication-bias diagnostics", "pubbias")
    lines, loo, notes = _pubbias_blocks(result)
    doc.bullets(lines)
    for name in groups["pubbias"]:
        doc.figure(name, figure_png[name], captions[name])
    if loo:
        doc.table(*loo, caption="Leave-one-out pooled HRs.", collapsed="Leave-one-out analysis")
    if notes:
        doc.bullets([f"Note: {n}" for n in notes])

    doc.heading(2, "Data-validation warnings", "warnings")
    if validation or other:
        doc.bullets(list(validation) + list(other))
    else:
        doc.para("None: every study passed validation without a warning.")

    doc.heading(2, "Provenance", "provenance")
    inputs = run["inputs"]
    prov = [
        f"Input: {inputs['source']} ({inputs['k']} studies in the analysis set, {inputs['excluded']} excluded rows)",
        f"Input file: {inputs['path'] or 'not found on disk'}; SHA-256 {inputs['sha256'] or 'n/a'}",
        f"Seed: {result.seed}",
        f"Decision thresholds: {', '.join(f'{t:g}' for t in result.thresholds)}",
        "Timing (s): " + ", ".join(f"{k} {v:g}" for k, v in result.timing.items()),
        "Packages: " + ", ".join(f"{k} {v}" for k, v in run["packages"].items() if v),
    ]
    doc.bullets(prov)
    prior_rows = [[labels.get(k, k), "; ".join(_prior_lines(f)), "; ".join(_prior_sources(f)) or "none"]
                  for k, f in result.fits.items()]
    doc.table(["Model", "Priors", "Sources of empirical priors"], prior_rows, caption="Priors of every model.",
              multiline_cols=(1, 2))
    doc.para("Files: decision.csv, studies.csv, pools.csv, sweep_<model>.csv, figures/ (PNG and SVG), "
             "posteriors/ (NetCDF DataTrees of MCMC fits, tau densities of exact fits, fit summaries), run.json.")

    body_html = "\n".join(doc.html)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body data-images-loaded=\"pending\">\n{body_html}\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
    return page, "\n".join(doc.md)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _write_tables(result: AnalysisResult, root: Path) -> None:
    write_csv(result.decision.to_frame(), root / "decision.csv")
    for key, sweep in result.sweeps.items():
        write_csv(sweep.to_frame(), root / f"sweep_{_safe_name(key)}.csv")
    write_csv(result.table.frame, root / "studies.csv")
    write_csv(pd.DataFrame.from_records(_pool_records(result)), root / "pools.csv")


def _write_posteriors(result: AnalysisResult, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for key, fit in result.fits.items():
        name = _safe_name(key)
        if fit.posterior is not None:
            write_posterior(fit.posterior, folder / f"{name}.nc")
        else:
            grid, density = fit.tau_grid, fit.tau_density
            if (grid is None or density is None) and "tau" in fit.densities:
                grid, density = fit.densities["tau"]
            if grid is not None and density is not None:
                write_csv(
                    pd.DataFrame({"tau": np.asarray(grid), "density": np.asarray(density)}),
                    folder / f"{name}_tau_density.csv",
                )
        (folder / f"{name}_summary.json").write_text(
            json.dumps(jsonable(fit.to_json()), indent=2, allow_nan=False) + "\n"
        )


def _write_all(result: AnalysisResult, root: Path, figures: Mapping[str, Figure]) -> None:
    from synthesis.plots import save_figure

    figure_png: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for name, fig in figures.items():
        stem = _safe_name(name)
        png, _svg = save_figure(fig, root / "figures" / stem)
        figure_png[stem] = png.read_bytes()
        captions[stem] = _caption(name, fig, result)
    _write_tables(result, root)
    _write_posteriors(result, root / "posteriors")
    listed = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    listed += ["report.html", "report.md", "run.json"]
    run = run_record(result, files=listed)
    page, markdown = _render(result, figure_png, captions, run)
    (root / "report.html").write_text(page, encoding="utf-8")
    (root / "report.md").write_text(markdown, encoding="utf-8")
    (root / "run.json").write_text(json.dumps(run, indent=2, allow_nan=False) + "\n", encoding="utf-8")


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

        figures = standard_figures(result)
    with atomic_directory(out_dir, command=REPORT_COMMAND) as tmp:
        _write_all(result, tmp, figures)
    return out_dir
