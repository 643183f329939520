"""The study table: the one place where a CSV of studies is read, validated and normalised.

Every command reads its input through :func:`load_studies`. A file gives each study's effect in
one of two forms:

* ``hr``, ``ci_lower``, ``ci_upper`` (optional ``ci_level``, default 0.95, per row), converted as
  ``log_hr = log(hr)`` and ``se = (log(ci_upper) - log(ci_lower)) / (2 z)`` with
  ``z = Phi^-1((1 + ci_level) / 2)``;
* ``log_hr``, ``se``.

``design`` (optional) is ``rct``, ``prospective`` or ``retrospective``; ``rct`` is the reference
design and the other two are non-randomised. ``include`` (optional, true/false) marks the rows of
the default analysis set; ``cohort`` (optional) marks rows that share patients. Every other column
is kept; numeric ones can be used as covariates, with empty cells meaning "missing".

Bad input raises :class:`~synthesis.errors.InputError` naming the file, the CSV line number
(header = line 1) and the column.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from synthesis.errors import InputError

DESIGNS: tuple[str, ...] = ("rct", "prospective", "retrospective")
REFERENCE_DESIGN = "rct"
RATIO_COLUMNS = ("hr", "ci_lower", "ci_upper")
LOG_COLUMNS = ("log_hr", "se")
SUBSETS = ("all", "rct", "observational")
DEFAULT_CI_LEVEL = 0.95
#: A point estimate further than this fraction of the CI width from the log-scale midpoint of
#: its CI is flagged (transcription error or asymmetric CI).
ASYMMETRY_TOLERANCE = 0.10
#: Medians within this ratio of each other (shorter/longer >= 0.9) are too close to contradict an HR.
DIRECTION_TOLERANCE = 0.90
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_MAX_BYTES = 50_000_000


@dataclass(frozen=True)
class StudyTable:
    """A validated table of studies with log hazard ratios and their standard errors.

    ``frame`` has one row per study in file order, with columns ``study``, ``log_hr``, ``se``,
    ``design`` (``None`` when the file has no design column), ``line`` (the CSV line number) and
    every other column of the file (numeric columns as floats with NaN for missing).
    """

    source: str
    frame: pd.DataFrame
    warnings: tuple[str, ...] = ()
    has_design: bool = False
    excluded: int = 0
    covariates: tuple[str, ...] = field(default=())

    @property
    def k(self) -> int:
        return len(self.frame)

    @property
    def studies(self) -> list[str]:
        return self.frame["study"].tolist()

    @property
    def y(self) -> np.ndarray:
        """Log hazard ratios."""
        return self.frame["log_hr"].to_numpy(dtype=float)

    @property
    def se(self) -> np.ndarray:
        return self.frame["se"].to_numpy(dtype=float)

    @property
    def v(self) -> np.ndarray:
        """Sampling variances se**2."""
        return self.se**2

    @property
    def designs(self) -> list[str | None]:
        return self.frame["design"].tolist()

    @property
    def nonrandomised(self) -> np.ndarray:
        """Boolean indicator of a non-randomised design (all False without a design column)."""
        if not self.has_design:
            return np.zeros(self.k, dtype=bool)
        return (self.frame["design"] != REFERENCE_DESIGN).to_numpy()

    def covariate(self, name: str) -> np.ndarray:
        """Values of a numeric covariate as floats, NaN where missing."""
        if name not in self.frame.columns:
            raise InputError(f"no column named {name!r}", file=self.source, line=1, column=name)
        return self.frame[name].to_numpy(dtype=float)

    def covariate_matrix(self, names: Sequence[str]) -> np.ndarray:
        """A (k, len(names)) array of covariates, NaN where missing."""
        if not names:
            return np.zeros((self.k, 0))
        return np.column_stack([self.covariate(n) for n in names])

    def select(self, mask: np.ndarray, *, label: str | None = None) -> StudyTable:
        """A new table holding the rows where ``mask`` is True."""
        frame = self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        source = self.source if label is None else f"{self.source} [{label}]"
        return replace(self, frame=frame, source=source)

    def subset(self, which: str) -> StudyTable:
        """Rows of one design family: ``all``, ``rct`` or ``observational`` (non-randomised)."""
        if which == "all":
            return self
        if which not in SUBSETS:
            raise InputError(f"unknown subset {which!r}; choose one of {', '.join(SUBSETS)}")
        if not self.has_design:
            raise InputError(
                f"--subset {which} needs a 'design' column", file=self.source, line=1, column="design"
            )
        mask = ~self.nonrandomised if which == "rct" else self.nonrandomised
        return self.select(mask, label=which)

    def to_records(self) -> list[dict]:
        """The normalised rows as plain dicts (study, log_hr, se, design and covariates)."""
        out = []
        for row in self.frame.itertuples(index=False):
            d = row._asdict()
            rec = {
                "study": d["study"],
                "log_hr": float(d["log_hr"]),
                "se": float(d["se"]),
                "design": d["design"],
            }
            for c in self.covariates:
                val = d[c]
                rec[c] = None if pd.isna(val) else float(val)
            out.append(rec)
        return out


def z_for_level(level: float) -> float:
    """Normal quantile z with P(|Z| < z) = level (1.959964 for 0.95)."""
    return float(norm.ppf(0.5 + level / 2.0))


def _read_rows(path: Path, name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV file into a header and (line number, cells) pairs, skipping blank lines."""
    if not path.exists():
        raise InputError("file not found", file=name)
    if path.is_dir():
        raise InputError("is a directory, not a CSV file", file=name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=name) from None
    if len(raw) > _MAX_BYTES:
        raise InputError(f"file is larger than {_MAX_BYTES // 1_000_000} MB", file=name)
    if b"\x00" in raw:
        raise InputError("binary content (NUL bytes): not a CSV text file", file=name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not valid UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV", file=name
        ) from None
    if not text.strip():
        raise InputError("file is empty", file=name)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                continue
            rows.append((line, cells))
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", file=name, line=reader.line_num) from None
    if header is None:
        raise InputError("file is empty (no header row)", file=name)
    return header, rows


def _check_header(header: list[str], name: str) -> None:
    if len(header) == 1 and any(d in header[0] for d in ";\t|"):
        delim = next(d for d in ";\t|" if d in header[0])
        shown = {"\t": "tab", ";": "';'", "|": "'|'"}[delim]
        raise InputError(
            f"the header looks {shown}-delimited; this tool reads comma-separated files",
            file=name,
            line=1,
        )
    seen: set[str] = set()
    for col in header:
        if not col:
            raise InputError("empty column name in the header", file=name, line=1)
        if col in seen:
            raise InputError("duplicate column name", file=name, line=1, column=col)
        seen.add(col)
    if "study" not in header:
        raise InputError("required column is missing", file=name, line=1, column="study")


def _number(cell: str, *, name: str, line: int, column: str, positive: bool = False) -> float:
    text = cell.strip()
    if not text:
        raise InputError("value is missing", file=name, line=line, column=column)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{text!r} is not a number", file=name, line=line, column=column) from None
    if not math.isfinite(value):
        raise InputError(f"{text!r} is not a finite number", file=name, line=line, column=column)
    if positive and value <= 0:
        raise InputError(f"must be > 0, got {text}", file=name, line=line, column=column)
    return value


def _parse_bool(cell: str, *, name: str, line: int, column: str) -> bool:
    text = cell.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{cell!r} is not true/false", file=name, line=line, column=column)


def _effect_form(header: list[str], name: str) -> str:
    ratio = [c for c in RATIO_COLUMNS if c in header]
    logs = [c for c in LOG_COLUMNS if c in header]
    if ratio and logs:
        raise InputError(
            "give the effect in one form only: either hr, ci_lower, ci_upper or log_hr, se "
            f"(found {', '.join(ratio + logs)})",
            file=name,
            line=1,
        )
    if not ratio and not logs:
        raise InputError(
            "no effect columns: give either hr, ci_lower, ci_upper (and optional ci_level) "
            "or log_hr, se",
            file=name,
            line=1,
        )
    needed = RATIO_COLUMNS if ratio else LOG_COLUMNS
    for c in needed:
        if c not in header:
            raise InputError("required column is missing", file=name, line=1, column=c)
    return "ratio" if ratio else "log"


def _effect(cells: dict[str, str], form: str, *, name: str, line: int) -> tuple[float, float, str | None]:
    """Return (log_hr, se, warning or None) for one row."""
    if form == "log":
        y = _number(cells["log_hr"], name=name, line=line, column="log_hr")
        se = _number(cells["se"], name=name, line=line, column="se", positive=True)
        return y, se, None
    hr = _number(cells["hr"], name=name, line=line, column="hr", positive=True)
    lo = _number(cells["ci_lower"], name=name, line=line, column="ci_lower", positive=True)
    hi = _number(cells["ci_upper"], name=name, line=line, column="ci_upper", positive=True)
    level = DEFAULT_CI_LEVEL
    if "ci_level" in cells and cells["ci_level"].strip():
        level = _number(cells["ci_level"], name=name, line=line, column="ci_level")
        if not 0.0 < level < 1.0:
            raise InputError(
                f"must be a probability in (0, 1), e.g. 0.95 or 0.90; got {cells['ci_level'].strip()}",
                file=name,
                line=line,
                column="ci_level",
            )
    if lo >= hi:
        raise InputError(f"ci_lower ({lo:g}) must be < ci_upper ({hi:g})", file=name, line=line, column="ci_lower")
    if not lo <= hr <= hi:
        raise InputError(f"hr {hr:g} lies outside its CI ({lo:g} to {hi:g})", file=name, line=line, column="hr")
    llo, lhi, lhr = math.log(lo), math.log(hi), math.log(hr)
    se = (lhi - llo) / (2.0 * z_for_level(level))
    if not (math.isfinite(se) and se > 0):
        raise InputError("CI too narrow to give a standard error", file=name, line=line, column="ci_upper")
    warning = None
    width = lhi - llo
    offset = abs(lhr - (llo + lhi) / 2.0)
    if offset > ASYMMETRY_TOLERANCE * width:
        warning = (
            f"line {line} ({cells['study'].strip()}): hr {hr:g} is off the log-scale midpoint of its CI "
            f"({lo:g} to {hi:g}) by {100 * offset / width:.0f}% of the CI width; "
            "check for a transcription error or an asymmetric CI"
        )
    return lhr, se, warning


def _coerce_extra(values: list[str]) -> pd.Series:
    """Keep an extra column numeric when every non-empty cell is a number, else as text."""
    stripped = [v.strip() for v in values]
    nums: list[float] = []
    for v in stripped:
        if not v:
            nums.append(np.nan)
            continue
        try:
            nums.append(float(v))
        except ValueError:
            return pd.Series([v if v else None for v in stripped], dtype=object)
    return pd.Series(nums, dtype=float)


def load_studies(
    path: str | Path,
    *,
    covariates: Iterable[str] = (),
    subset: str = "all",
    include_all: bool = False,
    min_studies: int = 2,
    display_name: str | None = None,
) -> StudyTable:
    """Read, validate and normalise a CSV of studies.

    Parameters
    ----------
    path
        The CSV file.
    covariates
        Columns that must exist and be numeric (empty cells are allowed and mean missing).
    subset
        ``all``, ``rct`` (randomised only) or ``observational`` (non-randomised only).
    include_all
        Keep rows whose ``include`` column is false (by default they are dropped before
        validation of their effect, since excluded rows may have no usable HR).
    min_studies
        Fewer studies than this after selection is an error (pooling needs at least 2).
    """
    path = Path(path)
    name = display_name or str(path)
    covariates = tuple(dict.fromkeys(covariates))
    header, rows = _read_rows(path, name)
    _check_header(header, name)
    form = _effect_form(header, name)
    for cov in covariates:
        if cov not in header:
            raise InputError("covariate column is missing from the file", file=name, line=1, column=cov)

    warnings: list[str] = []
    records: list[dict] = []
    extras: dict[str, list[str]] = {c: [] for c in header}
    seen: dict[str, int] = {}
    excluded = 0
    for line, raw_cells in rows:
        if len(raw_cells) != len(header):
            raise InputError(
                f"row has {len(raw_cells)} fields but the header has {len(header)}"
                " (wrong delimiter or an unquoted comma?)",
                file=name,
                line=line,
            )
        cells = dict(zip(header, raw_cells, strict=True))
        study = cells["study"].strip()
        if not study:
            raise InputError("study name is empty", file=name, line=line, column="study")
        if study in seen:
            raise InputError(
                f"duplicate study {study!r} (first on line {seen[study]})", file=name, line=line, column="study"
            )
        seen[study] = line
        if "include" in cells:
            keep = _parse_bool(cells["include"], name=name, line=line, column="include")
            if not keep and not include_all:
                excluded += 1
                continue
            if not keep:
                try:
                    _effect(cells, form, name=name, line=line)
                except InputError as exc:
                    excluded += 1
                    warnings.append(
                        f"line {line} ({study}): row marked include=false has no usable effect "
                        f"({exc.reason}); left out even with --include-all"
                    )
                    continue
        design = None
        if "design" in cells:
            label = cells["design"].strip().lower()
            if label not in DESIGNS:
                raise InputError(
                    f"unknown design {cells['design'].strip()!r}; use one of {', '.join(DESIGNS)}",
                    file=name,
                    line=line,
                    column="design",
                )
            design = label
        y, se, warn = _effect(cells, form, name=name, line=line)
        if warn:
            warnings.append(warn)
        for cov in covariates:
            text = cells[cov].strip()
            if text:
                _number(text, name=name, line=line, column=cov)
        records.append({"study": study, "log_hr": y, "se": se, "design": design, "line": line})
        for c in header:
            extras[c].append(cells[c])

    frame = pd.DataFrame.from_records(records, columns=["study", "log_hr", "se", "design", "line"])
    reserved = {"study", "log_hr", "se", "design", "line"}
    for c in header:
        if c in reserved:
            continue
        frame[c] = _coerce_extra(extras[c]) if records else pd.Series(dtype=float)
    table = StudyTable(
        source=name,
        frame=frame,
        warnings=(),
        has_design="design" in header,
        excluded=excluded,
        covariates=covariates,
    )
    table = table.subset(subset)
    warnings.extend(_cohort_warnings(table))
    warnings.extend(_direction_warnings(table))
    if table.k < min_studies:
        raise InputError(
            f"{table.k} usable {'study' if table.k == 1 else 'studies'}"
            f"{' in subset ' + subset if subset != 'all' else ''}; pooling needs at least {min_studies}",
            file=name,
        )
    return replace(table, warnings=tuple(warnings))


def _cohort_warnings(table: StudyTable) -> list[str]:
    if "cohort" not in table.frame.columns:
        return []
    out = []
    groups = table.frame.dropna(subset=["cohort"]).groupby("cohort", sort=False)["study"]
    for cohort, studies in groups:
        if str(cohort).strip() and len(studies) > 1:
            out.append(
                f"cohort {cohort}: {len(studies)} included rows share patients or a control arm "
                f"({', '.join(studies)}); pooling them as independent overstates precision"
            )
    return out


def _direction_warnings(table: StudyTable) -> list[str]:
    """Warn when the HR favours the arm with the shorter median overall survival."""
    cols = ("median_os_lrt", "median_os_control")
    if not all(c in table.frame.columns for c in cols):
        return []
    out = []
    for row in table.frame.itertuples(index=False):
        d = row._asdict()
        a, b = d["median_os_lrt"], d["median_os_control"]
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(a) and math.isfinite(b)) or min(a, b) >= DIRECTION_TOLERANCE * max(a, b):
            continue
        y = d["log_hr"]
        if (y < 0 and a < b) or (y > 0 and a > b):
            out.append(
                f"line {d['line']} ({d['study']}): HR {math.exp(y):.3g} favours "
                f"{'LRT' if y < 0 else 'control'} but the median OS is shorter in that arm "
                f"({a:g} vs {b:g} months); the HR direction may be reversed"
            )
    return out
