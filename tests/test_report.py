"""The report writer: every file, run.json, a self-contained HTML page, atomic replacement.

Result objects are built by hand with small numbers (no MCMC, no quadrature): the report must
show what the results hold, whatever engine produced them. The builders here are shared with
``test_plots.py`` and ``test_report_browser.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from synthesis import report  # noqa: E402
from synthesis.analysis import (  # noqa: E402
    ROW_AT_COVARIATE,
    AnalysisResult,
    DecisionRow,
    DecisionTable,
    ModelRun,
)
from synthesis.errors import InputError  # noqa: E402
from synthesis.models.priors import parse_prior, resolve_priors  # noqa: E402
from synthesis.models.results import Diagnostics, FitResult, ParamSummary, RatioSummary, StudyEffect  # noqa: E402
from synthesis.models.spec import ModelSpec, threshold_key  # noqa: E402
from synthesis.pooling import pool  # noqa: E402
from synthesis.report import writer  # noqa: E402
from synthesis.studies import StudyTable, load_studies  # noqa: E402
from synthesis.sweeps import SweepResult, SweepRow  # noqa: E402

THRESHOLDS = (0.8, 1.0)
COVARIATE = "bone_only_fraction"
#: Seven studies of three designs; two lack the covariate; Lane 2011's HR sits off the
#: log-midpoint of its CI, which the loader flags (a data-validation warning).
CSV = """study,hr,ci_lower,ci_upper,design,bone_only_fraction
Badwe 2015,1.04,0.81,1.34,rct,0.3
Soran 2018,0.66,0.49,0.88,rct,0.5
Khan 2022,1.11,0.82,1.52,rct,
Fitzal 2019,0.69,0.36,1.33,prospective,0.4
Rapiti 2006,0.60,0.40,0.90,retrospective,0.2
Khan 2002,0.61,0.53,0.70,retrospective,
Lane 2011,0.50,0.45,0.95,retrospective,0.6
"""
P_BELOW = {"0.8": 0.42, "1.0": 0.97}
NOT_CONVERGED = ("12 divergences", "R-hat 1.08 > 1.01")


def ratio(median: float, lower: float, upper: float, p_below: dict | None = None) -> RatioSummary:
    return RatioSummary(median, lower, upper, p_below)


def summary(mean: float, sd: float) -> ParamSummary:
    return ParamSummary(mean=mean, median=mean, sd=sd, q025=mean - 1.96 * sd, q975=mean + 1.96 * sd)


def study_effects(table: StudyTable, pooled: float) -> list[StudyEffect]:
    """Observed HRs from the table beside made-up shrunken HRs (60% observed, 40% pooled)."""
    out = []
    for row in table.frame.itertuples(index=False):
        y, se = row.log_hr, row.se
        s = 0.6 * y + 0.4 * math.log(pooled)
        out.append(
            StudyEffect(
                row.study, row.design, math.exp(y), math.exp(y - 1.96 * se), math.exp(y + 1.96 * se),
                ratio(math.exp(s), math.exp(s - 1.5 * se), math.exp(s + 1.5 * se)),
            )
        )
    return out


def make_fit(
    table: StudyTable,
    spec: ModelSpec,
    *,
    hr: tuple[float, float, float],
    engine: str = "exact",
    converged: bool = True,
    hr_at: dict[str, RatioSummary] | None = None,
    posterior: object = None,
) -> FitResult:
    """A hand-built fit: exact fits carry a tau density, PyMC fits diagnostics (and optionally a
    posterior DataTree)."""
    tau_grid = np.linspace(0.0, 1.5, 151)
    tau_density = tau_grid / 0.04 * np.exp(-(tau_grid**2) / 0.08)  # Rayleigh(0.2), normalised
    densities = {"tau": (tau_grid, tau_density)}
    parameters = {"mu": summary(math.log(hr[0]), 0.12), "tau": summary(0.2, 0.1)}
    if "delta" in spec.parameters:
        grid = np.linspace(-1.0, 0.6, 161)
        densities["delta"] = (grid, np.exp(-0.5 * ((grid + 0.2) / 0.12) ** 2) / (0.12 * math.sqrt(2 * math.pi)))
        parameters["delta"] = summary(-0.2, 0.12)
    diagnostics = None
    if engine == "pymc":
        diagnostics = Diagnostics(
            divergences=0 if converged else 12,
            max_r_hat=1.002 if converged else 1.08,
            min_ess_bulk=1500.0 if converged else 90.0,
            converged=converged,
            messages=() if converged else NOT_CONVERGED,
        )
    return FitResult(
        spec=spec,
        engine=engine,
        k=table.k,
        parameters=parameters,
        beta={},
        hr=ratio(*hr),
        p_hr_below=dict(P_BELOW),
        predictive_hr=ratio(hr[0], hr[1] * 0.7, hr[2] * 1.4),
        p_predictive_hr_below={k: v * 0.9 for k, v in P_BELOW.items()},
        study_effects=study_effects(table, hr[0]),
        seed=7 if engine == "pymc" else None,
        timing={"fit_s": 0.01},
        hr_at=dict(hr_at or {}),
        diagnostics=diagnostics,
        posterior=posterior,
        tau_grid=tau_grid if engine == "exact" else None,
        tau_density=tau_density if engine == "exact" else None,
        densities=densities,
        source=table.source,
    )


TAU_GRID = ("halfnormal(0.1)", "halfnormal(0.5)", "halfnormal(1)", "halfcauchy(0.1)", "halfcauchy(0.5)",
            "turner2015-acm-nonpharm")
BIAS_GRID = ("normal(0, 0.25)", "normal(-0.223, 0.25)")


def make_sweep(label: str, *, bias: bool) -> SweepResult:
    rows = []
    for b in BIAS_GRID if bias else (None,):
        bspec = parse_prior(b, "delta") if b else None
        for i, text in enumerate(TAU_GRID):
            spec = parse_prior(text, "tau")
            hr = 0.75 + 0.05 * i
            rows.append(
                SweepRow(
                    model=label, tau_prior=spec.label, bias_prior=bspec.label if bspec else None,
                    engine="exact", hr_median=hr, hr_q025=hr * 0.75, hr_q975=hr * 1.3,
                    p_hr_below={"0.8": 0.6 - 0.05 * i, "1.0": 0.95 - 0.02 * i},
                    tau_family="turner2015" if spec.source else spec.family,
                    tau_prior_median=float(spec.ppf(0.5)),
                    bias_mean=bspec.params[0] if bspec else None,
                    bias_sd=bspec.params[1] if bspec else None,
                    tau_median=0.2,
                )
            )
    return SweepResult(rows=rows, thresholds=THRESHOLDS, seconds=0.05, engines={"exact": len(rows)})


def tiny_posterior() -> xr.DataTree:
    draws = np.random.default_rng(1).normal(size=(2, 20))
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), draws)})})


CURVE = {
    f"{COVARIATE}={v:g}": RatioSummary(
        0.7 + 0.3 * v, 0.5 + 0.2 * v, 1.0 + 0.5 * v, {"0.8": 0.6 - 0.4 * v, "1.0": 0.9 - 0.4 * v}, point={COVARIATE: float(v)}
    )
    for v in np.linspace(0.0, 1.0, 11)
}


def make_result(folder: Path, *, converged: bool = True, posterior: object = None) -> AnalysisResult:
    """The standard set of four models on seven studies, two sweeps, frequentist pools."""
    path = folder / "studies.csv"
    path.write_text(CSV)
    table = load_studies(path, covariates=(COVARIATE,))
    priors = resolve_priors({"tau": "turner2015-acm-nonpharm"})
    runs = [
        ModelRun("re_all", "Random effects, all studies", "all", ModelSpec("re", priors=priors)),
        ModelRun("re_rct", "Random effects, RCTs only", "rct", ModelSpec("re", priors=priors)),
        ModelRun("bias", "Design-bias adjusted (additive)", "all", ModelSpec("bias", priors=priors)),
        ModelRun(
            "bias_metareg", f"Bias-adjusted meta-regression on {COVARIATE}", "all",
            ModelSpec("bias-metareg", covariates=(COVARIATE,), priors=priors),
            at={f"{COVARIATE}=0": {COVARIATE: 0.0}, f"{COVARIATE}=1": {COVARIATE: 1.0}},
        ),
    ]
    fits = {
        "re_all": make_fit(table, runs[0].spec, hr=(0.72, 0.60, 0.86)),
        "re_rct": make_fit(table.subset("rct"), runs[1].spec, hr=(0.93, 0.62, 1.35)),
        "bias": make_fit(table, runs[2].spec, hr=(0.88, 0.65, 1.20)),
        "bias_metareg": make_fit(
            table, runs[3].spec, hr=(0.85, 0.60, 1.20), engine="pymc", converged=converged,
            hr_at=CURVE, posterior=posterior,
        ),
    }
    pools = {
        subset: {
            "DL": pool(table.subset(subset).y, table.subset(subset).v, method="DL"),
            "REML": pool(table.subset(subset).y, table.subset(subset).v, method="REML"),
        }
        for subset in ("all", "rct")
    }
    rows = []
    for run in runs:
        fit = fits[run.key]
        freq = {m.lower(): (math.exp(p.estimate), math.exp(p.ci_lower), math.exp(p.ci_upper))
                for m, p in pools[run.subset].items()}
        conv = fit.diagnostics.converged if fit.diagnostics is not None else None
        rows.append(DecisionRow(run.key, run.label, fit.engine, fit.k, fit.hr, fit.predictive_hr,
                                {threshold_key(t): fit.p_hr_below[threshold_key(t)] for t in THRESHOLDS},
                                freq, conv))
    warnings = list(table.warnings)
    if not converged:
        warnings.append(f"{runs[3].label}: sampling did not converge ({'; '.join(NOT_CONVERGED)})")
    return AnalysisResult(
        name="synthetic", source=str(path), table=table, thresholds=THRESHOLDS, covariate=COVARIATE,
        runs=runs, fits=fits, pools=pools, decision=DecisionTable(rows, THRESHOLDS),
        sweeps={"re_all": make_sweep(runs[0].label, bias=False), "bias": make_sweep(runs[2].label, bias=True)},
        pubbias=None, metareg=None, seed=20261123, timing={"sweeps_s": 0.1, "total_s": 1.5},
        warnings=warnings,
    )


def tiny_figures() -> dict[str, Figure]:
    """One small figure (fast to render): enough to check figures are written and embedded."""
    fig = Figure(figsize=(2.0, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    return {"tiny": fig}


# --------------------------------------------------------------------------------------------
# a full report (standard figures), written once for the module
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[AnalysisResult, Path]:
    base = tmp_path_factory.mktemp("full")
    result = make_result(base, converged=False, posterior=tiny_posterior())
    out = report.write_report(result, base / "reports" / "synthetic")
    return result, out


def test_every_file_is_written(full):
    result, out = full
    for name in ("report.html", "report.md", "run.json", "decision.csv", "studies.csv", "pools.csv",
                 "sweep_re_all.csv", "sweep_bias.csv"):
        assert (out / name).is_file(), name
    for stem in ("forest", "sensitivity_re_all", "sensitivity_bias", "bias_sensitivity_bias", "funnel", "bubble", "prior_posterior"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)
    assert (out / "figures" / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # PyMC fit with a DataTree -> NetCDF; exact fits -> tau density CSV
    tree = xr.open_datatree(out / "posteriors" / "bias_metareg.nc", engine="h5netcdf")
    assert tree["posterior"]["mu"].shape == (2, 20)
    for key in ("re_all", "re_rct", "bias"):
        dens = pd.read_csv(out / "posteriors" / f"{key}_tau_density.csv")
        assert list(dens.columns) == ["tau", "density"] and len(dens) == 151
        assert json.loads((out / "posteriors" / f"{key}_summary.json").read_text())["engine"] == "exact"
    assert not list(out.parent.glob(".synthetic.*")), "temporary folders left behind"


def test_tables_hold_the_result(full):
    result, out = full
    decision = pd.read_csv(out / "decision.csv")
    expected = result.decision.to_frame()
    assert list(decision.columns) == list(expected.columns)
    np.testing.assert_allclose(decision["hr_median"], expected["hr_median"])
    sweep = pd.read_csv(out / "sweep_bias.csv")
    assert len(sweep) == len(result.sweeps["bias"].rows) == len(TAU_GRID) * len(BIAS_GRID)
    assert {"p_hr_below_0.8", "p_hr_below_1.0", "tau_prior", "bias_prior"} <= set(sweep.columns)
    studies = pd.read_csv(out / "studies.csv")
    assert studies["study"].tolist() == result.table.studies
    np.testing.assert_allclose(studies["log_hr"], result.table.y)
    pools = pd.read_csv(out / "pools.csv")
    assert len(pools) == 4 and set(pools["subset"]) == {"all", "rct"} and set(pools["method"]) == {"DL", "REML"}
    assert {"estimate", "se", "hr", "hr_ci_lower", "tau2", "i2"} <= set(pools.columns)


def test_run_json_records_inputs_priors_seeds_versions(full):
    result, out = full
    run = json.loads((out / "run.json").read_text())
    for key in ("inputs", "priors", "seeds", "packages", "diagnostics", "thresholds", "timing", "warnings",
                "models", "interval", "files"):
        assert key in run, key
    source = Path(result.source)
    assert run["inputs"]["path"] == str(source.resolve())
    assert run["inputs"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert run["priors"]["bias"]["delta"] == "normal(mean=0, sd=0.5)"
    assert "turner2015-acm-nonpharm" in run["priors"]["re_all"]["tau"]
    assert run["seeds"] == {"analysis": 20261123, "fits": {"re_all": None, "re_rct": None, "bias": None, "bias_metareg": 7}}
    for package in ("python", "numpy", "scipy", "pandas", "pymc", "pytensor", "nutpie", "arviz", "matplotlib"):
        assert package in run["packages"], package
    assert run["packages"]["numpy"] == np.__version__
    assert run["diagnostics"]["re_all"] is None
    assert run["diagnostics"]["bias_metareg"]["converged"] is False
    assert run["convergence_problems"] == [{"model": result.runs[3].label, "messages": list(NOT_CONVERGED)}]
    assert run["thresholds"] == [0.8, 1.0]
    assert run["timing"]["sweeps_s"] == 0.1
    assert any("Lane 2011" in w for w in run["warnings"])
    assert run["interval"] == {"prob": 0.95, "kind": "equal-tailed"}
    assert "report.html" in run["files"] and "posteriors/bias_metareg.nc" in run["files"]


def test_html_is_self_contained(full):
    _, out = full
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"url\(|@import|<link\b", page, re.I)
    assert "http://" not in page and "https://" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 7 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "<style>" in page and "document.body.dataset.imagesLoaded" in page


def test_html_states_problems_first_and_holds_the_decision_table(full):
    result, out = full
    page = (out / "report.html").read_text()
    question = page.index('id="question"')
    # the convergence failure and the flagged study come before anything else
    alert = page.index("Convergence problems")
    assert alert < question
    assert page.index("12 divergences; R-hat 1.08 &gt; 1.01") < question
    assert page.index("Lane 2011") < question
    table = re.search(r'<table id="decision-table">(.*?)</table>', page, re.S).group(1)
    assert "<th>P(HR &lt; 0.8)</th>" in table and "<th>P(HR &lt; 1)</th>" in table
    for run in result.runs:
        assert run.label in table
    assert "half-normal" not in table  # the tau prior is the Turner preset, labelled as such
    assert table.count("log-normal on tau^2(mean_log_tau2=-4.17, sd_log_tau2=1.55) [turner2015-acm-nonpharm]") == 4
    assert "δ ~ normal(mean=0, sd=0.5)" in table
    assert "0.93 [0.62, 1.35]" in table and "NO" in table
    assert "95% equal-tailed credible interval" in page
    # the plain-language answer is built from the numbers
    assert "Among the randomised trials alone (k = 3), the posterior median HR is 0.93" in page
    assert "P(HR &lt; 0.8) = 0.42" in page
    for section in ("Prior sensitivity", "Frequentist comparisons", "Publication-bias diagnostics",
                    "Data-validation warnings", "Provenance"):
        assert f">{section}</h2>" in page
    assert "Turner et al. 2015" in page  # the preset's citation, in the provenance


def test_markdown_matches_and_references_figures(full):
    _, out = full
    md = (out / "report.md").read_text()
    assert md.startswith("# Evidence synthesis report: synthetic")
    assert "](figures/forest.png)" in md and "](figures/sensitivity_bias.png)" in md
    assert "base64" not in md and str(out) not in md
    assert "| Model | Priors | Engine | k |" in md
    assert "Among the randomised trials alone (k = 3)" in md
    assert "Convergence problems" in md


# --------------------------------------------------------------------------------------------
# atomic replacement
# --------------------------------------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def existing(tmp_path) -> tuple[AnalysisResult, Path]:
    result = make_result(tmp_path)
    out = report.write_report(result, tmp_path / "out" / "rep", figures={"stale": tiny_figures()["tiny"]})
    assert (out / "figures" / "stale.png").is_file()
    return result, out


@pytest.mark.parametrize("stage", ["_write_posteriors", "render_report", "save_figure"])
def test_failure_mid_write_keeps_the_old_report(existing, monkeypatch, stage):
    result, out = existing
    before = _snapshot(out)

    def boom(*args, **kwargs):
        raise RuntimeError(f"disk full during {stage}")

    if stage == "save_figure":
        monkeypatch.setattr("synthesis.plots.save_figure", boom)
    else:
        monkeypatch.setattr(writer, stage, boom)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(result, out, figures=tiny_figures())
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["rep"], "temporary folder left behind"


def test_success_replaces_the_whole_folder(existing):
    result, out = existing
    report.write_report(result, out, figures=tiny_figures())
    assert not (out / "figures" / "stale.png").exists(), "a file of the earlier report survived"
    assert (out / "figures" / "tiny.svg").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["rep"]
    page = (out / "report.html").read_text()
    assert page.count("<img ") == 1
    assert "Every MCMC fit passed its diagnostics" in page


def test_refuses_to_replace_a_folder_that_is_not_a_report(tmp_path):
    result = make_result(tmp_path)
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(InputError, match="holds 1 file that synthesis did not write"):
        report.write_report(result, precious, figures={})
    assert (precious / "chapter1.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies.csv", "thesis"]


def test_bundled_dataset_source_is_hashed(tmp_path):
    from synthesis.datasets import dataset_path

    try:
        path = dataset_path("dnmbc_lrt")
    except InputError:
        pytest.skip("bundled dataset not installed yet")
    result = make_result(tmp_path)
    result.source = "dnmbc_lrt (bundled dnmbc_lrt.csv)"
    result.source_path = path  # a structured field: the display name is never parsed back
    run = report.run_record(result)
    assert run["inputs"]["path"] == str(path)
    assert run["inputs"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# the console decision table (``run`` and ``report`` print it)
# --------------------------------------------------------------------------------------------
def test_console_table_fits_in_100_columns(tmp_path):
    from dataclasses import replace

    from synthesis.report import console_decision_table

    result = make_result(tmp_path)
    text = console_decision_table(result)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Random effects, all" in text and "0.72 (0.60-0.86)" in text
    assert "P<0.8" in text and "P<1" in text
    # Covariate rows, a long user label, eight thresholds, a wide HR: still within the width.
    thresholds = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)
    long_label = "A model whose label somebody made very long indeed, " * 3
    rows = [
        replace(row, key="custom", model_key="custom", label=long_label) if row.key == "re_all"
        else replace(row, hr=ratio(12.5, 10.25, 15.75)) if row.key == "bias" else row
        for row in result.decision.rows
    ]
    base = rows[-1]
    rows += [
        replace(base, key=f"{base.key}@{COVARIATE}={v:g}", label=f"{base.label}, at {v:g}",
                kind=ROW_AT_COVARIATE, model_key=base.key, point={COVARIATE: v})
        for v in (0, 0.5, 1)
    ]
    result.thresholds = thresholds
    result.decision = DecisionTable(rows, thresholds)
    for width in (100, 80):
        text = console_decision_table(result, width=width)
        assert max(len(line) for line in text.splitlines()) <= width, text
        assert f"  at {COVARIATE}=0.5" in text and "Bias-adjusted meta-reg., mean" in text
        assert "12.50 (10.25-15.75)" in text and "P<0.75" in text
        assert "A model whose label" in text and "..." in text


# --------------------------------------------------------------------------------------------
# many studies: the pages list the most precise, the CSV files hold every study (issue #9)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow  # writes a whole report (5-9 s): CI's slow run
def test_large_report_caps_study_tables_and_writes_every_study_to_csv(tmp_path):
    from synthesis.analysis import run_analysis
    from synthesis.report.tables import LEAVE_ONE_OUT_CSV, REPORT_MAX_STUDY_ROWS

    k = 3000
    rng = np.random.default_rng(9)
    se = rng.uniform(0.05, 0.5, k)
    log_hr = rng.normal(-0.2, np.sqrt(se**2 + 0.04))
    frame = pd.DataFrame({
        "study": [f"S{i:05d}" for i in range(k)],
        "hr": np.exp(log_hr).round(6),
        "ci_lower": np.exp(log_hr - 1.959964 * se).round(6),
        "ci_upper": np.exp(log_hr + 1.959964 * se).round(6),
        "design": rng.choice(["rct", "prospective", "retrospective"], size=k),
        "year": rng.integers(1990, 2024, size=k),
    })
    path = tmp_path / "many.csv"
    frame.to_csv(path, index=False)
    table = load_studies(path, covariates=("year",))
    result = run_analysis(table, name="many", covariate="year", progress=False,
                          tau_priors=["halfnormal(0.5)", "halfcauchy(0.5)"], bias_priors=["normal(0, 0.5)"])
    out = report.write_report(result, tmp_path / "many", figures=tiny_figures())

    loo = pd.read_csv(out / LEAVE_ONE_OUT_CSV)  # every study
    assert len(loo) == k and set(loo["study"]) == set(frame["study"])
    page, md = (out / "report.html").read_text(encoding="utf-8"), (out / "report.md").read_text(encoding="utf-8")
    note = f"the {REPORT_MAX_STUDY_ROWS} most precise of {k:,} studies"
    assert note in page and note in md and LEAVE_ONE_OUT_CSV in md
    listed = set(re.findall(r"^\| (S\d{5}) \|", md, re.M))
    assert len(listed) == REPORT_MAX_STUDY_ROWS
    by_se = table.frame.sort_values("se")["study"].tolist()
    assert listed == set(by_se[:REPORT_MAX_STUDY_ROWS])  # the most precise, none of the others
    assert len(set(re.findall(r"<td>(S\d{5})</td>", page))) == REPORT_MAX_STUDY_ROWS

    for key, fit in result.fits.items():  # per-study posterior summaries: CSV, named by the JSON
        assert len(fit.study_effects) > REPORT_MAX_STUDY_ROWS  # RCTs only: a subset
        doc = json.loads((out / "posteriors" / f"{key}_summary.json").read_text())
        assert "study_hr" not in doc and doc["study_hr_csv"] == f"{key}_studies.csv"
        studies = pd.read_csv(out / "posteriors" / doc["study_hr_csv"])
        assert len(studies) == len(fit.study_effects) and studies["hr_median"].notna().all()
        assert studies["study"].tolist() == [s.study for s in fit.study_effects]


# --------------------------------------------------------------------------------------------
# which model the data support, and where the answer flips (issue #11)
# --------------------------------------------------------------------------------------------
CHOICE_TITLE = "Which model do the data support, and where does the answer flip?"


@pytest.fixture(scope="module")
def with_choice(tmp_path_factory) -> tuple[AnalysisResult, Path]:
    """The synthetic result with a real model choice of its seven studies (exact engine: model
    averaging, exact-LOO stacking, a small tipping grid, power-scaling) and its rows on top."""
    from synthesis.analysis import ModelChoice, model_choice_rows, mu_prior_sensitivity
    from synthesis.models.averaging import average_models
    from synthesis.models.loo import compare_variants
    from synthesis.models.powerscale import power_scale
    from synthesis.models.spec import ModelData
    from synthesis.models.tipping import tipping_analysis
    from synthesis.plots.tipping import plot_alpha_curve, plot_tipping_map

    base = tmp_path_factory.mktemp("choice")
    result = make_result(base)
    spec = ModelSpec("bias")
    table = result.table
    tipping = tipping_analysis(ModelData.from_table(table, spec), spec.priors, grid=(6, 5), alpha_points=5)
    choice = ModelChoice(
        averaging=average_models(table, spec, thresholds=THRESHOLDS),
        stacking=compare_variants(table, spec, variants=("additive", "downweight"), engine="exact", thresholds=THRESHOLDS),
        tipping=tipping,
        powerscale=power_scale(table, spec, thresholds=THRESHOLDS),
        powerscale_key="bias",
        unstacked={"random": "left out by this test", "three-level": "left out by this test"},
        mu_prior=mu_prior_sensitivity(table, spec, thresholds=THRESHOLDS),
    )
    result.model_choice = choice
    result.decision = DecisionTable(model_choice_rows(choice, THRESHOLDS) + result.decision.rows, THRESHOLDS)
    figures = {"tipping_map": plot_tipping_map(tipping), "tipping_alpha": plot_alpha_curve(tipping)}
    return result, report.write_report(result, base / "rep", figures=figures)


def test_combined_rows_head_the_decision_table_with_the_objects_numbers(with_choice):
    result, out = with_choice
    avg, cmp = result.model_choice.averaging, result.model_choice.stacking
    decision = pd.read_csv(out / "decision.csv")
    assert decision["key"].tolist()[:4] == ["averaged", "averaged_given_effect", "stacked", "re_all"]
    assert decision["kind"].tolist()[:3] == ["averaged", "averaged", "stacked"]
    rows = decision.set_index("key")
    for key, expected in (("averaged", avg.averaged), ("averaged_given_effect", avg.averaged_given_effect),
                          ("stacked", cmp.stacked)):
        got = rows.loc[key]
        assert (got["hr_median"], got["hr_q025"], got["hr_q975"]) == pytest.approx(
            (expected.median, expected.q025, expected.q975), rel=1e-12)
        p_below = expected.p_below
        for t in THRESHOLDS:
            assert got[f"p_hr_below_{threshold_key(t)}"] == pytest.approx(p_below[threshold_key(t)], rel=1e-12)
        # no predictive HR and no frequentist comparator: empty cells in the CSV
        assert got[["predictive_hr_median", "dl_hr", "reml_ci_upper"]].isna().all()
        assert got["engine"] == "exact" and got["k"] == result.table.k
    # independent identities: the averaged P(HR < 0.8) is the posterior-weighted P(HR < 0.8) of
    # the effect models (the spike at HR = 1 is not below 0.8), the spike carries the rest; the
    # stacked P(HR < T) is the stacking-weighted P(HR < T) of the variants
    effect = [m for m in avg.models if m.effect]
    assert rows.loc["averaged", "p_hr_below_0.8"] == pytest.approx(
        sum(m.posterior_prob * m.hr.p_below["0.8"] for m in effect), rel=1e-9)
    assert avg.averaged.spike == pytest.approx(1.0 - sum(m.posterior_prob for m in effect), abs=1e-12)
    for t in ("0.8", "1.0"):
        assert rows.loc["stacked", f"p_hr_below_{t}"] == pytest.approx(
            sum(v.comparison.weight * v.fit.p_hr_below[t] for v in cmp.variants), rel=1e-9)
    # the pages show them first, with n/a where nothing applies; the forest plot is of fits only
    page = (out / "report.html").read_text(encoding="utf-8")
    table = re.search(r'<table id="decision-table">(.*?)</table>', page, re.S).group(1)
    first = re.findall(r"<tr><td>([^<]+)", table)[:4]
    assert first == ["Model-averaged (8 models)", "Model-averaged (8 models), given an effect",
                     "Stacked bias variants (LOO)", "Random effects, all studies"]
    first_row = table.split("</tr>")[1]  # [0] is the header
    assert first_row.count(">n/a<") == 3  # the predictive HR, the DL and the REML comparators
    assert "n/a (exact engine)" in first_row  # no convergence to check
    console = report.console_decision_table(result)
    assert console.splitlines()[3].startswith("Model-averaged (8 models)")
    assert console.splitlines()[4].startswith("  given an effect")


def test_model_choice_section_in_both_pages(with_choice):
    result, out = with_choice
    choice = result.model_choice
    page = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f">{CHOICE_TITLE}</h2>" in page and f"\n## {CHOICE_TITLE}\n" in md
    # after the decision table, before the figures of the fits
    assert md.index("## Decision table") < md.index(CHOICE_TITLE) < md.index("## Prior sensitivity")
    for text in (choice.tipping.sentence, choice.powerscale.summary):
        assert text in md
    for ident in ("model-probabilities", "inclusion-bf", "stacking", "powerscale"):
        assert f'<table id="{ident}">' in page, ident
    for name in ("tipping_map", "tipping_alpha"):
        assert f"](figures/{name}.png)" in md and f'id="fig-{name}"' in page
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.svg").is_file()
    # model probabilities and the inclusion Bayes factors with their words
    assert "| effect + bias (additive) + heterogeneity |" in md
    for component, bf in choice.averaging.inclusion_bf.items():
        from synthesis.models.averaging import evidence_words

        assert evidence_words(bf) in md, component
    assert "| stacked |" in md and "downweight" in md
    assert "Stacked: the additive and downweight bias variants" in md
    assert "exact leave-one-study-out cross-validation" in md
    assert "Not stacked: random (left out by this test); three-level (left out by this test)." in md
    # Markdown: "<" of a probability or a relation stays as written; no HTML entity or tag leaks
    assert "P(HR < 0.8) given the model" in md and "&lt;" not in md.split(CHOICE_TITLE)[1].split("## ")[0]
    assert "<td" not in md and "<table" not in md


def _answer(out: Path) -> str:
    md = (out / "report.md").read_text(encoding="utf-8")
    return md.split("## Answer in plain language\n", 1)[1].strip().split("\n", 1)[0]


def test_answer_leads_with_no_effect_then_the_hr_given_an_effect(with_choice):
    """Issue #11: the answer leads with P(no effect) and the HR given an effect, then the averaged
    P(HR < T); the averaged median (at HR = 1, the spike) is not in the lead."""
    result, out = with_choice
    avg = result.model_choice.averaging
    answer = _answer(out)
    g = avg.averaged_given_effect
    assert answer.startswith(f"Averaged over 8 models, the posterior probability that there is no effect at all "
                             f"(HR exactly 1) is {avg.averaged.spike:.2f}. Given an effect, the posterior median "
                             f"HR of a randomised comparison is {g.median:.2f}")
    p08 = avg.averaged.p_below["0.8"]
    averaged = f"the no-effect ones included, P(HR < 0.8) {'= ' + format(p08, '.2f') if p08 >= 0.01 else '< 0.01'}"
    assert averaged in answer
    assert answer.index("no effect at all") < answer.index("Given an effect") < answer.index(averaged)
    assert "posterior median HR of a randomised comparison is 1.00" not in answer
    assert "equal prior probabilities for the 8 models" in answer and "the additive design-bias model" in answer
    assert "τ ~ half-normal(scale=0.5)" in answer
    assert answer.index("Averaged over") < answer.index("Model by model: among the randomised trials alone")
    # the mu-prior dependence in one clause, with the table's extreme priors' numbers
    mp = result.model_choice.mu_prior
    lo, hi = mp[min(mp)], mp[max(mp)]
    assert (f"the posterior probability of no effect depends on the prior on μ: {lo.averaged.spike:.2f} under "
            f"μ ~ normal(mean=0, sd=0.2), {hi.averaged.spike:.2f} under μ ~ normal(mean=0, sd=2)") in answer


def test_mu_prior_table_equals_average_models_under_each_prior(with_choice):
    """Issue #11: the table, its CSV and the JSON hold average_models under mu ~ normal(0, s),
    recomputed here from priors parsed from their strings; the effect BF falls as the prior widens
    (Lindley) while the posterior probability of no effect rises."""
    from synthesis.analysis import MU_PRIOR_SCALES
    from synthesis.models.averaging import average_models, evidence_words

    result, out = with_choice
    mp = result.model_choice.mu_prior
    assert tuple(mp) == MU_PRIOR_SCALES == (0.2, 0.5, 1.0, 2.0)
    csv = pd.read_csv(out / "mu_prior_sensitivity.csv")
    md = (out / "report.md").read_text(encoding="utf-8")
    section = md.split("### How the evidence for an effect depends on the mu prior\n", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| normal(")]
    assert len(rows) == len(MU_PRIOR_SCALES) == len(csv)
    bfs, spikes = [], []
    for i, s in enumerate(MU_PRIOR_SCALES):
        spec = ModelSpec("bias", priors=resolve_priors({"mu": f"normal(0, {s})"}))
        ref = average_models(result.table, spec, thresholds=THRESHOLDS)
        bf, spike = ref.inclusion_bf["effect"], ref.averaged.spike
        bfs.append(bf)
        spikes.append(spike)
        got = csv.iloc[i]
        assert got["mu_prior_sd"] == s and got["mu_prior"] == ref.priors["mu"]
        assert got["effect_bf"] == pytest.approx(bf, rel=1e-12)
        assert got["p_no_effect"] == pytest.approx(spike, rel=1e-12)
        assert got["p_hr_below_0.8"] == pytest.approx(ref.averaged.p_below["0.8"], rel=1e-12)
        assert got["hr_given_effect"] == pytest.approx(ref.averaged_given_effect.median, rel=1e-12)
        assert got["evidence"] == evidence_words(bf)
        cells = [c.strip() for c in rows[i].strip("|").split("|")]
        assert cells[0] == ref.priors["mu"] and cells[2] == f"{evidence_words(bf)} an effect"
        assert cells[3] == f"{spike:.2f}"
        assert cells[5].startswith(f"{ref.averaged_given_effect.median:.2f} [")
        record = result.model_choice.to_json()["mu_prior_sensitivity"][i]
        assert record["effect_bf"] == pytest.approx(bf, rel=1e-12)
    assert all(a > b for a, b in zip(bfs, bfs[1:], strict=False)) and all(a < b for a, b in zip(spikes, spikes[1:], strict=False))
    assert "Lindley's paradox" in section and "wider prior" in section and "penalises the effect model" in section
    assert "mu_prior_sensitivity.csv" in json.loads((out / ".synthesis-output.json").read_text())["files"]


def test_heterogeneity_and_stacking_sentences(with_choice):
    """Issue #11: tau is shared by both designs (the heterogeneity BF and the RCT-only I² from
    the pools); stacking weights are not model probabilities; alpha of the downweight variant."""
    from synthesis.models.averaging import evidence_words
    from synthesis.report.formats import bayes_factor

    result, out = with_choice
    md = (out / "report.md").read_text(encoding="utf-8")
    section = md.split(f"## {CHOICE_TITLE}\n", 1)[1].split("\n## ", 1)[0]
    bf = result.model_choice.averaging.inclusion_bf["heterogeneity"]
    rct = result.pools["rct"]["REML"]
    # I² = tau² / (tau² + s²) with the typical within-study variance of Higgins and Thompson (2002),
    # s² = (k - 1) Σw / ((Σw)² - Σw²), w = 1 / v: recomputed from the RCTs' variances
    w = 1.0 / np.asarray(result.table.subset("rct").v)
    s2 = (len(w) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum())
    i2 = 100.0 * rct.tau2 / (rct.tau2 + s2)
    assert f"heterogeneity Bayes factor ({bayes_factor(bf)}, {evidence_words(bf)} heterogeneity)" in section
    assert f"the 3 randomised trials alone, whose own I² is {i2:.0f}%" in section
    assert "The between-study SD τ is shared by the randomised and the non-randomised studies" in section
    assert "Stacking weights are not model probabilities" in section
    assert "a weight of 0 means a variant adds no predictive value beside the others, not that it is refuted" in section
    assert f"alpha = {result.model_choice.stacking.spec.alpha:g}" in section


def test_model_choice_csvs_hold_the_results(with_choice):
    result, out = with_choice
    choice = result.model_choice
    models = pd.read_csv(out / "model_averaging.csv")
    np.testing.assert_allclose(models["posterior_prob"], [m.posterior_prob for m in choice.averaging.models], rtol=1e-12)
    assert models["posterior_prob"].sum() == pytest.approx(1.0, abs=1e-12)
    bfs = pd.read_csv(out / "inclusion_bf.csv").set_index("component")
    assert list(bfs.index) == ["effect", "bias", "heterogeneity"]
    np.testing.assert_allclose(bfs["inclusion_bf"], [choice.averaging.inclusion_bf[c] for c in bfs.index], rtol=1e-12)
    stacking = pd.read_csv(out / "stacking.csv").set_index("bias_variant")
    assert list(stacking.index) == ["additive", "downweight", "stacked"]
    assert stacking.loc[["additive", "downweight"], "weight"].sum() == pytest.approx(1.0, abs=1e-9)
    grid = pd.read_csv(out / "tipping_grid.csv")
    assert len(grid) == 6 * 5 and grid["p_hr_below"].between(0, 1).all()
    assert len(pd.read_csv(out / "tipping_alpha.csv")) == 5
    assert (out / "tipping_contour.csv").is_file()
    ps = pd.read_csv(out / "powerscale.csv")
    assert ps["parameter"].tolist()[:3] == ["mu", "tau", "delta"]
    assert len(pd.read_csv(out / "powerscale_alpha.csv")) == len(choice.powerscale.alpha_curve)
    marker = json.loads((out / ".synthesis-output.json").read_text())
    for name in ("model_averaging.csv", "inclusion_bf.csv", "stacking.csv", "tipping_grid.csv",
                 "powerscale.csv", "figures/tipping_map.png"):
        assert name in marker["files"], name


def test_report_operating_characteristics_flag_reaches_the_analysis(monkeypatch, tmp_path):
    """``report --operating-characteristics`` asks run_analysis for them; without it, not."""
    import synthesis.analysis as analysis
    from synthesis.cli import main

    seen = []

    class Stop(Exception):
        pass

    def fake(*args, **kwargs):
        seen.append(kwargs.get("operating_characteristics"))
        raise Stop

    monkeypatch.setattr(analysis, "run_analysis", fake)
    for extra, want in (([], False), (["--operating-characteristics"], True)):
        with pytest.raises(Stop):
            main(["report", "--quiet", "--out", str(tmp_path / f"r{len(seen)}"), *extra])
        assert seen[-1] is want
