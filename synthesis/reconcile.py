"""How the published pooled hazard ratios came about: each published meta-analysis reproduced from
its own inputs and choices, then walked to this tool's answer one change at a time (issue #12).

The published pools and their inputs are data (``data/curation/published_pools.json``, installed
as ``synthesis.bundled``): per pool, the printed HR and CI (strings, so that their digits count),
the tau^2 estimator and every pooled input as the paper used it (``row_id`` of
``data/sources/evidence.csv``, HR and CI, orientation, the CI level it was read at, the SE
method). :func:`reconcile` pools the inputs (:func:`synthesis.pooling.pool`; the SE of each
``log HR`` from its CI by :func:`synthesis.studies.se_from_ci`), compares the result with the
printed numbers (:func:`within_printed_rounding`: half a unit of the last printed digit) and then
changes one thing at a time, in this order, each a step of the *ladder*:

1. orientation: inputs the paper entered as no-LRT vs LRT take the oriented cells of
   ``evidence.csv`` (LRT vs no LRT);
2. CI level: every CI read at the level its source prints (``evidence.csv`` ``ci_level``);
3. SE method: the SE from the whole CI, ``(ln U - ln L) / (2 z)`` (the tool's default);
4. trial reports: every input replaced by the report of the same trial or cohort that the tool
   uses (``cohort`` of ``data/curation/decisions.csv`` and of the dataset);
5. inputs the tool leaves out removed (with the curation's reason);
6. randomised trials the tool adds, then 7. the non-randomised studies it adds;
8. the estimator: DerSimonian-Laird where the paper used another;

after which the studies are exactly the tool's table and the model changes: 9. Bayesian random
effects, 10. the design-bias adjusted model (additive bias of non-randomised studies), 11. the
model average of effect x bias x heterogeneity conditional on an effect and 12. with the spike
at HR = 1 of the no-effect models (:func:`synthesis.models.averaging.average_models`; all on
the exact engine with the default priors). A step that changes nothing is left out.

Frequentist steps report the HR with its 95% Wald CI, Bayesian ones the posterior median with
its 95% equal-tailed credible interval (and ``P(HR < T)``).

References
----------
Gera R, et al. (2020). Locoregional therapy of the primary tumour in de novo stage IV breast
cancer in 216 066 patients: a meta-analysis. Sci Rep 10:2952. doi:10.1038/s41598-020-59908-1
Reinhorn D, et al. (2021). Locoregional therapy in de novo metastatic breast cancer: systematic
review and meta-analysis. Breast 58:173-181. doi:10.1016/j.breast.2021.05.003
Tosello G, et al. (2018). Breast surgery for metastatic breast cancer. Cochrane Database Syst Rev
CD011276. doi:10.1002/14651858.CD011276.pub2
Villacampa G, et al. (2024). Oncologist. doi:10.1093/oncolo/oyad266
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthesis.base import DEFAULT_THRESHOLDS, INTERVAL_LABEL
from synthesis.errors import InputError
from synthesis.models.spec import threshold_key
from synthesis.pooling import METHODS, pool
from synthesis.studies import DEFAULT_SE_METHOD, SE_METHODS, StudyTable, se_from_ci

if TYPE_CHECKING:
    import pandas as pd

#: The bundled files (package ``synthesis.bundled``, ``data/`` in the source tree).
PUBLISHED_POOLS_FILE = "curation/published_pools.json"
EVIDENCE_FILE = "sources/evidence.csv"
DECISIONS_FILE = "curation/decisions.csv"
#: How a paper entered an input: as LRT vs no LRT, or reversed (no LRT vs LRT).
ORIENTATIONS: tuple[str, ...] = ("lrt_vs_none", "reversed")
#: The frequentist estimator the ladder ends its data changes with (the tool's comparator).
LADDER_METHOD = "DL"
#: The kinds of step: a frequentist pool (HR, Wald CI) or a Bayesian posterior (median, CrI).
FREQUENTIST, BAYESIAN = "frequentist", "bayesian"


# --------------------------------------------------------------------------------------------
# the published pools (data)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrintedHR:
    """An HR and its CI as printed (strings keep the printed digits; ``None`` = not printed)."""

    hr: str | None
    ci_lower: str | None
    ci_upper: str | None

    def values(self) -> tuple[float | None, float | None, float | None]:
        return tuple(None if s is None else float(s) for s in (self.hr, self.ci_lower, self.ci_upper))  # type: ignore[return-value]

    def text(self) -> str:
        """``0.8077 (0.5704-1.1438)``, ``0.90 (CI not printed)``."""
        if self.ci_lower is None or self.ci_upper is None:
            return f"{self.hr} (CI not printed)"
        return f"{self.hr} ({self.ci_lower}-{self.ci_upper})"


@dataclass(frozen=True)
class PoolInput:
    """One pooled estimate as a paper used it."""

    row_id: str
    study: str
    hr: float
    ci_lower: float
    ci_upper: float
    orientation: str
    ci_level: float
    se_method: str
    note: str = ""


@dataclass(frozen=True)
class TrimFillSpec:
    """A printed trim-and-fill result and the choices that reproduce it."""

    published: PrintedHR
    trim_method: str
    method: str
    round_inputs: int | None
    basis: str


@dataclass(frozen=True)
class PublishedPool:
    """A published pooled HR with the inputs and choices that (should) reproduce it."""

    name: str
    meta_analysis: str
    published: PrintedHR
    method: str
    method_basis: str
    inputs: tuple[PoolInput, ...]
    reproducible: bool
    reason: str
    trimfill: TrimFillSpec | None = None


def _bundled(name: str) -> Path:
    path = Path(str(resources.files("synthesis.bundled") / name))
    if not path.is_file():
        raise InputError(f"bundled file {name!r} is missing from the installation ({path})")
    return path


def _printed(obj: Any, where: str) -> PrintedHR:
    if not isinstance(obj, Mapping):
        raise InputError(f"{where}: 'published' must be an object with hr, ci_lower, ci_upper")
    cells = []
    for key in ("hr", "ci_lower", "ci_upper"):
        value = obj.get(key)
        if value is not None:
            try:
                ok = float(value) > 0 and math.isfinite(float(value)) and isinstance(value, str)
            except ValueError:
                ok = False
            if not ok:
                raise InputError(f"{where}: published {key} must be a printed positive number as a string, got {value!r}")
        cells.append(value)
    if cells[0] is None:
        raise InputError(f"{where}: published hr is missing")
    return PrintedHR(*cells)


def _pool_input(obj: Any, where: str) -> PoolInput:
    if not isinstance(obj, Mapping):
        raise InputError(f"{where}: each input must be an object")
    missing = [k for k in ("row_id", "study", "hr", "ci_lower", "ci_upper", "orientation", "ci_level", "se_method")
               if k not in obj]
    if missing:
        raise InputError(f"{where}: missing {', '.join(missing)}")
    try:
        hr, lo, hi, level = (float(obj[k]) for k in ("hr", "ci_lower", "ci_upper", "ci_level"))
    except (TypeError, ValueError):
        raise InputError(f"{where}: hr, ci_lower, ci_upper and ci_level must be numbers") from None
    if not (0 < lo < hr < hi < math.inf):
        raise InputError(f"{where}: needs 0 < ci_lower < hr < ci_upper, got {hr} ({lo}-{hi})")
    if not 0.5 <= level < 1:
        raise InputError(f"{where}: ci_level is a probability in [0.5, 1), got {level}")
    if obj["orientation"] not in ORIENTATIONS:
        raise InputError(f"{where}: orientation must be one of {', '.join(ORIENTATIONS)}, got {obj['orientation']!r}")
    if obj["se_method"] not in SE_METHODS:
        raise InputError(f"{where}: se_method must be one of {', '.join(SE_METHODS)}, got {obj['se_method']!r}")
    return PoolInput(
        row_id=str(obj["row_id"]), study=str(obj["study"]), hr=hr, ci_lower=lo, ci_upper=hi,
        orientation=obj["orientation"], ci_level=level, se_method=obj["se_method"], note=str(obj.get("note", "")),
    )


def load_published_pools(path: str | Path | None = None) -> tuple[PublishedPool, ...]:
    """Read and check the published pools (default: the bundled ``published_pools.json``).

    Raises :class:`~synthesis.errors.InputError` naming the file and the pool for anything
    malformed (not JSON, a missing field, an estimator not in :data:`synthesis.pooling.METHODS`,
    an input whose CI does not contain its HR, a reproducible pool without inputs).

    Examples
    --------
    >>> pools = load_published_pools()
    >>> pools[0].name, pools[0].published.text(), len(pools[0].inputs)
    ('Gera 2020, prospective', '0.8077 (0.5704-1.1438)', 3)
    """
    file = Path(path) if path is not None else _bundled(PUBLISHED_POOLS_FILE)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: not a JSON document ({exc})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("pools"), list) or not doc["pools"]:
        raise InputError(f"{file}: expected an object with a non-empty list 'pools'")
    out = []
    for i, p in enumerate(doc["pools"], start=1):
        where = f"{file}: pool {i}"
        if not isinstance(p, Mapping) or not p.get("name"):
            raise InputError(f"{where}: each pool needs a 'name'")
        where = f"{file}: pool {i} ({p['name']})"
        method = p.get("method", LADDER_METHOD)
        if method not in METHODS:
            raise InputError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
        inputs = p.get("inputs", [])
        if not isinstance(inputs, list):
            raise InputError(f"{where}: 'inputs' must be a list")
        parsed = tuple(_pool_input(obj, f"{where}, input {j}") for j, obj in enumerate(inputs, start=1))
        if len(parsed) == 1:
            raise InputError(f"{where}: a pool needs at least 2 inputs (or none, when they are unknown)")
        reproducible = bool(p.get("reproducible", False))
        if reproducible and not parsed:
            raise InputError(f"{where}: marked reproducible but lists no inputs")
        tf = p.get("trimfill")
        trimfill = None
        if tf is not None:
            if not isinstance(tf, Mapping) or tf.get("trim_method", LADDER_METHOD) not in METHODS \
                    or tf.get("method", LADDER_METHOD) not in METHODS:
                raise InputError(f"{where}: trimfill needs published, trim_method and method (one of {', '.join(METHODS)})")
            trimfill = TrimFillSpec(
                published=_printed(tf.get("published"), f"{where}, trimfill"),
                trim_method=tf.get("trim_method", LADDER_METHOD), method=tf.get("method", LADDER_METHOD),
                round_inputs=tf.get("round_inputs"), basis=str(tf.get("basis", "")),
            )
        out.append(PublishedPool(
            name=str(p["name"]), meta_analysis=str(p.get("meta_analysis", p["name"])),
            published=_printed(p.get("published"), where), method=method,
            method_basis=str(p.get("method_basis", "")), inputs=parsed, reproducible=reproducible,
            reason=str(p.get("reason", "")), trimfill=trimfill,
        ))
    return tuple(out)


def within_printed_rounding(value: float | None, printed: str | None) -> bool | None:
    """Whether ``value`` lies within half a unit of the last printed digit of ``printed``.

    ``None`` when nothing was printed (or nothing reproduced).

    Examples
    --------
    >>> within_printed_rounding(0.80774, "0.8077"), within_printed_rounding(1.302, "1.31")
    (True, False)
    >>> within_printed_rounding(1.0, None) is None
    True
    """
    if printed is None or value is None:
        return None
    decimals = len(printed.partition(".")[2])
    return abs(value - float(printed)) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


# --------------------------------------------------------------------------------------------
# the ladder
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One rung of the ladder: what changed, and the HR with its 95% interval after the change."""

    change: str
    hr: float
    ci_lower: float
    ci_upper: float
    k: int
    kind: str = FREQUENTIST
    detail: str = ""
    p_below: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.change, "hr": self.hr, "ci_lower": self.ci_lower, "ci_upper": self.ci_upper,
            "k": self.k, "kind": self.kind, "detail": self.detail,
            "p_hr_below": None if self.p_below is None else dict(self.p_below),
        }


@dataclass(frozen=True)
class _Row:
    """A study in the pool being walked: its effect and how its SE is read."""

    row_id: str
    study: str
    hr: float
    ci_lower: float
    ci_upper: float
    ci_level: float
    se_method: str
    design: str
    #: log HR and SE of a row of the tool's table, taken from that table (bit-identical pools).
    y_se: tuple[float, float] | None = None

    def y_and_se(self) -> tuple[float, float]:
        if self.y_se is not None:
            return self.y_se
        return math.log(self.hr), se_from_ci(self.hr, self.ci_lower, self.ci_upper, level=self.ci_level,
                                              method=self.se_method)

    def values(self) -> tuple[float, float, float, float, str]:
        return self.hr, self.ci_lower, self.ci_upper, self.ci_level, self.se_method

    def text(self) -> str:
        return f"{self.hr:g} ({self.ci_lower:g}-{self.ci_upper:g})"


@dataclass(frozen=True)
class _Curation:
    """What the ladder reads from the sources and the tool's table."""

    evidence: dict[str, dict[str, str]]
    decisions: dict[str, dict[str, str]]
    tool_rows: tuple[_Row, ...]
    tool_cohort: dict[str, str]  # row_id -> cohort, for the tool's rows


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {row["row_id"]: row for row in csv.DictReader(fh)}


def _curation(table: StudyTable) -> _Curation:
    frame = table.frame
    missing = [c for c in ("evidence_row", "cohort") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{table.source}: reconcile walks to the bundled dataset and needs its {' and '.join(missing)} "
            "column(s) (the evidence.csv row and the trial or cohort of every study)"
        )
    rows, cohorts = [], {}
    for i, rec in enumerate(frame.to_dict("records")):
        rid = str(rec["evidence_row"])
        level = rec.get("ci_level")
        rows.append(_Row(
            row_id=rid, study=str(rec["study"]), hr=float(rec["hr"]), ci_lower=float(rec["ci_lower"]),
            ci_upper=float(rec["ci_upper"]), ci_level=0.95 if level is None or level != level else float(level),
            se_method=table.se_methods[i] or DEFAULT_SE_METHOD, design=str(table.designs[i]),
            y_se=(float(table.y[i]), float(table.se[i])),
        ))
        cohorts[rid] = str(rec["cohort"])
    return _Curation(
        evidence=_read_csv(_bundled(EVIDENCE_FILE)), decisions=_read_csv(_bundled(DECISIONS_FILE)),
        tool_rows=tuple(rows), tool_cohort=cohorts,
    )


def _pool_step(rows: Sequence[_Row], method: str, change: str, detail: str) -> Step:
    y, se = np.array([r.y_and_se() for r in rows]).T
    res = pool(y, se**2, method=method)
    het = f"Q = {res.q:.2f} on {res.q_df} df, I2 = {res.i2:.1f}%"
    return Step(change=change, hr=math.exp(res.estimate), ci_lower=math.exp(res.ci_lower),
                ci_upper=math.exp(res.ci_upper), k=len(rows), detail=f"{detail} ({het})" if detail else het)


def _names(rows: Sequence[_Row]) -> str:
    return ", ".join(r.study for r in rows)


def _data_steps(pool_: PublishedPool, cur: _Curation) -> list[Step]:
    """Steps 0 (the reproduction) to 8 (the estimator) of the module docstring."""
    tool_ids = [r.row_id for r in cur.tool_rows]
    tool_by_id = {r.row_id: r for r in cur.tool_rows}
    tool_by_cohort = {cur.tool_cohort[r.row_id]: r for r in cur.tool_rows}

    def design(row_id: str) -> str:
        return cur.decisions.get(row_id, {}).get("design", "") or "rct"

    def ordered(rows: list[_Row]) -> list[_Row]:  # the tool's order, then the others
        return sorted(rows, key=lambda r: tool_ids.index(r.row_id) if r.row_id in tool_by_id else len(tool_ids))

    rows = [
        _Row(row_id=i.row_id, study=i.study, hr=i.hr, ci_lower=i.ci_lower, ci_upper=i.ci_upper,
             ci_level=i.ci_level, se_method=i.se_method, design=design(i.row_id))
        for i in pool_.inputs
    ]
    method = pool_.method
    steps = [_pool_step(rows, method, f"reproduced from its inputs ({method})",
                        f"{len(rows)} inputs as {pool_.name} used them")]

    def evidence(row_id: str) -> dict[str, str]:
        if row_id not in cur.evidence:
            raise InputError(f"{pool_.name}: input {row_id!r} is not a row of {EVIDENCE_FILE}")
        return cur.evidence[row_id]

    # 1. orientation
    flipped = [i.row_id for i in pool_.inputs if i.orientation == "reversed"]
    if flipped:
        new, changed = [], []
        for r in rows:
            if r.row_id in flipped:
                ev = evidence(r.row_id)
                o = replace(r, hr=float(ev["hr"]), ci_lower=float(ev["ci_lower"]), ci_upper=float(ev["ci_upper"]))
                changed.append(f"{r.study} {r.text()} -> {o.text()}")
                r = o
            new.append(r)
        rows = new
        steps.append(_pool_step(rows, method, "orientation: LRT vs no LRT", "; ".join(changed)))

    # 2. CI level as printed
    new, changed = [], []
    for r in rows:
        level = evidence(r.row_id).get("ci_level") or ""
        if level and abs(float(level) / 100 - r.ci_level) > 1e-12:
            changed.append(f"{r.study}: {100 * r.ci_level:g}% -> {float(level):g}% as printed")
            r = replace(r, ci_level=float(level) / 100)
        new.append(r)
    if changed:
        rows = new
        steps.append(_pool_step(rows, method, "CI level as printed", "; ".join(changed)))

    # 3. SE method
    if any(r.se_method != DEFAULT_SE_METHOD for r in rows):
        methods = sorted({r.se_method for r in rows if r.se_method != DEFAULT_SE_METHOD})
        rows = [replace(r, se_method=DEFAULT_SE_METHOD) for r in rows]
        steps.append(_pool_step(rows, method, "SE from the whole CI",
                                f"{DEFAULT_SE_METHOD} (ln U - ln L) / 2z instead of the {' / '.join(methods)} half"))

    # 4. the tool's report of each trial or cohort; 5. inputs the tool leaves out (or a second
    # input from a cohort the tool has one row for)
    replaced, changed, dropped, used = [], [], [], set()
    for r in rows:
        cohort = cur.decisions.get(r.row_id, {}).get("cohort", "")
        t = tool_by_id.get(r.row_id) or tool_by_cohort.get(cohort)
        if t is None or t.row_id in used:
            why = (f"one row per cohort: {t.study} stands for it" if t is not None else
                   cur.decisions.get(r.row_id, {}).get("exclusion_reason", "") or "not in the tool's table")
            dropped.append((r, f"{r.study} ({why})"))
            replaced.append(r)
            continue
        used.add(t.row_id)
        if t.row_id != r.row_id or t.values() != r.values():
            changed.append(f"{r.study} {r.text()} -> {t.study} {t.text()}")
        replaced.append(t)
    rows = ordered(replaced)
    if changed:
        steps.append(_pool_step(rows, method, "the tool's trial reports", "; ".join(changed)))
    if dropped:
        gone = {id(r) for r, _ in dropped}
        rows = ordered([r for r in replaced if id(r) not in gone])
        steps.append(_pool_step(rows, method, "inputs the tool leaves out removed", "; ".join(w for _, w in dropped)))

    # 6. randomised trials added; 7. non-randomised studies added
    present = {r.row_id for r in rows}
    for label, want_rct in (("randomised trials added", True), ("non-randomised studies added", False)):
        extra = [t for t in cur.tool_rows if t.row_id not in present and (t.design == "rct") == want_rct]
        if extra:
            rows = ordered(rows + extra)
            present |= {t.row_id for t in extra}
            steps.append(_pool_step(rows, method, label, f"{len(extra)}: {_names(extra)}"))

    # 8. the estimator
    if method != LADDER_METHOD:
        steps.append(_pool_step(rows, LADDER_METHOD, f"estimator {LADDER_METHOD} (was {method})",
                                f"DerSimonian-Laird tau^2 instead of {method}"))
    return steps


def tool_steps(table: StudyTable, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> tuple[Step, ...]:
    """The model rungs on the tool's table (exact engine, default priors): Bayesian random effects,
    design-bias adjusted, model-averaged given an effect and model-averaged with the spike.

    The bias and averaging rungs need both randomised and non-randomised studies; without them
    only the random-effects rung and a 4-model average are given.

    Examples
    --------
    >>> import synthesis as syn
    >>> steps = tool_steps(syn.load_dataset("dnmbc_lrt"))
    >>> [(s.change, round(s.hr, 2)) for s in steps]  # doctest: +NORMALIZE_WHITESPACE
    [('Bayesian random effects', 0.69), ('design-bias adjusted', 0.91),
     ('model-averaged, given an effect', 0.9), ('model-averaged (spike at HR = 1)', 1.0)]
    """
    from synthesis.models.averaging import average_models, has_bias_dimension
    from synthesis.models.exact import fit_exact
    from synthesis.models.spec import ModelData, ModelSpec

    def fitted(model: str, change: str) -> Step:
        spec = ModelSpec(model)
        fit = fit_exact(ModelData.from_table(table, spec), spec, thresholds=thresholds)
        priors = ", ".join(f"{k} ~ {v}" for k, v in spec.describe()["priors"].items())
        return Step(change=change, hr=fit.hr.median, ci_lower=fit.hr.q025, ci_upper=fit.hr.q975, k=table.k,
                    kind=BAYESIAN, detail=f"exact posterior; {priors}", p_below=dict(fit.p_hr_below))

    bias = has_bias_dimension(table)
    steps = [fitted("re", "Bayesian random effects")]
    if bias:
        steps.append(fitted("bias", "design-bias adjusted"))
    avg = average_models(table, ModelSpec("bias" if bias else "re"), thresholds=thresholds)
    n = len(avg.models)
    for summary, change, detail in (
        (avg.averaged_given_effect, "model-averaged, given an effect",
         f"{n} models (effect x bias x heterogeneity), effect models renormalised"),
        (avg.averaged, "model-averaged (spike at HR = 1)",
         f"{n} models; the no-effect models put P = {avg.averaged.spike:.2f} on HR = 1"),
    ):
        if summary is not None:
            steps.append(Step(change=change, hr=summary.median, ci_lower=summary.q025, ci_upper=summary.q975,
                              k=table.k, kind=BAYESIAN, detail=detail, p_below=dict(summary.p_below)))
    return tuple(steps)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrimFillCheck:
    """A printed trim-and-fill result against its reproduction."""

    spec: TrimFillSpec
    k0: int
    side: str
    hr: float
    ci_lower: float
    ci_upper: float

    @property
    def within_rounding(self) -> bool:
        p = self.spec.published
        return all(within_printed_rounding(v, s) is not False
                   for v, s in ((self.hr, p.hr), (self.ci_lower, p.ci_lower), (self.ci_upper, p.ci_upper)))

    def to_dict(self) -> dict[str, Any]:
        pub = self.spec.published.values()
        return {
            "published_hr": pub[0], "published_ci": [pub[1], pub[2]],
            "reproduced_hr": self.hr, "reproduced_ci": [self.ci_lower, self.ci_upper],
            "within_rounding": self.within_rounding, "k0": self.k0, "side": self.side,
            "trim_method": self.spec.trim_method, "method": self.spec.method,
            "round_inputs": self.spec.round_inputs, "basis": self.spec.basis,
        }


@dataclass(frozen=True)
class Reconciliation:
    """One published pool: its reproduction (the first step) and the ladder to the tool's answer."""

    pool: PublishedPool
    steps: tuple[Step, ...]
    trimfill: TrimFillCheck | None = None

    @property
    def reproduced(self) -> Step | None:
        return self.steps[0] if self.steps else None

    @property
    def within_rounding(self) -> bool | None:
        """The reproduction matches every printed number within its printed rounding (``None``
        without a reproduction)."""
        r = self.reproduced
        if r is None:
            return None
        p = self.pool.published
        return all(within_printed_rounding(v, s) is not False
                   for v, s in ((r.hr, p.hr), (r.ci_lower, p.ci_lower), (r.ci_upper, p.ci_upper)))

    def to_dict(self) -> dict[str, Any]:
        pub = self.pool.published.values()
        r = self.reproduced
        return {
            "name": self.pool.name,
            "published_hr": pub[0],
            "published_ci": [pub[1], pub[2]],
            "reproduced_hr": None if r is None else r.hr,
            "reproduced_ci": [None, None] if r is None else [r.ci_lower, r.ci_upper],
            "steps": [s.to_dict() for s in self.steps],
            "reproducible": self.pool.reproducible,
            "within_rounding": self.within_rounding,
            "reason": self.pool.reason,
            "meta_analysis": self.pool.meta_analysis,
            "published_text": self.pool.published.text(),
            "method": self.pool.method,
            "method_basis": self.pool.method_basis,
            "inputs": [asdict(i) for i in self.pool.inputs],
            "trimfill": None if self.trimfill is None else self.trimfill.to_dict(),
        }


def _hr_text(hr: float, lo: float, hi: float, digits: int = 3) -> str:
    return f"{hr:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


@dataclass(frozen=True)
class ReconcileResult:
    """Every published pool reconciled with the tool's answer (``synthesis reconcile``)."""

    reconciliations: tuple[Reconciliation, ...]
    thresholds: tuple[float, ...]
    source: str
    notes: tuple[str, ...] = field(default=())

    @property
    def laddered(self) -> tuple[Reconciliation, ...]:
        """The pools with a ladder (inputs known)."""
        return tuple(r for r in self.reconciliations if r.steps)

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis reconcile --json`` document: ``{"published": [{"name", "published_hr",
        "published_ci", "reproduced_hr", "reproduced_ci", "steps": [{"change", "hr",
        "ci_lower", "ci_upper", ...}], "reproducible", "within_rounding", "reason", ...}],
        "thresholds", "source", "notes"}``.

        Examples
        --------
        A pool whose inputs are not in the sources has no reproduction and no ladder:

        >>> gera_all = load_published_pools()[1]
        >>> result = ReconcileResult((Reconciliation(gera_all, steps=()),), thresholds=(1.0,), source="none")
        >>> p = result.to_json()["published"][0]
        >>> p["name"], p["published_hr"], p["published_ci"], p["reproduced_hr"], p["steps"]
        ('Gera 2020, all LRT', 0.6823, [0.6365, 0.7314], None, [])
        """
        return {
            "published": [r.to_dict() for r in self.reconciliations],
            "thresholds": list(self.thresholds),
            "source": self.source,
            "interval": f"{INTERVAL_LABEL} CI (frequentist steps) or equal-tailed credible interval (bayesian steps)",
            "notes": list(self.notes),
        }

    def to_frame(self, what: str = "steps") -> pd.DataFrame:
        """``"steps"``: one row per rung of every ladder; ``"pools"``: one row per published pool.

        Examples
        --------
        >>> pools = load_published_pools()
        >>> result = ReconcileResult(tuple(Reconciliation(p, steps=()) for p in pools), (1.0,), "none")
        >>> result.to_frame("pools")[["pool", "published"]].iloc[1].tolist()
        ['Gera 2020, all LRT', '0.6823 (0.6365-0.7314)']
        >>> result.to_frame("steps").empty  # no ladder without inputs
        True
        """
        import pandas as pd

        if what == "pools":
            records = []
            for r in self.reconciliations:
                d = r.to_dict()
                records.append({
                    "pool": r.pool.name, "published": r.pool.published.text(),
                    "published_hr": d["published_hr"], "published_ci_lower": d["published_ci"][0],
                    "published_ci_upper": d["published_ci"][1], "reproduced_hr": d["reproduced_hr"],
                    "reproduced_ci_lower": d["reproduced_ci"][0], "reproduced_ci_upper": d["reproduced_ci"][1],
                    "reproducible": r.pool.reproducible, "within_rounding": r.within_rounding,
                    "method": r.pool.method, "k": len(r.pool.inputs), "reason": r.pool.reason,
                })
            return pd.DataFrame.from_records(records)
        if what != "steps":
            raise ValueError(f"what must be 'steps' or 'pools', got {what!r}")
        keys = [threshold_key(t) for t in self.thresholds]
        records = []
        for r in self.laddered:
            for i, s in enumerate(r.steps):
                rec = {"pool": r.pool.name, "step": i, "change": s.change, "hr": s.hr, "ci_lower": s.ci_lower,
                       "ci_upper": s.ci_upper, "k": s.k, "kind": s.kind, "detail": s.detail}
                for key in keys:
                    rec[f"p_hr_below_{key}"] = None if s.p_below is None else s.p_below.get(key)
                records.append(rec)
        return pd.DataFrame.from_records(records)

    def __str__(self) -> str:
        """The reconciliation as ``synthesis reconcile`` prints it."""
        lines = [f"Published pooled HRs reproduced and walked to this tool's answer ({self.source})",
                 f"HR ({INTERVAL_LABEL} CI; Bayesian steps: posterior median, {INTERVAL_LABEL} equal-tailed CrI)"]
        width = max((len(s.change) for r in self.laddered for s in r.steps), default=10)
        for r in self.reconciliations:
            lines.append("")
            head = f"{r.pool.name}: published {r.pool.published.text()}"
            if r.reproduced is None:
                lines.append(f"{head}; not reproducible")
                lines.append(f"  {r.pool.reason}")
                continue
            verdict = "within printed rounding" if r.within_rounding else "NOT within printed rounding"
            lines.append(f"{head}; reproduced {_hr_text(r.reproduced.hr, r.reproduced.ci_lower, r.reproduced.ci_upper, 4)} "
                         f"({verdict})")
            if not r.pool.reproducible:
                lines.append(f"  {r.pool.reason}")
            for s in r.steps:
                probs = "" if s.p_below is None else "  " + "  ".join(
                    f"P(HR < {float(t):g}) = {p:.2f}" for t, p in s.p_below.items())
                lines.append(f"  {s.change:<{width}}  {_hr_text(s.hr, s.ci_lower, s.ci_upper)}  k = {s.k}{probs}")
            if r.trimfill is not None:
                t = r.trimfill
                ok = "within printed rounding" if t.within_rounding else "NOT within printed rounding"
                lines.append(f"  trim and fill: published {t.spec.published.text()}; reproduced "
                             f"{_hr_text(t.hr, t.ci_lower, t.ci_upper, 4)} ({ok}; {t.k0} filled on the {t.side}, "
                             f"{t.spec.trim_method} search, {t.spec.method} pool)")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    @property
    def summary(self) -> str:
        """The reconciliation in sentences: which published numbers are reproduced, which are not
        and why, and what moves the answer on the way to the tool's.

        Examples
        --------
        >>> pools = load_published_pools()[1:3]  # the two Gera pools without listed inputs
        >>> print(ReconcileResult(tuple(Reconciliation(p, steps=()) for p in pools), (1.0,), "none").summary)
        Not reproducible from the sources (each reason is in the table): Gera 2020, all LRT; Gera 2020, surgery only.
        """
        ok = [r for r in self.laddered if r.within_rounding]
        near = [r for r in self.laddered if not r.within_rounding]
        none = [r for r in self.reconciliations if not r.steps]
        out = []
        if ok:
            out.append("Reproduced from their own inputs within printed rounding: " + "; ".join(
                f"{r.pool.name}, {r.pool.published.text()}" for r in ok) + ".")
        for r in near:
            s = r.reproduced
            out.append(f"Rebuilt but not within printed rounding: {r.pool.name}, published {r.pool.published.text()}, "
                       f"rebuilt {_hr_text(s.hr, s.ci_lower, s.ci_upper)}. {r.pool.reason}")
        if none:
            out.append("Not reproducible from the sources (each reason is in the table): "
                       + "; ".join(r.pool.name for r in none) + ".")
        if self.laddered:
            moves = []
            for r in self.laddered:
                i = int(np.argmax([abs(math.log(b.hr / a.hr)) for a, b in zip(r.steps, r.steps[1:], strict=False)]))
                moves.append((r.pool.name, r.steps[i + 1]))
            changes = sorted({m.change for _, m in moves})
            last = self.laddered[0].steps[-1]
            out.append(
                f"The largest single move on {'every ladder' if len(changes) == 1 else 'the ladders'} is "
                + "; ".join(f"'{c}'" for c in changes)
                + f"; every ladder ends at this tool's answer, {last.change}: {_hr_text(last.hr, last.ci_lower, last.ci_upper, 2)}."
            )
        return " ".join(out)

    def plot_ladder(self, **kwargs: Any) -> Any:
        """The ladder figure (:func:`synthesis.plots.reconcile.plot_reconcile_ladder`)."""
        from synthesis.plots.reconcile import plot_reconcile_ladder

        return plot_reconcile_ladder(self, **kwargs)


def _trimfill(pool_: PublishedPool) -> TrimFillCheck | None:
    from synthesis.pubbias import trim_and_fill

    spec = pool_.trimfill
    if spec is None or not pool_.inputs:
        return None
    y, se = np.array([
        (math.log(i.hr), se_from_ci(i.hr, i.ci_lower, i.ci_upper, level=i.ci_level, method=i.se_method))
        for i in pool_.inputs
    ]).T
    if spec.round_inputs is not None:
        y, se = np.round(y, spec.round_inputs), np.round(se, spec.round_inputs)
    tf = trim_and_fill(y, se**2, method=spec.method, trim_method=spec.trim_method)
    return TrimFillCheck(spec=spec, k0=tf.k0, side=tf.side, hr=math.exp(tf.estimate),
                         ci_lower=math.exp(tf.ci_lower), ci_upper=math.exp(tf.ci_upper))


def is_bundled_table(table: StudyTable) -> bool:
    """Whether ``table`` is the bundled dnMBC dataset as curated (same file, same studies), the
    table the published pools are reconciled with.

    Examples
    --------
    >>> import synthesis as syn
    >>> is_bundled_table(syn.load_dataset()), is_bundled_table(syn.load_dataset(subset="rct"))
    (True, False)
    """
    from synthesis.datasets import dataset_path, load_dataset

    path = getattr(table, "path", None)
    if path is None or Path(path).resolve() != dataset_path().resolve():
        return False
    return tuple(table.studies) == tuple(load_dataset().studies)


def reconcile_bundled(table: StudyTable, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> ReconcileResult | None:
    """:func:`reconcile` when ``table`` is the bundled dataset (:func:`is_bundled_table`), else
    ``None``: the published pools are about the bundled question only (the report's section).

    Examples
    --------
    >>> import synthesis as syn
    >>> reconcile_bundled(syn.load_dataset(subset="rct")) is None
    True
    """
    return reconcile(table=table, thresholds=thresholds) if is_bundled_table(table) else None


def reconcile(
    pools: Sequence[PublishedPool] | str | Path | None = None,
    table: StudyTable | None = None,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> ReconcileResult:
    """Reproduce each published pool from its inputs and walk it to the tool's answer.

    Parameters
    ----------
    pools
        The published pools (:func:`load_published_pools`), or a path to such a JSON file;
        default the bundled ``published_pools.json``.
    table
        The tool's table (default: the bundled ``dnmbc_lrt`` dataset); it needs the
        ``evidence_row`` and ``cohort`` columns the ladder matches inputs by.
    thresholds
        ``P(HR < T)`` of the Bayesian rungs for each T.

    Returns
    -------
    ReconcileResult
        One :class:`Reconciliation` per pool; pools without inputs have no ladder and say why.

    Examples
    --------
    >>> result = reconcile()
    >>> [(r.pool.name, r.within_rounding) for r in result.laddered]  # doctest: +NORMALIZE_WHITESPACE
    [('Gera 2020, prospective', True), ('Cochrane 2018 (Tosello)', False), ('Reinhorn 2021', True),
     ('Villacampa 2024', True)]
    >>> [s.change for s in result.laddered[0].steps][:4]
    ['reproduced from its inputs (DL)', 'orientation: LRT vs no LRT', 'SE from the whole CI', 'randomised trials added']
    """
    from synthesis.datasets import load_dataset
    from synthesis.models.spec import check_thresholds

    thresholds = tuple(check_thresholds(list(thresholds)))
    if pools is None or isinstance(pools, (str, Path)):
        pools = load_published_pools(pools)
    table = table if table is not None else load_dataset()
    cur = _curation(table)
    model_steps = tool_steps(table, thresholds)
    out = []
    for p in pools:
        steps: tuple[Step, ...] = ()
        if p.inputs:
            steps = (*_data_steps(p, cur), *model_steps)
        out.append(Reconciliation(pool=p, steps=steps, trimfill=_trimfill(p)))
    notes = [
        "a pool without listed inputs has no ladder: its reason says why it cannot be reproduced",
        "a step that changes nothing is left out; every ladder ends at the tool's table and models",
    ]
    return ReconcileResult(reconciliations=tuple(out), thresholds=thresholds, source=table.source, notes=tuple(notes))
