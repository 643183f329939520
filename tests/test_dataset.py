"""The bundled dnMBC dataset (``data/`` installed as ``synthesis.bundled``): reproducible build,
loading from the installed package, the default analysis set, the traps of the evidence base, and
published pooled results reproduced from the dataset's own numbers.

Every number in this file comes from the dataset, from the bundled sources
(``sources/evidence.csv``, ``sources/pooled_meta_analyses.csv``) or from a cited publication.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import re
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from synthesis.datasets import dataset_path, load_dataset
from synthesis.studies import load_studies

BUNDLE = Path(str(resources.files("synthesis.bundled")))
Z975 = NormalDist().inv_cdf(0.975)

#: The default analysis set, by design (see data/README.md, "Default analysis set").
EXPECTED_RCTS = {
    "Badwe 2015 (TATA)",
    "Soran 2018 (MF07-01)",
    "Fitzal 2019 (ABCSG-28 POSYTIVE)",
    "Khan 2022 (E2108)",
    "Shien 2023 (JCOG1017)",
}
EXPECTED_K = {"rct": 5, "retrospective": 12}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dataset() -> list[dict[str, str]]:
    return _rows(BUNDLE / "dnmbc_lrt.csv")


@pytest.fixture(scope="module")
def evidence() -> dict[str, dict[str, str]]:
    return {r["row_id"]: r for r in _rows(BUNDLE / "sources" / "evidence.csv")}


@pytest.fixture(scope="module")
def pooled() -> list[dict[str, str]]:
    return _rows(BUNDLE / "sources" / "pooled_meta_analyses.csv")


def _by_row(dataset: list[dict[str, str]], row_id: str) -> dict[str, str]:
    (row,) = [r for r in dataset if r["evidence_row"] == row_id]
    return row


def dersimonian_laird(y: np.ndarray, se: np.ndarray) -> tuple[float, float, float]:
    """Random-effects pool of log HRs (DerSimonian & Laird, Control Clin Trials 1986;7:177-88).

    ``w = 1/se^2``, ``Q = sum w (y - y_FE)^2``, ``tau^2 = max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``,
    ``w* = 1/(se^2 + tau^2)``, pooled ``mu = sum w* y / sum w*`` with ``SE = (sum w*)^-1/2``.
    Returns (mu, SE(mu), Q).
    """
    w = 1.0 / se**2
    fixed = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - fixed) ** 2))
    tau2 = max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    w_star = 1.0 / (se**2 + tau2)
    mu = float(np.sum(w_star * y) / np.sum(w_star))
    return mu, float(np.sum(w_star) ** -0.5), q


def _pool_hr(
    triples: list[tuple[float, float, float]], levels: list[float] | None = None
) -> tuple[float, float, float, float]:
    """DL pool of (hr, lower, upper) triples -> (HR, lower 95%, upper 95%, Q)."""
    levels = levels or [0.95] * len(triples)
    y = np.log([t[0] for t in triples])
    se = np.array(
        [
            (math.log(hi) - math.log(lo)) / (2 * NormalDist().inv_cdf(0.5 + lv / 2))
            for (_, lo, hi), lv in zip(triples, levels, strict=True)
        ]
    )
    mu, s, q = dersimonian_laird(y, se)
    return math.exp(mu), math.exp(mu - Z975 * s), math.exp(mu + Z975 * s), q


def _triple(row: dict[str, str]) -> tuple[float, float, float]:
    return float(row["hr"]), float(row["ci_lower"]), float(row["ci_upper"])


# --- build and packaging -------------------------------------------------------------------------


def test_rebuild_is_byte_identical_to_the_committed_file():
    from synthesis.bundled.build_dnmbc_lrt import build

    rebuilt = build(BUNDLE / "sources", BUNDLE / "curation")
    assert rebuilt.encode("utf-8") == (BUNDLE / "dnmbc_lrt.csv").read_bytes()


def test_sources_are_verbatim_copies_of_the_shared_evidence():
    """data/sources/README.md records the SHA-256 of each shared file at copy time."""
    readme = (BUNDLE / "sources" / "README.md").read_text(encoding="utf-8")
    recorded = {
        name: digest
        for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.csv)$", readme, flags=re.M)
    }
    assert set(recorded) == {"evidence.csv", "pooled_meta_analyses.csv"}
    for name, digest in recorded.items():
        assert hashlib.sha256((BUNDLE / "sources" / name).read_bytes()).hexdigest() == digest, name


def test_build_rejects_a_curation_that_contradicts_the_sources(tmp_path):
    """Declaring POSYTIVE 'as_reported' contradicts evidence.csv's recorded inversion."""
    from synthesis.bundled.build_dnmbc_lrt import build

    text = (BUNDLE / "curation" / "decisions.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        if r["row_id"] == "RCT03":
            r["orientation"] = "as_reported"
    (tmp_path / "decisions.csv").write_text(_to_csv(rows), encoding="utf-8")
    with pytest.raises(ValueError, match="RCT03"):
        build(BUNDLE / "sources", tmp_path)


def _to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_load_dataset_from_the_installed_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = dataset_path("dnmbc_lrt")
    assert path.parent == BUNDLE and path.is_file()
    table = load_dataset("dnmbc_lrt")
    assert Counter(table.designs) == EXPECTED_K
    assert table.k == sum(EXPECTED_K.values())
    assert table.excluded == 59 - table.k
    assert table.warnings == ()


def test_every_evidence_row_is_in_the_dataset_once(dataset, evidence):
    assert [r["evidence_row"] for r in dataset] == list(evidence)
    for r in dataset:
        assert (r["include"] == "true") == (r["exclusion_reason"] == ""), r["study"]


def test_default_set_has_one_row_per_cohort_and_per_registry_period(dataset):
    included = [r for r in dataset if r["include"] == "true"]
    cohorts = Counter(r["cohort"] for r in included)
    assert max(cohorts.values()) == 1, cohorts
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for r in included:
        m = re.fullmatch(r"(.+?)\s+(\d{4})-(\d{4})", r["overlap_group"])
        if m:
            spans.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3)), r["study"]))
        elif r["overlap_group"]:
            spans.setdefault(r["overlap_group"], []).append((0, 9999, r["study"]))
    for registry, periods in spans.items():
        for (a0, a1, s), (b0, b1, t) in itertools.combinations(periods, 2):
            assert a1 < b0 or b1 < a0, f"{registry}: {s} and {t} overlap in calendar time"
    # Two SEER periods survive: 1988-2003 (Gnerlich) and 2010-2015 (Front Surg 2021).
    assert sorted(p[:2] for p in spans["SEER"]) == [(1988, 2003), (2010, 2015)]


def test_cohort_warning_fires_when_a_shared_control_arm_is_added(tmp_path, dataset):
    """Khan 2002's R0 and R1 arms share one control: including both must trigger the warning."""
    rows = [dict(r) for r in dataset if r["include"] == "true" or r["evidence_row"] == "RET02"]
    for r in rows:
        r["include"] = "true"
    (tmp_path / "both_arms.csv").write_text(_to_csv(rows), encoding="utf-8")
    table = load_studies(tmp_path / "both_arms.csv")
    assert any("NCDB-1990-1993" in w and "share" in w for w in table.warnings)


def test_subset_rct_gives_the_randomised_trials(tmp_path):
    table = load_dataset("dnmbc_lrt", subset="rct")
    assert set(table.studies) == EXPECTED_RCTS
    proc = subprocess.run(
        [sys.executable, "-m", "synthesis", "validate", "--subset", "rct", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"k": 5' in proc.stdout
    observational = load_dataset("dnmbc_lrt", subset="observational")
    assert observational.k == EXPECTED_K["retrospective"]
    assert set(observational.designs) == {"retrospective"}


# --- traps ---------------------------------------------------------------------------------------


def test_ninety_percent_cis_are_kept_as_printed(dataset, evidence):
    """E2108 (J Clin Oncol 2022) and JCOG1017 (ASCO 2023) print 90% CIs; the cells are not converted."""
    for row_id in ("RCT04", "RCT05"):
        row, ev = _by_row(dataset, row_id), evidence[row_id]
        assert row["ci_level"] == "0.90"
        assert (row["hr"], row["ci_lower"], row["ci_upper"]) == (
            ev["hr"],
            ev["ci_lower"],
            ev["ci_upper"],
        )
    table = load_dataset("dnmbc_lrt", subset="rct")
    se = dict(zip(table.studies, table.se, strict=True))
    # SE = ln(1.52/0.82) / (2 * 1.645) = 0.1876, not / (2 * 1.96) = 0.1575.
    assert se["Khan 2022 (E2108)"] == pytest.approx(
        math.log(1.52 / 0.82) / (2 * NormalDist().inv_cdf(0.95))
    )


def test_p_value_only_hrs_get_a_back_derived_and_marked_se(dataset, evidence):
    """SE = |ln HR| / z_(p/2); the rebuilt 95% CI reproduces it to the 4 printed decimals."""
    marked = {
        r["evidence_row"]: r for r in dataset if r["se_derivation"].startswith("from p-value")
    }
    assert set(marked) == {"RET04", "RET09", "PUB09"}  # Bafford, Hazard, Yu cohort
    for row_id, row in marked.items():
        p = float(re.search(r"p=([\d.]+)", row["se_derivation"]).group(1))
        assert f"{p:g}" in evidence[row_id]["hr_as_reported"]
        hr, lo, hi = _triple(row)
        expected = abs(math.log(hr)) / NormalDist().inv_cdf(1 - p / 2)
        assert (math.log(hi) - math.log(lo)) / (2 * Z975) == pytest.approx(expected, rel=1e-3)
        assert row["include"] == "true" and row["ci_level"] == "0.95"


def test_not_os_wrong_comparison_and_duplicate_reports_are_excluded(dataset):
    excluded = {
        r["evidence_row"]: r["exclusion_reason"] for r in dataset if r["include"] == "false"
    }
    assert excluded["RET17"].startswith("not OS")  # Bertaut 2015: relative excess rate
    assert excluded["RET20"].startswith("not OS")  # Kim 2019: cancer-specific survival
    assert excluded["RET19"].startswith("wrong comparison")  # Kim 2022: PORT vs surgery alone
    for row_id in ("RCT01b", "RCT02b", "RCT04b"):  # TATA interim, MF07-01 2021, E2108 ASCO 2020
        assert excluded[row_id].startswith("duplicate report")
    for row_id in ("RET02", "PUB06"):  # Khan R1, Front Surg BCS
        assert excluded[row_id].startswith("shared control")


def test_included_standard_errors_are_possible_for_the_sample_size(dataset):
    """For a Cox HR with d deaths, SE >= 2/sqrt(d), so 4/SE^2 cannot exceed the number of patients."""
    table = load_dataset("dnmbc_lrt")
    n = table.frame["n_lrt"] + table.frame["n_control"]
    known = n.notna().to_numpy()
    assert np.all(4 / table.se[known] ** 2 <= n.to_numpy()[known])


# --- direction check -----------------------------------------------------------------------------


def test_direction_check_warns_on_unreversed_posytive(tmp_path, dataset):
    """Fitzal 2019 (Ann Surg 269:1163-9) prints HR 0.691 (0.358-1.333) beside median OS 34.6 months
    (surgery) vs 54.8 months (no surgery): the printed HR is no-surgery vs surgery."""
    row = _by_row(dataset, "RCT03")
    hr, lo, hi = _triple(row)
    printed = (round(1 / hr, 3), round(1 / hi, 3), round(1 / lo, 3))
    assert printed == (0.691, 0.358, 1.333)
    assert (row["median_os_lrt"], row["median_os_control"]) == ("34.6", "54.8")
    header = "study,hr,ci_lower,ci_upper,median_os_lrt,median_os_control\n"
    unreversed = tmp_path / "posytive_printed.csv"
    unreversed.write_text(header + "Fitzal 2019 as printed,0.691,0.358,1.333,34.6,54.8\n")
    warnings = load_studies(unreversed, min_studies=1).warnings
    assert len(warnings) == 1 and "reversed" in warnings[0] and "favours LRT" in warnings[0]
    oriented = tmp_path / "posytive_oriented.csv"
    oriented.write_text(
        header + f"Fitzal 2019 oriented,{row['hr']},{row['ci_lower']},{row['ci_upper']},34.6,54.8\n"
    )
    assert load_studies(oriented, min_studies=1).warnings == ()


def test_direction_check_is_silent_on_the_curated_dataset(tmp_path, dataset):
    """Silent on the default set, and on every row (included or not) with an HR, CI and medians."""
    assert not any("reversed" in w for w in load_dataset("dnmbc_lrt").warnings)
    with_medians = [r for r in dataset if r["ci_lower"] and r["median_os_lrt"]]
    assert len(with_medians) >= 10
    rows = [{**r, "include": "true", "cohort": ""} for r in with_medians]
    (tmp_path / "with_medians.csv").write_text(_to_csv(rows), encoding="utf-8")
    warnings = load_studies(tmp_path / "with_medians.csv").warnings
    assert not any("reversed" in w for w in warnings), warnings


# --- published pooled results --------------------------------------------------------------------


def _published(pooled: list[dict[str, str]], prefix: str) -> tuple[float, float, float]:
    (row,) = [r for r in pooled if r["meta_analysis"].startswith(prefix)]
    return float(row["pooled_hr"]), float(row["ci_lower"]), float(row["ci_upper"])


def test_gera_prospective_pool_used_posytive_unreversed(dataset, pooled):
    """Gera 2020 (Sci Rep 10:2952) pooled three prospective studies: HR 0.8077 (0.5704-1.1438),
    Q = 5.65. With Badwe 2015 and Soran 2018 from the dataset and POSYTIVE entered *as printed*
    (0.691, 0.358-1.333 = the inverse of the dataset's oriented cells), DL gives 0.807
    (0.570-1.143), Q = 5.71: the published result lies inside the range spanned by moving every
    input by half a unit of its last printed digit, so the difference is input rounding. With
    POSYTIVE oriented correctly (1.447, 0.750-2.793) DL gives 0.936 (0.626-1.399), far outside
    that range: Gera entered POSYTIVE in the "favours surgery" direction."""
    tata, soran, posytive = (_triple(_by_row(dataset, i)) for i in ("RCT01", "RCT02", "RCT03"))
    printed = (round(1 / posytive[0], 3), round(1 / posytive[2], 3), round(1 / posytive[1], 3))
    published = _published(pooled, "Gera 2020 - prospective only")
    assert published == (0.8077, 0.5704, 1.1438)

    as_printed = _pool_hr([tata, soran, printed])
    assert as_printed[:3] == pytest.approx((0.807, 0.570, 1.143), abs=1e-3)
    assert as_printed[3] == pytest.approx(5.71, abs=0.01)

    def half_unit(x: float) -> float:
        return 0.5 * 10.0 ** -len(f"{x:g}".split(".")[1])

    inputs = [tata, soran, printed]
    envelope = []
    for signs in itertools.product((-1, 1), repeat=9):
        it = iter(signs)
        moved = [tuple(x + next(it) * half_unit(x) for x in t) for t in inputs]
        envelope.append(_pool_hr(moved)[:3])
    low, high = np.min(envelope, axis=0), np.max(envelope, axis=0)
    assert np.all(low <= published) and np.all(published <= high)

    oriented = _pool_hr([tata, soran, posytive])
    assert oriented[:3] == pytest.approx((0.936, 0.626, 1.399), abs=1e-3)
    assert not (low[0] <= oriented[0] <= high[0])


def test_rct_pool_matches_the_numbers_quoted_in_the_data_readme(dataset, pooled):
    """DL pool of the five included RCTs (90% CIs converted with z = 1.645 via ci_level) and the
    Cochrane 2018 two-trial pool (Badwe 2015 + Soran: published 0.83 (0.53-1.31))."""
    rcts = [r for r in dataset if r["include"] == "true" and r["design"] == "rct"]
    hr, lo, hi, _ = _pool_hr([_triple(r) for r in rcts], [float(r["ci_level"]) for r in rcts])
    readme = (BUNDLE / "README.md").read_text(encoding="utf-8")
    assert f"{hr:.3f} ({lo:.3f}-{hi:.3f})" in readme
    assert (hr, lo, hi) == pytest.approx((0.931, 0.747, 1.161), abs=1e-3)

    # Cochrane's inputs are not printed; the published 2-dp result agrees to within 0.01
    # (our upper limit is 1.302 against 1.31), the size of its own rounding.
    cochrane = _pool_hr([_triple(_by_row(dataset, "RCT01")), _triple(_by_row(dataset, "RCT02"))])
    assert cochrane[:3] == pytest.approx(_published(pooled, "Tosello 2018"), abs=0.01)
