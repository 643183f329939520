"""The main job end to end: ``synthesis report`` on a user's file and ``synthesis run`` on the
bundled dataset (real fits: exact engine, and one PyMC model for the bias meta-regression)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthesis.base import DEFAULT_SEED
from synthesis.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: The example report of the bundled data committed in the repository (reports/README.md).
EXAMPLE = ROOT / "reports" / "dnmbc_lrt"
#: Lines of report.md that differ between two runs of the same analysis, or between machines:
#: the creation time, the timings, the seconds a sweep took, the absolute path of the input
#: and the versions of the installed packages.
VARYING = (
    (re.compile(r"^Generated \S+ from"), "Generated <time> from"),
    (re.compile(r"\d+\.\d+ s\)\.$"), "<seconds> s)."),
    (re.compile(r"^- Timing \(s\): .*$"), "- Timing (s): <timings>"),
    (re.compile(r"^- Input file: .*; SHA-256"), "- Input file: <path>; SHA-256"),
    (re.compile(r"^- Packages: .*$"), "- Packages: <versions>"),
)


def test_report_on_a_file_without_design(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    csv.write_text("study,hr,ci_lower,ci_upper\nA,0.8,0.6,1.1\nB,0.7,0.5,0.98\nC,1.0,0.7,1.4\nD,0.9,0.8,1.0\n")
    out = tmp_path / "rep"
    assert main(["report", str(csv), "--out", str(out), "--quiet"]) == 0
    decision = pd.read_csv(out / "decision.csv")
    # Without a design column only the all-studies random-effects model applies, beside the
    # model average over effect x heterogeneity (no bias dimension, no stacking).
    assert decision["key"].tolist() == ["averaged", "averaged_given_effect", "re_all"]
    assert set(decision["engine"]) == {"exact"}
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
    """``synthesis run`` as the README runs it (default seed), into a temporary folder: its exit
    status, the folder and what it printed."""
    out = tmp_path_factory.mktemp("main") / "dnmbc"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", "--out", str(out)])
    return code, out, printed.getvalue()


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_run_on_bundled_dataset(bundled_report):
    code, out, _ = bundled_report
    assert code == 0
    decision = pd.read_csv(out / "decision.csv")
    assert decision["key"].tolist() == [
        "averaged", "averaged_given_effect", "stacked",
        "re_all", "re_rct", "bias", "bias_metareg",
        "bias_metareg@bone_only_fraction=0", "bias_metareg@bone_only_fraction=0.5",
        "bias_metareg@bone_only_fraction=1",
    ]
    _check_probabilities_agree_with_quantiles(decision)
    # The exact RCT-only model's frequentist DL column is the RCT-only DL pool (data/README.md:
    # 0.931, 0.747-1.161).
    rct = decision.set_index("key").loc["re_rct"]
    assert rct["dl_hr"] == pytest.approx(0.931, abs=5e-4)
    assert rct["dl_ci_lower"] == pytest.approx(0.747, abs=5e-4)
    run = json.loads((out / "run.json").read_text())
    assert run["seeds"]["analysis"] == DEFAULT_SEED and run["seeds"]["fits"]["bias_metareg"] == DEFAULT_SEED
    for f in ("report.html", "report.md", "decision.csv", "studies.csv", "figures/forest.png",
              "figures/forest.svg", "posteriors/bias_metareg.nc", "model_averaging.csv", "inclusion_bf.csv",
              "stacking.csv", "tipping_grid.csv", "powerscale.csv", "figures/tipping_map.png",
              "figures/tipping_alpha.png"):
        assert (out / f).is_file(), f


def _check_probabilities_agree_with_quantiles(decision: pd.DataFrame) -> None:
    """P(HR < T) of every row, exact and PyMC alike, rises with T and sits on the right side of
    the row's own posterior quantiles: below 0.025 (+ MC slack) at or under the 2.5% quantile,
    below one half under the median, above 0.975 (- slack) strictly over the 97.5% quantile (the
    model-averaged HR has a point mass at HR = 1, which P(HR < 1) does not count: its 97.5%
    quantile can be exactly 1 while P(HR < 1) is small)."""
    thresholds = [0.7, 0.8, 0.9, 1.0]
    slack = 0.01
    for key, row in decision.set_index("key").iterrows():
        p = [row[f"p_hr_below_{t}"] for t in thresholds]
        assert all(0 <= a <= b <= 1 for a, b in zip(p, p[1:], strict=False)), (key, p)
        for t, prob in zip(thresholds, p, strict=True):
            if t <= row["hr_q025"]:
                assert prob <= 0.025 + slack, (key, t, prob)
            if t > row["hr_q975"]:
                assert prob >= 0.975 - slack, (key, t, prob)
            if t < row["hr_median"]:
                assert prob < 0.5 + slack, (key, t, prob)
            if t > row["hr_median"]:
                assert prob > 0.5 - slack, (key, t, prob)


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_pymc_rows_converged_and_are_linear_in_the_covariate(bundled_report):
    """The PyMC bias meta-regression converged (R-hat <= 1.01, bulk ESS >= 400 for its headline
    parameters, no divergences), and its HRs at the covariate points lie on one log-linear line:
    log HR(x) = mu + beta (x - c), so the middle point's median is the mean of the outer ones
    (to MC error)."""
    _, out, _ = bundled_report
    decision = pd.read_csv(out / "decision.csv").set_index("key")
    pymc = decision[decision["engine"] == "pymc"]
    assert len(pymc) >= 2 and pymc["converged"].fillna(True).astype(bool).all()
    run = json.loads((out / "run.json").read_text())
    diagnostics = run["diagnostics"]["bias_metareg"]
    assert diagnostics["converged"] is True and diagnostics["divergences"] == 0
    assert diagnostics["max_r_hat"] <= 1.01 and diagnostics["min_ess_bulk"] >= 400
    points = pymc[pymc.index.str.contains("@")]
    x = points.index.str.split("=").str[-1].astype(float).to_numpy()
    log_hr = np.log(points["hr_median"].to_numpy())
    order = np.argsort(x)
    x, log_hr = x[order], log_hr[order]
    predicted = log_hr[0] + (log_hr[-1] - log_hr[0]) * (x[1:-1] - x[0]) / (x[-1] - x[0])
    assert np.abs(log_hr[1:-1] - predicted).max() < 0.02


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_run_leaves_no_temporary_folder(bundled_report):
    """The report is built in a temporary sibling folder and moved into place."""
    _, out, _ = bundled_report
    assert [p.name for p in out.parent.iterdir()] == ["dnmbc"]


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_run_prints_the_decision_table_within_100_columns(bundled_report):
    _, out, printed = bundled_report
    table = printed.split("\n", 1)[1]  # after "report written to <folder>/report.html (... s)"
    assert max(len(line) for line in table.splitlines()) <= 100, table
    assert "P<0.7" in table and "  at bone_only_fraction=0.5" in table
    decision = pd.read_csv(out / "decision.csv").set_index("key")
    rct = decision.loc["re_rct"]
    assert f"{rct['hr_median']:.2f} ({rct['hr_q025']:.2f}-{rct['hr_q975']:.2f})" in table


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_readme_shows_the_decision_table_run_prints(bundled_report):
    """README.md's "What it produces" pastes the console table of ``synthesis run`` (indented)."""
    _, _, printed = bundled_report
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    missing = [line for line in printed.splitlines()[1:] if line and f"    {line}" not in readme]
    assert not missing, "README.md's decision table differs from what `synthesis run` prints: " + "\n".join(missing)
    assert "![" in "".join(readme) and "(reports/dnmbc_lrt/figures/forest.png)" in "".join(readme)


def _without_timings(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    for pattern, replacement in VARYING:
        lines = [pattern.sub(replacement, line) for line in lines]
    return lines


@pytest.mark.slow  # `synthesis run` on the bundled data (~30 s, shared by this group)
def test_committed_example_is_what_run_writes(bundled_report):
    """reports/dnmbc_lrt/ (regenerated by ``.venv/bin/synthesis run``) holds what ``synthesis run``
    writes: report.md apart from the lines in :data:`VARYING`, every CSV table (numbers to 1e-9
    relative, against last-digit differences between machines) and the same PNG figures (by
    name: PNG bytes differ between machines)."""
    _, out, _ = bundled_report
    stale = "the example report is stale: regenerate it with `.venv/bin/synthesis run` (reports/README.md)"
    example_md = _without_timings((EXAMPLE / "report.md").read_text(encoding="utf-8"))
    assert example_md == _without_timings((out / "report.md").read_text(encoding="utf-8")), stale
    tables = sorted(p.name for p in out.glob("*.csv"))
    assert sorted(p.name for p in EXAMPLE.glob("*.csv")) == tables, stale
    for name in tables:
        pd.testing.assert_frame_equal(
            pd.read_csv(EXAMPLE / name), pd.read_csv(out / name), check_exact=False, rtol=1e-9, obj=f"{name}: {stale}"
        )
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert sorted(p.name for p in (EXAMPLE / "figures").glob("*.png")) == figures, stale
