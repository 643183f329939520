"""The main job's computations: the standard set of models, the decision table and the sweeps.

Standard set (all on the default analysis set of the study table):

1. random effects on all studies;
2. random effects on the randomised trials only;
3. design-bias adjusted (additive bias of non-randomised studies; mu = randomised effect);
4. bias-adjusted meta-regression on a covariate (default ``bone_only_fraction``), reported at
   covariate values 0, 0.5 and 1 for a fraction (every observed value in [0, 1]) and at the
   observed quartiles otherwise (missing covariate values imputed inside the model).

Each row gives the posterior median HR with its 95% credible interval, the predictive HR of a
new randomised study and P(HR < T), beside the frequentist DL, REML and REML+HKSJ pooled HRs of
the same studies.

Which model the data support (:class:`ModelChoice`, issue #11), all on the exact engine with the
priors of the standard bias model: Bayesian model averaging over effect x design bias (additive)
x heterogeneity with equal prior model probabilities
(:func:`synthesis.models.averaging.average_models`), the bias variants that exact LOO can score
stacked by their leave-one-study-out predictive densities
(:func:`synthesis.models.loo.compare_variants`), the tipping-point analysis at the headline
threshold (:func:`synthesis.models.tipping.tipping_analysis`) and the power-scaling sensitivity
of the bias model (:func:`synthesis.models.powerscale.power_scale`). The averaged and stacked HRs
head the decision table (rows of kind :data:`ROW_AVERAGED` and :data:`ROW_STACKED`: no single fit
behind them, no predictive HR and no frequentist comparator).

Nothing here draws or prints: plots and the report read :class:`AnalysisResult`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthesis.base import DECISION_THRESHOLDS, DEFAULT_SEED
from synthesis.models.fit import at_label
from synthesis.models.priors import resolve_priors
from synthesis.models.results import FitResult, RatioSummary
from synthesis.models.spec import ModelData, ModelSpec, check_seed, check_thresholds, threshold_key
from synthesis.models.tipping import DEFAULT_LEVEL as TIPPING_LEVEL
from synthesis.models.tipping import DEFAULT_THRESHOLD as TIPPING_THRESHOLD
from synthesis.studies import StudyTable
from synthesis.sweeps import SweepResult

if TYPE_CHECKING:
    from synthesis.models.averaging import AveragedHR, AveragingResult
    from synthesis.models.loo import VariantComparison
    from synthesis.models.powerscale import PowerScaleResult
    from synthesis.models.tipping import TippingResult

DEFAULT_COVARIATE = "bone_only_fraction"
#: Where the decision table reports the meta-regression of a fraction (every value in [0, 1]) ...
COVARIATE_VALUES: tuple[float, ...] = (0.0, 0.5, 1.0)
#: ... and, for any other covariate, at these quantiles of its observed values (the quartiles).
COVARIATE_QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)
#: Kinds of decision row: a model's headline HR, and its HR at a covariate point ...
ROW_MODEL = "model"
ROW_AT_COVARIATE = "at_covariate"
#: ... the model-averaged HR (with the no-effect spike, and given an effect), and the HR of the
#: stacked bias variants: rows that combine several models (no fit of their own in ``fits``).
ROW_AVERAGED = "averaged"
ROW_STACKED = "stacked"
COMBINED_ROWS: tuple[str, ...] = (ROW_AVERAGED, ROW_STACKED)
#: Above this many studies the report skips the tipping-point analysis (``synthesis tipping``
#: runs it): its down-weighting curve is 21 full exact fits with per-study summaries, measured
#: 11 s at k = 3,000 (linear in k; 0.8 s at k = 17).
TIPPING_MAX_STUDIES = 1000
#: Above this many studies the report skips the stacking of the bias variants (``synthesis
#: compare --engine exact`` runs it at any k): four exact fits and their leave-one-out
#: downdates, measured 9.8 s at k = 3,000 and 29 s at k = 20,000 (2 cores shared with other
#: work).
STACKING_MAX_STUDIES = 3000
#: Above this many studies the report skips power-scaling (``synthesis psense`` runs it): about
#: 20 exact posteriors, measured 2.1 s at k = 3,000 and 7.3 s at k = 20,000.
POWERSCALE_MAX_STUDIES = 20_000
#: Above this many studies the report skips the model averaging under other mu priors
#: (``synthesis average --mu-prior`` runs one): four more averagings, measured 6.2 s at
#: k = 100,000 (2 cores shared with other work; linear in k).
MU_PRIOR_MAX_STUDIES = 20_000
#: Keys of the combined rows of the decision table.
AVERAGED_KEY = "averaged"
AVERAGED_GIVEN_EFFECT_KEY = "averaged_given_effect"
STACKED_KEY = "stacked"
#: The model averaging is repeated under mu ~ normal(0, s) for each of these SDs s (log-HR
#: scale): the effect Bayes factor depends on how large an effect the mu prior finds plausible
#: (Lindley's paradox; a wider prior penalises the effect model). About 25 ms each at k = 17.
MU_PRIOR_SCALES: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)


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
    #: :data:`ROW_MODEL`, :data:`ROW_AT_COVARIATE`, :data:`ROW_AVERAGED` or :data:`ROW_STACKED`.
    kind: str = ROW_MODEL
    #: The key of the model the row belongs to (``key`` without the point).
    model_key: str = ""
    #: For :data:`ROW_AT_COVARIATE` rows: the covariate point ``{covariate: value}``.
    point: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if not self.model_key:  # a model's own row: its key is the model's
            object.__setattr__(self, "model_key", self.key)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "model": self.label,
            "key": self.key,
            "kind": self.kind,
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
        """One record per row (:meth:`DecisionRow.to_record`); rows without frequentist
        comparators (the combined rows) leave those columns empty, ``converged`` and ``note`` last."""
        frame = pd.DataFrame.from_records([r.to_record() for r in self.rows])
        last = ["converged", "note"]
        return frame[[c for c in frame.columns if c not in last] + [c for c in last if c in frame.columns]]


@dataclass
class ModelChoice:
    """Which model the data support, and where the answer flips (all exact-engine computations).

    ``None`` for a part that was not computed (the table lacks one of the designs, or the exact
    engine could not do it; :attr:`AnalysisResult.warnings` says which and why).
    """

    #: Bayesian model averaging over effect x design bias (additive) x heterogeneity.
    averaging: AveragingResult | None = None
    #: The bias variants that exact LOO scores, stacked.
    stacking: VariantComparison | None = None
    #: The bias variants left out of the stacking, with the reason (exact LOO cannot score them).
    unstacked: dict[str, str] = field(default_factory=dict)
    #: The tipping-point analysis at :attr:`threshold`, level :attr:`level`.
    tipping: TippingResult | None = None
    #: Power-scaling sensitivity (exact) of the model :attr:`powerscale_key`.
    powerscale: PowerScaleResult | None = None
    #: Key of the standard model whose power-scaling sensitivity :attr:`powerscale` holds.
    powerscale_key: str = ""
    #: The threshold T and level of the tipping-point analysis.
    threshold: float = TIPPING_THRESHOLD
    level: float = TIPPING_LEVEL
    #: The model averaging under mu ~ normal(0, s), by s (:data:`MU_PRIOR_SCALES`); the other
    #: priors as in :attr:`averaging`. Empty when not computed.
    mu_prior: dict[float, AveragingResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Each part's own JSON document (``average``, ``compare``, ``tipping`` and ``psense
        --json``), ``None`` where not computed."""
        return {
            "averaging": self.averaging.to_json() if self.averaging is not None else None,
            "stacking": self.stacking.to_json() if self.stacking is not None else None,
            "tipping": self.tipping.to_json() if self.tipping is not None else None,
            "powerscale": self.powerscale.to_json() if self.powerscale is not None else None,
            "unstacked": dict(self.unstacked),
            "powerscale_model": self.powerscale_key or None,
            "tipping_threshold": self.threshold,
            "tipping_level": self.level,
            "mu_prior_sensitivity": mu_prior_records(self.mu_prior),
        }


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
    #: The input file (``None`` when the table was not read from a file).
    source_path: Path | None = None
    #: Model averaging, stacking, tipping point and power-scaling (``None``: not computed).
    model_choice: ModelChoice | None = None
    #: The published pools reproduced and walked to this analysis (bundled dataset only; issue #12).
    reconciliation: Any = None
    #: "What would settle it?" (issue #14): the next-trial plan, the timeline and, when asked,
    #: the operating characteristics (:class:`synthesis.cumulative.SettleEvidence`; ``None``: not computed).
    settle: Any = None
    #: The sensitivity explorer's grid (issue #15; ``None``: not computed, see the warnings).
    explorer: Any = None
    #: "One row per cohort, or all inputs?" (issue #13; bundled dataset only, ``None`` otherwise).
    inputs_comparison: Any = None
    #: The curation switches' multiverse and the dataset provenance (bundled dataset only; issue #12).
    multiverse: Any = None

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
            "model_choice": self.model_choice.to_json() if self.model_choice is not None else None,
            "reconcile": self.reconciliation.to_json() if self.reconciliation is not None else None,
            "settle": self.settle.to_json() if self.settle is not None else None,
            "explorer": self.explorer.summary() if self.explorer is not None else None,
            "inputs_comparison": self.inputs_comparison.to_json() if self.inputs_comparison is not None else None,
            "multiverse": self.multiverse.to_json() if self.multiverse is not None else None,
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
        Model                      Engine  k      HR (95% CrI)   P<0.7   P<0.8  P<0.9   P<1
        Model-averaged (8 models)  exact   6  1.00 (0.89-1.01)  < 0.01  < 0.01   0.03  0.07
          given an effect          exact   6  0.95 (0.77-1.13)    0.01    0.05   0.29  0.72
        Stacked bias variants      exact   6  0.94 (0.75-1.16)    0.01    0.07   0.32  0.72
        Random effects, all        exact   6  0.77 (0.61-1.00)    0.19    0.65   0.91  0.97
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
    randomised and non-randomised studies; the meta-regression needs the covariate column).

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({"study": ["A", "B", "C", "D"],
    ...                       "design": ["rct", "rct", "retrospective", "prospective"],
    ...                       "hr": [0.9, 0.8, 0.65, 0.7], "ci_lower": [0.7, 0.6, 0.5, 0.5],
    ...                       "ci_upper": [1.16, 1.07, 0.85, 0.98], "year": [2001, 2005, 2012, 2020]})
    >>> table = syn.load_studies(frame, covariates=["year"])
    >>> [run.key for run in standard_runs(table, "year")]
    ['re_all', 're_rct', 'bias', 'bias_metareg']
    >>> [run.key for run in standard_runs(table, "bone_only_fraction")]  # no such column
    ['re_all', 're_rct', 'bias']
    """
    priors = priors or resolve_priors()
    runs = [ModelRun("re_all", "Random effects, all studies", "all", ModelSpec("re", priors=priors))]
    nr = table.nonrandomised
    if table.has_design and (~nr).sum() >= 2:
        runs.append(ModelRun("re_rct", "Random effects, RCTs only", "rct", ModelSpec("re", priors=priors)))
    if table.has_design and nr.any() and (~nr).any():
        runs.append(ModelRun("bias", "Design-bias adjusted (additive)", "all", ModelSpec("bias", priors=priors)))
        if covariate in table.frame.columns:
            at = {at_label({covariate: v}): {covariate: v} for v in covariate_points(table, covariate)}
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


def covariate_points(table: StudyTable, covariate: str) -> tuple[float, ...]:
    """Covariate values at which the decision table reports the meta-regression.

    :data:`COVARIATE_VALUES` (0, 0.5, 1) when every observed value lies in [0, 1] (a fraction),
    otherwise the :data:`COVARIATE_QUANTILES` of the observed values (e.g. a ``year`` column is
    reported at its quartiles, not at years 0, 0.5 and 1); repeated values are given once.

    Examples
    --------
    >>> import synthesis as syn
    >>> covariate_points(syn.load_dataset("dnmbc_lrt"), "bone_only_fraction")  # a fraction
    (0.0, 0.5, 1.0)
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"study": ["A", "B", "C", "D"], "hr": [0.9, 0.8, 0.65, 0.7],
    ...                       "ci_lower": [0.7, 0.6, 0.5, 0.5], "ci_upper": [1.16, 1.07, 0.85, 0.98],
    ...                       "year": [2001, 2005, 2012, 2020]})
    >>> covariate_points(syn.load_studies(frame, covariates=["year"]), "year")  # its quartiles
    (2004.0, 2008.5, 2014.0)
    """
    x = np.asarray(table.covariate(covariate), dtype=float)
    observed = x[~np.isnan(x)]
    if observed.size == 0 or (observed.min() >= 0 and observed.max() <= 1):
        return COVARIATE_VALUES
    return tuple(dict.fromkeys(float(v) for v in np.quantile(observed, COVARIATE_QUANTILES)))


def frequentist_pools(table: StudyTable) -> dict[str, Any]:
    """DL, REML and REML + HKSJ pooled results for a table.

    Examples
    --------
    >>> import synthesis as syn
    >>> pools = frequentist_pools(syn.load_dataset("dnmbc_lrt"))
    >>> {method: round(p.to_dict()["hr"], 3) for method, p in pools.items()}
    {'DL': 0.682, 'REML': 0.693, 'HKSJ': 0.693}
    >>> pools["HKSJ"].hksj
    True
    """
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
    """Decision-table rows of one fitted model: its headline row (:data:`ROW_MODEL`) and, for a
    meta-regression, one :data:`ROW_AT_COVARIATE` row per point of ``run.at`` (other entries
    of ``fit.hr_at``, such as the bubble plot's curve, make no row).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> run = standard_runs(table)[2]
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> [row] = decision_rows(run, fit, frequentist_pools(table), [0.8, 1.0])
    >>> row.key, row.kind, row.k, round(row.hr.median, 2)
    ('bias', 'model', 17, 0.91)
    >>> {t: round(p, 2) for t, p in row.p_hr_below.items()}
    {'0.8': 0.05, '1.0': 0.9}
    """
    freq = _freq_triplets(pools)
    conv = fit.diagnostics.converged if fit.diagnostics is not None else None
    note = "frequentist columns: unadjusted (no bias term)" if run.spec.has_bias else ""
    common = {"engine": fit.engine, "k": fit.k, "frequentist": freq, "converged": conv, "note": note, "model_key": run.key}
    rows = [
        DecisionRow(
            key=run.key,
            label=run.label + (" (at covariate mean)" if run.at else ""),
            hr=fit.hr,
            predictive_hr=fit.predictive_hr,
            p_hr_below={threshold_key(t): fit.p_hr_below[threshold_key(t)] for t in thresholds},
            kind=ROW_MODEL,
            **common,
        )
    ]
    for label in run.at:
        summary = fit.hr_at[label]
        rows.append(
            DecisionRow(
                key=f"{run.key}@{label}",
                label=f"{run.label}, at {label}",
                hr=RatioSummary(summary.median, summary.q025, summary.q975),
                predictive_hr=None,
                p_hr_below={threshold_key(t): (summary.p_below or {}).get(threshold_key(t)) for t in thresholds},
                kind=ROW_AT_COVARIATE,
                point=dict(run.at[label]),
                **common,
            )
        )
    return rows


def model_data(table: StudyTable, run: ModelRun) -> tuple[StudyTable, ModelData]:
    """The studies of ``run.subset`` and the model data built from them for ``run.spec``.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> run = standard_runs(table)[1]
    >>> run.key, run.subset
    ('re_rct', 'rct')
    >>> sub, data = model_data(table, run)
    >>> sub.k, data.k
    (5, 5)
    """
    sub = table.subset(run.subset)
    return sub, ModelData.from_table(sub, run.spec)


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a :func:`time.perf_counter` reading), to the millisecond.

    Examples
    --------
    >>> start = time.perf_counter()
    >>> seconds = elapsed(start)
    >>> 0 <= seconds < 1, seconds == round(seconds, 3)
    (True, True)
    """
    return round(time.perf_counter() - start, 3)


#: Covariate values at which the meta-regression curve is evaluated for the bubble plot.
CURVE_POINTS = 21


def _curve(covariate: str, table: StudyTable) -> dict[str, dict[str, float]]:
    x = table.covariate(covariate)
    observed = x[~pd.isna(x)]
    lo, hi = (0.0, 1.0) if observed.size == 0 or (observed.min() >= 0 and observed.max() <= 1) else (float(observed.min()), float(observed.max()))
    values = [lo + (hi - lo) * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    return {at_label({covariate: v}): {covariate: v} for v in values}


@dataclass(frozen=True)
class _Settings:
    """What every fit of one analysis shares."""

    thresholds: tuple[float, ...]
    seed: int
    chains: int
    #: None: :func:`pymc_draws` and :func:`pymc_tune` decide by k.
    draws: int | None
    tune: int | None


@dataclass
class _Fitted:
    """The standard set fitted: fits, frequentist pools per subset, decision rows, warnings."""

    fits: dict[str, FitResult] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[DecisionRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Wall time of each fit (for a background fit, in its own process).
    seconds: dict[str, float] = field(default_factory=dict)


#: From this many studies on, the report samples its PyMC fits (the meta-regression on a
#: partly missing covariate, which only PyMC fits) in a child process, started before the exact
#: fits, while this process computes everything else of the analysis (the exact fits, the model
#: choice, the sweeps, the frequentist pools); the fit is the same call with the same seed, so the
#: same draws. At k = 100,000 the fit is 30-45 s (compile from PyTensor's cache, 4 x 3000 NUTS
#: iterations over a gradient that costs O(k)) and the rest of the analysis about 20 s; below
#: this k the fit takes seconds, less than starting a Python process that imports PyMC.
BACKGROUND_FIT_MIN_STUDIES = 10_000
#: Draws per chain of the report's PyMC fits when the caller gives none ...
DEFAULT_DRAWS = 2000
#: ... and from :data:`BACKGROUND_FIT_MIN_STUDIES` studies on, with a note in the report: every
#: draw costs O(k) (one gradient over all studies per leapfrog step), and with the study effects
#: integrated out the few global parameters mix well (measured at k = 100,000: bulk ESS about
#: 1.5 x the draws, so about 6,000 from 4 x 1,000; R-hat, ESS >= 400 and divergences are checked
#: as for every fit). ``synthesis fit`` keeps 2,000; ``run_analysis(draws=...)`` sets any number.
LARGE_K_DRAWS = 1000
#: Tuning steps per chain of the report's PyMC fits when the caller gives none, and from
#: :data:`BACKGROUND_FIT_MIN_STUDIES` studies on (with the same note): at k = 100,000 500
#: tuning steps gave converged runs with bulk ESS 5,500-6,300 from 4 x 1,000 draws (two seeds).
DEFAULT_TUNE = 1000
LARGE_K_TUNE = 500


def _fit_arguments(table: StudyTable, run: ModelRun, covariate: str, settings: _Settings) -> tuple:
    """The study subset of ``run``, the engine (exact where it can) and the keyword arguments
    of its :func:`synthesis.models.fit.fit` call."""
    from synthesis.models.exact import exact_unsupported_reason

    sub, data = model_data(table, run)
    engine = "exact" if exact_unsupported_reason(run.spec, data) is None else "pymc"
    at = dict(run.at)
    if run.spec.has_covariates:
        at |= _curve(covariate, sub)  # the bubble plot's curve: in hr_at, not in the table
    options = {
        "engine": engine, "thresholds": settings.thresholds, "at": at, "chains": settings.chains,
        "draws": pymc_draws(settings.draws, table.k), "tune": pymc_tune(settings.tune, table.k),
        "seed": settings.seed,
    }
    return sub, engine, options


def pymc_draws(draws: int | None, k: int) -> int:
    """Draws per chain of the report's PyMC fits: ``draws`` if given, else
    :data:`DEFAULT_DRAWS`, or :data:`LARGE_K_DRAWS` from :data:`BACKGROUND_FIT_MIN_STUDIES`
    studies on.

    Examples
    --------
    >>> pymc_draws(None, 17), pymc_draws(None, 100_000), pymc_draws(3000, 100_000)
    (2000, 1000, 3000)
    """
    return _by_size(draws, k, DEFAULT_DRAWS, LARGE_K_DRAWS)


def pymc_tune(tune: int | None, k: int) -> int:
    """Tuning steps per chain of the report's PyMC fits: ``tune`` if given, else
    :data:`DEFAULT_TUNE`, or :data:`LARGE_K_TUNE` from :data:`BACKGROUND_FIT_MIN_STUDIES`
    studies on.

    Examples
    --------
    >>> pymc_tune(None, 17), pymc_tune(None, 100_000), pymc_tune(2000, 100_000)
    (1000, 500, 2000)
    """
    return _by_size(tune, k, DEFAULT_TUNE, LARGE_K_TUNE)


def _by_size(given: int | None, k: int, default: int, large: int) -> int:
    """``given`` if not None, else ``default`` below :data:`BACKGROUND_FIT_MIN_STUDIES` studies
    and ``large`` from there on."""
    if given is not None:
        return given
    return large if k >= BACKGROUND_FIT_MIN_STUDIES else default


def _timed_fit(job: tuple[StudyTable, ModelSpec, dict[str, Any]]) -> tuple[FitResult, float]:
    """``fit(sub, spec, **options)`` and its wall time (top level: a process pool pickles it)."""
    from synthesis.models.fit import fit

    sub, spec, options = job
    t0 = time.perf_counter()
    result = fit(sub, spec, **options)
    return result, elapsed(t0)


def _start_background_fits(
    table: StudyTable, runs: Sequence[ModelRun], covariate: str, settings: _Settings
) -> tuple[Any, dict[str, Any]]:
    """Submit the PyMC fits of ``runs`` to a one-process pool when the table has at least
    :data:`BACKGROUND_FIT_MIN_STUDIES` studies; returns the pool (or None) and the futures by
    run key (empty below that k, or when there is no PyMC fit)."""
    if table.k < BACKGROUND_FIT_MIN_STUDIES:
        return None, {}
    jobs = {}
    for run in runs:
        sub, engine, options = _fit_arguments(table, run, covariate, settings)
        if engine == "pymc":
            jobs[run.key] = (sub, run.spec, options)
    if not jobs:
        return None, {}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver, not fork: this process may already run threads (BLAS, numba)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))
    return pool, {key: pool.submit(_timed_fit, job) for key, job in jobs.items()}


def _fit_run(
    table: StudyTable, run: ModelRun, covariate: str, settings: _Settings, fitted: _Fitted,
    *, background: Any = None,
) -> list[DecisionRow]:
    """Fit one member of the standard set (exact engine where it can; or take the result of the
    ``background`` future that fitted it in a child process), add the fit, its subset's
    frequentist pools, its wall time and any convergence warning to ``fitted``; return its
    decision rows."""
    sub, _, options = _fit_arguments(table, run, covariate, settings)
    if run.subset not in fitted.pools:
        fitted.pools[run.subset] = frequentist_pools(sub)
    if background is not None:
        result, seconds = _background_result(background, (sub, run.spec, options))
    else:
        result, seconds = _timed_fit((sub, run.spec, options))
    fitted.fits[run.key] = result
    fitted.seconds[run.key] = seconds
    if result.diagnostics is not None and not result.diagnostics.converged:
        fitted.warnings.append(f"{run.label}: sampling did not converge ({'; '.join(result.diagnostics.messages)})")
    return decision_rows(run, result, fitted.pools[run.subset], settings.thresholds)


def _background_result(future: Any, job: tuple) -> tuple[FitResult, float]:
    """The result of a background fit; if its process died (killed, out of memory: the pool is
    broken), the same fit in this process instead. Errors of the fit itself (a ModelError)
    propagate as they would in this process."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        print("notice: the background PyMC fit's process died; fitting in this process", file=sys.stderr)
        return _timed_fit(job)


def _exact_sweep(job: tuple) -> SweepResult:
    """One model's prior sweep on the exact engine (top level: a process pool pickles it)."""
    from synthesis.sweeps import run_sweep

    data, spec, label, tau_grid, bias_grid, thresholds = job
    return run_sweep(
        data, spec, label=label, tau_priors=tau_grid, bias_priors=bias_grid,
        thresholds=thresholds, engine="exact", progress=False,
    )


def _run_sweeps(
    table: StudyTable,
    runs: Sequence[ModelRun],
    thresholds: tuple[float, ...],
    *,
    tau_priors: Sequence[str] | None,
    bias_priors: Sequence[str] | None,
    workers: int | None,
    progress: bool | None,
) -> dict[str, SweepResult]:
    """The prior sweeps of every model the exact engine computes (PyMC sweeps are available with
    ``synthesis sweep``; the report keeps to exact ones), one job per model, spread over
    ``workers`` processes (default 1: in this process)."""
    from synthesis.models.exact import exact_unsupported_reason
    from synthesis.sweeps import (
        run_parallel,
        split_specs,
        standard_bias_priors,
        standard_tau_priors,
    )

    tau_grid = split_specs(";".join(tau_priors) if tau_priors else None, standard_tau_priors(), "tau")
    bias_grid = split_specs(";".join(bias_priors) if bias_priors else None, standard_bias_priors(), "delta")
    keys, jobs = [], []
    for run in runs:
        _, data = model_data(table, run)
        if exact_unsupported_reason(run.spec, data) is None:
            keys.append(run.key)
            jobs.append((data, run.spec, run.label, tau_grid, bias_grid if run.spec.has_bias else [], thresholds))
    show = sys.stderr.isatty() if progress is None else progress
    results = run_parallel(_exact_sweep, jobs, workers=workers or 1, scheduler=None, show=show, desc="prior sweeps")
    return dict(zip(keys, results, strict=True))


def _frequentist_extras(table: StudyTable, covariate: str, warnings: list[str]) -> tuple[Any, Any]:
    """Publication-bias diagnostics and the frequentist meta-regression on ``covariate`` (None,
    with a warning, when it is not estimable or the table has no such column)."""
    from synthesis import pubbias
    from synthesis.errors import SynthesisError
    from synthesis.metaregression import metaregression

    bias_diag = pubbias.bias_table(table)
    metareg = None
    if covariate in table.frame.columns:
        try:
            metareg = metaregression(table.y, table.v, table.covariate_matrix([covariate]), names=[covariate])
        except SynthesisError as exc:
            warnings.append(f"frequentist meta-regression on {covariate} not estimable: {exc}")
    return bias_diag, metareg


def tipping_threshold(thresholds: Sequence[float]) -> float:
    """The threshold T of the tipping-point analysis: :data:`TIPPING_THRESHOLD` (0.8, the
    project's headline threshold) when it is among ``thresholds``, otherwise the largest
    threshold below 1, otherwise the smallest.

    Examples
    --------
    >>> tipping_threshold((0.7, 0.8, 0.9, 1.0)), tipping_threshold((0.7, 0.9)), tipping_threshold((1.0, 1.2))
    (0.8, 0.9, 1.0)
    """
    ts = sorted(float(t) for t in thresholds)
    if any(np.isclose(t, TIPPING_THRESHOLD) for t in ts):
        return TIPPING_THRESHOLD
    below = [t for t in ts if t < 1.0]
    return below[-1] if below else ts[0]


def _averaged_row(key: str, label: str, summary: AveragedHR, k: int, thresholds: Sequence[float], note: str) -> DecisionRow:
    return DecisionRow(
        key=key, label=label, engine="exact", k=k,
        hr=RatioSummary(summary.median, summary.q025, summary.q975),
        predictive_hr=None,
        p_hr_below={threshold_key(t): summary.p_below[threshold_key(t)] for t in thresholds},
        frequentist={}, converged=None, note=note, kind=ROW_AVERAGED, model_key=key,
    )


def model_choice_rows(choice: ModelChoice, thresholds: Sequence[float]) -> list[DecisionRow]:
    """The rows that head the decision table: the model-averaged HR (the no-effect models'
    spike at HR = 1 included), the same given an effect, and the stacked bias variants.

    Each holds the numbers of its result object; predictive HR and frequentist comparators do
    not apply (``None`` and empty).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.averaging import average_models
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> choice = ModelChoice(averaging=average_models(table, thresholds=[0.8, 1.0]))
    >>> rows = model_choice_rows(choice, [0.8, 1.0])
    >>> [(r.key, r.kind, r.label) for r in rows]
    [('averaged', 'averaged', 'Model-averaged (8 models)'),
     ('averaged_given_effect', 'averaged', 'Model-averaged (8 models), given an effect')]
    >>> rows[0].hr.median, {t: round(p, 3) for t, p in rows[0].p_hr_below.items()}
    (1.0, {'0.8': 0.007, '1.0': 0.148})
    """
    rows: list[DecisionRow] = []
    avg = choice.averaging
    if avg is not None:
        n = len(avg.models)
        label = f"Model-averaged ({n} models)"
        dims = " x ".join(avg.components)
        rows.append(_averaged_row(
            AVERAGED_KEY, label, avg.averaged, avg.k, thresholds,
            f"averaged over {dims} with equal prior model probabilities; includes the spike at HR = 1 "
            f"of the no-effect models (posterior probability {avg.averaged.spike:.3f})",
        ))
        if avg.averaged_given_effect is not None:
            rows.append(_averaged_row(
                AVERAGED_GIVEN_EFFECT_KEY, f"{label}, given an effect", avg.averaged_given_effect, avg.k,
                thresholds, "the effect models only, renormalised (no spike)",
            ))
    cmp = choice.stacking
    if cmp is not None:
        weights = ", ".join(f"{v.variant} {v.comparison.weight:.3f}" for v in cmp.variants)
        methods = ", ".join(sorted({v.loo.method for v in cmp.variants}))
        s = cmp.stacked
        rows.append(DecisionRow(
            key=STACKED_KEY, label="Stacked bias variants (LOO)", engine=cmp.engine, k=cmp.variants[0].loo.k,
            hr=RatioSummary(s.median, s.q025, s.q975), predictive_hr=None,
            p_hr_below={threshold_key(t): (s.p_below or {})[threshold_key(t)] for t in thresholds},
            frequentist={}, converged=None if cmp.engine == "exact" else cmp.converged,
            note=f"stacking weights by {methods} LOO: {weights}", kind=ROW_STACKED, model_key=STACKED_KEY,
        ))
    return rows


def mu_prior_spec(spec: ModelSpec, scale: float) -> ModelSpec:
    """``spec`` with the prior ``mu ~ normal(0, scale)`` (every other prior kept).

    Examples
    --------
    >>> mu_prior_spec(ModelSpec("bias"), 0.5).priors.labels(("mu", "tau"))
    {'mu': 'normal(mean=0, sd=0.5)', 'tau': 'half-normal(scale=0.5)'}
    """
    from synthesis.models.priors import parse_prior

    return replace(spec, priors=replace(spec.priors, mu=parse_prior(f"normal(0, {float(scale)!r})", "mu")))


def mu_prior_sensitivity(
    table: StudyTable, spec: ModelSpec, *, scales: Sequence[float] = MU_PRIOR_SCALES,
    thresholds: Sequence[float] = DECISION_THRESHOLDS,
) -> dict[float, AveragingResult]:
    """The model averaging of :func:`synthesis.models.averaging.average_models` repeated under
    ``mu ~ normal(0, s)`` for each ``s`` in ``scales``.

    The inclusion Bayes factor of the effect is a ratio of marginal likelihoods,
    ``p(y | effect) / p(y | mu = 0)`` with ``p(y | effect) = ∫ p(y | mu) p(mu) dmu``: a wider
    prior on ``mu`` spreads its mass over effects the data rule out, so the Bayes factor for an
    effect shrinks as ``s`` grows (Lindley's paradox; Lindley DV. 1957. A statistical paradox.
    Biometrika 44:187-192, doi:10.1093/biomet/44.1-2.187).

    Examples
    --------
    >>> import synthesis as syn
    >>> runs = {run.key: run for run in standard_runs(syn.load_dataset("dnmbc_lrt"))}
    >>> out = mu_prior_sensitivity(syn.load_dataset("dnmbc_lrt"), runs["bias"].spec, thresholds=[0.8])
    >>> {s: round(r.inclusion_bf["effect"], 3) for s, r in out.items()}
    {0.2: 0.812, 0.5: 0.375, 1.0: 0.192, 2.0: 0.096}
    """
    from synthesis.models.averaging import average_models

    return {float(s): average_models(table, mu_prior_spec(spec, s), thresholds=thresholds) for s in scales}


def mu_prior_records(results: dict[float, AveragingResult]) -> list[dict[str, Any]]:
    """One record per mu prior of :func:`mu_prior_sensitivity`: the prior, the effect inclusion
    Bayes factor with its evidence words, the posterior probability of no effect (the spike at
    HR = 1), the averaged P(HR < T) and the HR given an effect (median and 95% interval).

    Examples
    --------
    >>> import synthesis as syn
    >>> runs = {run.key: run for run in standard_runs(syn.load_dataset("dnmbc_lrt"))}
    >>> out = mu_prior_sensitivity(syn.load_dataset("dnmbc_lrt"), runs["bias"].spec, scales=[2.0], thresholds=[0.8])
    >>> record = mu_prior_records(out)[0]
    >>> record["mu_prior"], record["evidence"], round(record["p_no_effect"], 3), round(record["p_hr_below_0.8"], 4)
    ('normal(mean=0, sd=2)', 'strong evidence against', 0.912, 0.0038)
    """
    from synthesis.models.averaging import evidence_words

    records = []
    for scale, avg in results.items():
        bf = avg.inclusion_bf.get("effect")
        given = avg.averaged_given_effect
        record: dict[str, Any] = {
            "mu_prior_sd": scale,
            "mu_prior": avg.priors.get("mu", ""),
            "effect_bf": bf,
            "evidence": evidence_words(bf),
            "p_no_effect": avg.averaged.spike,
        }
        record |= {f"p_hr_below_{t}": p for t, p in avg.averaged.p_below.items()}
        record |= {
            "hr_given_effect": given.median if given is not None else None,
            "hr_given_effect_q025": given.q025 if given is not None else None,
            "hr_given_effect_q975": given.q975 if given is not None else None,
        }
        records.append(record)
    return records


def _choice_spec(runs: Sequence[ModelRun]) -> tuple[ModelSpec, str]:
    """The spec of the standard bias model (additive; its default priors) and its key, or the
    random-effects model on all studies when there is no bias model."""
    by_key = {run.key: run for run in runs}
    run = by_key.get("bias") or by_key["re_all"]
    return run.spec, run.key


def _model_choice(
    table: StudyTable, runs: Sequence[ModelRun], thresholds: tuple[float, ...],
    warnings: list[str], timing: dict[str, float],
) -> ModelChoice:
    """Model averaging, stacking, the tipping point and power-scaling on the exact engine; a
    part that cannot be computed is ``None`` with a warning saying why (never silently)."""
    from synthesis.errors import SynthesisError
    from synthesis.models.averaging import average_models, has_bias_dimension
    from synthesis.models.exact import exact_unsupported_reason
    from synthesis.models.loo import compare_variants, exact_loo_unsupported_reason
    from synthesis.models.powerscale import power_scale
    from synthesis.models.spec import BIAS_VARIANTS
    from synthesis.models.tipping import tipping_analysis

    spec, key = _choice_spec(runs)
    choice = ModelChoice(powerscale_key=key, threshold=tipping_threshold(thresholds))

    def attempt(what: str, timer: str, compute: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return compute()
        except SynthesisError as exc:
            warnings.append(f"{what} not computed: {exc}")
            return None
        finally:
            timing[timer] = elapsed(t0)

    def powerscale() -> PowerScaleResult | None:
        if table.k > POWERSCALE_MAX_STUDIES:
            warnings.append(
                f"no power-scaling sensitivity in the report above {POWERSCALE_MAX_STUDIES:,} studies "
                f"(k = {table.k:,}); run synthesis psense for it"
            )
            return None
        return attempt(
            "power-scaling sensitivity", "powerscale_s", lambda: power_scale(table, spec, thresholds=thresholds)
        )

    choice.averaging = attempt(
        "model averaging", "model_averaging_s",
        lambda: average_models(table, spec, thresholds=thresholds),
    )
    if choice.averaging is not None and table.k > MU_PRIOR_MAX_STUDIES:
        warnings.append(
            f"no model averaging under other mu priors in the report above {MU_PRIOR_MAX_STUDIES:,} studies "
            f"(k = {table.k:,}); run synthesis average --mu-prior 'normal(0, s)' for it"
        )
    elif choice.averaging is not None:
        choice.mu_prior = attempt(
            "model averaging under other mu priors", "mu_prior_s",
            lambda: mu_prior_sensitivity(table, spec, thresholds=thresholds),
        ) or {}
    if not has_bias_dimension(table):
        warnings.append(
            "model averaging without the design-bias dimension (the table does not have both randomised "
            "and non-randomised studies); no stacking of bias variants and no tipping-point analysis"
        )
        choice.powerscale = powerscale()
        return choice
    variants = []
    for variant in BIAS_VARIANTS:
        s = replace(spec, bias_variant=variant)
        data = ModelData.from_table(table, s)
        reason = exact_loo_unsupported_reason(s, data) or exact_unsupported_reason(s, data)
        if reason is None:
            variants.append(variant)
        else:
            choice.unstacked[variant] = reason
    if table.k > STACKING_MAX_STUDIES:
        warnings.append(
            f"no stacking of bias variants in the report above {STACKING_MAX_STUDIES:,} studies "
            f"(k = {table.k:,}); run synthesis compare --engine exact for it"
        )
    elif len(variants) >= 2:
        choice.stacking = attempt(
            "stacking of the bias variants", "stacking_s",
            lambda: compare_variants(table, spec, variants=variants, engine="exact", thresholds=thresholds),
        )
    else:
        warnings.append(
            f"no stacking of bias variants: exact LOO scores {len(variants)} of them here "
            f"({'; '.join(dict.fromkeys(choice.unstacked.values()))}); synthesis compare --engine pymc samples them"
        )
    if table.k > TIPPING_MAX_STUDIES:
        warnings.append(
            f"no tipping-point analysis in the report above {TIPPING_MAX_STUDIES:,} studies (k = {table.k:,}); "
            "run synthesis tipping for it"
        )
    else:
        choice.tipping = attempt(
            "tipping-point analysis", "tipping_s",
            lambda: tipping_analysis(
                ModelData.from_table(table, spec), spec.priors, threshold=choice.threshold, level=choice.level
            ),
        )
    choice.powerscale = powerscale()
    return choice


def run_analysis(
    table: StudyTable,
    *,
    name: str,
    covariate: str = DEFAULT_COVARIATE,
    thresholds: Sequence[float] = DECISION_THRESHOLDS,
    seed: int = DEFAULT_SEED,
    chains: int = 4,
    draws: int | None = None,
    tune: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    tau_priors: Sequence[str] | None = None,
    bias_priors: Sequence[str] | None = None,
    source_path: str | None = None,
    operating_characteristics: bool = False,
) -> AnalysisResult:
    """Fit the standard set, pool frequentist comparators, run the sweeps and the
    publication-bias diagnostics: everything :func:`synthesis.report.write_report` shows.

    Without a ``covariate`` column in ``table`` there is no meta-regression, and a warning in
    the result says so (the report and the console show it). ``workers`` processes (default 1)
    run the prior sweeps, one model per job. ``source_path`` (default ``table.path``) is the
    input file, recorded in :attr:`AnalysisResult.source_path`. ``draws`` and ``tune`` per chain
    of the PyMC fits: default :data:`DEFAULT_DRAWS` and :data:`DEFAULT_TUNE`, or
    :data:`LARGE_K_DRAWS` and :data:`LARGE_K_TUNE` from :data:`BACKGROUND_FIT_MIN_STUDIES`
    studies on (a warning in the result says so).

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({
    ...     "study": ["T1", "T2", "T3", "O1", "O2", "O3"],
    ...     "design": ["rct", "rct", "rct", "retrospective", "retrospective", "prospective"],
    ...     "hr": [0.95, 0.85, 1.05, 0.65, 0.6, 0.7],
    ...     "ci_lower": [0.7, 0.6, 0.8, 0.55, 0.5, 0.5], "ci_upper": [1.29, 1.2, 1.38, 0.77, 0.72, 0.98]})
    >>> result = run_analysis(syn.load_studies(frame), name="example", thresholds=[0.8, 1.0])
    >>> [run.key for run in result.runs], sorted(result.sweeps), sorted(result.pools)
    (['re_all', 're_rct', 'bias'], ['bias', 're_all', 're_rct'], ['all', 'rct'])
    >>> result.warnings
    ["no meta-regression: DataFrame has no column 'bone_only_fraction'; name a numeric column with --covariate to fit one"]
    """
    start = time.perf_counter()
    settings = _Settings(
        thresholds=tuple(sorted(set(check_thresholds(thresholds)))),
        seed=check_seed(seed), chains=chains, draws=draws, tune=tune,
    )
    timing: dict[str, float] = {}
    runs = standard_runs(table, covariate)
    fitted = _Fitted(warnings=list(table.warnings))
    if covariate not in table.frame.columns:
        fitted.warnings.append(
            f"no meta-regression: {table.source} has no column {covariate!r}; "
            "name a numeric column with --covariate to fit one"
        )
    pool, background = _start_background_fits(table, runs, covariate, settings)
    try:
        rows = {}
        for run in runs:
            if run.key not in background:
                rows[run.key] = _fit_run(table, run, covariate, settings, fitted)
        rest = _rest_of_analysis(table, runs, settings, fitted, timing, workers=workers, progress=progress,
                                 tau_priors=tau_priors, bias_priors=bias_priors, covariate=covariate,
                                 operating_characteristics=operating_characteristics)
        for key, future in background.items():
            run = next(r for r in runs if r.key == key)
            rows[key] = _fit_run(table, run, covariate, settings, fitted, background=future)
            fitted.warnings.append(
                f"{run.label}: sampled in a parallel process while the rest of the analysis ran "
                f"(k = {table.k:,} >= {BACKGROUND_FIT_MIN_STUDIES:,}; same seed, same draws)"
            )
        draws, tune = pymc_draws(settings.draws, table.k), pymc_tune(settings.tune, table.k)
        if (draws, tune) != (DEFAULT_DRAWS, DEFAULT_TUNE) and any(f.engine == "pymc" for f in fitted.fits.values()) and (
            settings.draws is None or settings.tune is None
        ):
            fitted.warnings.append(
                f"PyMC fits drew {draws:,} per chain after {tune:,} tuning steps, not {DEFAULT_DRAWS:,} after "
                f"{DEFAULT_TUNE:,}, above {BACKGROUND_FIT_MIN_STUDIES:,} studies (k = {table.k:,}): each step costs "
                f"O(k) and the few global parameters mix well (ESS, R-hat and divergences checked as always); "
                f"synthesis fit --engine pymc draws {DEFAULT_DRAWS:,} after {DEFAULT_TUNE:,}"
            )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    fitted.rows = [row for run in runs for row in rows[run.key]]
    fitted.fits = {run.key: fitted.fits[run.key] for run in runs}
    rest_timing = dict(timing)  # the fits first; the same dict object (the explorer adds to it)
    timing.clear()
    timing.update({f"fit_{run.key}_s": fitted.seconds[run.key] for run in runs} | rest_timing)
    choice, explorer, reconciliation, inputs_comparison, settle, multiverse, sweeps, bias_diag, metareg = rest
    timing["total_s"] = elapsed(start)
    path = Path(source_path) if source_path else table.path
    return AnalysisResult(
        name=name,
        source=table.source,
        table=table,
        thresholds=settings.thresholds,
        covariate=covariate,
        runs=runs,
        fits=fitted.fits,
        pools=fitted.pools,
        decision=DecisionTable(model_choice_rows(choice, settings.thresholds) + fitted.rows, settings.thresholds),
        sweeps=sweeps,
        pubbias=bias_diag,
        metareg=metareg,
        seed=settings.seed,
        timing=timing,
        warnings=fitted.warnings,
        provenance={"source_path": str(path)} if path else {},
        source_path=path,
        model_choice=choice,
        reconciliation=reconciliation,
        settle=settle,
        explorer=explorer,
        inputs_comparison=inputs_comparison,
        multiverse=multiverse,
    )


def _rest_of_analysis(
    table: StudyTable, runs: Sequence[ModelRun], settings: _Settings, fitted: _Fitted,
    timing: dict[str, float], *, workers: int | None, progress: bool | None,
    tau_priors: Sequence[str] | None, bias_priors: Sequence[str] | None, covariate: str,
    operating_characteristics: bool,
) -> tuple:
    """Everything of :func:`run_analysis` after the fits of the standard set (none of it reads
    them): the model choice, the explorer, the bundled-data sections, the sweeps and the
    frequentist extras, each timed in ``timing``; warnings go to ``fitted.warnings``."""
    choice = _model_choice(table, runs, settings.thresholds, fitted.warnings, timing)
    from synthesis.models.explorer_grid import DeferredExplorer, explorer_for

    # the sensitivity explorer's grid (issue #15), computed when the report (or to_json) first
    # reads it; a failure is a warning, its time explorer_s
    explorer = DeferredExplorer(
        lambda: explorer_for(table, _choice_spec(runs)[0], threshold=choice.threshold, tipping=choice.tipping),
        warnings=fitted.warnings, timing=timing,
    )
    from synthesis.errors import SynthesisError
    from synthesis.reconcile import reconcile_bundled

    t0 = time.perf_counter()
    try:  # the published pools walked to this analysis (None unless the table is the bundled dataset)
        reconciliation = reconcile_bundled(table, thresholds=settings.thresholds)
    except SynthesisError as exc:
        reconciliation = None
        fitted.warnings.append(f"reconciliation with the published pools not computed: {exc}")
    timing["reconcile_s"] = elapsed(t0)
    t0 = time.perf_counter()
    try:  # one row per cohort vs all inputs (issue #13; None unless the table is the bundled dataset)
        from synthesis.multilevel import compare_bundled_inputs

        inputs_comparison = compare_bundled_inputs(table, thresholds=settings.thresholds)
    except SynthesisError as exc:
        inputs_comparison = None
        fitted.warnings.append(f"'One row per cohort, or all inputs?' not computed: {exc}")
    timing["inputs_comparison_s"] = elapsed(t0)

    t0 = time.perf_counter()
    try:  # "What would settle it?" (issue #14); operating characteristics only when asked (slow)
        from synthesis.cumulative import settle_evidence

        settle = settle_evidence(table, threshold=choice.threshold, operating=operating_characteristics, seed=settings.seed)
    except SynthesisError as exc:
        settle = None
        fitted.warnings.append(f"'What would settle it?' not computed: {exc}")
    timing["settle_s"] = elapsed(t0)

    t0 = time.perf_counter()
    try:  # how much the curation switches move the answer (None unless the table is the bundled dataset)
        from synthesis.specifications import multiverse_bundled

        multiverse = multiverse_bundled(table, threshold=choice.threshold, workers=workers)
    except SynthesisError as exc:
        multiverse = None
        fitted.warnings.append(f"multiverse of the curation switches not computed: {exc}")
    timing["multiverse_s"] = elapsed(t0)

    t0 = time.perf_counter()
    sweeps = _run_sweeps(
        table, runs, settings.thresholds, tau_priors=tau_priors, bias_priors=bias_priors,
        workers=workers, progress=progress,
    )
    timing["sweeps_s"] = elapsed(t0)

    t0 = time.perf_counter()
    bias_diag, metareg = _frequentist_extras(table, covariate, fitted.warnings)
    timing["frequentist_s"] = elapsed(t0)
    return choice, explorer, reconciliation, inputs_comparison, settle, multiverse, sweeps, bias_diag, metareg
