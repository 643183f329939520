r"""Multiverse analysis: every combination of the curation switches x models x priors.

A *specification* is one curated study table (one alternative of each curation switch of
``data/curation/switches.csv``, built by :func:`synthesis.bundled.build_dnmbc_lrt.build_text`),
one model the exact engine covers and one prior of each kind the model has:

* models (:data:`MULTIVERSE_MODELS`): random effects on all studies (``re``), random effects on
  the randomised trials only (``re-rct``), the additive design-bias model (``bias``), the
  down-weighting bias variant with alpha = :data:`DOWNWEIGHT_ALPHA` (``bias-downweight``) and
  the common-effect model (``common-effect``, tau = 0: no tau prior);
* tau priors :data:`MULTIVERSE_TAU_PRIORS` (every model with tau) and bias priors
  :data:`MULTIVERSE_BIAS_PRIORS` (the additive bias model).

Every specification is fitted exactly (:mod:`synthesis.models.exact`): tables that give the same
numbers for a model (e.g. the RCT-only model under switches that only touch observational rows)
are fitted once, and the tau priors of one table share one marginal likelihood on one quadrature
grid (:func:`synthesis.models.exact.sweep_tau_priors`).

Summaries (Simonsohn, Simmons & Nelson 2020, Specification curve analysis, Nat Hum Behav
4:1208-14, doi:10.1038/s41562-020-0912-z): the specification curve (specifications sorted by
``P(HR < T)``), the share of specifications with ``P(HR < T) > 0.5`` and ``> 0.9``, and per switch

.. math::

    \text{max shift}_s = \max_{a, b \text{ differ only in } s} |P_a - P_b|,

over every pair of specifications that differ only in switch ``s`` (all other switches, the model
and the priors equal); the same for the posterior median HR. For the modelling dimensions the
same definition is used (``model`` compares models at equal switches and tau prior, whatever the
bias prior).

On a user's CSV only the model and prior dimensions apply (there are no curation switches).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthesis.base import DEFAULT_THRESHOLDS, REFERENCE_DESIGN
from synthesis.errors import InputError
from synthesis.models.spec import ModelData, ModelSpec, check_thresholds, threshold_key
from synthesis.studies import SUBSETS, StudyTable, se_from_ci

#: Models of the multiverse (all fitted by the exact engine).
MULTIVERSE_MODELS: tuple[str, ...] = ("re", "re-rct", "bias", "bias-downweight", "common-effect")
#: How each model is named in tables and figures.
MODEL_LABELS: dict[str, str] = {
    "re": "Random effects, all",
    "re-rct": "Random effects, RCTs",
    "bias": "Design-bias adjusted",
    "bias-downweight": "Down-weighted non-randomised",
    "common-effect": "Common effect, all",
}
#: tau priors: weakly to moderately informative half-normal and half-Cauchy scales and the
#: Turner et al. (2015) all-cause-mortality log-normal prior.
MULTIVERSE_TAU_PRIORS: tuple[str, ...] = (
    "halfnormal(0.1)", "halfnormal(0.5)", "halfcauchy(0.5)", "turner2015-acm-nonpharm",
)
#: Bias priors of the additive bias model: centred at 0 with SD 0.25 and 0.5, and centred at
#: log(0.8) = -0.223 (non-randomised studies exaggerating the benefit by 20%) with SD 0.5.
MULTIVERSE_BIAS_PRIORS: tuple[str, ...] = ("normal(0, 0.25)", "normal(0, 0.5)", "normal(-0.223, 0.5)")
#: Power-prior weight of a non-randomised study in the ``bias-downweight`` model.
DOWNWEIGHT_ALPHA = 0.5
#: Minimum tau-quadrature nodes per fit (the exact engine's default is 257). Over the bundled
#: multiverse's priors the shared grid is several times finer than this anyway; the answers agree
#: with the default grid's to 1e-12 (tests/test_multiverse.py) at about 25% less CPU.
MULTIVERSE_GRID = 65
#: Levels L of the reported shares of specifications with P(HR < T) > L.
SHARE_LEVELS: tuple[float, ...] = (0.5, 0.9)
#: Label of the tau prior of a model without tau, and of the bias prior of a model without delta.
NO_PRIOR = "-"
#: Columns of the specification frame that name the modelling choices.
MODEL_COLUMNS: tuple[str, ...] = ("model", "tau_prior", "bias_prior")
#: Columns of the study table kept for the multiverse (everything the effect and design need).
_TABLE_COLUMNS: tuple[str, ...] = ("study", "hr", "ci_lower", "ci_upper", "ci_level", "design", "include", "se_method")


@dataclass(frozen=True)
class _Arrays:
    """The numbers a model needs from one curated table (one subset)."""

    studies: tuple[str, ...]
    y: np.ndarray
    se: np.ndarray
    designs: tuple[str | None, ...]

    def key(self) -> bytes:
        return repr((self.studies, self.designs)).encode() + self.y.tobytes() + self.se.tobytes()

    def model_data(self, source: str) -> ModelData:
        k = len(self.y)
        nr = np.array([d is not None and d != REFERENCE_DESIGN for d in self.designs], dtype=bool)
        return ModelData(
            studies=self.studies, y=self.y, se=self.se, nonrandomised=nr, designs=self.designs,
            covariates=(), x=np.zeros((k, 0)), centres=np.zeros(0), source=source,
        )

    def subset(self, which: str) -> _Arrays:
        if which == "all":
            return self
        keep = [(d == REFERENCE_DESIGN) == (which == "rct") for d in self.designs]
        idx = np.flatnonzero(keep)
        return _Arrays(
            tuple(self.studies[i] for i in idx), self.y[idx], self.se[idx], tuple(self.designs[i] for i in idx)
        )


def table_arrays(table: str | Sequence[Mapping[str, str]]) -> _Arrays:
    """The included studies of a curated table (CSV text, or its rows as dicts of strings) as log
    HRs and SEs, computed as the loader does (:func:`synthesis.studies.se_from_ci` with each
    row's ``ci_level`` and ``se_method``).

    Examples
    --------
    >>> from synthesis.bundled.build_dnmbc_lrt import build_text
    >>> a = table_arrays(build_text())
    >>> len(a.y), a.designs[0], round(float(a.se[0]), 4)
    (17, 'rct', 0.1284)
    """
    rows = csv.DictReader(io.StringIO(table)) if isinstance(table, str) else table
    studies, y, se, designs = [], [], [], []
    for r in rows:
        if r["include"].strip().lower() != "true":
            continue
        hr, lo, hi = float(r["hr"]), float(r["ci_lower"]), float(r["ci_upper"])
        level = float(r["ci_level"]) if r.get("ci_level", "").strip() else 0.95
        method = (r.get("se_method") or "symmetric").strip().lower() or "symmetric"
        studies.append(r["study"])
        y.append(math.log(hr))
        se.append(se_from_ci(hr, lo, hi, level=level, method=method))
        designs.append(r["design"].strip().lower() or None)
    return _Arrays(tuple(studies), np.array(y), np.array(se), tuple(designs))


def _arrays_of(table: StudyTable) -> _Arrays:
    return _Arrays(tuple(table.studies), np.asarray(table.y, float), np.asarray(table.se, float), tuple(table.designs))


@functools.cache
def _spec(model: str) -> ModelSpec:
    """The model specification of a multiverse model (default priors; built once per process)."""
    if model in ("re", "re-rct"):
        return ModelSpec("re")
    if model == "bias":
        return ModelSpec("bias")
    if model == "bias-downweight":
        return ModelSpec("bias", bias_variant="downweight", alpha=DOWNWEIGHT_ALPHA)
    if model == "common-effect":
        return ModelSpec("re", heterogeneity=False)
    raise InputError(f"unknown multiverse model {model!r}; choose from {', '.join(MULTIVERSE_MODELS)}")


def _applicable(model: str, arrays: _Arrays, subset: str) -> str | None:
    """``None`` if ``model`` can be fitted to ``arrays``, else why not."""
    nr = [d is not None and d != REFERENCE_DESIGN for d in arrays.designs]
    if model == "re-rct":
        if subset != "all":
            return "the RCT-only model duplicates --subset"
        if sum(1 for d in arrays.designs if d == REFERENCE_DESIGN) < 2:
            return "fewer than 2 randomised studies"
        if not any(nr):
            return "every study is randomised (the same as re)"
    if model in ("bias", "bias-downweight"):
        if any(d is None for d in arrays.designs):
            return "no design column"
        if all(nr) or not any(nr):
            return "needs both randomised and non-randomised studies"
    return None


def _fit_unit(job: tuple) -> tuple[list[tuple[str, str, float, float, float, float]], list[str]]:
    """Worker entry point (top level, so that it pickles): fit one model to one table under
    every prior; return ``(tau_prior, bias_prior, hr_median, hr_q025, hr_q975, p)`` rows and the
    engine's notes (e.g. prior mass outside the quadrature grid).
    ``taus`` and ``biases`` are ``(text, PriorSpec)`` pairs, parsed once by the caller."""
    from synthesis.models.exact import fit_exact, sweep_tau_priors

    model, arrays, taus, biases, threshold, n_grid = job
    data = arrays.model_data("multiverse")
    spec = _spec(model)
    key = threshold_key(threshold)
    if model == "common-effect":
        fits = [fit_exact(data, spec, thresholds=(threshold,))]
        labels = [(NO_PRIOR, NO_PRIOR)]
    elif model == "bias":
        fits = sweep_tau_priors(data, spec, [p for _, p in taus], (threshold,), delta_priors=[p for _, p in biases],
                                n_grid=n_grid)
        labels = [(t, b) for b, _ in biases for t, _ in taus]  # delta-major, as sweep_tau_priors
    else:
        fits = sweep_tau_priors(data, spec, [p for _, p in taus], (threshold,), n_grid=n_grid)
        labels = [(t, NO_PRIOR) for t, _ in taus]
    rows = [
        (t, b, f.hr.median, f.hr.q025, f.hr.q975, f.p_hr_below[key])
        for (t, b), f in zip(labels, fits, strict=True)
    ]
    return rows, sorted({f"{model}: {n}" for f in fits for n in f.notes})


def _chunk(jobs: list, n: int) -> list[list]:
    return [jobs[i::n] for i in range(n) if jobs[i::n]]


def _fit_chunk(chunk: list[tuple]) -> list[list]:
    return [_fit_unit(job) for job in chunk]


@dataclass
class MultiverseResult:
    """Every specification of a multiverse and its summaries.

    ``frame`` has one row per specification: one column per curation switch, ``model``,
    ``tau_prior``, ``bias_prior``, ``k``, ``hr_median``, ``hr_q025``, ``hr_q975``, ``p_below``
    (``P(HR < threshold)``) and ``default_data`` (every switch at its default).
    """

    frame: pd.DataFrame
    threshold: float
    switches: dict[str, tuple[str, ...]]
    defaults: dict[str, str]
    models: tuple[str, ...]
    tau_priors: tuple[str, ...]
    bias_priors: tuple[str, ...]
    source: str
    seconds: float
    n_tables: int
    n_fits: int
    notes: list[str] = field(default_factory=list)
    #: What each curation switch does (``switches.csv``), by name.
    descriptions: dict[str, str] = field(default_factory=dict)
    #: The bundled table's provenance (:func:`provenance_frame`), when the report asked for it.
    provenance: pd.DataFrame | None = None

    @property
    def n_specifications(self) -> int:
        return len(self.frame)

    def share_p_above(self) -> dict[str, float]:
        """Share of specifications with ``P(HR < T)`` above each of :data:`SHARE_LEVELS`."""
        p = self.frame["p_below"].to_numpy()
        return {f"{lv:g}": float(np.mean(p > lv)) for lv in SHARE_LEVELS}

    def shifts(self) -> list[dict[str, Any]]:
        """Per curation switch, then per modelling dimension: the largest change of P(HR < T)
        and of the posterior median HR between two specifications that differ only there."""
        out = []
        for name in [*self.switches, *MODEL_COLUMNS]:
            alternatives = (
                list(self.switches[name]) if name in self.switches
                else [v for v in dict.fromkeys(self.frame[name]) if v != NO_PRIOR]
            )
            p, hr, where = _max_shift(self.frame, name, [*self.switches, *MODEL_COLUMNS])
            out.append({
                "name": name,
                "kind": "curation" if name in self.switches else ("model" if name == "model" else "prior"),
                "alternatives": alternatives,
                "default": self.defaults.get(name),
                "max_shift_p": p,
                "max_shift_hr": hr,
                "largest_at": where,
            })
        return out

    def to_frame(self) -> pd.DataFrame:
        """Every specification (a copy of ``frame``), sorted as in the specification curve."""
        return self.frame.sort_values(["p_below", "hr_median"], kind="mergesort").reset_index(drop=True)

    def to_json(self) -> dict[str, Any]:
        """``{"n_specifications", "threshold", "share_p_above": {"0.5", "0.9"}, "switches":
        [{"name", "alternatives", "max_shift_p", "max_shift_hr", ...}], ...}``; the modelling
        dimensions are under ``"dimensions"`` with the same fields."""
        shifts = self.shifts()
        p = self.frame["p_below"]
        return {
            "n_specifications": self.n_specifications,
            "threshold": self.threshold,
            "share_p_above": self.share_p_above(),
            "switches": [s for s in shifts if s["kind"] == "curation"],
            "dimensions": [s for s in shifts if s["kind"] != "curation"],
            "p_below": {"min": float(p.min()), "median": float(p.median()), "max": float(p.max())},
            "hr_median": {
                "min": float(self.frame["hr_median"].min()), "median": float(self.frame["hr_median"].median()),
                "max": float(self.frame["hr_median"].max()),
            },
            "models": list(self.models),
            "tau_priors": list(self.tau_priors),
            "bias_priors": list(self.bias_priors),
            "downweight_alpha": DOWNWEIGHT_ALPHA,
            "source": self.source,
            "n_tables": self.n_tables,
            "n_exact_fits": self.n_fits,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        """The summary ``synthesis multiverse`` prints.

        Examples
        --------
        >>> r = run_multiverse(switches=defaults_only(khan_arm=["R0", "R1"]), models=["re", "common-effect"],
        ...                    tau_priors=["halfnormal(0.5)"], workers=1)
        >>> print(r)  # doctest: +ELLIPSIS
        Multiverse: 4 specifications (2 tables x models x priors), ... exact fits in ... s
        ...
        """
        t = self.threshold
        share = self.share_p_above()
        lines = [
            f"Multiverse: {self.n_specifications} specifications ({self.n_tables} tables x models x priors), "
            f"{self.n_fits} exact fits in {self.seconds:.2f} s",
            f"Data: {self.source}",
            f"P(HR < {t:g}) > 0.5 in {100 * share['0.5']:.1f}% of specifications, > 0.9 in {100 * share['0.9']:.1f}%",
            "Max shift: the largest change between two specifications that differ only in that choice",
            f"{'choice':<18} {'kind':<9} {'max shift P':>11} {'max shift HR':>12}  alternatives",
        ]
        for s in self.shifts():
            alts = ", ".join(str(a) for a in s["alternatives"])
            lines.append(
                f"{s['name']:<18} {s['kind']:<9} {s['max_shift_p']:>11.3f} {s['max_shift_hr']:>12.3f}  {alts}"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        rows = [[s["name"], s["kind"], f"{s['max_shift_p']:.3f}", f"{s['max_shift_hr']:.3f}",
                 ", ".join(str(a) for a in s["alternatives"])] for s in self.shifts()]
        share = self.share_p_above()
        title = (f"Multiverse: {self.n_specifications} specifications; P(HR < {self.threshold:g}) > 0.5 in "
                 f"{100 * share['0.5']:.1f}%, > 0.9 in {100 * share['0.9']:.1f}%")
        return html_block(title, [html_table(["choice", "kind", "max shift P", "max shift HR", "alternatives"], rows)])

    def plot_curve(self, **kwargs: Any) -> Any:
        """The specification curve (:func:`synthesis.plots.multiverse.plot_specification_curve`)."""
        from synthesis.plots.multiverse import plot_specification_curve

        return plot_specification_curve(self, **kwargs)


def _max_shift(frame: pd.DataFrame, name: str, dims: Sequence[str]) -> tuple[float, float, dict[str, Any] | None]:
    """Max over groups of specifications equal in every dimension but ``name`` of the range of
    ``p_below`` and of ``hr_median`` (the largest pairwise absolute difference in a group).

    For ``name == "model"`` a prior that a model does not have (:data:`NO_PRIOR`) matches every
    prior of the other models: the common-effect model is compared with random effects under each
    tau prior, and random effects with the bias model under each bias prior.
    """
    keys = [d for d in dims if d != name]
    if frame[name].nunique() < 2 or frame.empty:
        return 0.0, 0.0, None
    if name == "model":
        for prior in ("tau_prior", "bias_prior"):
            values = [v for v in dict.fromkeys(frame[prior]) if v != NO_PRIOR]
            if values:
                lacking = frame[prior] == NO_PRIOR
                copies = [frame[lacking].assign(**{prior: v}) for v in values]
                frame = pd.concat([frame[~lacking], *copies], ignore_index=True)
    grouped = frame.groupby(keys, sort=False, dropna=False) if keys else frame.groupby(np.zeros(len(frame)))
    p_range = grouped["p_below"].transform("max") - grouped["p_below"].transform("min")
    hr_range = grouped["hr_median"].transform("max") - grouped["hr_median"].transform("min")
    i = int(np.argmax(p_range.to_numpy()))
    where = {k: frame.iloc[i][k] for k in keys}
    return float(p_range.max()), float(hr_range.max()), where


def defaults_only(**switches: Sequence[str]) -> dict[str, list[str]]:
    """Every curation switch at its default, except those named (for ``run_multiverse(switches=...)``).

    Examples
    --------
    >>> defaults_only(khan_arm=["R0", "R1"])["khan_arm"], defaults_only()["posytive"]
    (['R0', 'R1'], ['oriented'])
    """
    from synthesis.bundled.build_dnmbc_lrt import default_choices

    return {name: list(switches.get(name, [alt])) for name, alt in default_choices().items()}


def _restricted(all_switches: Mapping[str, Any], only: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    out = {name: tuple(sw.alternatives) for name, sw in all_switches.items()}
    for name, alts in (only or {}).items():
        if name not in out:
            raise InputError(f"unknown curation switch {name!r}; switches: {', '.join(out)}")
        alts = tuple(dict.fromkeys(str(a).strip() for a in alts))
        bad = [a for a in alts if a not in out[name]]
        if bad or not alts:
            raise InputError(
                f"switch {name}: unknown alternative {', '.join(bad) or '(none)'}; choose from {', '.join(out[name])}"
            )
        out[name] = alts
    return out


def _check_list(values: Sequence[str] | None, default: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(default if values is None else (v.strip() for v in values if v.strip()))
    if not items:
        raise InputError(f"empty list of {what}")
    return tuple(dict.fromkeys(items))


def run_multiverse(
    table: StudyTable | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLDS[0],
    switches: Mapping[str, Sequence[str]] | None = None,
    models: Sequence[str] | None = None,
    tau_priors: Sequence[str] | None = None,
    bias_priors: Sequence[str] | None = None,
    subset: str = "all",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    n_grid: int = MULTIVERSE_GRID,
) -> MultiverseResult:
    """Fit every specification: curation switches x models x tau priors x bias priors.

    Parameters
    ----------
    table
        ``None``: the bundled dnMBC dataset under every combination of its curation switches.
        A :class:`~synthesis.studies.StudyTable`: that table only (no curation switches; only
        the model and prior dimensions vary).
    threshold
        T of ``P(HR < T)`` (default 0.8).
    switches
        Restrict curation switches to some alternatives, ``{"khan_arm": ["R0", "R1"]}``
        (bundled data only).
    models, tau_priors, bias_priors
        Subsets of :data:`MULTIVERSE_MODELS`, and prior strings (default
        :data:`MULTIVERSE_TAU_PRIORS`, :data:`MULTIVERSE_BIAS_PRIORS`). Models that cannot be
        fitted to the data (no design column, no randomised study, ...) are left out with a note.
    subset
        ``all``, ``rct`` or ``observational``: every table is reduced to that subset first
        (``re-rct`` is then left out).
    workers, scheduler, progress
        Parallel fitting over tables as in :func:`synthesis.sweeps.run_parallel` (default: all
        cores; a tqdm progress bar on stderr when it is a terminal).
    n_grid
        Minimum tau-quadrature nodes per fit (:data:`MULTIVERSE_GRID`).

    Examples
    --------
    >>> r = run_multiverse(switches=defaults_only(posytive=["oriented", "as_printed"]), models=["re-rct"],
    ...                    tau_priors=["halfnormal(0.5)"], workers=1)
    >>> r.n_specifications, [s["name"] for s in r.to_json()["switches"]][:2]
    (2, ['khan_arm', 'stage_migration'])
    >>> round(r.to_json()["switches"][3]["max_shift_hr"], 2)  # posytive: 0.93 -> 0.88
    0.05
    """
    from synthesis.sweeps import run_parallel

    start = time.perf_counter()
    (threshold,) = check_thresholds([threshold])
    if subset not in SUBSETS:
        raise InputError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    models = _check_list(models, MULTIVERSE_MODELS, "models")
    for m in models:
        _spec(m)
    taus = _check_list(tau_priors, MULTIVERSE_TAU_PRIORS, "tau priors")
    biases = _check_list(bias_priors, MULTIVERSE_BIAS_PRIORS, "bias priors")
    from synthesis.models.priors import parse_prior

    parsed_taus = tuple((t, parse_prior(t, "tau")) for t in taus)
    parsed_biases = tuple((b, parse_prior(b, "delta")) for b in biases)

    notes: list[str] = []
    if table is None:
        from synthesis.bundled.build_dnmbc_lrt import build_rows, default_choices, read_switches

        every = read_switches()
        alternatives = _restricted(every, switches)
        defaults = default_choices()
        descriptions = {name: sw.description for name, sw in every.items()}
        names = list(alternatives)
        combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*alternatives.values())]
        variants = [(c, table_arrays(build_rows(c)[0]).subset(subset)) for c in combos]
        source = "bundled dnmbc_lrt under its curation switches (data/curation/switches.csv)"
    else:
        if switches:
            raise InputError("curation switches apply to the bundled dataset only; a user table has none")
        alternatives, defaults, descriptions = {}, {}, {}
        variants = [({}, _arrays_of(table).subset(subset))]
        source = f"{table.source} (model and prior dimensions only: a user table has no curation switches)"

    # Unique (model, numbers) units: each is fitted once under every prior.
    units: dict[tuple[str, bytes], int] = {}
    jobs: list[tuple] = []
    plan: list[tuple[dict[str, str], str, int, int]] = []  # (choices, model, unit index, k)
    dropped: dict[str, str] = {}
    for choices, arrays in variants:
        for m in models:
            data = arrays.subset("rct") if m == "re-rct" else arrays
            reason = _applicable(m, arrays, subset) or (None if data.y.size >= 2 else "fewer than 2 studies")
            if reason:
                dropped.setdefault(m, reason)
                continue
            key = (m, data.key())
            if key not in units:
                units[key] = len(jobs)
                jobs.append((m, data, parsed_taus, parsed_biases if m == "bias" else (), threshold, n_grid))
            plan.append((choices, m, units[key], int(data.y.size)))
    for m, reason in dropped.items():
        notes.append(f"model {m} left out of some or all tables: {reason}")
    if not plan:
        raise InputError("no model of the multiverse can be fitted to this table")

    show = sys.stderr.isatty() if progress is None else progress
    n_chunks = max(1, min(len(jobs), 4 * (workers or 2)))
    chunks = _chunk(jobs, n_chunks)
    parts = run_parallel(_fit_chunk, chunks, workers=workers, scheduler=scheduler, show=show, desc="multiverse")
    results: list[list | None] = [None] * len(jobs)
    engine_notes: set[str] = set()
    for i, part in enumerate(parts):
        for j, (res, fit_notes) in enumerate(part):
            results[i + j * len(chunks)] = res
            engine_notes.update(fit_notes)
    notes.extend(f"exact engine, some specifications: {n}" for n in sorted(engine_notes))

    records = []
    for choices, m, unit, k in plan:
        is_default = all(choices.get(n) == defaults.get(n) for n in choices)
        for tau, bias, med, lo, hi, p in results[unit]:
            records.append({
                **choices, "model": m, "tau_prior": tau, "bias_prior": bias, "k": k,
                "hr_median": med, "hr_q025": lo, "hr_q975": hi, "p_below": p, "default_data": is_default,
            })
    frame = pd.DataFrame.from_records(records)
    return MultiverseResult(
        frame=frame, threshold=threshold, switches=alternatives, defaults=defaults, models=models,
        tau_priors=taus, bias_priors=biases, source=source, seconds=time.perf_counter() - start,
        n_tables=len(variants), n_fits=sum(len(r) for r in results if r is not None), notes=notes,
        descriptions=descriptions,
    )


#: The reduced multiverse of the report (``synthesis run``/``report`` on the bundled data): every
#: curation switch x the headline models at the default priors (the full multiverse, with
#: :data:`MULTIVERSE_TAU_PRIORS` x :data:`MULTIVERSE_BIAS_PRIORS`, is ``synthesis multiverse``).
REPORT_MULTIVERSE: dict[str, tuple[str, ...]] = {
    "models": ("re-rct", "bias"),
    "tau_priors": ("halfnormal(0.5)",),
    "bias_priors": ("normal(0, 0.5)",),
}


def multiverse_bundled(
    table: StudyTable, *, threshold: float = DEFAULT_THRESHOLDS[0], workers: int | None = None,
    progress: bool | None = False,
) -> MultiverseResult | None:
    """The report's reduced multiverse (:data:`REPORT_MULTIVERSE`), with the table's provenance
    (:func:`provenance_frame`), when ``table`` is the bundled dataset as curated, else ``None``
    (a user's table has no curation switches).

    Examples
    --------
    >>> import synthesis as syn
    >>> multiverse_bundled(syn.load_dataset(subset="rct")) is None
    True
    """
    from synthesis.reconcile import is_bundled_table

    if not is_bundled_table(table):
        return None
    result = run_multiverse(threshold=threshold, workers=workers, progress=progress, **REPORT_MULTIVERSE)
    result.provenance = provenance_frame(table)
    return result


def provenance_frame(table: StudyTable) -> pd.DataFrame:
    """One row per included estimate of the bundled table: study, HR and CI as entered, the
    source (publication, then the quote), and the curation decisions (design and adjustment,
    how the SE was obtained, cohort, and the curation switches that can change the row).

    Examples
    --------
    >>> import synthesis as syn
    >>> f = provenance_frame(syn.load_dataset())
    >>> len(f), list(f.columns)[:4]
    (17, ['study', 'hr', 'ci', 'citation'])
    >>> f.loc[f["study"] == "Bafford 2009", "switches"].item()
    'stage_migration'
    """
    from synthesis.bundled.build_dnmbc_lrt import read_switches

    touching: dict[str, list[str]] = {}
    for name, sw in read_switches().items():
        for rid in sw.rows:
            touching.setdefault(rid, []).append(name)
    frame = table.frame
    records = []
    for i, study in enumerate(table.studies):
        row = frame.iloc[i]

        def cell(col: str, row: pd.Series = row) -> str:
            value = row.get(col, "")
            return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

        citation, _, quote = cell("source").partition(". Quote: ")
        rid = cell("evidence_row")
        switches = touching.get(rid, [])  # se_method ("all" rows) touches every row: not listed
        level = cell("ci_level")
        records.append({
            "study": study,
            "hr": cell("hr"),
            "ci": f"{cell('ci_lower')}-{cell('ci_upper')}" + (f" ({float(level):.0%} CI)" if level and float(level) != 0.95 else ""),
            "citation": citation if quote else "",
            "quote": quote or citation,
            "decisions": "; ".join(x for x in (
                f"{cell('design')}, {cell('adjustment')}", f"SE {cell('se_derivation')}", f"cohort {cell('cohort')}",
            ) if x.strip(", ")),
            "switches": ", ".join(switches),
            "evidence_row": rid,
        })
    return pd.DataFrame.from_records(records)
