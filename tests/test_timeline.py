"""``synthesis timeline`` (issue #14): the last year equals direct fits on all studies, a
scenario equals a fit of a table built independently with the trial in it, missing years are
refused, the figure and the command line."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

import synthesis as syn
from synthesis.cli import main
from synthesis.cumulative import run_timeline
from synthesis.models.averaging import average_models
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec

matplotlib.use("Agg")

#: The timeline calls the same exact engine on the same rows: identical to rounding.
SAME = 1e-12


@pytest.fixture(scope="module")
def table():
    return syn.load_dataset("dnmbc_lrt")


@pytest.fixture(scope="module")
def timeline(table):
    return run_timeline(table, scenarios=["0.8:500"])


def _row(result, year, model, scenario=False):
    (row,) = [r for r in result.rows if r.year == year and r.model == model and (r.scenario is not None) == scenario]
    return row


def test_last_year_equals_direct_fits(table, timeline):
    last = int(np.nanmax(table.frame["year"]))
    rct = table.select(~table.nonrandomised)
    ref = {
        "rct_only": fit_exact(ModelData.from_table(rct, ModelSpec("re")), ModelSpec("re"), thresholds=[0.8]).hr,
        "bias": fit_exact(ModelData.from_table(table, ModelSpec("bias")), ModelSpec("bias"), thresholds=[0.8]).hr,
    }
    avg = average_models(table, ModelSpec("bias"), thresholds=[0.8])
    for model, hr in ref.items():
        row = _row(timeline, last, model)
        assert (row.hr, row.ci_lower, row.ci_upper) == pytest.approx((hr.median, hr.q025, hr.q975), abs=SAME)
        assert row.p_below == pytest.approx(hr.p_below["0.8"], abs=SAME)
    row = _row(timeline, last, "averaged")
    assert (row.hr, row.p_below, row.spike) == pytest.approx((avg.averaged.median, avg.averaged.p_below["0.8"], avg.averaged.spike), abs=SAME)
    assert _row(timeline, last, "bias").k == table.k and _row(timeline, last, "rct_only").k == rct.k


def test_years_before_the_first_rct_are_not_estimable(table, timeline):
    first_rct = int(table.frame.loc[~table.nonrandomised, "year"].min())
    for r in timeline.rows:
        if r.model in ("rct_only", "bias") and r.scenario is None:
            assert r.estimable == (r.year >= first_rct)
            if not r.estimable:
                assert r.reason == "no randomised study yet"
    # a year's fit uses exactly the studies up to that year
    counts = {y: int((table.frame["year"] <= y).sum()) for y in timeline.years[:-1]}
    assert all(_row(timeline, y, "bias").k == k for y, k in counts.items())


def test_scenario_equals_a_fit_with_the_trial_added(table, timeline, tmp_path):
    """Build the table with the trial from a CSV (log_hr, se, design, year) through the loader."""
    frame = table.frame[["study", "log_hr", "se", "design", "year"]].copy()
    new = pd.DataFrame([{"study": "next", "log_hr": math.log(0.8), "se": 2 / math.sqrt(500), "design": "rct", "year": 2024}])
    path = tmp_path / "with_trial.csv"
    pd.concat([frame, new]).to_csv(path, index=False)
    bigger = syn.load_studies(path)
    spec = ModelSpec("bias")
    hr = fit_exact(ModelData.from_table(bigger, spec), spec, thresholds=[0.8]).hr
    row = _row(timeline, 2024, "bias", scenario=True)
    assert (row.hr, row.p_below) == pytest.approx((hr.median, hr.p_below["0.8"]), abs=1e-10)
    assert row.k == table.k + 1


def test_missing_year_is_refused(table, tmp_path):
    frame = table.frame[["study", "log_hr", "se", "design", "year"]].copy()
    frame.loc[3, "year"] = np.nan
    path = tmp_path / "no_year.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(syn.InputError, match="year"):
        run_timeline(syn.load_studies(path))


def test_figure_shows_gaps_and_reasons(timeline):
    from synthesis.plots.timeline import plot_timeline

    fig = plot_timeline(timeline)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("not estimable 2002-2009" in t for t in texts)


def _cli(capsys, *args):
    try:
        code = main(["timeline", *args])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_rows(capsys):
    code, out, err = _cli(capsys, "--subset", "rct", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {"year", "model", "hr", "ci_lower", "ci_upper", "p_below", "k"} <= set(doc["rows"][0])


@pytest.mark.parametrize("args", [["--scenario", "0.8"], ["--scenario", "0.8:0"], ["--threshold", "0"],
                                  ["tests/reference/gera2020_rcts_as_printed.csv"], ["--prior-prob", "effect=2"],
                                  ["--threshold", "0.8", "--threshold", "0.7"]])
def test_cli_bad_options_exit_2(capsys, args):
    code, _, err = _cli(capsys, *args)
    assert code == 2, err
    assert "Traceback" not in err


def test_report_section_reads_the_evidence(timeline):
    """The section quotes the plan's own numbers and lists every timeline row; nothing computed."""
    from types import SimpleNamespace

    from synthesis.cumulative import SettleEvidence
    from synthesis.models.preposterior import plan_trial
    from synthesis.report.document import ReportDocument
    from synthesis.report.settle import settle_section

    spec = ModelSpec("bias")
    plan = plan_trial(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec, events=[500, 2000])
    doc = ReportDocument()
    settle_section(doc, SimpleNamespace(settle=SettleEvidence(plan=plan, timeline=timeline)), SimpleNamespace(png={}))
    text = doc.markdown()
    r500 = plan.rows[0]
    assert f"predictive probability {r500.p_trial_significant:.3f}" in text
    assert f"from {plan.posterior_sd_now:.3f} to {r500.expected_posterior_sd:.3f}" in text
    assert text.count("not estimable: no randomised study yet") == sum(
        1 for r in timeline.rows if r.reason == "no randomised study yet" and not r.estimable)
    assert "synthesis simulate" in text  # operating characteristics not computed: how to get them


def test_report_leaves_the_timeline_out_above_its_study_limit(monkeypatch):
    """Above REPORT_TIMELINE_MAX_STUDIES the report's 'What would settle it?' has the plan but no
    timeline, and a note naming the command that computes it."""
    import synthesis as syn
    import synthesis.cumulative as cumulative

    table = syn.load_dataset("dnmbc_lrt")
    monkeypatch.setattr(cumulative, "REPORT_TIMELINE_MAX_STUDIES", table.k - 1)
    ev = cumulative.settle_evidence(table, events=[500])
    assert ev.plan is not None and ev.timeline is None
    assert any("synthesis timeline" in n for n in ev.notes)
    monkeypatch.setattr(cumulative, "REPORT_TIMELINE_MAX_STUDIES", table.k)
    assert cumulative.settle_evidence(table, events=[500]).timeline is not None


def test_json_records_the_priors_it_ran_under():
    """Every output records its priors: the fits' spec and the average's inclusion probabilities."""
    import synthesis as syn

    doc = syn.timeline(syn.load_dataset("dnmbc_lrt", subset="rct"), tau_prior="halfnormal(0.3)",
                       prior_prob="effect=0.3").to_json()
    assert doc["spec"]["priors"]["tau"] == "half-normal(scale=0.3)"
    assert doc["prior_prob"]["effect"] == 0.3
