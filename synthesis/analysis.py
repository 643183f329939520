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

from models.priors import resolve_priors
from models.results import FitResult, RatioSummary
from models.spec import ModelData, ModelSpec, threshold_key
from synthesis.studies import StudyTable
from synthesis.sweep import SweepResult

DECISION_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
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
    return {m.lower(): (p.hr, p.hr_ci_lower, p.hr_ci_upper) for m, p in pools.items()}


def decision_rows(run: ModelRun, fit: FitResult, pools: dict[str, Any], thresholds: Sequence[float]) -> list[DecisionRow]:
    """Decision-table rows of one fitted model (one per covariate value for meta-regressions)."""
    freq = _freq_triplets(pools)
    conv = fit.diagnostics.converged if fit.diagnostics is not None else None
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
            )
        )
    return rows


def model_data(table: StudyTable, run: ModelRun) -> tuple[StudyTable, ModelData]:
    sub = table.subset(run.subset)
    return sub, ModelData.from_table(sub, run.spec)


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 3)
