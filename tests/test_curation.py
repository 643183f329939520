"""Curation switches of the bundled dataset (``data/curation/switches.csv``, issue #12): every
alternative builds deterministically, the defaults give ``dnmbc_lrt.csv`` byte for byte, and each
switch does what it says (rows in and out, the named row's HR/CI/ci_level/se_method).

Expected values come from the sources, not from the build: the printed POSYTIVE result in
``evidence.csv`` (``hr_as_reported``), the 90% CIs as printed, Khan 2002's arms and control size
(seed 002 Table 1: ``S 16023/9162/6861``, ``HR OS (RO) = 0.61 (0.58-0.65) HR (R1) = 0.751
(0.71-0.793)``; 3-year survival 17.3% without surgery), and the loader's SE formulas written out.
"""

from __future__ import annotations

import csv
import io
import math
import re
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from synthesis.bundled.build_dnmbc_lrt import (
    IMPLEMENTED,
    all_choices,
    build_table,
    build_text,
    default_choices,
    read_switches,
)
from synthesis.studies import load_studies

BUNDLE = Path(str(resources.files("synthesis.bundled")))
Z95, Z90 = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.95)


def _rows(choices: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    return {r["evidence_row"]: r for r in csv.DictReader(io.StringIO(build_text(choices)))}


def _included(choices: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    return {k: r for k, r in _rows(choices).items() if r["include"] == "true"}


def _load(tmp_path: Path, choices: dict[str, str]):
    path = tmp_path / "table.csv"
    path.write_text(build_text(choices), encoding="utf-8")
    return load_studies(path)


@pytest.fixture(scope="module")
def evidence() -> dict[str, dict[str, str]]:
    with (BUNDLE / "sources" / "evidence.csv").open(newline="", encoding="utf-8-sig") as fh:
        return {r["row_id"]: r for r in csv.DictReader(fh)}


def test_defaults_rebuild_the_committed_table_byte_for_byte():
    assert build_text().encode("utf-8") == (BUNDLE / "dnmbc_lrt.csv").read_bytes()
    assert build_text(default_choices()) == build_text()
    assert build_table().shape == (59, 22)


def test_switches_file_lists_every_implemented_switch_with_a_default():
    switches = read_switches()
    assert {n: s.alternatives for n, s in switches.items()} == IMPLEMENTED
    assert all(s.default == s.alternatives[0] and s.description for s in switches.values())


def test_every_combination_builds_deterministically_and_differently():
    combos = list(all_choices())
    assert len(combos) == math.prod(len(a) for a in IMPLEMENTED.values()) == 288
    assert combos[0] == default_choices()
    texts = [build_text(c) for c in combos]
    assert len(set(texts)) == len(texts)
    assert [build_text(c) for c in combos[:5]] == texts[:5]


def test_unknown_switch_or_alternative_is_refused():
    with pytest.raises(ValueError, match="unknown curation switch"):
        build_text({"khan": "R0"})
    with pytest.raises(ValueError, match="khan_arm: unknown alternative 'R2'"):
        build_text({"khan_arm": "R2"})


def test_khan_arm_r1_swaps_the_arm():
    inc = _included({"khan_arm": "R1"})
    assert "RET01" not in inc and (inc["RET02"]["hr"], inc["RET02"]["ci_lower"], inc["RET02"]["ci_upper"]) == (
        "0.751", "0.71", "0.793")
    assert len(inc) == 17


def test_khan_arm_combined_is_the_gls_combination_with_the_shared_control(tmp_path):
    """Two arms against one control: cov(ln HR_R0, ln HR_R1) = var(ln hazard of the control) =
    1/d_c; d_c = 6861 x (1 - 0.173) deaths by 3 years. The combined estimate is the GLS mean
    (1' S^-1 1)^-1 1' S^-1 y, computed here with numpy's linear solver."""
    inc = _included({"khan_arm": "combined"})
    assert "RET01" not in inc and "RET02" not in inc and len(inc) == 17
    row = inc["RET01+RET02"]
    y = np.log([0.61, 0.751])
    se = np.array([math.log(0.65 / 0.58), math.log(0.793 / 0.71)]) / (2 * Z95)
    cov = 1 / round(6861 * (1 - 0.173))
    S = np.array([[se[0] ** 2, cov], [cov, se[1] ** 2]])
    w = np.linalg.solve(S, np.ones(2))
    mean, sd = float(w @ y / w.sum()), float(w.sum() ** -0.5)
    assert float(row["hr"]) == pytest.approx(math.exp(mean), abs=5e-5)
    assert float(row["ci_lower"]) == pytest.approx(math.exp(mean - Z95 * sd), abs=5e-5)
    assert float(row["ci_upper"]) == pytest.approx(math.exp(mean + Z95 * sd), abs=5e-5)
    # between the two arms, nearer the more precise one, and more precise than either
    assert 0.61 < float(row["hr"]) < 0.751 and sd < se.min()
    table = _load(tmp_path, {"khan_arm": "combined"})
    i = table.studies.index("Khan 2002 (NCDB, R0 and R1 combined)")
    assert table.se[i] == pytest.approx(sd, rel=2e-3)  # CI written to 4 decimals


def test_stage_migration_excluded_drops_bafford_and_hazard():
    rows = _rows({"stage_migration": "excluded"})
    for rid in ("RET04", "RET09"):
        assert rows[rid]["include"] == "false"
        assert rows[rid]["exclusion_reason"].startswith("stage migration")
    assert len([r for r in rows.values() if r["include"] == "true"]) == 15


@pytest.mark.parametrize("arm", ["R0", "R1", "combined"])
def test_one_registry_keeps_seer_and_drops_every_ncdb_1990_row(arm):
    inc = _included({"registry_overlap": "one_registry", "khan_arm": arm})
    assert not [r for r in inc.values() if r["overlap_group"] == "NCDB 1990-1993"]
    assert inc["RET03b"]["overlap_group"] == "SEER 1988-2003"
    assert len(inc) == 16


def test_posytive_as_printed_is_the_printed_result_and_the_loader_warns(tmp_path, evidence):
    printed = re.search(r"HR ([\d.]+), 95% CI ([\d.]+)-([\d.]+)", evidence["RCT03"]["hr_as_reported"]).groups()
    row = _included({"posytive": "as_printed"})["RCT03"]
    assert (row["hr"], row["ci_lower"], row["ci_upper"]) == printed == ("0.691", "0.358", "1.333")
    oriented = _included()["RCT03"]
    assert float(oriented["hr"]) == pytest.approx(1 / 0.691, rel=1e-3)
    warnings = _load(tmp_path, {"posytive": "as_printed"}).warnings
    assert len(warnings) == 1 and "reversed" in warnings[0] and "Fitzal" in warnings[0]


def test_ci90_read_as_95_changes_the_level_only(tmp_path):
    default, read95 = _included(), _included({"ci90": "read_as_95"})
    for rid in ("RCT04", "RCT05"):
        assert default[rid]["ci_level"] == "0.90" and read95[rid]["ci_level"] == "0.95"
        assert [read95[rid][c] for c in ("hr", "ci_lower", "ci_upper")] == [
            default[rid][c] for c in ("hr", "ci_lower", "ci_upper")]
    se = dict(zip(*(lambda t: (t.studies, t.se))(_load(tmp_path, {"ci90": "read_as_95"})), strict=True))
    assert se["Khan 2022 (E2108)"] == pytest.approx(math.log(1.52 / 0.82) / (2 * Z95))
    assert [r["ci_level"] for r in read95.values()].count("0.90") == 0


def test_se_method_lower_takes_the_lower_half_of_every_ci(tmp_path):
    inc = _included({"se_method": "lower"})
    assert {r["se_method"] for r in inc.values()} == {"lower"}
    table = _load(tmp_path, {"se_method": "lower"})
    for study, se in zip(table.studies, table.se, strict=True):
        (r,) = [r for r in inc.values() if r["study"] == study]
        z = Z90 if r["ci_level"] == "0.90" else Z95
        assert se == pytest.approx((math.log(float(r["hr"])) - math.log(float(r["ci_lower"]))) / z), study


def test_trial_report_latest_and_first_swap_the_report():
    latest, first = _included({"trial_report": "latest"}), _included({"trial_report": "first_report"})
    assert "RCT02" not in latest and (latest["RCT02b"]["hr"], latest["RCT02b"]["ci_lower"]) == ("0.71", "0.59")
    assert "RCT04" in latest and "RCT04b" not in latest
    assert "RCT04" not in first and (first["RCT04b"]["hr"], first["RCT04b"]["ci_level"]) == ("1.09", "0.90")
    assert "RCT02" in first
    assert sum(r["design"] == "rct" for r in latest.values()) == sum(r["design"] == "rct" for r in first.values()) == 5


def test_default_set_rows_cite_journal_year_and_an_identifier():
    """Every included row's source opens with its publication: journal, year, and a PMID, DOI or
    trial registry number (issue #12), then the quote."""
    for rid, r in _included().items():
        citation = r["source"].split(". Quote: ")[0]
        assert re.search(r"(19|20)\d\d", citation), rid
        if rid not in ("RET14",):  # Le Scodan 2009: J Clin Oncol; no identifier in the bundled texts
            assert re.search(r"PMID \d+|DOI 10\.\d+/\S+|NCT\d{8}", citation), rid


def test_e2108_medians_are_entered_and_raise_no_direction_warning():
    row = _included()["RCT04"]
    assert (row["median_os_lrt"], row["median_os_control"]) == ("54.9", "53.1")
