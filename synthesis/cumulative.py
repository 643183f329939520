"""Cumulative evidence: refit after each publication year (the ``year`` column) for the
randomised studies alone, the design-bias model and the model average, with "what if the next
trial shows HR = x with n events" scenarios as extra points a year after the last.

Each year's fit uses every study published up to that year, with the exact engine
(:func:`synthesis.models.exact.fit_exact`; the model average by
:func:`synthesis.models.averaging.average_models`, reported over all models, with the spike at
HR = 1 of the no-effect models, and given an effect). A model that the studies so far cannot
identify (the randomised studies alone before the first trial; the design-bias model before
both designs are present) is a row with no numbers and the reason. A scenario trial is a
randomised row with ``log HR = log x`` and ``SE = 2 / sqrt(n)`` (a 1:1 trial with n events;
:func:`synthesis.models.preposterior.trial_se`), added to all the studies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from synthesis.errors import InputError, ModelError
from synthesis.models.averaging import average_models, has_bias_dimension, parse_prior_prob
from synthesis.models.exact import fit_exact
from synthesis.models.loo import EXACT_THREADS
from synthesis.models.preposterior import RULE_THRESHOLD, trial_se
from synthesis.models.spec import ModelData, ModelSpec, check_thresholds, threshold_key
from synthesis.studies import StudyTable

#: The column holding each study's publication year.
YEAR_COLUMN = "year"
#: Threads of the per-year fits (the exact engine's thread count, as in ``compare``).
TIMELINE_THREADS = EXACT_THREADS
#: The timeline's models in the order they are reported, with their printed labels.
TIMELINE_MODELS: dict[str, str] = {
    "rct_only": "Random effects, RCTs",
    "bias": "Design-bias adjusted",
    "averaged": "Model-averaged",
    "averaged_given_effect": "  given an effect",
}


@dataclass(frozen=True)
class TrialScenario:
    """A hypothetical next trial: its HR and number of events (1:1)."""

    hr: float
    events: float

    @property
    def label(self) -> str:
        return f"next trial HR {self.hr:g}, {self.events:g} events"


def parse_scenario(text: str) -> TrialScenario:
    """``HR:EVENTS``, e.g. ``0.8:400`` (HR > 0, events > 0).

    Examples
    --------
    >>> parse_scenario("0.8:400")
    TrialScenario(hr=0.8, events=400.0)
    >>> parse_scenario("0.8")
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: a scenario is HR:EVENTS (e.g. 0.8:400), got '0.8'
    """
    parts = str(text).split(":")
    try:
        hr, events = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"a scenario is HR:EVENTS (e.g. 0.8:400), got {text!r}", parameter="scenario") from None
    if not (math.isfinite(hr) and hr > 0 and math.isfinite(events) and events > 0):
        raise InputError(f"a scenario needs HR > 0 and events > 0, got {text!r}", parameter="scenario")
    return TrialScenario(hr, events)


@dataclass(frozen=True)
class TimelineRow:
    """One model at one year: HR median and 95% equal-tailed interval, P(HR < T), k."""

    year: int
    model: str
    k: int
    hr: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    p_below: float | None = None
    scenario: str | None = None
    reason: str | None = None
    spike: float | None = None

    @property
    def estimable(self) -> bool:
        return self.hr is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "year": self.year, "model": self.model, "hr": self.hr, "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper, "p_below": self.p_below, "k": self.k, "scenario": self.scenario,
            "reason": self.reason, "spike_prob": self.spike,
        }


@dataclass
class TimelineResult:
    """Every (year, model) row, the threshold and notes."""

    rows: list[TimelineRow]
    threshold: float
    years: list[int]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: The fits' model (priors, bias variant) and the average's prior inclusion probabilities.
    spec: ModelSpec | None = None
    prior_prob: Any = None

    def to_json(self) -> dict[str, Any]:
        """``synthesis timeline --json`` (with the priors it ran under: ``spec``, ``prior_prob``)."""
        return {
            "threshold": self.threshold,
            "models": dict(TIMELINE_MODELS),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
            "spec": self.spec.describe() if self.spec is not None else None,
            "prior_prob": parse_prior_prob(self.prior_prob),
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records([r.to_dict() for r in self.rows])

    def __str__(self) -> str:
        t = self.threshold
        lines = [
            f"Cumulative evidence by publication year (studies up to and including each year); P<T: P(HR < {t:g})",
            "HR: posterior median (95% equal-tailed credible interval); model-averaged: over all models, "
            "with the no-effect models' spike at HR = 1",
            f"{'year':>6}  {'model':<24} {'k':>3}  {'HR (95% CrI)':<20} {'P<T':>6}",
        ]
        shown = None
        for r in self.rows:
            if r.scenario != shown:
                lines.append(f"scenario: {r.scenario}, added to all studies (year {r.year}):")
                shown = r.scenario
            year = f"{r.year}" + ("*" if r.scenario else "")
            if r.estimable:
                cell = f"{r.hr:.2f} ({r.ci_lower:.2f}-{r.ci_upper:.2f})"
                lines.append(f"{year:>6}  {TIMELINE_MODELS[r.model]:<24} {r.k:>3}  {cell:<20} {r.p_below:>6.3f}")
            else:
                lines.append(f"{year:>6}  {TIMELINE_MODELS[r.model]:<24} {r.k:>3}  not estimable: {r.reason}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from synthesis.models.display import fmt, html_block, html_table

        cols = ["year", "model", "k", "hr", "ci_lower", "ci_upper", "p_below", "scenario", "reason"]
        rows = [[fmt(v) if isinstance(v, float) else ("" if v is None else v) for v in
                 (r.year, TIMELINE_MODELS[r.model].strip(), r.k, r.hr, r.ci_lower, r.ci_upper, r.p_below,
                  r.scenario, r.reason)] for r in self.rows]
        return html_block(f"Cumulative evidence by publication year: P(HR < {self.threshold:g})",
                          [html_table(cols, rows)], self.notes)

    def plot(self, **kwargs: Any) -> Any:
        """The timeline figure (:func:`synthesis.plots.timeline.plot_timeline`)."""
        from synthesis.plots.timeline import plot_timeline

        return plot_timeline(self, **kwargs)


def study_years(table: StudyTable) -> np.ndarray:
    """The publication year of every study (integers), or an InputError naming the column or
    the studies without one."""
    if YEAR_COLUMN not in table.frame.columns:
        raise InputError(f"{table.source}: a timeline needs a '{YEAR_COLUMN}' column (publication year)")
    values = pd.to_numeric(table.frame[YEAR_COLUMN], errors="coerce").to_numpy(dtype=float)
    bad = [s for s, v in zip(table.studies, values, strict=True) if not (math.isfinite(v) and v == round(v))]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise InputError(
            f"{table.source}: column '{YEAR_COLUMN}' must hold a whole year for every study; missing or "
            f"not a year for {len(bad)} ({shown}): fill it in, or set include to false for those rows"
        )
    return values.astype(int)


def _with_trial(table: StudyTable, scenario: TrialScenario, year: int) -> StudyTable:
    """The table with the scenario's trial appended as a randomised study."""
    row = {c: np.nan for c in table.frame.columns}
    row.update(study=scenario.label, log_hr=math.log(scenario.hr), se=trial_se(scenario.events),
               design="rct", **{YEAR_COLUMN: float(year)})
    frame = pd.concat([table.frame, pd.DataFrame([row])], ignore_index=True)
    return replace(table, frame=frame, lines=(), se_methods=(), has_design=True)


def _fit_rows(table: StudyTable, year: int, spec: ModelSpec, threshold: float, scenario: str | None,
              prior_prob: Any) -> list[TimelineRow]:
    """The four rows of one year (or scenario).

    The design-bias row is the average's own design-bias model when the average could be
    computed (the same exact posterior: it agrees with :func:`fit_exact` to 1e-12, tested), so a
    year costs the randomised studies' fit and the 8-model average; no fit summarises study
    effects, which the timeline does not show.
    """
    key = threshold_key(threshold)
    nr = np.asarray(table.nonrandomised, dtype=bool) if table.has_design else np.ones(table.k, dtype=bool)
    n_rct = int((~nr).sum())
    bias_spec = replace(spec, model="bias", covariates=())
    rows = []
    if n_rct == 0:
        rows.append(TimelineRow(year, "rct_only", 0, scenario=scenario, reason="no randomised study yet"))
    else:
        sp = replace(spec, model="re", covariates=())
        fit = fit_exact(ModelData.from_table(table.select(~nr), sp), sp, thresholds=[threshold], study_effects=False)
        rows.append(TimelineRow(year, "rct_only", n_rct, fit.hr.median, fit.hr.q025, fit.hr.q975,
                                fit.p_hr_below[key], scenario))
    try:
        avg = average_models(table, bias_spec, prior_prob=prior_prob, thresholds=[threshold])
        failure = None
    except ModelError as exc:
        avg, failure = None, str(exc)
    if has_bias_dimension(table):
        own = next((m.hr for m in avg.models if m.spec == bias_spec), None) if avg is not None else None
        if own is None:
            fit = fit_exact(ModelData.from_table(table, bias_spec), bias_spec, thresholds=[threshold],
                            study_effects=False)
            rows.append(TimelineRow(year, "bias", table.k, fit.hr.median, fit.hr.q025, fit.hr.q975,
                                    fit.p_hr_below[key], scenario))
        else:
            rows.append(TimelineRow(year, "bias", table.k, own.median, own.q025, own.q975, own.p_below[key],
                                    scenario))
    else:
        why = "no randomised study yet" if n_rct == 0 else "no non-randomised study yet"
        rows.append(TimelineRow(year, "bias", table.k, scenario=scenario, reason=why))
    if avg is None:
        rows += [TimelineRow(year, m, table.k, scenario=scenario, reason=failure)
                 for m in ("averaged", "averaged_given_effect")]
        return rows
    a = avg.averaged
    rows.append(TimelineRow(year, "averaged", table.k, a.median, a.q025, a.q975, a.p_below[key], scenario,
                            reason=None if n_rct else "no randomised study yet: the average is of what the "
                            "non-randomised studies estimate, design bias included", spike=a.spike))
    g = avg.averaged_given_effect
    if g is None:
        rows.append(TimelineRow(year, "averaged_given_effect", table.k, scenario=scenario,
                                reason="no effect model has posterior probability"))
    else:
        rows.append(TimelineRow(year, "averaged_given_effect", table.k, g.median, g.q025, g.q975, g.p_below[key],
                                scenario, spike=0.0))
    return rows


def run_timeline(
    table: StudyTable,
    spec: ModelSpec | None = None,
    *,
    threshold: float = RULE_THRESHOLD,
    scenarios: Sequence[TrialScenario | str] = (),
    prior_prob: Any = None,
) -> TimelineResult:
    """Refit after each publication year, and once per scenario trial a year after the last.

    Parameters
    ----------
    table
        Studies with a ``year`` column (every study needs one).
    spec
        Priors, bias variant and alpha of the fits (its model is ignored; no covariates).
    threshold
        Report P(HR < threshold).
    scenarios
        Hypothetical next trials (``TrialScenario`` or ``"HR:EVENTS"``).
    prior_prob
        Prior inclusion probabilities of the model average (as ``synthesis average``).

    Examples
    --------
    The randomised studies, and a scenario trial a year after the last:

    >>> import synthesis as syn
    >>> res = run_timeline(syn.load_dataset("dnmbc_lrt", subset="rct"), scenarios=["0.8:500"])
    >>> res.years
    [2015, 2018, 2019, 2022, 2023, 2024]
    >>> [(r.model, r.estimable) for r in res.rows if r.year == 2015][:2]
    [('rct_only', True), ('bias', False)]
    """
    t0 = time.perf_counter()
    spec = spec if spec is not None else ModelSpec("bias")
    if spec.covariates:
        raise InputError("a timeline takes no covariates", parameter="covariates")
    threshold = check_thresholds([threshold], "threshold")[0]
    trials = [s if isinstance(s, TrialScenario) else parse_scenario(s) for s in scenarios]
    parse_prior_prob(prior_prob)  # a bad value is an InputError now, not a reason in every row
    years = study_years(table)
    last = int(years.max())
    # every year and scenario is independent: the exact fits run in TIMELINE_THREADS threads
    # (numpy releases the GIL in the O(k x nodes) sums), the rows are kept in order
    tasks: list[tuple[int, TrialScenario | None]] = [(int(y), None) for y in sorted(set(years.tolist()))]
    tasks += [(last + 1, trial) for trial in trials]

    def rows_of(task: tuple[int, TrialScenario | None]) -> list[TimelineRow]:
        year, trial = task
        if trial is None:
            return _fit_rows(table.select(years <= year), year, spec, threshold, None, prior_prob)
        return _fit_rows(_with_trial(table, trial, year), year, spec, threshold, trial.label, prior_prob)

    with ThreadPoolExecutor(max_workers=min(TIMELINE_THREADS, len(tasks))) as pool:
        parts = list(pool.map(rows_of, tasks))
    rows: list[TimelineRow] = [r for part in parts for r in part]
    all_years = sorted(set(years.tolist())) + ([last + 1] if trials else [])
    early = sorted({r.year for r in rows if r.model == "averaged" and r.estimable and r.reason})
    notes = [
        f"model-averaged rows of {early[0]}-{early[-1]}: no randomised study yet, so the average is of what the "
        "non-randomised studies estimate, design bias included"
    ] if early else []
    return TimelineResult(rows=rows, threshold=threshold, years=[int(y) for y in all_years],
                          seconds=time.perf_counter() - t0, notes=notes, spec=spec, prior_prob=prior_prob)


# --------------------------------------------------------------------------------------------
# The report's section "What would settle it?": the next trial, the timeline and (when asked)
# the operating characteristics, computed once for the report to read
# --------------------------------------------------------------------------------------------
#: Simulated evidence bases per scenario of the report's operating characteristics (when asked).
REPORT_N_SIM = 1000


@dataclass
class SettleEvidence:
    """What the report's "What would settle it?" section shows; a part that could not be
    computed is ``None`` with a note saying why."""

    plan: Any = None  # synthesis.models.preposterior.PlanResult
    timeline: TimelineResult | None = None
    operating: Any = None  # synthesis.models.operating.SimulationResult
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json() if self.plan is not None else None,
            "timeline": self.timeline.to_json() if self.timeline is not None else None,
            "operating": self.operating.to_json() if self.operating is not None else None,
            "notes": list(self.notes),
        }


#: Above this many studies :func:`settle_evidence` (the report) leaves the timeline out, with a
#: note (``synthesis timeline`` computes it at any k): a refit of three models, one of them an
#: 8-model average, per publication year, measured 14 s at k = 3,000 with 35 years and 57 s at
#: k = 20,000 (2 cores shared with other work); the next-trial plan costs 0.6 s at k = 100,000.
REPORT_TIMELINE_MAX_STUDIES = 1000


def settle_evidence(
    table: StudyTable,
    spec: ModelSpec | None = None,
    *,
    threshold: float = RULE_THRESHOLD,
    level: float | None = None,
    operating: bool = False,
    seed: int | None = None,
    events: Sequence[float] | None = None,
) -> SettleEvidence:
    """The next-trial plan (design-bias model, or random effects without both designs; ``events``,
    default 100 to 2000 events), the timeline (when the table has a year column) and, with ``operating``, the
    operating characteristics of the rule (:data:`REPORT_N_SIM` per scenario, the default grid).

    Examples
    --------
    The randomised studies alone (no design-bias model: random effects, with a note):

    >>> import synthesis as syn
    >>> ev = settle_evidence(syn.load_dataset("dnmbc_lrt", subset="rct"), events=[500])
    >>> ev.plan.model, len(ev.plan.rows), ev.timeline.years, ev.operating is None
    ('re', 1, [2015, 2018, 2019, 2022, 2023], True)
    """
    from synthesis.base import DEFAULT_SEED
    from synthesis.models.preposterior import DEFAULT_EVENTS, RULE_LEVEL, plan_trial

    t0 = time.perf_counter()
    spec = spec if spec is not None else ModelSpec("bias")
    level = RULE_LEVEL if level is None else level
    out = SettleEvidence()
    both = has_bias_dimension(table)
    plan_spec = replace(spec, model="bias" if both else "re", covariates=())
    if not both:
        out.notes.append("the next-trial plan uses random effects: the table does not have both randomised and "
                         "non-randomised studies")
    try:
        out.plan = plan_trial(ModelData.from_table(table, plan_spec), plan_spec, threshold=threshold, level=level,
                              events=DEFAULT_EVENTS if events is None else events)
    except (ModelError, InputError) as exc:
        out.notes.append(f"next-trial plan not computed: {exc}")
    if YEAR_COLUMN in table.frame.columns and table.k > REPORT_TIMELINE_MAX_STUDIES:
        out.notes.append(
            f"no timeline in the report above {REPORT_TIMELINE_MAX_STUDIES:,} studies (k = {table.k:,}); "
            "run synthesis timeline for it"
        )
    elif YEAR_COLUMN in table.frame.columns:
        try:
            out.timeline = run_timeline(table, spec, threshold=threshold)
        except (ModelError, InputError) as exc:
            out.notes.append(f"timeline not computed: {exc}")
    else:
        out.notes.append(f"no timeline: the table has no '{YEAR_COLUMN}' column")
    if operating:
        if not both:
            out.notes.append("no operating characteristics: they compare the design-bias model with the naive pool "
                             "and the randomised studies, which needs both designs")
        else:
            from synthesis.simulation import run_simulation

            try:
                out.operating = run_simulation(
                    ModelData.from_table(table, replace(spec, model="bias", covariates=())),
                    replace(spec, model="bias", covariates=()), n_sim=REPORT_N_SIM, threshold=threshold,
                    level=level, seed=DEFAULT_SEED if seed is None else seed, workers=1, progress=False,
                )
            except (ModelError, InputError) as exc:
                out.notes.append(f"operating characteristics not computed: {exc}")
    out.seconds = time.perf_counter() - t0
    return out
