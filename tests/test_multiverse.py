"""``synthesis multiverse`` (issue #12): specifications, their exact fits and summaries.

Independent references: the common-effect posterior in closed form (conjugate normal), the
random-effects posterior by brute-force scipy quadrature over tau, the loader's SEs for every
table the multiverse builds, and the per-switch max shift by enumerating every pair of
specifications.
"""

from __future__ import annotations

import itertools
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from synthesis.bundled.build_dnmbc_lrt import IMPLEMENTED, build_text, default_choices
from synthesis.cli import EXIT_INPUT, main
from synthesis.datasets import load_dataset
from synthesis.errors import InputError
from synthesis.specifications import (
    MULTIVERSE_BIAS_PRIORS,
    MULTIVERSE_MODELS,
    MULTIVERSE_TAU_PRIORS,
    NO_PRIOR,
    run_multiverse,
    table_arrays,
)
from synthesis.studies import load_studies

matplotlib.use("Agg")

#: Only the default alternative of every switch: one table.
DEFAULT_ONLY = {name: [alt] for name, alt in default_choices().items()}
#: Quadrature and the engine's grid agree to this (both far finer than the printed digits).
QUAD_TOL = 2e-4


def _mu_posterior(y: np.ndarray, se: np.ndarray, tau: float) -> tuple[float, float, float]:
    """mu | tau, y under mu ~ N(0, 1): (mean, sd, log p(y | tau))."""
    v = se**2 + tau**2
    precision = float(np.sum(1 / v) + 1.0)
    mean = float(np.sum(y / v) / precision)
    cov = np.diag(v) + np.ones((len(y), len(y)))  # y | tau ~ N(0, V + 1 1') with mu integrated out
    logdet = np.linalg.slogdet(cov)[1]
    logml = -0.5 * (len(y) * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y))
    return mean, precision**-0.5, float(logml)


def test_common_effect_specification_is_the_conjugate_normal_posterior():
    r = run_multiverse(switches=DEFAULT_ONLY, models=["common-effect"], workers=1, threshold=0.8)
    (row,) = r.frame.to_dict("records")
    t = load_dataset("dnmbc_lrt")
    mean, sd, _ = _mu_posterior(t.y, t.se, 0.0)
    assert row["tau_prior"] == row["bias_prior"] == NO_PRIOR
    assert row["hr_median"] == pytest.approx(math.exp(mean), rel=1e-9)
    assert row["p_below"] == pytest.approx(stats.norm.cdf((math.log(0.8) - mean) / sd), abs=1e-9)


def test_rct_random_effects_matches_brute_force_quadrature_over_tau():
    """P(HR < 0.8) and the median HR of re on the 5 RCTs under tau ~ half-normal(0.5)."""
    r = run_multiverse(switches=DEFAULT_ONLY, models=["re-rct"], tau_priors=["halfnormal(0.5)"],
                       workers=1, threshold=0.8)
    (row,) = r.frame.to_dict("records")
    t = load_dataset("dnmbc_lrt", subset="rct")
    y, se = t.y, t.se
    logml0 = _mu_posterior(y, se, 0.0)[2]

    def weight(tau: float) -> float:  # half-normal(0.5) density x likelihood (up to constants)
        return math.exp(-0.5 * (tau / 0.5) ** 2 + _mu_posterior(y, se, tau)[2] - logml0)

    def cdf(x: float) -> float:
        def f(tau: float) -> float:
            m, s, _ = _mu_posterior(y, se, tau)
            return weight(tau) * 0.5 * math.erfc(-(x - m) / (s * math.sqrt(2)))

        return integrate.quad(f, 0, 4, epsabs=1e-11, limit=200)[0] / norm

    norm = integrate.quad(weight, 0, 4, epsabs=1e-11, limit=200)[0]
    assert row["p_below"] == pytest.approx(cdf(math.log(0.8)), abs=QUAD_TOL)
    median = optimize.brentq(lambda x: cdf(x) - 0.5, -1, 1, xtol=1e-10)
    assert row["hr_median"] == pytest.approx(math.exp(median), abs=QUAD_TOL)
    assert row["k"] == 5


@pytest.mark.parametrize("choices", [
    {}, {"khan_arm": "combined", "se_method": "lower"}, {"ci90": "read_as_95", "posytive": "as_printed"},
    {"trial_report": "latest", "stage_migration": "excluded", "registry_overlap": "one_registry"},
])
def test_table_arrays_give_the_loaders_log_hrs_and_ses(tmp_path, choices):
    path = tmp_path / "t.csv"
    path.write_text(build_text(choices), encoding="utf-8")
    table, arrays = load_studies(path), table_arrays(build_text(choices))
    assert list(arrays.studies) == table.studies and list(arrays.designs) == table.designs
    np.testing.assert_allclose(arrays.y, table.y, rtol=0, atol=1e-15)
    np.testing.assert_allclose(arrays.se, table.se, rtol=1e-14)


@pytest.fixture(scope="module")
def small():
    return run_multiverse(
        switches={"khan_arm": ["R0", "R1", "combined"], "posytive": ["oriented", "as_printed"],
                  **{n: a for n, a in DEFAULT_ONLY.items() if n not in ("khan_arm", "posytive")}},
        models=["re", "re-rct", "bias", "common-effect"], tau_priors=["halfnormal(0.1)", "halfnormal(0.5)"],
        bias_priors=["normal(0, 0.25)", "normal(-0.223, 0.5)"], workers=1, threshold=0.9,
    )


def test_specification_count_and_shares(small):
    # 6 tables x (re 2 + re-rct 2 + bias 2x2 + common effect 1)
    assert small.n_specifications == 6 * 9 == len(small.frame)
    doc = small.to_json()
    p = small.frame["p_below"].to_numpy()
    assert doc["share_p_above"] == {"0.5": np.mean(p > 0.5), "0.9": np.mean(p > 0.9)}
    assert doc["threshold"] == 0.9
    # re-rct does not depend on Khan's arm: 2 posytive x 2 tau priors distinct fits
    rct = small.frame[small.frame["model"] == "re-rct"]
    assert rct.groupby(["posytive", "tau_prior"])["p_below"].nunique().eq(1).all()
    assert doc["n_exact_fits"] < small.n_specifications
    assert json.loads(json.dumps(doc, default=str))["n_specifications"] == 54


def _brute_shift(frame: pd.DataFrame, name: str, dims: list[str]) -> tuple[float, float]:
    """Largest |difference| over every pair of specifications that differ only in ``name``
    (for the model, a prior one model lacks matches any)."""
    rows = frame.to_dict("records")
    best_p = best_hr = 0.0
    for a, b in itertools.combinations(rows, 2):
        if a[name] == b[name]:
            continue
        same = True
        for d in dims:
            if d == name:
                continue
            if name == "model" and d in ("tau_prior", "bias_prior") and NO_PRIOR in (a[d], b[d]):
                continue
            same &= a[d] == b[d]
        if same:
            best_p = max(best_p, abs(a["p_below"] - b["p_below"]))
            best_hr = max(best_hr, abs(a["hr_median"] - b["hr_median"]))
    return best_p, best_hr


def test_max_shift_is_the_largest_difference_over_pairs_differing_in_one_choice(small):
    dims = [*IMPLEMENTED, "model", "tau_prior", "bias_prior"]
    doc = small.to_json()
    entries = {s["name"]: s for s in doc["switches"] + doc["dimensions"]}
    assert [s["name"] for s in doc["switches"]] == list(IMPLEMENTED)
    for name in ("khan_arm", "posytive", "model", "tau_prior", "bias_prior"):
        p, hr = _brute_shift(small.frame, name, dims)
        assert entries[name]["max_shift_p"] == pytest.approx(p, abs=1e-12), name
        assert entries[name]["max_shift_hr"] == pytest.approx(hr, abs=1e-12), name
        assert p > 0
    assert entries["se_method"]["max_shift_p"] == 0.0  # one alternative kept
    assert entries["khan_arm"]["alternatives"] == ["R0", "R1", "combined"]


def test_a_user_table_has_only_the_model_and_prior_dimensions():
    table = load_dataset("dnmbc_lrt")
    r = run_multiverse(table, models=["re", "common-effect"], tau_priors=["halfnormal(0.5)"], workers=1)
    assert r.n_specifications == 2 and r.to_json()["switches"] == []
    assert "no curation switches" in r.source
    with pytest.raises(InputError, match="bundled dataset only"):
        run_multiverse(table, switches={"khan_arm": ["R0"]})


def test_bad_choices_are_input_errors():
    with pytest.raises(InputError, match="unknown curation switch"):
        run_multiverse(switches={"khan": ["R0"]})
    with pytest.raises(InputError, match="unknown alternative R2"):
        run_multiverse(switches={"khan_arm": ["R2"]})
    with pytest.raises(InputError, match="unknown multiverse model"):
        run_multiverse(models=["metareg"])
    with pytest.raises(InputError):
        run_multiverse(tau_priors=["halfnormal(-1)"])


#: A small multiverse on the command line: 2^5 tables x 2 models.
CLI_ARGV = ["multiverse", "--switch", "posytive=oriented,as_printed", "--switch", "khan_arm=R0",
            "--switch", "trial_report=first_full_paper", "--models", "re-rct,common-effect",
            "--tau-priors", "halfnormal(0.5)", "--workers", "1", "--quiet", "--json"]


def test_cli_json(capsys):
    assert main(CLI_ARGV) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_specifications"] == 2 ** 5 * 2 and doc["threshold"] == 0.8
    assert [s["name"] for s in doc["dimensions"]] == ["model", "tau_prior", "bias_prior"]
    assert [s["kind"] for s in doc["dimensions"]] == ["model", "prior", "prior"]
    (posytive,) = [s for s in doc["switches"] if s["name"] == "posytive"]
    assert posytive["alternatives"] == ["oriented", "as_printed"] and posytive["max_shift_p"] > 0
    (khan,) = [s for s in doc["switches"] if s["name"] == "khan_arm"]
    assert khan["alternatives"] == ["R0"] and khan["max_shift_p"] == 0.0


@pytest.mark.slow
def test_cli_writes_csv_json_and_figure(tmp_path, capsys):
    out = tmp_path / "mv"
    argv = [*CLI_ARGV, "--out", str(out)]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"n_specifications", "threshold", "share_p_above", "switches"}
    assert set(doc["share_p_above"]) == {"0.5", "0.9"}
    assert set(doc["switches"][0]) >= {"name", "alternatives", "max_shift_p", "max_shift_hr"}
    specs = pd.read_csv(out / "specifications.csv")
    assert len(specs) == doc["n_specifications"] == 2 ** 5 * 2  # 2^5 tables x 2 models
    assert (out / "specification_curve.png").is_file() and (out / "multiverse.json").is_file()
    # a file is refused before any fit, and left alone
    (tmp_path / "file.txt").write_text("mine")
    assert main([*argv[:-1], str(tmp_path / "file.txt")]) == EXIT_INPUT
    assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.parametrize("extra, message", [
    (["--switch", "khan_arm"], "expected NAME=ALT"),
    (["--switch", "khan_arm=R0", "--switch", "khan_arm=R1"], "given twice"),
    (["--include-all"], "curation switches decide inclusion"),
    (["--se-method", "upper"], "unknown alternative upper"),
])
def test_cli_refuses_bad_options(capsys, extra, message):
    assert main(["multiverse", "--models", "common-effect", "--workers", "1", *extra]) == EXIT_INPUT
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_full_multiverse_has_thousands_of_specifications_and_the_headline_at_its_default():
    """Every switch x every model x every prior: >= 5,000 specifications; the default data with
    the bias model, tau ~ half-normal(0.5) and delta ~ normal(0, 0.5) is the headline fit."""
    from synthesis.models.exact import fit_exact
    from synthesis.models.spec import ModelData, ModelSpec

    r = run_multiverse(workers=2)
    # re, re-rct and bias-downweight per tau prior; bias per (tau, bias) prior; common effect once
    per_table = 3 * len(MULTIVERSE_TAU_PRIORS) + len(MULTIVERSE_TAU_PRIORS) * len(MULTIVERSE_BIAS_PRIORS) + 1
    assert r.n_specifications == 288 * per_table >= 5000
    assert set(r.frame["model"]) == set(MULTIVERSE_MODELS)
    row = r.frame[r.frame["default_data"] & (r.frame["model"] == "bias")
                  & (r.frame["tau_prior"] == "halfnormal(0.5)") & (r.frame["bias_prior"] == "normal(0, 0.5)")]
    spec = ModelSpec("bias")
    fit = fit_exact(ModelData.from_table(load_dataset("dnmbc_lrt"), spec), spec, thresholds=(0.8,))
    assert float(row["p_below"].iloc[0]) == pytest.approx(fit.p_hr_below["0.8"], abs=1e-9)
    assert float(row["hr_median"].iloc[0]) == pytest.approx(fit.hr.median, rel=1e-9)


def test_report_section_lists_every_switch_and_every_included_estimate(tmp_path):
    """The report section reads the result: one switch row per curation switch (with the max
    shifts the result holds) and one provenance row per included estimate (with its citation)."""
    from types import SimpleNamespace

    from synthesis.report.document import ReportDocument
    from synthesis.report.multiverse import (
        MULTIVERSE_CSV,
        PROVENANCE_CSV,
        multiverse_section,
        switch_cells,
        write_multiverse_tables,
    )
    from synthesis.specifications import provenance_frame

    mv = run_multiverse(switches={**DEFAULT_ONLY, "posytive": ["oriented", "as_printed"]}, models=["re-rct"],
                        tau_priors=["halfnormal(0.5)"], workers=1)
    table = load_dataset("dnmbc_lrt")
    mv.provenance = provenance_frame(table)
    header, body = switch_cells(mv)
    assert [r[0] for r in body] == list(IMPLEMENTED)
    (posytive,) = [r for r in body if r[0] == "posytive"]
    shift = [s for s in mv.shifts() if s["name"] == "posytive"][0]["max_shift_p"]
    assert posytive[2] == f"{shift:.3f}" and shift > 0.01
    doc = ReportDocument()
    result = SimpleNamespace(multiverse=mv, source="bundled")
    multiverse_section(doc, result, SimpleNamespace(png={}))
    md = doc.markdown()
    assert "## How much the data choices matter" in md and "posytive (up to" in md
    for study in table.studies:
        assert study in md
    assert "PMID 17522944" in md  # Gnerlich 2007's citation
    assert sorted(write_multiverse_tables(result, tmp_path)) == sorted([MULTIVERSE_CSV, PROVENANCE_CSV])
    assert len(pd.read_csv(tmp_path / PROVENANCE_CSV)) == table.k == 17
    assert len(pd.read_csv(tmp_path / MULTIVERSE_CSV)) == mv.n_specifications == 2


def test_the_multiverse_grid_gives_the_default_grids_answers(small):
    """MULTIVERSE_GRID (65 minimum nodes) against the exact engine's default (257) on the same
    specifications: every P(HR < T) and HR summary agrees to 1e-9."""
    from synthesis.models.exact import DEFAULT_GRID
    from synthesis.specifications import MULTIVERSE_GRID

    assert MULTIVERSE_GRID < DEFAULT_GRID
    switches = {n: list(small.switches[n]) for n in small.switches}
    fine = run_multiverse(switches=switches, models=list(small.models), tau_priors=list(small.tau_priors),
                          bias_priors=list(small.bias_priors), workers=1, threshold=0.9, n_grid=DEFAULT_GRID)
    cols = ["p_below", "hr_median", "hr_q025", "hr_q975"]
    np.testing.assert_allclose(small.frame[cols].to_numpy(), fine.frame[cols].to_numpy(), rtol=0, atol=1e-9)


def test_threshold_given_twice_is_refused(capsys):
    """One threshold per multiverse: a second --threshold is an error, not silently the last."""
    with pytest.raises(SystemExit) as exc:
        main(["multiverse", "--threshold", "0.8", "--threshold", "0.7"])
    assert exc.value.code == 2
    assert "given twice" in capsys.readouterr().err
