"""The study table: the one place where a CSV of studies is read, validated and normalised.

Every command reads its input through :func:`load_studies`. A file gives each study's effect in
one of two forms:

* ``hr``, ``ci_lower``, ``ci_upper`` (optional ``ci_level``, default 0.95, per row), converted as
  ``log_hr = log(hr)`` and, with ``z = Phi^-1((1 + ci_level) / 2)``, an SE by one of
  :data:`SE_METHODS` (optional ``se_method`` per row, case-insensitive; a blank cell takes the
  table's default, the loader keyword ``se_method``, ``symmetric`` unless set):

  - ``symmetric``: ``se = (log(ci_upper) - log(ci_lower)) / (2 z)`` (the whole CI);
  - ``lower``: ``se = (log(hr) - log(ci_lower)) / z`` (the lower half of the CI);
  - ``upper``: ``se = (log(ci_upper) - log(hr)) / z`` (the upper half of the CI).

  For a CI symmetric on the log scale the three agree; for a printed (rounded) CI they differ
  in the last digits, and a published pool is reproduced by the method its authors used
  (Gera 2020's prospective pool, for instance, took the lower half);
* ``log_hr``, ``se`` (a row's ``se_method`` is then ignored, with a warning).

``design`` (optional) is ``rct``, ``prospective`` or ``retrospective``; ``rct`` is the reference
design and the other two are non-randomised. ``include`` (optional, true/false) marks the rows of
the default analysis set; ``cohort`` (optional) marks rows that share patients. Every other column
is kept; numeric ones can be used as covariates, with empty cells meaning "missing".

Column names are stripped of surrounding spaces; the names above are matched ignoring case
(``Study``, ``HR``, ``CI_Lower`` are read as ``study``, ``hr``, ``ci_lower``) and two header
cells that differ only in case are refused. Every other column keeps its name exactly as written
(any text: ``bone-only``, ``class``, ``age (years)``) and its values unchanged, and covariates are
named exactly (case-sensitive). The loader's own bookkeeping (the CSV line of each row,
:attr:`StudyTable.lines`) is kept outside the frame, so no user column is ever replaced. The
frame's ``study`` is the stripped label, ``design`` the lower-cased label, and ``log_hr``/``se``
are the file's own columns in the log form and derived from ``hr``/``ci_*`` in the ratio form (a
file with both forms is refused, so a derived column never shadows a user's).

Representable values (outside them a row is refused; the limits keep every downstream
computation -- inverse-variance weights, tau^2 estimators, the exact engine's tau grid, PyMC --
finite and well-conditioned, and lie far beyond any published hazard ratio):

* ``hr``, ``ci_lower``, ``ci_upper`` in ``HR_RANGE`` = [1e-6, 1e6]; ``log_hr`` within
  ``MAX_ABS_LOG_HR`` = log(1e6) = 13.8 of 0;
* ``se`` (given, or derived from the CI) in ``SE_RANGE`` = [1e-4, 10]. 1e-4 is the SE of a log HR
  from about 4e8 events, and a CI printed to three decimals (1.000 to 1.001) still gives 2.6e-4;
  a CI so narrow that its log width rounds away (0.7999999999 to 0.8000000001) is refused;
* ``ci_level`` in ``CI_LEVEL_RANGE`` = [0.01, 0.9999] (99.99%); a level below 0.5 is accepted
  with a warning, since 0.05 is more likely the alpha of a 95% CI.

Bad input raises :class:`~synthesis.errors.InputError` naming the file, the CSV line number
(header = line 1) and the column, and for a value out of range the accepted range.
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
from scipy.special import ndtri

from synthesis.base import DESIGNS, REFERENCE_DESIGN
from synthesis.errors import InputError

RATIO_COLUMNS = ("hr", "ci_lower", "ci_upper")
LOG_COLUMNS = ("log_hr", "se")
SUBSETS = ("all", "rct", "observational")
DEFAULT_CI_LEVEL = 0.95
#: How the SE of a log HR is taken from its CI (see the module docstring).
SE_METHODS = ("symmetric", "lower", "upper")
#: The SE method of a table whose rows do not name one.
DEFAULT_SE_METHOD = "symmetric"
#: Hazard ratios (hr, ci_lower, ci_upper) a row may hold (see the module docstring).
HR_RANGE = (1e-6, 1e6)
#: |log_hr| a row may hold: the log of HR_RANGE's upper end (13.8).
MAX_ABS_LOG_HR = math.log(HR_RANGE[1])
#: Standard errors of a log HR a row may hold, given or derived from its CI.
SE_RANGE = (1e-4, 10.0)
#: CI probabilities a row may declare in ``ci_level``.
CI_LEVEL_RANGE = (0.01, 0.9999)
#: A ``ci_level`` below this is accepted with a warning (probably an alpha, 0.05 for 0.95).
CI_LEVEL_WARN_BELOW = 0.5
#: Columns the loader reads itself; their header names are matched ignoring case.
KNOWN_COLUMNS = (
    "study",
    *RATIO_COLUMNS,
    "ci_level",
    "se_method",
    *LOG_COLUMNS,
    "design",
    "include",
    "cohort",
    "median_os_lrt",
    "median_os_control",
)
#: A point estimate further than this fraction of the CI width from the log-scale midpoint of
#: its CI is flagged (transcription error or asymmetric CI).
ASYMMETRY_TOLERANCE = 0.10
#: Medians within this ratio of each other (shorter/longer >= 0.9) are too close to contradict an HR.
DIRECTION_TOLERANCE = 0.90
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_MAX_BYTES = 50_000_000
#: The frame's normalised columns (the file's own column of the same name, parsed).
_NORMALISED = ("study", "log_hr", "se", "design")


@dataclass(frozen=True)
class StudyTable:
    """A validated table of studies with log hazard ratios and their standard errors.

    ``frame`` has one row per study in file order, with columns ``study``, ``log_hr``, ``se``,
    ``design`` (``None`` when the file has no design column) and every other column of the file
    under its own name (numeric columns as floats with NaN for missing, other columns as text).
    ``lines`` holds each row's CSV line number, outside the frame so that it can never collide
    with a user's column.
    """

    source: str
    frame: pd.DataFrame
    warnings: tuple[str, ...] = ()
    has_design: bool = False
    excluded: int = 0
    covariates: tuple[str, ...] = field(default=())
    lines: tuple[int, ...] = field(default=())
    #: The file the table was read from (resolved), ``None`` when it was not read from a file.
    path: Path | None = None
    #: Each row's SE method (one of :data:`SE_METHODS`; ``None`` for a row given as log_hr/se),
    #: outside the frame like :attr:`lines`; empty for a table built without it.
    se_methods: tuple[str | None, ...] = field(default=())

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

    def line_of(self, i: int) -> int | None:
        """The CSV line number of row ``i`` (``None`` for a table built without line numbers)."""
        return self.lines[i] if len(self.lines) == self.k else None

    def covariate(self, name: str) -> np.ndarray:
        """Values of a numeric covariate as floats, NaN where missing.

        Raises :class:`InputError` naming the column (and the line of the first offending cell)
        when the column is missing, holds text or holds an infinite value.
        """
        if name not in self.frame.columns:
            near = [c for c in self.frame.columns if str(c).casefold() == name.casefold()]
            hint = f" (covariate names are case-sensitive: did you mean {near[0]!r}?)" if near else ""
            raise InputError(f"no column named {name!r}{hint}", file=self.source, line=1, column=name)
        column = self.frame[name]
        if column.dtype == object:
            for i, value in enumerate(column.tolist()):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                try:
                    float(value)
                except (TypeError, ValueError):
                    raise InputError(
                        f"a covariate must be numeric, but {value!r} is not a number "
                        "(leave missing values empty)",
                        file=self.source,
                        line=self.line_of(i),
                        column=name,
                    ) from None
        values = column.to_numpy(dtype=float)
        bad = np.flatnonzero(np.isinf(values))
        if bad.size:
            raise InputError(
                f"a covariate must be a finite number, got {values[bad[0]]}",
                file=self.source,
                line=self.line_of(int(bad[0])),
                column=name,
            )
        return values

    def covariate_matrix(self, names: Sequence[str]) -> np.ndarray:
        """A (k, len(names)) array of covariates, NaN where missing."""
        if not names:
            return np.zeros((self.k, 0))
        return np.column_stack([self.covariate(n) for n in names])

    def select(self, mask: np.ndarray, *, label: str | None = None) -> StudyTable:
        """A new table holding the rows where ``mask`` is True."""
        mask = np.asarray(mask, dtype=bool)
        frame = self.frame.loc[mask].reset_index(drop=True)
        lines = tuple(int(n) for n in np.asarray(self.lines)[mask]) if len(self.lines) == self.k else ()
        methods = (
            tuple(m for m, keep in zip(self.se_methods, mask, strict=True) if keep)
            if len(self.se_methods) == self.k
            else ()
        )
        source = self.source if label is None else f"{self.source} [{label}]"
        return replace(self, frame=frame, source=source, lines=lines, se_methods=methods)

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
        """The normalised rows as plain dicts (study, log_hr, se, design, se_method and
        covariates); ``se_method`` is how the row's SE was taken from its CI (``None`` for a row
        given as log_hr/se or a table built without it)."""
        out = []
        methods = self.se_methods if len(self.se_methods) == self.k else (None,) * self.k
        for d, method in zip(self.frame.to_dict("records"), methods, strict=True):
            rec = {
                "study": d["study"],
                "log_hr": float(d["log_hr"]),
                "se": float(d["se"]),
                "design": d["design"],
                "se_method": method,
            }
            for c in self.covariates:
                val = d[c]
                rec[c] = None if pd.isna(val) else float(val)
            out.append(rec)
        return out


def z_for_level(level: float) -> float:
    """Normal quantile z with P(|Z| < z) = level (1.959964 for 0.95).

    Examples
    --------
    >>> round(z_for_level(0.95), 6), round(z_for_level(0.90), 6)
    (1.959964, 1.644854)
    """
    return float(ndtri(0.5 + level / 2.0))  # norm.ppf without its per-call overhead (100k rows)


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


def _canonical_header(header: list[str], name: str) -> list[str]:
    """The header with the loader's own column names lower-cased (``HR`` -> ``hr``); other
    names unchanged. Two cells equal ignoring case are refused."""
    known = {c.casefold(): c for c in KNOWN_COLUMNS}
    seen: dict[str, str] = {}
    out = []
    for col in header:
        key = col.casefold()
        if col and key in seen:
            detail = "" if seen[key] == col else f" ({seen[key]!r} and {col!r}: column names are compared ignoring case)"
            raise InputError(f"duplicate column name{detail}", file=name, line=1, column=col)
        seen[key] = col
        out.append(known.get(key, col))
    return out


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


def _check_range(
    value: float, lo: float, hi: float, *, what: str, name: str, line: int, column: str, note: str = ""
) -> None:
    if not lo <= value <= hi:
        raise InputError(
            f"{what} {value:g} is outside the accepted range {lo:g} to {hi:g}{note}",
            file=name,
            line=line,
            column=column,
        )


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


def check_se_method(method: str) -> str:
    """The SE method ``method`` names (one of :data:`SE_METHODS`, matched ignoring case and
    surrounding spaces); anything else raises :class:`InputError`.

    Examples
    --------
    >>> check_se_method(" Lower ")
    'lower'
    >>> check_se_method("half")
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: unknown se_method 'half'; use one of symmetric, lower, upper
    """
    key = str(method).strip().lower()
    if key not in SE_METHODS:
        raise InputError(f"unknown se_method {str(method).strip()!r}; use one of {', '.join(SE_METHODS)}")
    return key


def se_from_ci(hr: float, ci_lower: float, ci_upper: float, *, level: float = DEFAULT_CI_LEVEL,
               method: str = DEFAULT_SE_METHOD) -> float:
    """The standard error of ``log(hr)`` implied by its CI, by one of :data:`SE_METHODS`.

    With ``z = Phi^-1((1 + level) / 2)``: ``symmetric`` is ``(log U - log L) / (2 z)``, ``lower``
    ``(log HR - log L) / z`` and ``upper`` ``(log U - log HR) / z`` (the normal-approximation CI
    ``log HR +/- z SE`` solved for SE from the whole CI or from one half of it).

    Examples
    --------
    POSYTIVE as printed, HR 0.691 (0.358-1.333): the lower half of the CI is the wider one.

    >>> [round(se_from_ci(0.691, 0.358, 1.333, method=m), 5) for m in SE_METHODS]
    [0.33538, 0.33552, 0.33523]
    """
    z = z_for_level(level)
    if method == "lower":
        return (math.log(hr) - math.log(ci_lower)) / z
    if method == "upper":
        return (math.log(ci_upper) - math.log(hr)) / z
    if method == "symmetric":
        return (math.log(ci_upper) - math.log(ci_lower)) / (2.0 * z)
    raise InputError(f"unknown se_method {method!r}; use one of {', '.join(SE_METHODS)}")


def _row_se_method(cells: dict[str, str], default: str, *, name: str, line: int) -> tuple[str, bool]:
    """The row's SE method and whether the row names it (a non-blank ``se_method`` cell)."""
    text = cells.get("se_method", "").strip()
    if not text:
        return default, False
    try:
        return check_se_method(text), True
    except InputError as exc:
        raise InputError(exc.reason, file=name, line=line, column="se_method") from None


def _effect(
    cells: dict[str, str], form: str, *, name: str, line: int, se_method: str = DEFAULT_SE_METHOD
) -> tuple[float, float, list[str]]:
    """Return (log_hr, se, warnings) for one row, refusing values outside the representable
    ranges (``HR_RANGE``, ``MAX_ABS_LOG_HR``, ``SE_RANGE``, ``CI_LEVEL_RANGE``). ``se_method``
    is the table's default; a row's own ``se_method`` cell overrides it."""
    where = {"name": name, "line": line}
    method, named = _row_se_method(cells, se_method, **where)
    if form == "log":
        y = _number(cells["log_hr"], column="log_hr", **where)
        _check_range(y, -MAX_ABS_LOG_HR, MAX_ABS_LOG_HR, what="log HR", column="log_hr", **where,
                     note=f" (HR {HR_RANGE[0]:g} to {HR_RANGE[1]:g})")
        se = _number(cells["se"], column="se", positive=True, **where)
        _check_range(se, *SE_RANGE, what="standard error", column="se", **where)
        if named:
            return y, se, [
                f"line {line} ({cells['study'].strip()}): se_method {method} is ignored: "
                "the row gives its se directly"
            ]
        return y, se, []
    values = {}
    for c in RATIO_COLUMNS:
        values[c] = _number(cells[c], column=c, positive=True, **where)
        _check_range(values[c], *HR_RANGE, what="hazard ratio", column=c, **where)
    hr, lo, hi = values["hr"], values["ci_lower"], values["ci_upper"]
    level = DEFAULT_CI_LEVEL
    warnings = []
    study = cells["study"].strip()
    if "ci_level" in cells and cells["ci_level"].strip():
        level = _number(cells["ci_level"], column="ci_level", **where)
        if not 0.0 < level < 1.0:
            raise InputError(
                f"must be a probability in (0, 1), e.g. 0.95 or 0.90; got {cells['ci_level'].strip()}",
                column="ci_level",
                file=name,
                line=line,
            )
        _check_range(level, *CI_LEVEL_RANGE, what="CI level", column="ci_level", **where)
        if level < CI_LEVEL_WARN_BELOW:
            warnings.append(
                f"line {line} ({study}): ci_level {level:g} is below {CI_LEVEL_WARN_BELOW:g}; "
                f"ci_level is the CI's probability (0.95 for a 95% CI), not its alpha: "
                f"did you mean {1 - level:g}?"
            )
    if lo >= hi:
        raise InputError(f"ci_lower ({lo:g}) must be < ci_upper ({hi:g})", file=name, line=line, column="ci_lower")
    if not lo <= hr <= hi:
        raise InputError(f"hr {hr:g} lies outside its CI ({lo:g} to {hi:g})", file=name, line=line, column="hr")
    llo, lhi, lhr = math.log(lo), math.log(hi), math.log(hr)
    width = lhi - llo
    se = se_from_ci(hr, lo, hi, level=level, method=method)
    if not SE_RANGE[0] <= se <= SE_RANGE[1]:
        shape = "narrow" if se < SE_RANGE[0] else "wide"
        if method == DEFAULT_SE_METHOD:
            span, bound = f"the CI {lo:.12g} to {hi:.12g}", "ci_upper"
        else:
            span = (f"the {method} half of the CI, {lo:.12g} to {hr:.12g}" if method == "lower"
                    else f"the {method} half of the CI, {hr:.12g} to {hi:.12g}")
            span, bound = f"{span} (se_method {method})", f"ci_{method}"
        raise InputError(
            f"{span} ({100 * level:g}%) is too {shape}: it gives a standard error "
            f"of {se:.3g} for the log HR, outside the accepted range {SE_RANGE[0]:g} to {SE_RANGE[1]:g}",
            file=name,
            line=line,
            column="ci_level" if shape == "wide" and level < CI_LEVEL_WARN_BELOW else bound,
        )
    offset = abs(lhr - (llo + lhi) / 2.0)
    if offset > ASYMMETRY_TOLERANCE * width:
        warnings.append(
            f"line {line} ({study}): hr {hr:g} is off the log-scale midpoint of its CI "
            f"({lo:g} to {hi:g}) by {100 * offset / width:.0f}% of the CI width; "
            "check for a transcription error or an asymmetric CI"
        )
    return lhr, se, warnings


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
    se_method: str = DEFAULT_SE_METHOD,
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
    display_name
        The name messages give the file (default: ``path`` as given).
    se_method
        How a row given as hr/CI gets its SE when its ``se_method`` cell is blank or absent:
        ``symmetric`` (the whole CI), ``lower`` or ``upper`` (one half of it); see the module
        docstring. Rows given as log_hr/se ignore it.

    Returns
    -------
    StudyTable
        The included studies with ``log_hr`` and ``se`` (``y`` and ``v``) for pooling, and each
        row's SE method in ``se_methods``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "studies.csv"
    ...     frame = pd.DataFrame({"study": ["A", "B"], "log_hr": [-0.2, -0.4], "se": [0.1, 0.2]})
    ...     frame.to_csv(path, index=False)
    ...     table = load_studies(path)
    >>> table.k, table.studies, table.v.round(4).tolist()
    (2, ['A', 'B'], [0.01, 0.04])
    """
    path = Path(path)
    name = display_name or str(path)
    covariates = tuple(dict.fromkeys(covariates))
    se_method = check_se_method(se_method)
    header, rows = _read_rows(path, name)
    header = _canonical_header(header, name)
    _check_header(header, name)
    form = _effect_form(header, name)
    _check_covariate_columns(header, covariates, name)
    parsed = _parse_rows(
        rows, header, form, covariates, include_all=include_all, name=name, se_method=se_method
    )
    if form == "log" and se_method != DEFAULT_SE_METHOD:
        parsed.warnings.append(
            f"se_method {se_method} is ignored: the file gives log_hr and se, not a CI"
        )
    table = StudyTable(
        source=name,
        frame=_frame(parsed, header),
        warnings=(),
        has_design="design" in header,
        excluded=parsed.excluded,
        covariates=covariates,
        lines=tuple(parsed.lines),
        path=path.resolve(),
        se_methods=tuple(parsed.se_methods),
    )
    table = table.subset(subset)
    warnings = parsed.warnings + _cohort_warnings(table) + _direction_warnings(table)
    if table.k < min_studies:
        raise InputError(
            f"{table.k} usable {'study' if table.k == 1 else 'studies'}"
            f"{' in subset ' + subset if subset != 'all' else ''}; pooling needs at least {min_studies}",
            file=name,
        )
    return replace(table, warnings=tuple(warnings))


@dataclass
class _ParsedRows:
    """The rows of a CSV that make studies: normalised records, their line numbers, every
    column's raw text, the number left out (``include`` false) and row warnings."""

    records: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    se_methods: list[str | None] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)
    excluded: int = 0
    warnings: list[str] = field(default_factory=list)


def _check_covariate_columns(header: Sequence[str], covariates: Sequence[str], name: str) -> None:
    """Every requested covariate is a column (names are case-sensitive; a near miss is named)."""
    for cov in covariates:
        if cov not in header:
            near = [c for c in header if c.casefold() == cov.casefold()]
            hint = f" (covariate names are case-sensitive: did you mean {near[0]!r}?)" if near else ""
            raise InputError(f"covariate column is missing from the file{hint}", file=name, line=1, column=cov)


def _parse_rows(
    rows: Iterable[tuple[int, list[str]]],
    header: Sequence[str],
    form: str,
    covariates: Sequence[str],
    *,
    include_all: bool,
    name: str,
    se_method: str = DEFAULT_SE_METHOD,
) -> _ParsedRows:
    """Validate each data row (field count, study name, include flag, design, effect,
    covariate values) and collect the studies it keeps."""
    out = _ParsedRows(extras={c: [] for c in header})
    seen: dict[str, int] = {}
    for line, raw_cells in rows:
        if len(raw_cells) != len(header):
            raise InputError(
                f"row has {len(raw_cells)} fields but the header has {len(header)}"
                " (wrong delimiter or an unquoted comma?)",
                file=name,
                line=line,
            )
        cells = dict(zip(header, raw_cells, strict=True))
        study = _study_name(cells, seen, name=name, line=line)
        if not _included(
            cells, form, study, out, include_all=include_all, name=name, line=line, se_method=se_method
        ):
            continue
        design = _design(cells, name=name, line=line)
        y, se, row_warnings = _effect(cells, form, name=name, line=line, se_method=se_method)
        out.warnings.extend(row_warnings)
        for cov in covariates:
            text = cells[cov].strip()
            if text:
                _number(text, name=name, line=line, column=cov)
        out.records.append({"study": study, "log_hr": y, "se": se, "design": design})
        out.lines.append(line)
        out.se_methods.append(
            None if form == "log" else _row_se_method(cells, se_method, name=name, line=line)[0]
        )
        for c in header:
            out.extras[c].append(cells[c])
    return out


def _study_name(cells: dict[str, str], seen: dict[str, int], *, name: str, line: int) -> str:
    """The row's study name: not empty and not a duplicate (``seen`` maps names to lines)."""
    study = cells["study"].strip()
    if not study:
        raise InputError("study name is empty", file=name, line=line, column="study")
    if study in seen:
        raise InputError(
            f"duplicate study {study!r} (first on line {seen[study]})", file=name, line=line, column="study"
        )
    seen[study] = line
    return study


def _included(
    cells: dict[str, str],
    form: str,
    study: str,
    out: _ParsedRows,
    *,
    include_all: bool,
    name: str,
    line: int,
    se_method: str = DEFAULT_SE_METHOD,
) -> bool:
    """Whether a row is analysed: rows marked ``include`` false are left out (counted in
    ``out.excluded``) unless ``include_all``, and even then when they have no usable effect
    (with a warning)."""
    if "include" not in cells:
        return True
    keep = _parse_bool(cells["include"], name=name, line=line, column="include")
    if keep:
        return True
    if not include_all:
        out.excluded += 1
        return False
    try:
        _effect(cells, form, name=name, line=line, se_method=se_method)
    except InputError as exc:
        out.excluded += 1
        out.warnings.append(
            f"line {line} ({study}): row marked include=false has no usable effect "
            f"({exc.reason}); left out even with --include-all"
        )
        return False
    return True


def _design(cells: dict[str, str], *, name: str, line: int) -> str | None:
    """The row's design (lower case, one of :data:`synthesis.base.DESIGNS`), ``None`` without
    a design column."""
    if "design" not in cells:
        return None
    label = cells["design"].strip().lower()
    if label not in DESIGNS:
        raise InputError(
            f"unknown design {cells['design'].strip()!r}; use one of {', '.join(DESIGNS)}",
            file=name,
            line=line,
            column="design",
        )
    return label


def _frame(parsed: _ParsedRows, header: Sequence[str]) -> pd.DataFrame:
    """The normalised columns, then every other column of the file under its own name."""
    frame = pd.DataFrame.from_records(parsed.records, columns=list(_NORMALISED))
    for c in header:
        if c in _NORMALISED:
            continue
        frame[c] = _coerce_extra(parsed.extras[c]) if parsed.records else pd.Series(dtype=float)
    return frame


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
    for i, d in enumerate(table.frame.to_dict("records")):
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
                f"line {table.line_of(i)} ({d['study']}): HR {math.exp(y):.3g} favours "
                f"{'LRT' if y < 0 else 'control'} but the median OS is shorter in that arm "
                f"({a:g} vs {b:g} months); the HR direction may be reversed"
            )
    return out
