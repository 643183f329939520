"""The main job's computations (synthesis.analysis) on small tables, exact engine only: where the
meta-regression is reported, the structured decision rows and the sweeps' ``workers``."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from synthesis.analysis import (
    COVARIATE_VALUES,
    ROW_AT_COVARIATE,
    ROW_MODEL,
    covariate_points,
    run_analysis,
    standard_runs,
)
from synthesis.studies import load_studies

CSV = """study,log_hr,se,design,year,fraction
A,-0.30,0.15,rct,2001,0.1
B,-0.10,0.20,rct,2004,0.4
C,-0.25,0.18,rct,2006,0.2
D,-0.45,0.22,prospective,2008,0.9
E,-0.50,0.25,retrospective,2010,0.6
F,-0.35,0.20,retrospective,2013,0.3
G,-0.60,0.30,prospective,2015,0.8
H,-0.20,0.17,rct,2019,0.5
"""
TAUS = ("halfnormal(0.2)", "halfnormal(0.5)")
BIASES = ("normal(0, 0.5)",)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "studies.csv"
    path.write_text(CSV)
    return load_studies(path)


def test_covariate_points_are_quartiles_unless_a_fraction(table):
    years = table.covariate("year").astype(float)
    assert covariate_points(table, "year") == tuple(np.quantile(years, (0.25, 0.5, 0.75)))
    assert covariate_points(table, "fraction") == COVARIATE_VALUES


def test_report_on_year_is_at_observed_years_with_structured_rows(table):
    """``report --covariate year`` used to report HRs at years 0, 0.5 and 1."""
    result = run_analysis(table, name="t", covariate="year", tau_priors=TAUS, bias_priors=BIASES, progress=False)
    assert result.fits["bias_metareg"].engine == "exact"
    at_rows = [r for r in result.decision.rows if r.kind == ROW_AT_COVARIATE]
    points = [r.point["year"] for r in at_rows]
    assert points == list(covariate_points(table, "year"))
    assert all(2001 <= p <= 2019 for p in points)
    assert {r.model_key for r in at_rows} == {"bias_metareg"}
    assert [r.key for r in result.decision.rows if r.kind == ROW_MODEL] == ["re_all", "re_rct", "bias", "bias_metareg"]
    fit = result.fits["bias_metareg"]
    for r in at_rows:  # each row is the fit's HR at its point
        (summary,) = [s for s in fit.hr_at.values() if s.point == r.point]
        assert r.hr.median == summary.median and r.p_hr_below == summary.p_below
    # the bubble curve is in hr_at but makes no row
    assert len(fit.hr_at) > len(at_rows)
    assert result.source_path == Path(table.path) and result.source_path.is_file()


def test_workers_run_the_sweeps_in_parallel_with_the_same_numbers(table, monkeypatch):
    """``report --workers N`` used to be accepted and ignored."""
    sweep = importlib.import_module("synthesis.sweeps")
    real = sweep.run_parallel
    seen: list[int | None] = []

    def recording(func, jobs, *, workers, **kwargs):
        seen.append(workers)
        return real(func, jobs, workers=workers, **kwargs)

    monkeypatch.setattr(sweep, "run_parallel", recording)
    kwargs = {"name": "t", "covariate": "fraction", "tau_priors": TAUS, "bias_priors": BIASES, "progress": False}
    one = run_analysis(table, workers=1, **kwargs)
    two = run_analysis(table, workers=2, **kwargs)
    assert seen == [1, 2]
    assert set(one.sweeps) == set(two.sweeps) == {"re_all", "re_rct", "bias", "bias_metareg"}
    for key in one.sweeps:
        assert [r.to_dict() for r in one.sweeps[key].rows] == [r.to_dict() for r in two.sweeps[key].rows]


def test_standard_runs_report_a_fraction_at_0_half_and_1(table):
    (metareg,) = [r for r in standard_runs(table, "fraction") if r.key == "bias_metareg"]
    assert list(metareg.at) == ["fraction=0", "fraction=0.5", "fraction=1"]


def test_model_choice_is_computed_timed_and_heads_the_decision_table(table):
    """Both designs: model averaging over 8 models, the two exact-LOO variants stacked, the
    tipping point at 0.8 / 0.5 and the power-scaling of the bias model; rows of kind
    averaged/stacked first, then the fits."""
    from synthesis.analysis import AVERAGED_KEY, ROW_AVERAGED, ROW_STACKED, STACKED_KEY
    from synthesis.models.loo import exact_loo_unsupported_reason
    from synthesis.models.spec import BIAS_VARIANTS, ModelData, ModelSpec

    result = run_analysis(table, name="t", covariate="absent", tau_priors=TAUS[:1], bias_priors=BIASES, progress=False)
    choice = result.model_choice
    assert len(choice.averaging.models) == 8 and choice.averaging.components == ("effect", "bias", "heterogeneity")
    assert choice.averaging.priors == ModelSpec("bias").priors.labels(("mu", "tau", "delta"))  # the defaults
    assert {m.prior_prob for m in choice.averaging.models} == {0.125}  # equal prior model probabilities
    # every variant that exact LOO scores is stacked (additive and downweight at least); the others
    # are listed with the reason
    stacked = [v.variant for v in choice.stacking.variants]
    assert {"additive", "downweight"} <= set(stacked)
    assert sorted(stacked + list(choice.unstacked)) == sorted(BIAS_VARIANTS)
    for variant in stacked:
        spec = ModelSpec("bias", bias_variant=variant)
        assert exact_loo_unsupported_reason(spec, ModelData.from_table(table, spec)) is None
    assert {v.loo.method for v in choice.stacking.variants} == {"exact"}
    assert (choice.tipping.threshold, choice.tipping.level) == (0.8, 0.5)
    assert choice.tipping.p_hr_below.shape == (40, 40)
    assert choice.powerscale_key == "bias" and choice.powerscale.engine == "exact"
    kinds = [r.kind for r in result.decision.rows]
    assert kinds[:3] == [ROW_AVERAGED, ROW_AVERAGED, ROW_STACKED] and set(kinds[3:]) == {ROW_MODEL}
    rows = {r.key: r for r in result.decision.rows}
    assert rows[AVERAGED_KEY].p_hr_below == {t: choice.averaging.averaged.p_below[t] for t in rows[AVERAGED_KEY].p_hr_below}
    assert rows[STACKED_KEY].hr.median == choice.stacking.stacked.median
    assert set(rows[AVERAGED_KEY].p_hr_below) == {"0.7", "0.8", "0.9", "1.0"}  # every decision threshold
    for key in ("model_averaging_s", "stacking_s", "tipping_s", "powerscale_s"):
        assert result.timing[key] >= 0, key
    doc = result.to_json()["model_choice"]
    assert doc["tipping"]["threshold"] == 0.8 and doc["averaging"]["averaged"] == choice.averaging.to_json()["averaged"]
    assert doc["stacking"]["stacked"]["hr_median"] == choice.stacking.stacked.median
    # the averaging under mu ~ normal(0, s): the default prior normal(0, 1) is one of them and must
    # reproduce the headline averaging exactly; every record is in the JSON
    from synthesis.analysis import MU_PRIOR_SCALES

    assert tuple(choice.mu_prior) == MU_PRIOR_SCALES and result.timing["mu_prior_s"] >= 0
    same = choice.mu_prior[1.0]
    assert same.priors == choice.averaging.priors
    assert same.inclusion_bf["effect"] == pytest.approx(choice.averaging.inclusion_bf["effect"], rel=1e-12)
    assert same.averaged.spike == pytest.approx(choice.averaging.averaged.spike, rel=1e-12)
    assert [r["mu_prior"] for r in doc["mu_prior_sensitivity"]] == [
        f"normal(mean=0, sd={s:g})" for s in MU_PRIOR_SCALES]
    assert [r["effect_bf"] for r in doc["mu_prior_sensitivity"]] == [
        choice.mu_prior[s].inclusion_bf["effect"] for s in MU_PRIOR_SCALES]


def test_without_both_designs_the_average_has_no_bias_dimension(table):
    import synthesis as syn

    frame = table.frame[["study", "log_hr", "se"]]
    result = run_analysis(syn.load_studies(frame), name="t", tau_priors=TAUS[:1], progress=False)
    choice = result.model_choice
    assert choice.averaging.components == ("effect", "heterogeneity") and len(choice.averaging.models) == 4
    assert choice.stacking is None and choice.tipping is None
    assert choice.powerscale_key == "re_all" and choice.powerscale is not None
    assert any("without the design-bias dimension" in w and "no tipping-point analysis" in w for w in result.warnings)
    assert [r.key for r in result.decision.rows] == ["averaged", "averaged_given_effect", "re_all"]


def test_large_k_limits_skip_parts_of_the_model_choice_with_a_warning(table, monkeypatch):
    """Above the report's study limits, stacking, the tipping point and power-scaling are
    skipped, each with a warning naming the command that computes it (never silently)."""
    import synthesis.analysis as analysis

    for name in ("STACKING_MAX_STUDIES", "TIPPING_MAX_STUDIES", "POWERSCALE_MAX_STUDIES", "MU_PRIOR_MAX_STUDIES"):
        monkeypatch.setattr(analysis, name, table.k - 1)
    warnings: list[str] = []
    choice = analysis._model_choice(table, analysis.standard_runs(table, "absent"), (0.8, 1.0), warnings, {})
    assert choice.averaging is not None
    assert choice.stacking is None and choice.tipping is None and choice.powerscale is None and not choice.mu_prior
    said = " ".join(warnings)
    for command in ("synthesis compare --engine exact", "synthesis tipping", "synthesis psense", "synthesis average --mu-prior"):
        assert command in said


def test_pymc_fits_run_in_the_background_only_from_the_stated_k(table, monkeypatch):
    """Below BACKGROUND_FIT_MIN_STUDIES no child process is started (and none for a table the
    exact engine fits entirely); a background fit whose process died is fitted in this
    process instead (no sampling here: the fit is replaced)."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import synthesis.analysis as analysis

    settings = analysis._Settings(thresholds=(0.8,), seed=1, chains=2, draws=10, tune=10)
    runs = standard_runs(table, "year")
    assert table.k < analysis.BACKGROUND_FIT_MIN_STUDIES
    assert analysis._start_background_fits(table, runs, "year", settings) == (None, {})
    monkeypatch.setattr(analysis, "BACKGROUND_FIT_MIN_STUDIES", 1)
    assert analysis._start_background_fits(table, runs, "year", settings) == (None, {})  # all exact
    broken = Future()
    broken.set_exception(BrokenProcessPool("killed"))
    monkeypatch.setattr(analysis, "_timed_fit", lambda job: ("refitted", 0.5))
    assert analysis._background_result(broken, ("job",)) == ("refitted", 0.5)


@pytest.mark.slow
def test_background_pymc_fit_gives_the_same_analysis(tmp_path, monkeypatch):
    """With the PyMC fit (an imputed covariate) in a child process, the decision table, the
    fit's sampler settings and the order of rows and fits are those of the fit in this process
    (same seed), and a warning says where it was sampled."""
    import synthesis.analysis as analysis

    path = tmp_path / "studies.csv"
    path.write_text(CSV.replace(",0.9\n", ",\n").replace(",0.2\n", ",\n"))
    table = load_studies(path, covariates=["fraction"])
    options = {"name": "t", "covariate": "fraction", "tau_priors": TAUS, "bias_priors": BIASES,
               "progress": False, "draws": 300, "tune": 300, "chains": 2}
    here = run_analysis(table, **options)
    assert here.fits["bias_metareg"].engine == "pymc"
    monkeypatch.setattr(analysis, "BACKGROUND_FIT_MIN_STUDIES", 1)
    there = run_analysis(table, **options)
    # the exact rows are identical; the PyMC fit is the same call with the same seed (identical
    # draws in a clean process; a pytensor setting changed by another test in this worker can
    # change the in-process compile, so the draws are compared through their summaries)
    for a, b in zip(there.decision.rows, here.decision.rows, strict=True):
        assert (a.key, a.kind, a.engine) == (b.key, b.kind, b.engine)
        if a.engine == "exact":
            assert a.to_record() == b.to_record()
        else:
            assert a.hr.median == pytest.approx(b.hr.median, rel=0.05)
    assert list(there.fits) == list(here.fits) == ["re_all", "re_rct", "bias", "bias_metareg"]
    settings = [f.posterior.attrs["sampler_settings"] for f in (here.fits["bias_metareg"], there.fits["bias_metareg"])]
    assert settings[0] == settings[1] and '"draws": 300' in settings[0]
    assert any("parallel process" in w for w in there.warnings)
    assert not any("parallel process" in w for w in here.warnings)
    assert list(there.timing)[:4] == [f"fit_{k}_s" for k in there.fits]
