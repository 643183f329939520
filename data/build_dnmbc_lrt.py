"""Build the bundled study table ``dnmbc_lrt.csv`` from the sourced facts and the curation table.

Inputs (both shipped with the package, so nothing outside it is read):

* ``sources/evidence.csv`` -- the study-level facts, each with its quoted source, copied verbatim
  from the shared evidence base. Every HR and CI number in the output comes from here.
* ``curation/decisions.csv`` -- one reviewed decision per evidence ``row_id``: include or exclude
  (with the reason), cohort and overlap group, design, adjustment and LRT labels, the expected
  orientation of the stored HR, the p-value to use where an HR has no CI, and median OS.

The only arithmetic done here:

* ``ci_level`` is written as a probability (evidence.csv's 95/90 become 0.95/0.90);
* for an HR reported with a p-value but no CI, ``SE = |ln HR| / z`` with
  ``z = Phi^-1(1 - p/2)``, and a 95% CI ``exp(ln HR -/+ 1.959964 SE)`` is rebuilt and marked in
  ``se_derivation``;
* ``hr_positive_fraction`` given per arm is combined as the n-weighted mean of the two arms.

The build also checks the curation against the sources (same row ids, design labels consistent
with the source wording, declared inversions that really are ``1/printed``, p-values that occur in
the printed text, included rows that are OS hazard ratios) and stops with :class:`ValueError` on
any mismatch. Output is deterministic: same inputs, same bytes.

Curation switches (``curation/switches.csv``): every arguable choice is a named switch with its
alternatives and a stated default (Khan 2002 arm, stage-migration studies, the NCDB-SEER overlap,
POSYTIVE's orientation, 90% CIs, the SE method, which trial report). :func:`build_text` and
:func:`build_table` make the table of any combination of alternatives, deterministically; the
defaults give ``dnmbc_lrt.csv`` byte for byte. :func:`all_choices` lists every combination.

Run ``python -m synthesis.bundled.build_dnmbc_lrt`` (or ``python data/build_dnmbc_lrt.py``) to
rewrite ``dnmbc_lrt.csv`` next to this file.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

EVIDENCE_FILE = "evidence.csv"
DECISIONS_FILE = "decisions.csv"
SWITCHES_FILE = "switches.csv"
OUTPUT_FILE = "dnmbc_lrt.csv"

OUTPUT_COLUMNS: tuple[str, ...] = (
    "study",
    "hr",
    "ci_lower",
    "ci_upper",
    "ci_level",
    "design",
    "lrt_type",
    "year",
    "n_lrt",
    "n_control",
    "bone_only_fraction",
    "hr_positive_fraction",
    "adjustment",
    "cohort",
    "overlap_group",
    "include",
    "exclusion_reason",
    "se_derivation",
    "median_os_lrt",
    "median_os_control",
    "evidence_row",
    "source",
)

DECISION_COLUMNS: tuple[str, ...] = (
    "row_id",
    "study",
    "include",
    "exclusion_reason",
    "cohort",
    "overlap_group",
    "design",
    "adjustment",
    "lrt_type",
    "orientation",
    "se_from_p",
    "blank_n",
    "median_os_lrt",
    "median_os_control",
    "median_source",
    "rationale",
    "citation",
)

DESIGNS = ("rct", "prospective", "retrospective")
ADJUSTMENTS = ("itt", "multivariable", "propensity", "univariate")
LRT_TYPES = ("surgery", "surgery+/-RT", "surgery+RT", "any LRT", "RT")
ORIENTATIONS = ("as_reported", "inverted")
#: z for the rebuilt 95% CI of a p-value-derived SE.
Z95 = NormalDist().inv_cdf(0.975)
#: Relative tolerance when checking stored = 1/printed for an inverted HR (3-4 printed digits).
INVERSION_RTOL = 2e-3


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file (any line ending) into a list of row dicts."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _fail(row_id: str, message: str) -> ValueError:
    return ValueError(f"{row_id}: {message}")


def design_from_source(text: str) -> str:
    """Map evidence.csv's free-text design to ``rct`` / ``prospective`` / ``retrospective``."""
    t = text.strip().lower()
    if t == "rct":
        return "rct"
    if t.startswith("prospective"):
        return "prospective"
    if t.startswith("retrospective"):
        return "retrospective"
    raise ValueError(f"unrecognised design text {text!r}")


def _leading_int(text: str) -> str:
    """A count that opens the cell (``'4578 (47%)'`` -> ``'4578'``); empty for ``'~34'``,
    ``'44.5% of cohort'`` or ``'(R1 subset size not given)'``."""
    m = re.match(r"\s*(\d+)(?![\d.%])", text)
    return m.group(1) if m else ""


def _leading_fraction(text: str) -> str:
    """A fraction in [0, 1] that opens the cell (``'0.28 (overall)'`` -> ``'0.28'``)."""
    m = re.match(r"\s*(\d*\.\d+|[01])(?![\d%])", text)
    if not m or not 0.0 <= float(m.group(1)) <= 1.0:
        return ""
    return m.group(1)


def _hr_positive(text: str, n_lrt: str, n_control: str) -> str:
    """Overall HR+ fraction: as stated, or the n-weighted mean of per-arm fractions
    (``'ER/PR+ 0.855 (LRT) vs 0.718 (ST)'``)."""
    plain = _leading_fraction(text)
    if plain:
        return plain
    m = re.search(r"(\d*\.\d+)\s*\(LRT\)\s*vs\s*(\d*\.\d+)", text)
    if m and n_lrt and n_control:
        a, b = float(m.group(1)), float(m.group(2))
        na, nb = int(n_lrt), int(n_control)
        return f"{(a * na + b * nb) / (na + nb):.3f}"
    return ""


def _ci_level(text: str, row_id: str) -> str:
    """evidence.csv states the level in percent; the study table wants a probability."""
    t = text.strip()
    if not t:
        return ""
    level = float(t)
    if level not in (90.0, 95.0):
        raise _fail(row_id, f"unexpected CI level {t!r}")
    return f"{level / 100:.2f}"


def se_from_p(hr: float, p: float) -> float:
    """SE of ln HR from a two-sided p-value of the Wald test: ``|ln HR| / Phi^-1(1 - p/2)``."""
    if not (0.0 < p < 1.0) or hr <= 0 or hr == 1.0:
        raise ValueError(f"cannot back-derive an SE from HR {hr} and p {p}")
    return abs(math.log(hr)) / NormalDist().inv_cdf(1.0 - p / 2.0)


def _check_inversion(ev: Mapping[str, str], row_id: str) -> None:
    """An ``inverted`` decision must match a stored ``1/printed`` in evidence.csv."""
    derived = ev["hr_cells_derived"]
    m = re.search(r"inverted from reported ([\d.]+) \(([\d.]+)-([\d.]+)\)", derived)
    if not m:
        raise _fail(row_id, f"decision says inverted but hr_cells_derived is {derived!r}")
    printed_hr, printed_lo, printed_hi = (float(g) for g in m.groups())
    pairs = ((ev["hr"], printed_hr), (ev["ci_lower"], printed_hi), (ev["ci_upper"], printed_lo))
    for stored, printed in pairs:
        if not math.isclose(float(stored), 1.0 / printed, rel_tol=INVERSION_RTOL):
            raise _fail(row_id, f"stored {stored} is not 1/{printed}")


def _short_source(row_id: str, evidence: Mapping[str, Mapping[str, str]], depth: int = 0) -> str:
    """The first source and quote of evidence.csv's ``source`` cell (the full text stays there);
    ``as XXX`` / ``(as XXX)`` references are resolved to that row's first source."""
    text = evidence[row_id]["source"].strip()
    ref = re.fullmatch(r"as (\w+)", text) or re.search(r"\(as (\w+)\)\s*$", text)
    if ref and depth < 3 and ref.group(1) in evidence:
        return _short_source(ref.group(1), evidence, depth + 1)
    end = text.find("'; ")
    return text[: end + 1] if end > 0 else text


def _validate_decision(d: Mapping[str, str], ev: Mapping[str, str]) -> None:
    row_id = d["row_id"]
    if d["include"] not in ("true", "false"):
        raise _fail(row_id, f"include must be true/false, got {d['include']!r}")
    include = d["include"] == "true"
    if include == bool(d["exclusion_reason"].strip()):
        raise _fail(row_id, "exclusion_reason must be given exactly when include is false")
    if not d["study"].strip() or not d["cohort"].strip():
        raise _fail(row_id, "study and cohort are required")
    if d["design"] not in DESIGNS:
        raise _fail(row_id, f"design {d['design']!r} not in {DESIGNS}")
    if d["design"] != design_from_source(ev["design"]):
        raise _fail(row_id, f"design {d['design']!r} does not match the source's {ev['design']!r}")
    if d["adjustment"] and d["adjustment"] not in ADJUSTMENTS:
        raise _fail(row_id, f"adjustment {d['adjustment']!r} not in {ADJUSTMENTS}")
    if d["lrt_type"] not in LRT_TYPES:
        raise _fail(row_id, f"lrt_type {d['lrt_type']!r} not in {LRT_TYPES}")
    if d["orientation"] not in ORIENTATIONS:
        raise _fail(row_id, f"orientation {d['orientation']!r} not in {ORIENTATIONS}")
    if d["orientation"] == "inverted":
        _check_inversion(ev, row_id)
    elif ev["hr_cells_derived"].strip():
        raise _fail(row_id, "evidence.csv derived the HR cells but the decision says as_reported")
    if d["blank_n"] not in ("", "n_lrt", "n_control"):
        raise _fail(row_id, f"blank_n {d['blank_n']!r}")
    if bool(d["median_os_lrt"]) != bool(d["median_os_control"]):
        raise _fail(row_id, "give median OS for both arms or neither")
    if d["median_os_lrt"] and not d["median_source"].strip():
        raise _fail(row_id, "median OS needs a median_source")
    p = d["se_from_p"].strip()
    if p:
        if ev["ci_lower"] or ev["ci_upper"]:
            raise _fail(row_id, "se_from_p given but the source already has a CI")
        if p not in ev["hr_as_reported"]:
            raise _fail(row_id, f"p-value {p} does not occur in the printed result")
    if include:
        if d["adjustment"] not in ADJUSTMENTS:
            raise _fail(row_id, "an included row needs an adjustment category")
        if ev["outcome"].strip() != "OS":
            raise _fail(row_id, f"included row must be an OS HR (outcome {ev['outcome']!r})")
        if not ev["hr"] or not ((ev["ci_lower"] and ev["ci_upper"]) or p):
            raise _fail(row_id, "included row needs an HR with a CI or a p-value")


def _source(d: Mapping[str, str], row_id: str, evidence: Mapping[str, Mapping[str, str]]) -> str:
    """The output ``source``: the publication (``citation``: journal, year, volume:pages,
    PMID / DOI / trial registry) where the curation gives it, then the first quoted source."""
    quote = _short_source(row_id, evidence)
    citation = d.get("citation", "").strip()
    return f"{citation}. Quote: {quote}" if citation else quote


def _output_row(
    d: Mapping[str, str], ev: Mapping[str, str], evidence: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    row_id = d["row_id"]
    hr, lo, hi = ev["hr"].strip(), ev["ci_lower"].strip(), ev["ci_upper"].strip()
    level = _ci_level(ev["ci_level"], row_id) if (lo and hi) else ""
    p = d["se_from_p"].strip()
    if p:
        se = se_from_p(float(hr), float(p))
        centre = math.log(float(hr))
        lo, hi = f"{math.exp(centre - Z95 * se):.4f}", f"{math.exp(centre + Z95 * se):.4f}"
        level, derivation = "0.95", f"from p-value (p={p})"
    elif lo and hi:
        derivation = "from CI" if level == "0.95" else f"from {round(float(level) * 100)}% CI"
    else:
        derivation = ""
    n_lrt = "" if d["blank_n"] == "n_lrt" else _leading_int(ev["n_lrt"])
    n_control = "" if d["blank_n"] == "n_control" else _leading_int(ev["n_nolrt"])
    year = ev["pub_year"].strip()
    return {
        "study": d["study"].strip(),
        "hr": hr,
        "ci_lower": lo,
        "ci_upper": hi,
        "ci_level": level,
        "design": d["design"],
        "lrt_type": d["lrt_type"],
        "year": year if year.isdigit() else "",
        "n_lrt": n_lrt,
        "n_control": n_control,
        "bone_only_fraction": _leading_fraction(ev["bone_only_frac"]),
        "hr_positive_fraction": _hr_positive(ev["hr_pos_frac"], n_lrt, n_control),
        "adjustment": d["adjustment"],
        "cohort": d["cohort"].strip(),
        "overlap_group": d["overlap_group"].strip(),
        "include": d["include"],
        "exclusion_reason": d["exclusion_reason"].strip(),
        "se_derivation": derivation,
        "median_os_lrt": d["median_os_lrt"].strip(),
        "median_os_control": d["median_os_control"].strip(),
        "evidence_row": row_id,
        "source": _source(d, row_id, evidence),
    }


def _checked_inputs(
    sources_dir: str | Path, curation_dir: str | Path
) -> tuple[list[dict[str, str]], dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """evidence rows (in order), evidence by row id and decisions by row id, cross-checked."""
    evidence_rows = _read_csv(Path(sources_dir) / EVIDENCE_FILE)
    decision_rows = _read_csv(Path(curation_dir) / DECISIONS_FILE)
    if decision_rows and tuple(decision_rows[0]) != DECISION_COLUMNS:
        raise ValueError(f"decisions.csv columns must be {DECISION_COLUMNS}")
    evidence = {r["row_id"]: r for r in evidence_rows}
    decisions = {r["row_id"]: r for r in decision_rows}
    if len(evidence) != len(evidence_rows) or len(decisions) != len(decision_rows):
        raise ValueError("duplicate row_id in evidence.csv or decisions.csv")
    if set(evidence) != set(decisions):
        missing = sorted(set(evidence) - set(decisions))
        extra = sorted(set(decisions) - set(evidence))
        raise ValueError(
            f"decisions.csv must cover every evidence row: missing {missing}, unknown {extra}"
        )
    studies = [d["study"].strip() for d in decision_rows]
    if len(set(studies)) != len(studies):
        raise ValueError("study names in decisions.csv must be unique")
    return evidence_rows, evidence, decisions


def _to_text(rows: list[dict[str, str]], columns: tuple[str, ...] = OUTPUT_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def build(sources_dir: str | Path, curation_dir: str | Path) -> str:
    """Return the text of ``dnmbc_lrt.csv`` built from ``sources_dir/evidence.csv`` and
    ``curation_dir/decisions.csv`` (rows in evidence.csv order, ``\\n`` line endings)."""
    evidence_rows, evidence, decisions = _checked_inputs(sources_dir, curation_dir)
    rows = []
    for ev in evidence_rows:
        d = decisions[ev["row_id"]]
        _validate_decision(d, ev)
        rows.append(_output_row(d, ev, evidence))
    return _to_text(rows)


# --------------------------------------------------------------------------------------------
# Curation switches
# --------------------------------------------------------------------------------------------
HERE = Path(__file__).resolve().parent
#: Khan 2002: 3-year survival without surgery (seed 002 Table 1 text: "the 3-year survival rate
#: was 35%, compared to 26% and 17.3%, respectively, among patients with positive margins and
#: patients who did not receive surgery"; Liu 2023 Table I: "3-Year survival: Non-surgery, 17.3%").
KHAN_CONTROL_3Y_SURVIVAL = 0.173
#: Rows each switch touches (evidence row ids).
KHAN_R0, KHAN_R1, GNERLICH = "RET01", "RET02", "RET03b"
STAGE_MIGRATION_ROWS = ("RET04", "RET09")  # Bafford 2009, Hazard 2008
POSYTIVE = "RCT03"
MF07_FIRST, MF07_LATEST, E2108_FIRST_PAPER, E2108_FIRST_REPORT = "RCT02", "RCT02b", "RCT04", "RCT04b"
#: evidence_row of the combined Khan 2002 row (``khan_arm=combined``).
KHAN_COMBINED = f"{KHAN_R0}+{KHAN_R1}"


@dataclass(frozen=True)
class Switch:
    """One curation switch of ``curation/switches.csv``: its alternatives, default and rows."""

    name: str
    alternatives: tuple[str, ...]
    default: str
    rows: tuple[str, ...]
    description: str


#: The alternatives this build implements, per switch (``switches.csv`` must list the same).
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "khan_arm": ("R0", "R1", "combined"),
    "stage_migration": ("kept", "excluded"),
    "registry_overlap": ("both", "one_registry"),
    "posytive": ("oriented", "as_printed"),
    "ci90": ("honoured", "read_as_95"),
    "se_method": ("symmetric", "lower"),
    "trial_report": ("first_full_paper", "latest", "first_report"),
}


def read_switches(curation_dir: str | Path = HERE / "curation") -> dict[str, Switch]:
    """The switches of ``curation_dir/switches.csv``, checked against :data:`IMPLEMENTED`.

    Examples
    --------
    >>> sw = read_switches()
    >>> list(sw)[:3], sw["khan_arm"].alternatives, sw["khan_arm"].default
    (['khan_arm', 'stage_migration', 'registry_overlap'], ('R0', 'R1', 'combined'), 'R0')
    """
    out: dict[str, Switch] = {}
    for r in _read_csv(Path(curation_dir) / SWITCHES_FILE):
        alternatives = tuple(a.strip() for a in r["alternatives"].split(";"))
        sw = Switch(r["name"].strip(), alternatives, r["default"].strip(),
                    tuple(x.strip() for x in r["rows"].split(";")), r["description"].strip())
        if sw.name not in IMPLEMENTED or alternatives != IMPLEMENTED[sw.name]:
            raise ValueError(f"switches.csv: {sw.name} {alternatives} is not implemented as listed")
        if sw.default not in alternatives:
            raise ValueError(f"switches.csv: default {sw.default!r} of {sw.name} is not an alternative")
        out[sw.name] = sw
    if set(out) != set(IMPLEMENTED):
        raise ValueError(f"switches.csv must list exactly {sorted(IMPLEMENTED)}")
    return out


def default_choices(curation_dir: str | Path = HERE / "curation") -> dict[str, str]:
    """``{switch: default alternative}``.

    Examples
    --------
    >>> default_choices()["trial_report"]
    'first_full_paper'
    """
    return {name: sw.default for name, sw in read_switches(curation_dir).items()}


def all_choices(curation_dir: str | Path = HERE / "curation") -> Iterator[dict[str, str]]:
    """Every combination of alternatives, in a fixed order (the default first).

    Examples
    --------
    >>> combos = list(all_choices())
    >>> len(combos), combos[0] == default_choices()
    (288, True)
    """
    switches = read_switches(curation_dir)
    names = list(switches)
    ordered = [
        (sw.default, *(a for a in sw.alternatives if a != sw.default)) for sw in switches.values()
    ]
    for combo in itertools.product(*ordered):
        yield dict(zip(names, combo, strict=True))


def _exclude(row: dict[str, str], reason: str) -> None:
    row["include"], row["exclusion_reason"] = "false", reason


def _include(row: dict[str, str]) -> None:
    row["include"], row["exclusion_reason"] = "true", ""


def combine_shared_control(
    y: tuple[float, float], se: tuple[float, float], cov: float
) -> tuple[float, float]:
    """Fixed-effect (generalised least squares) combination of two correlated estimates.

    With ``S = [[se0^2, cov], [cov, se1^2]]`` and ``w = S^-1 1 / (1' S^-1 1)``, the combined
    estimate is ``w' y`` with variance ``1 / (1' S^-1 1) = (se0^2 se1^2 - cov^2) /
    (se0^2 + se1^2 - 2 cov)`` (Gleser & Olkin 2009, in The Handbook of Research Synthesis and
    Meta-Analysis, 2nd ed., ch. 19: several treatments against one control).

    Examples
    --------
    Uncorrelated: the inverse-variance mean.

    >>> combine_shared_control((0.0, 1.0), (1.0, 1.0), 0.0)
    (0.5, 0.7071067811865476)
    """
    v0, v1 = se[0] ** 2, se[1] ** 2
    denom = v0 + v1 - 2.0 * cov
    if v0 * v1 - cov**2 <= 0 or denom <= 0:
        raise ValueError("the covariance matrix of the two arms is not positive definite")
    w0 = (v1 - cov) / denom
    return w0 * y[0] + (1.0 - w0) * y[1], math.sqrt((v0 * v1 - cov**2) / denom)


def _se_95(row: Mapping[str, str]) -> float:
    z = NormalDist().inv_cdf(0.5 + float(row["ci_level"]) / 2.0)
    return (math.log(float(row["ci_upper"])) - math.log(float(row["ci_lower"]))) / (2.0 * z)


def _khan_combined(r0: Mapping[str, str], r1: Mapping[str, str]) -> dict[str, str]:
    """One row for Khan 2002 R0 and R1 combined against their shared control."""
    n_control = int(r0["n_control"])
    deaths = round(n_control * (1.0 - KHAN_CONTROL_3Y_SURVIVAL))
    y, se = combine_shared_control(
        (math.log(float(r0["hr"])), math.log(float(r1["hr"]))), (_se_95(r0), _se_95(r1)), 1.0 / deaths
    )
    row = dict(r0)
    row.update(
        study="Khan 2002 (NCDB, R0 and R1 combined)",
        hr=f"{math.exp(y):.4f}",
        ci_lower=f"{math.exp(y - Z95 * se):.4f}",
        ci_upper=f"{math.exp(y + Z95 * se):.4f}",
        ci_level="0.95",
        se_derivation=f"fixed-effect combination of R0 and R1, shared control: cov = 1/{deaths}",
        evidence_row=KHAN_COMBINED,
    )
    _include(row)
    return row


def _apply(rows: list[dict[str, str]], choices: Mapping[str, str]) -> list[dict[str, str]]:
    by_id = {r["evidence_row"]: r for r in rows}
    tag = " (curation switch {}={})".format

    arm = choices["khan_arm"]
    if arm == "R1":
        _exclude(by_id[KHAN_R0], "shared control: R0 arm of Khan 2002 uses the same no-surgery control"
                 " as the R1 row (RET02)" + tag("khan_arm", arm))
        _include(by_id[KHAN_R1])
    elif arm == "combined":
        combined = _khan_combined(by_id[KHAN_R0], by_id[KHAN_R1])
        for rid in (KHAN_R0, KHAN_R1):
            _exclude(by_id[rid], "shared control: R0 and R1 entered as one combined row"
                     + tag("khan_arm", arm))
        rows.insert(rows.index(by_id[KHAN_R1]) + 1, combined)
        by_id[KHAN_COMBINED] = combined

    if choices["stage_migration"] == "excluded":
        for rid in STAGE_MIGRATION_ROWS:
            _exclude(by_id[rid], "stage migration: operated before stage IV was known"
                     + tag("stage_migration", "excluded"))

    if choices["registry_overlap"] == "one_registry":
        for r in rows:
            if r["overlap_group"] == by_id[KHAN_R0]["overlap_group"] and r["include"] == "true":
                _exclude(r, "registry overlap: NCDB 1990-1993 overlaps SEER 1988-2003 (Gnerlich 2007)"
                         + tag("registry_overlap", "one_registry"))

    if choices["posytive"] == "as_printed":
        r = by_id[POSYTIVE]
        printed = 1.0 / float(r["hr"]), 1.0 / float(r["ci_upper"]), 1.0 / float(r["ci_lower"])
        r["hr"], r["ci_lower"], r["ci_upper"] = (f"{x:.3f}" for x in printed)
        r["se_derivation"] += ", HR as printed (no-surgery vs surgery)"

    if choices["ci90"] == "read_as_95":
        for r in rows:
            if r["ci_level"] == "0.90":
                r["ci_level"], r["se_derivation"] = "0.95", "from 90% CI read as 95%"

    report = choices["trial_report"]
    if report == "latest":
        _exclude(by_id[MF07_FIRST], "duplicate report: superseded by the 10-year update"
                 + tag("trial_report", report))
        _include(by_id[MF07_LATEST])
    elif report == "first_report":
        _exclude(by_id[E2108_FIRST_PAPER], "duplicate report: the first report (ASCO 2020) is used"
                 + tag("trial_report", report))
        _include(by_id[E2108_FIRST_REPORT])
    return rows


_BASE_CACHE: dict[tuple, tuple[dict[str, Switch], str, list[dict[str, str]]]] = {}


def _cached_base(sources_dir: Path, curation_dir: Path) -> tuple[dict[str, Switch], str, list[dict[str, str]]]:
    """The switches, the default text and its rows, rebuilt only when an input file changes."""
    files = (sources_dir / EVIDENCE_FILE, curation_dir / DECISIONS_FILE, curation_dir / SWITCHES_FILE)
    key = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if key not in _BASE_CACHE:
        text = build(sources_dir, curation_dir)
        _BASE_CACHE[key] = (read_switches(curation_dir), text, list(csv.DictReader(io.StringIO(text))))
    return _BASE_CACHE[key]


def build_rows(
    choices: Mapping[str, str] | None = None,
    *,
    sources_dir: str | Path = HERE / "sources",
    curation_dir: str | Path = HERE / "curation",
) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    """The rows (dicts of strings) and columns of the study table under ``choices``
    (``{switch: alternative}``; switches not named take their default); see :func:`build_text`.

    Examples
    --------
    >>> rows, columns = build_rows({"se_method": "lower"})
    >>> len(rows), columns[-1], rows[0]["se_method"]
    (59, 'se_method', 'lower')
    """
    switches, _text, base_rows = _cached_base(Path(sources_dir), Path(curation_dir))
    picked = {name: sw.default for name, sw in switches.items()}
    for name, alt in (choices or {}).items():
        if name not in switches:
            raise ValueError(f"unknown curation switch {name!r}; switches: {', '.join(switches)}")
        if alt not in switches[name].alternatives:
            raise ValueError(
                f"switch {name}: unknown alternative {alt!r}; choose one of "
                f"{', '.join(switches[name].alternatives)}"
            )
        picked[name] = alt
    rows = _apply([dict(r) for r in base_rows], picked)
    columns = OUTPUT_COLUMNS
    if picked["se_method"] != "symmetric":
        columns = (*OUTPUT_COLUMNS, "se_method")
        for r in rows:
            r["se_method"] = picked["se_method"]
    return rows, columns


def build_text(
    choices: Mapping[str, str] | None = None,
    *,
    sources_dir: str | Path = HERE / "sources",
    curation_dir: str | Path = HERE / "curation",
) -> str:
    """The study table (CSV text) under ``choices`` (``{switch: alternative}``; switches not
    named take their default). The defaults give :func:`build`'s text byte for byte; the
    ``se_method`` switch at ``lower`` adds a ``se_method`` column.

    Examples
    --------
    >>> build_text() == build(HERE / "sources", HERE / "curation")
    True
    >>> "Khan 2002 (NCDB, R0 and R1 combined)" in build_text({"khan_arm": "combined"})
    True
    """
    rows, columns = build_rows(choices, sources_dir=sources_dir, curation_dir=curation_dir)
    return _to_text(rows, columns)


def build_table(choices: Mapping[str, str] | None = None, **dirs: Any) -> Any:
    """:func:`build_text` as a pandas DataFrame of strings (every row, ``include`` as text).

    Examples
    --------
    >>> t = build_table({"stage_migration": "excluded"})
    >>> int((t["include"] == "true").sum())
    15
    """
    import pandas as pd

    return pd.read_csv(io.StringIO(build_text(choices, **dirs)), dtype=str, keep_default_na=False)


def write_built(text: str, target: Path) -> None:
    """Write a built CSV ``text`` to ``target`` (UTF-8, the text's own line ends) and say so."""
    with target.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    print(f"wrote {target} ({text.count(chr(10)) - 1} rows)")


def main() -> None:
    """Rewrite ``dnmbc_lrt.csv`` next to this file from ``sources/`` and ``curation/``."""
    here = Path(__file__).resolve().parent
    write_built(build(here / "sources", here / "curation"), here / OUTPUT_FILE)


if __name__ == "__main__":
    main()
