"""The main job's computations: the standard set of models, the decision table and the sweeps.

Standard set (all on the default analysis set of the study table):

1. random effects on all studies;
2. random effects on the randomised trials only;
3. design-bias adjusted (additive bias of non-randomised studies; mu = randomised effect);
4. bias-adjusted meta-regression on a covariate (default ``bone_only_fraction``), reported at
   covariate values 0, 0.5 and 1 (missing covariate values imputed inside the model).

Each row gives the posterior median HR with its 95% credible interval, the predictive HR of a
new randomised study and P(HR < T), beside the frequentist DL, REML and REML+HKSJ pooled HRs of
the same studies. Nothing here draws or prints: plots and the report read :class:`AnalysisResult`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from synthesis.base import DECISION_THRESHOLDS, DEFAULT_SEED
from synthesis.models.priors import resolve_priors
from synthesis.models.results import FitResult, RatioSummary
from synthesis.models.spec import ModelData, ModelSpec, check_seed, check_thresholds, threshold_key
from synthesis.studies import StudyTable
from synthesis.sweep import SweepResult

DEFAULT_COVARIATE = "bone_only_fraction"
COVARIATE_VALUES: tuple[float, ...] = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class ModelRun:
    """One member of the standard set: a label, the rows it uses and the model spec."""

    key: str
    label: str
    subset: str
    spec: ModelSpec
    at: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionRow:
    """One line of the decision table."""

    key: str
    label: str
    engine: str
    k: int
    hr: RatioSummary
    predictive_hr: RatioSummary | None
    p_hr_below: dict[str, float]
    frequentist: dict[str, tuple[float, float, float]]
    converged: bool | None = None
    note: str = ""

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "model": self.label,
            "key": self.key,
            "engine": self.engine,
            "k": self.k,
            "hr_median": self.hr.median,
            "hr_q025": self.hr.q025,
            "hr_q975": self.hr.q975,
            "predictive_hr_median": self.predictive_hr.median if self.predictive_hr else None,
            "predictive_hr_q025": self.predictive_hr.q025 if self.predictive_hr else None,
            "predictive_hr_q975": self.predictive_hr.q975 if self.predictive_hr else None,
        }
        for t, p in self.p_hr_below.items():
            rec[f"p_hr_below_{t}"] = p
        for method, (est, lo, hi) in self.frequentist.items():
            rec[f"{method}_hr"] = est
            rec[f"{method}_ci_lower"] = lo
            rec[f"{method}_ci_upper"] = hi
        rec["converged"] = self.converged
        rec["note"] = self.note
        return rec


@dataclass
class DecisionTable:
    rows: list[DecisionRow]
    thresholds: tuple[float, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records([r.to_record() for r in self.rows])


@dataclass
class AnalysisResult:
    """Everything the report shows, computed once."""

    name: str
    source: str
    table: StudyTable
    thresholds: tuple[float, ...]
    covariate: str
    runs: list[ModelRun]
    fits: dict[str, FitResult]
    pools: dict[str, dict[str, Any]]
    decision: DecisionTable
    sweeps: dict[str, SweepResult]
    pubbias: Any
    metareg: Any
    seed: int
    timing: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The decision table: one row per model (and covariate value), the posterior HR,
        P(HR < T) and the frequentist comparators."""
        return self.decision.to_frame()

    def to_json(self) -> dict[str, Any]:
        """The decision table, every fit's ``fit --json`` document and the warnings."""
        return {
            "name": self.name,
            "source": self.source,
            "thresholds": list(self.thresholds),
            "decision": [r.to_record() for r in self.decision.rows],
            "fits": {key: f.to_json() for key, f in self.fits.items()},
            "sweeps": {key: s.to_json() for key, s in self.sweeps.items()},
            "warnings": list(self.warnings),
            "seed": self.seed,
        }

    def _shown(self) -> pd.DataFrame:
        frame = self.to_frame()
        cols = ["model", "engine", "k", "hr_median", "hr_q025", "hr_q975"]
        return frame[cols + [c for c in frame.columns if c.startswith("p_hr_below_")]]

    def __str__(self) -> str:
        """The decision table as ``synthesis report`` prints it after writing the report
        (:func:`synthesis.report.console_decision_table`, the report's console text).

        Examples
        --------
        >>> import pandas as pd
        >>> import synthesis as syn
        >>> frame = pd.DataFrame({
        ...     "study": ["T1", "T2", "T3", "O1", "O2", "O3"],
        ...     "design": ["rct", "rct", "rct", "retrospective", "retrospective", "prospective"],
        ...     "hr": [0.95, 0.85, 1.05, 0.65, 0.6, 0.7],
        ...     "ci_lower": [0.7, 0.6, 0.8, 0.55, 0.5, 0.5], "ci_upper": [1.29, 1.2, 1.38, 0.77, 0.72, 0.98]})
        >>> print(syn.analyse(frame, name="example"))  # doctest: +ELLIPSIS
        HR: posterior median with its 95% equal-tailed credible interval; P<T: posterior P(HR < T)
        <BLANKLINE>
        Model                 Engine  k      HR (95% CrI)  P<0.7  P<0.8  P<0.9   P<1
        Random effects, all   exact   6  0.77 (0.61-1.00)   0.19   0.65   0.91  0.97
        ...
        """
        from synthesis.report import console_decision_table

        return console_decision_table(self)

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        frame = self._shown()
        rows = [[f"{v:.3f}" if isinstance(v, float) else v for v in row] for row in frame.itertuples(index=False)]
        title = f"Decision table: {self.name} ({self.source})"
        return html_block(title, [html_table(list(frame.columns), rows)], self.warnings)

    def plot_forest(self, *, ax: Any = None, **kwargs: Any) -> Any:
        """Every model's pooled diamond beside the studies, shrunken under the design-bias model
        when there is one (:func:`synthesis.plots.plot_forest`)."""
        from synthesis.plots import plot_forest

        labels = {run.key: run.label for run in self.runs}
        fits = {labels.get(key, key): f for key, f in self.fits.items()}
        bias = labels.get("bias")
        kwargs.setdefault("shrinkage_from", bias if bias in fits and fits[bias].study_effects else None)
        kwargs.setdefault("title", f"Posterior forest plot: {self.name}")
        if ax is not None:
            kwargs["ax"] = ax
        return plot_forest(fits, **kwargs)

    def plot_sensitivity(self, key: str = "bias", *, fig: Any = None, **kwargs: Any) -> Any:
        """The prior-sensitivity plot of one model's sweep (``key`` of :attr:`sweeps`)."""
        if key not in self.sweeps:
            raise KeyError(f"no sweep {key!r}; sweeps: {', '.join(self.sweeps) or 'none'}")
        return self.sweeps[key].plot_sensitivity(fig=fig, **kwargs)

    def plot_funnel(self, *, ax: Any = None, **kwargs: Any) -> Any:
        """Funnel plot of the studies with trim and fill (:meth:`BiasResult.plot_funnel`)."""
        return self.pubbias.plot_funnel(ax=ax, **kwargs)


def standard_runs(table: StudyTable, covariate: str = DEFAULT_COVARIATE, priors=None) -> list[ModelRun]:
    """The standard set of models that make sense for this table (bias models need both
    randomised and non-randomised studies; the meta-regression needs the covariate column)."""
    priors = priors or resolve_priors()
    runs = [ModelRun("re_all", "Random effects, all studies", "all", ModelSpec("re", priors=priors))]
    nr = table.nonrandomised
    if table.has_design and (~nr).sum() >= 2:
        runs.append(ModelRun("re_rct", "Random effects, RCTs only", "rct", ModelSpec("re", priors=priors)))
    if table.has_design and nr.any() and (~nr).any():
        runs.append(ModelRun("bias", "Design-bias adjusted (additive)", "all", ModelSpec("bias", priors=priors)))
        if covariate in table.frame.columns:
            at = {f"{covariate}={v:g}": {covariate: v} for v in COVARIATE_VALUES}
            runs.append(
                ModelRun(
                    "bias_metareg",
                    f"Bias-adjusted meta-regression on {covariate}",
                    "all",
                    ModelSpec("bias-metareg", covariates=(covariate,), priors=priors),
                    at=at,
                )
            )
    return runs


def frequentist_pools(table: StudyTable) -> dict[str, Any]:
    """DL, REML and REML + HKSJ pooled results for a table."""
    from synthesis.pooling import pool

    return {
        "DL": pool(table.y, table.v, method="DL"),
        "REML": pool(table.y, table.v, method="REML"),
        "HKSJ": pool(table.y, table.v, method="REML", hksj=True),
    }


def _freq_triplets(pools: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    records = {m.lower(): p.to_dict() for m, p in pools.items()}
    return {m: (r["hr"], r["hr_ci_lower"], r["hr_ci_upper"]) for m, r in records.items()}


def decision_rows(run: ModelRun, fit: FitResult, pools: dict[str, Any], thresholds: Sequence[float]) -> list[DecisionRow]:
    """Decision-table rows of one fitted model (one per covariate value for meta-regressions)."""
    freq = _freq_triplets(pools)
    conv = fit.diagnostics.converged if fit.diagnostics is not None else None
    note = (
        "frequentist columns: unadjusted (no bias term)"
        if run.spec.has_bias
        else ""
    )
    rows = [
        DecisionRow(
            key=run.key,
            label=run.label + (" (at covariate mean)" if run.at else ""),
            engine=fit.engine,
            k=fit.k,
            hr=fit.hr,
            predictive_hr=fit.predictive_hr,
            p_hr_below={threshold_key(t): fit.p_hr_below[threshold_key(t)] for t in thresholds},
            frequentist=freq,
            converged=conv,
            note=note,
        )
    ]
    for at_label, summary in fit.hr_at.items():
        rows.append(
            DecisionRow(
                key=f"{run.key}@{at_label}",
                label=f"{run.label}, at {at_label}",
                engine=fit.engine,
                k=fit.k,
                hr=RatioSummary(summary.median, summary.q025, summary.q975),
                predictive_hr=None,
                p_hr_below={threshold_key(t): (summary.p_below or {}).get(threshold_key(t)) for t in thresholds},
                frequentist=freq,
                converged=conv,
                note=note,
            )
        )
    return rows


def model_data(table: StudyTable, run: ModelRun) -> tuple[StudyTable, ModelData]:
    sub = table.subset(run.subset)
    return sub, ModelData.from_table(sub, run.spec)


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 3)


#: Covariate values at which the meta-regression curve is evaluated for the bubble plot.
CURVE_POINTS = 21


def _curve(covariate: str, table: StudyTable) -> dict[str, dict[str, float]]:
    x = table.covariate(covariate)
    observed = x[~pd.isna(x)]
    lo, hi = (0.0, 1.0) if observed.size == 0 or (observed.min() >= 0 and observed.max() <= 1) else (float(observed.min()), float(observed.max()))
    values = [lo + (hi - lo) * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    return {f"{covariate}={v:g}": {covariate: v} for v in values}


def run_analysis(
    table: StudyTable,
    *,
    name: str,
    covariate: str = DEFAULT_COVARIATE,
    thresholds: Sequence[float] = DECISION_THRESHOLDS,
    seed: int = DEFAULT_SEED,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    workers: int | None = None,
    progress: bool | None = None,
    tau_priors: Sequence[str] | None = None,
    bias_priors: Sequence[str] | None = None,
    source_path: str | None = None,
) -> AnalysisResult:
    """Fit the standard set, pool frequentist comparators, run the sweeps and the
    publication-bias diagnostics: everything :func:`synthesis.report.write_report` shows.

    Without a ``covariate`` column in ``table`` there is no meta-regression, and a warning in
    the result says so (the report and the console show it).
    """
    from synthesis import pubbias
    from synthesis.models.exact import exact_unsupported_reason
    from synthesis.models.fit import fit
    from synthesis.sweep import run_sweep, split_specs, standard_bias_priors, standard_tau_priors

    start = time.perf_counter()
    thresholds = tuple(sorted(set(check_thresholds(thresholds))))
    seed = check_seed(seed)
    timing: dict[str, float] = {}
    runs = standard_runs(table, covariate)
    fits: dict[str, FitResult] = {}
    pools: dict[str, dict[str, Any]] = {}
    rows: list[DecisionRow] = []
    warnings = list(table.warnings)
    if covariate not in table.frame.columns:
        warnings.append(
            f"no meta-regression: {table.source} has no column {covariate!r}; "
            "name a numeric column with --covariate to fit one"
        )
    for run in runs:
        t0 = time.perf_counter()
        sub, data = model_data(table, run)
        if run.subset not in pools:
            pools[run.subset] = frequentist_pools(sub)
        engine = "exact" if exact_unsupported_reason(run.spec, data) is None else "pymc"
        at = dict(run.at)
        if run.spec.has_covariates:
            at |= _curve(covariate, sub)
        fitted = fit(
            sub, run.spec, engine=engine, thresholds=thresholds, at=at,
            chains=chains, draws=draws, tune=tune, seed=seed,
        )
        fits[run.key] = fitted
        rows.extend(
            r
            for r in decision_rows(run, fitted, pools[run.subset], thresholds)
            if "@" not in r.key or r.key.split("@", 1)[1] in run.at
        )
        if fitted.diagnostics is not None and not fitted.diagnostics.converged:
            warnings.append(f"{run.label}: sampling did not converge ({'; '.join(fitted.diagnostics.messages)})")
        timing[f"fit_{run.key}_s"] = elapsed(t0)

    t0 = time.perf_counter()
    tau_grid = split_specs(";".join(tau_priors) if tau_priors else None, standard_tau_priors(), "tau")
    bias_grid = split_specs(";".join(bias_priors) if bias_priors else None, standard_bias_priors(), "delta")
    sweeps: dict[str, SweepResult] = {}
    for run in runs:
        _, data = model_data(table, run)
        if exact_unsupported_reason(run.spec, data) is not None:
            continue  # PyMC sweeps are available with `synthesis sweep`; the report keeps to exact ones
        sweeps[run.key] = run_sweep(
            data, run.spec, label=run.label, tau_priors=tau_grid,
            bias_priors=bias_grid if run.spec.has_bias else (), thresholds=thresholds,
            engine="exact", progress=progress,
        )
    timing["sweeps_s"] = elapsed(t0)

    t0 = time.perf_counter()
    bias_diag = pubbias.bias_table(table)
    metareg = None
    if covariate in table.frame.columns:
        from synthesis.errors import SynthesisError
        from synthesis.metaregression import metaregression

        try:
            metareg = metaregression(table.y, table.v, table.covariate_matrix([covariate]), names=[covariate])
        except SynthesisError as exc:
            warnings.append(f"frequentist meta-regression on {covariate} not estimable: {exc}")
    timing["frequentist_s"] = elapsed(t0)
    timing["total_s"] = elapsed(start)
    return AnalysisResult(
        name=name,
        source=table.source,
        table=table,
        thresholds=thresholds,
        covariate=covariate,
        runs=runs,
        fits=fits,
        pools=pools,
        decision=DecisionTable(rows, thresholds),
        sweeps=sweeps,
        pubbias=bias_diag,
        metareg=metareg,
        seed=seed,
        timing=timing,
        warnings=warnings,
        provenance={"source_path": source_path} if source_path else {},
    )
