"""Hard input values (issue 9): every one is a clear message with exit 2, or a correct result,
never a traceback; data the user gave reaches the model unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from synthesis.cli import main
from synthesis.errors import InputError
from synthesis.models.priors import parse_prior
from synthesis.pooling import KNHA_ZERO_WARNING
from synthesis.studies import HR_RANGE, MAX_ABS_LOG_HR, SE_RANGE, load_studies

L = MAX_ABS_LOG_HR
#: A table at the extremes of what the loader accepts, with covariates whose names are not
#: Python identifiers and a user column named like the loader's old bookkeeping (``line``).
EXTREME = (
    "study,log_hr,se,design,bone-only,class,line\n"
    f"A,{L},{SE_RANGE[0]},rct,0.1,1,10\n"
    f"B,{-L},{SE_RANGE[1]},prospective,0.5,2,20\n"
    f"C,0,{SE_RANGE[0]},retrospective,0.9,3,30\n"
    f"D,{L},{SE_RANGE[1]},rct,0.2,4,40\n"
    f"E,{-L},{SE_RANGE[0]},retrospective,0.3,5,50\n"
)
EXTREME_RATIO = (
    "Study,HR,CI_Lower,CI_Upper,CI_Level\n"
    f"A,{HR_RANGE[0]},{HR_RANGE[0]},{HR_RANGE[1]},0.9999\n"
    f"B,{HR_RANGE[1]},0.99999,{HR_RANGE[1]},0.95\n"
    "C,1,0.9999,1.0001,0.01\n"
    "D,1.0,0.999,1.001,\n"
)


def write(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---- representable values: accepted extremes run everywhere, just outside is exit 2 ----
@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--covariate", "bone-only", "--covariate", "class", "--covariate", "line"],
        ["pool"],
        ["pool", "--hksj", "--method", "PM", "--by-design"],
        ["pool", "--method", "DL", "--hksj"],
        ["pool", "--method", "FE"],
        ["bias"],
        ["bias", "--method", "REML"],
        ["metareg", "--covariate", "bone-only", "--covariate", "class"],
        ["metareg", "--covariate", "line", "--hksj"],
        ["fit", "--engine", "exact"],
        ["fit", "--engine", "exact", "--model", "bias"],
        ["fit", "--engine", "exact", "--model", "metareg", "--covariate", "bone-only", "--at", "bone-only=0.5"],
        ["fit", "--engine", "exact", "--tau-prior", "uniform(0, 50)"],
    ],
)
def test_extremes_run_everywhere(tmp_path, capsys, argv):
    path = write(tmp_path, EXTREME)
    code, out, err = run(capsys, *argv, path)
    assert code == 0, err


@pytest.mark.parametrize("argv", [["validate"], ["pool", "--hksj"], ["bias"], ["fit", "--engine", "exact"]])
def test_ratio_extremes_run(tmp_path, capsys, argv):
    code, out, err = run(capsys, *argv, write(tmp_path, EXTREME_RATIO))
    assert code == 0, err
    assert "ci_level 0.01 is below 0.5" in out + err  # probably an alpha: warned, not refused


def test_sweep_at_extremes(tmp_path, capsys):
    code, _, err = run(capsys, "sweep", "--engine", "exact", write(tmp_path, EXTREME))
    assert code == 0, err


OK_ROW = "B,0.9,0.7,1.1,0.95\nC,0.7,0.5,1.0,0.95\n"
OK_LOG = "B,0.2,0.1\nC,-0.1,0.2\n"


@pytest.mark.parametrize(
    "text, column, fragment",
    [
        ("study,log_hr,se\nA,0.1,1e-12\n" + OK_LOG, "se", "outside the accepted range 0.0001 to 10"),
        ("study,log_hr,se\nA,0.1,11\n" + OK_LOG, "se", "outside the accepted range"),
        ("study,log_hr,se\nA,1e308,0.1\n" + OK_LOG, "log_hr", "(HR 1e-06 to 1e+06)"),
        (f"study,log_hr,se\nA,{-L - 1e-3},0.1\n" + OK_LOG, "log_hr", "outside the accepted range"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,0.8,0.7999999999,0.8000000001,0.95\n" + OK_ROW,
         "ci_upper", "0.7999999999 to 0.8000000001 (95%) is too narrow"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,1e308,1e307,1.5e308,0.95\n" + OK_ROW, "hr", "hazard ratio 1e+308"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,1e-300,1e-301,1e-299,0.95\n" + OK_ROW, "hr", "1e-06 to 1e+06"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,0.5,5e-7,0.9,0.95\n" + OK_ROW, "ci_lower", "hazard ratio 5e-07"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,0.8,0.6,1.0,1e-17\n" + OK_ROW, "ci_level", "0.01 to 0.9999"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,0.8,0.6,1.0,0.99999\n" + OK_ROW, "ci_level", "0.01 to 0.9999"),
        ("study,hr,ci_lower,ci_upper,ci_level\nA,1,1e-6,1e6,0.02\n" + OK_ROW, "ci_level", "is too wide"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "pool", "bias", "fit"])
def test_just_outside_is_exit_2_with_line_and_column(tmp_path, capsys, text, column, fragment, command):
    path = write(tmp_path, text)
    argv = [command, path] + (["--engine", "exact"] if command == "fit" else [])
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"{path}, line 2, column '{column}'" in err and fragment in err


# ---- priors the quadrature grid cannot hold ----
@pytest.mark.parametrize(
    "option, prior",
    [
        ("--tau-prior", "lognormal_tau2(1e5, 1)"),
        ("--tau-prior", "lognormal_tau2(-1e5, 1)"),
        ("--tau-prior", "exponential(1e-300)"),
        ("--tau-prior", "uniform(0, 1e308)"),
        ("--tau-prior", "halfnormal(1e-9)"),
        ("--tau-prior", "lognormal_tau2(0, 440)"),
        ("--tau-prior", "halft(0.1, 1)"),
        ("--mu-prior", "normal(0, 1e200)"),
        ("--mu-prior", "normal(1e300, 1)"),
    ],
)
def test_absurd_priors_are_exit_2(tmp_path, capsys, option, prior):
    code, _, err = run(capsys, "fit", "--engine", "exact", option, prior, write(tmp_path, "study,log_hr,se\n" + OK_LOG))
    assert code == 2
    assert f"prior {prior!r}" in err and "accepted" in err


@pytest.mark.parametrize(
    "prior", ["uniform(0, 50)", "uniform(0, 1e4)", "halfcauchy(1e4)", "invgamma_tau2(0.001, 0.001)", "exponential(0.01)"]
)
def test_broad_accepted_priors_are_not_the_tau_zero_answer(prior):
    """An accepted broad prior gives the posterior of tau, checked against a log-tau quadrature."""
    from scipy import integrate

    from synthesis.datasets import load_dataset
    from synthesis.models.exact import exact_posterior
    from synthesis.models.priors import resolve_priors
    from synthesis.models.spec import ModelData, ModelSpec

    table = load_dataset("dnmbc_lrt")
    spec = ModelSpec("re", priors=resolve_priors({"tau": prior}))
    post = exact_posterior(ModelData.from_table(table, spec), spec)
    s = np.linspace(-40.0, 12.0, 200_001)
    tau = np.exp(s)
    d = table.se[None, :] ** 2 + tau[:, None] ** 2
    a = 1.0 + (1.0 / d).sum(1)  # mu ~ N(0, 1) integrated out
    ll = -0.5 * (np.log(d).sum(1) + np.log(a) + (table.y**2 / d).sum(1) - (table.y / d).sum(1) ** 2 / a)
    lp = ll + spec.priors.tau.logpdf(tau) + s
    cdf = integrate.cumulative_trapezoid(np.exp(lp - lp.max()), s, initial=0.0)
    expected = np.exp(np.interp([0.5, 0.975], cdf / cdf[-1], s))
    assert post.tau_ppf([0.5, 0.975]) == pytest.approx(expected, rel=1e-4)
    assert expected[0] > 0.05  # far from the tau = 0 answer


def test_prior_messages_name_the_parameter():
    with pytest.raises(InputError, match="kappa"):
        parse_prior("exponential(1e300)", "kappa")
    assert parse_prior("uniform(0, 50)", "tau").params == (0.0, 50.0)


# ---- user columns reach the model unchanged ----
def test_user_column_named_line_is_kept(tmp_path, capsys):
    path = write(tmp_path, "study,log_hr,se,line\n\na,0.1,0.2,7\nb,0.3,0.1,9\nc,-0.2,0.3,11\n")
    table = load_studies(path, covariates=["line"])
    assert table.lines == (3, 4, 5)
    assert table.covariate("line").tolist() == [7.0, 9.0, 11.0]
    code, out, _ = run(capsys, "metareg", "--covariate", "line", "--json", path)
    assert code == 0
    # the slope of y on the user's values 7, 9, 11, not on the CSV lines 3, 4, 5
    doc = json.loads(out)
    x, y, w = np.array([7.0, 9.0, 11.0]), np.array([0.1, 0.3, -0.2]), 1 / np.array([0.2, 0.1, 0.3]) ** 2
    assert doc["covariates"] == ["line"] and doc["k"] == 3
    assert math.isfinite(doc["coefficients"]["line"]["estimate"])
    fe = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    code, out, _ = run(capsys, "metareg", "--covariate", "line", "--method", "FE", "--json", path)
    assert json.loads(out)["coefficients"]["line"]["estimate"] == pytest.approx(fe)


def test_both_effect_forms_are_refused(tmp_path, capsys):
    path = write(tmp_path, "study,hr,ci_lower,ci_upper,se\na,1,0.5,2,0.3\nb,1,0.5,2,0.3\n")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and "line 1" in err and "one form only" in err


@pytest.mark.parametrize("name", ["bone-only", "class", "age (years)", "x.1"])
@pytest.mark.parametrize("command", ["validate", "metareg", "fit"])
def test_non_identifier_covariates(tmp_path, capsys, name, command):
    quoted = f'"{name}"' if " " in name else name
    path = write(tmp_path, f"study,log_hr,se,{quoted}\na,0.1,0.2,1\nb,0.3,0.1,2\nc,-0.2,0.3,4\n")
    argv = [command, path, "--covariate", name, "--json"]
    if command == "fit":
        argv += ["--engine", "exact", "--model", "metareg", "--at", f"{name}=2"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    doc = json.loads(out)
    if command == "validate":
        assert [r[name] for r in doc["studies"]] == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("command", [["validate"], ["metareg"], ["fit", "--engine", "exact", "--model", "metareg"]])
def test_text_covariate_is_exit_2(tmp_path, capsys, command):
    path = write(tmp_path, "study,log_hr,se,note\na,0.1,0.2,1\nb,0.3,0.1,two\nc,-0.2,0.3,4\n")
    code, _, err = run(capsys, *command, path, "--covariate", "note")
    assert code == 2
    assert "line 3, column 'note'" in err and "'two' is not a number" in err


def test_text_covariate_in_library_call(tmp_path):
    table = load_studies(write(tmp_path, "study,log_hr,se,note\na,0.1,0.2,1\nb,0.3,0.1,two\n"))
    with pytest.raises(InputError, match=r"line 3, column 'note'.*'two'"):
        table.covariate("note")
    with pytest.raises(InputError, match="case-sensitive: did you mean 'note'"):
        table.covariate("Note")


def test_report_text_covariate_is_exit_2(tmp_path, capsys):
    path = write(tmp_path, "study,log_hr,se,design,note\na,0.1,0.2,rct,1\nb,0.3,0.1,rct,x\nc,-0.2,0.3,retrospective,4\n")
    code, _, err = run(capsys, "report", path, "--covariate", "note", "--out", tmp_path / "rep")
    assert code == 2 and "column 'note'" in err and "line 3" in err
    assert not (tmp_path / "rep").exists()


# ---- HKSJ with identical studies ----
@pytest.mark.parametrize("method", ["REML", "DL", "PM", "FE", "SJ"])
def test_hksj_zero_width_warns(tmp_path, capsys, method):
    path = write(tmp_path, "study,log_hr,se\na,0.1,0.2\nb,0.1,0.2\nc,0.1,0.2\n")
    code, out, err = run(capsys, "pool", "--hksj", "--method", method, "--json", path)
    assert code == 0
    doc = json.loads(out)
    assert doc["ci_lower"] == doc["ci_upper"] == pytest.approx(0.1)  # metafor's numbers, unchanged
    assert doc["warnings"] == [KNHA_ZERO_WARNING]
    assert "warning:" in err and "Knapp-Hartung" in err
    code, out, _ = run(capsys, "pool", "--method", method, "--json", path)
    assert json.loads(out)["warnings"] == []


# ---- header names ----
def test_header_case_insensitive(tmp_path, capsys):
    path = write(tmp_path, " Study ,HR,CI_Lower,Ci_Upper,CI_LEVEL,Design,Bone_Only\nA,0.8,0.6,1.0,0.95,RCT,0.1\nB,0.9,0.7,1.1,0.9,Retrospective,0.2\n")
    code, out, err = run(capsys, "validate", "--json", "--covariate", "Bone_Only", path)
    assert code == 0, err
    doc = json.loads(out)
    assert [r["study"] for r in doc["studies"]] == ["A", "B"]
    assert doc["studies"][1]["design"] == "retrospective" and doc["studies"][0]["Bone_Only"] == 0.1


@pytest.mark.parametrize("header", ["study,hr,HR,ci_lower,ci_upper", "study,x,X,log_hr,se", "Study,study,log_hr,se"])
def test_case_insensitive_collision_is_refused(tmp_path, capsys, header):
    path = write(tmp_path, header + "\n" + "a," * (header.count(",")) + "1\n")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and "line 1" in err and "compared ignoring case" in err


def test_covariate_case_hint(tmp_path, capsys):
    path = write(tmp_path, "study,log_hr,se,bone_only\na,0.1,0.2,1\nb,0.3,0.1,2\n")
    code, _, err = run(capsys, "validate", path, "--covariate", "Bone_Only")
    assert code == 2 and "did you mean 'bone_only'" in err
