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

Run ``python -m synthesis.bundled.build_dnmbc_lrt`` (or ``python data/build_dnmbc_lrt.py``) to
rewrite ``dnmbc_lrt.csv`` next to this file.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist

EVIDENCE_FILE = "evidence.csv"
DECISIONS_FILE = "decisions.csv"
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
        "source": _short_source(row_id, evidence),
    }


def build(sources_dir: str | Path, curation_dir: str | Path) -> str:
    """Return the text of ``dnmbc_lrt.csv`` built from ``sources_dir/evidence.csv`` and
    ``curation_dir/decisions.csv`` (rows in evidence.csv order, ``\\n`` line endings)."""
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

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=OUTPUT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for ev in evidence_rows:
        d = decisions[ev["row_id"]]
        _validate_decision(d, ev)
        writer.writerow(_output_row(d, ev, evidence))
    return out.getvalue()


def main() -> None:
    """Rewrite ``dnmbc_lrt.csv`` next to this file from ``sources/`` and ``curation/``."""
    here = Path(__file__).resolve().parent
    text = build(here / "sources", here / "curation")
    target = here / OUTPUT_FILE
    with target.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    print(f"wrote {target} ({text.count(chr(10)) - 1} rows)")


if __name__ == "__main__":
    main()
