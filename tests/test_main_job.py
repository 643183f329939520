"""The main job end to end: ``synthesis report`` on a user's file and ``synthesis run`` on the
bundled dataset (real fits: exact engine, and one PyMC model for the bias meta-regression)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synthesis.cli import main


def test_report_on_a_file_without_design(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    csv.write_text("study,hr,ci_lower,ci_upper\nA,0.8,0.6,1.1\nB,0.7,0.5,0.98\nC,1.0,0.7,1.4\nD,0.9,0.8,1.0\n")
    out = tmp_path / "rep"
    assert main(["report", str(csv), "--out", str(out), "--quiet"]) == 0
    decision = pd.read_csv(out / "decision.csv")
    # Without a design column only the all-studies random-effects model applies.
    assert decision["key"].tolist() == ["re_all"]
    assert decision.loc[0, "engine"] == "exact"
    run = json.loads((out / "run.json").read_text())
    assert run["seeds"]["analysis"] == 20261123
    html = (out / "report.html").read_text()
    assert 'id="decision-table"' in html and "http://" not in html and "https://" not in html


def test_report_bad_threshold_writes_nothing(tmp_path, capsys):
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", str(out), "--threshold", "0", "--quiet"])
    assert info.value.code == 2
    assert "--threshold" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("main") / "dnmbc"
    code = main(["run", "--out", str(out), "--quiet", "--seed", "7"])
    return code, out


def test_run_on_bundled_dataset(bundled_report):
    code, out = bundled_report
    assert code == 0
    decision = pd.read_csv(out / "decision.csv")
    assert decision["key"].tolist() == [
        "re_all", "re_rct", "bias", "bias_metareg",
        "bias_metareg@bone_only_fraction=0", "bias_metareg@bone_only_fraction=0.5",
        "bias_metareg@bone_only_fraction=1",
    ]
    for t in ("0.7", "0.8", "0.9", "1.0"):
        assert decision[f"p_hr_below_{t}"].between(0, 1).all()
    # The exact RCT-only model's frequentist DL column is the RCT-only DL pool (data/README.md:
    # 0.931, 0.747-1.161).
    rct = decision.set_index("key").loc["re_rct"]
    assert rct["dl_hr"] == pytest.approx(0.931, abs=5e-4)
    assert rct["dl_ci_lower"] == pytest.approx(0.747, abs=5e-4)
    run = json.loads((out / "run.json").read_text())
    assert run["seeds"]["analysis"] == 7 and run["seeds"]["fits"]["bias_metareg"] == 7
    for f in ("report.html", "report.md", "decision.csv", "studies.csv", "figures/forest.png",
              "figures/forest.svg", "posteriors/bias_metareg.nc"):
        assert (out / f).is_file(), f


def test_run_leaves_no_temporary_folder(bundled_report):
    """The report is built in a temporary sibling folder and moved into place."""
    _, out = bundled_report
    assert [p.name for p in out.parent.iterdir()] == ["dnmbc"]
