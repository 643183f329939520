"""The study table: conversions, warnings and every input error (file, line and column named,
exit status 2, nothing written)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthesis.cli import main
from synthesis.errors import InputError
from synthesis.studies import load_studies, z_for_level

RATIO_HEADER = "study,hr,ci_lower,ci_upper,design"


def write(tmp_path: Path, text: str, name: str = "studies.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ratio_form_converts_to_log_scale(tmp_path):
    path = write(tmp_path, f"{RATIO_HEADER}\nA,0.66,0.49,0.88,RCT\nB,1.04,0.81,1.34,rct\n")
    table = load_studies(path)
    assert table.k == 2
    assert table.y[0] == pytest.approx(math.log(0.66), rel=1e-12)
    # se = (log(U) - log(L)) / (2 * 1.959964)
    assert table.se[0] == pytest.approx((math.log(0.88) - math.log(0.49)) / (2 * 1.959963984540054), rel=1e-12)
    assert table.designs == ["rct", "rct"]


def test_ci_level_per_row(tmp_path):
    # E2108 reports a 90% CI: 1.11 (0.82-1.52); z = 1.644854 for a 90% CI.
    path = write(tmp_path, "study,hr,ci_lower,ci_upper,ci_level\nE2108,1.11,0.82,1.52,0.90\nX,1.0,0.5,2.0,\n")
    table = load_studies(path)
    assert z_for_level(0.90) == pytest.approx(1.6448536269514722)
    assert table.se[0] == pytest.approx(math.log(1.52 / 0.82) / (2 * 1.6448536269514722), rel=1e-12)
    assert table.se[1] == pytest.approx(math.log(4.0) / (2 * 1.959963984540054), rel=1e-12)


def test_log_form(tmp_path):
    table = load_studies(write(tmp_path, "se,log_hr,study\n0.2,-0.1,a\n0.3,0.2,b\n"))
    assert table.y.tolist() == [-0.1, 0.2]
    assert table.se.tolist() == [0.2, 0.3]
    assert not table.has_design
    assert table.nonrandomised.tolist() == [False, False]


def test_extra_columns_kept_and_covariates_numeric(tmp_path):
    path = write(tmp_path, "study,log_hr,se,bone,note\na,0.1,0.2,0.3,x\nb,0.2,0.2,,y\n")
    table = load_studies(path, covariates=["bone"])
    x = table.covariate("bone")
    assert x[0] == 0.3 and math.isnan(x[1])
    assert table.frame["note"].tolist() == ["x", "y"]


def test_asymmetric_ci_warns(tmp_path):
    # Tan 2016 as printed: 0.566 (0.557-0.625) - the estimate sits near the lower limit.
    path = write(tmp_path, f"{RATIO_HEADER}\nTan,0.566,0.557,0.625,retrospective\nB,1.0,0.5,2.0,rct\n")
    table = load_studies(path)
    assert len(table.warnings) == 1
    assert "line 2" in table.warnings[0] and "Tan" in table.warnings[0]


def test_bom_and_blank_lines_accepted(tmp_path):
    path = write(tmp_path, "\ufeffstudy,log_hr,se\n\na,0.1,0.2\n\nb,0.2,0.3\n\n\n")
    table = load_studies(path)
    assert table.studies == ["a", "b"]
    assert table.lines == (3, 5)


def test_include_column_and_cohort_warning(tmp_path):
    text = (
        "study,log_hr,se,include,cohort\n"
        "a,0.1,0.2,true,C1\nb,0.2,0.3,TRUE,C1\nc,,,false,C2\nd,0.1,0.1,yes,C3\n"
    )
    table = load_studies(write(tmp_path, text))
    assert table.studies == ["a", "b", "d"]
    assert table.excluded == 1
    assert any("cohort C1" in w for w in table.warnings)
    partial = text.replace("c,,,false", "c,0.2,,true")
    with pytest.raises(InputError, match="line 4, column 'se'"):
        load_studies(write(tmp_path, partial, "b.csv"), include_all=True)


def test_direction_check(tmp_path):
    # POSYTIVE printed 0.691 with the surgery-arm median OS 34.6 vs 54.8 months (evidence README).
    text = "study,hr,ci_lower,ci_upper,median_os_lrt,median_os_control\nPOSYTIVE,0.691,0.358,1.333,34.6,54.8\nok,0.8,0.6,1.0,30,20\n"
    table = load_studies(write(tmp_path, text))
    assert len(table.warnings) == 1 and "POSYTIVE" in table.warnings[0] and "reversed" in table.warnings[0]


def test_subsets(tmp_path):
    text = f"{RATIO_HEADER}\na,0.7,0.5,0.9,rct\nb,0.8,0.6,1.0,RCT\nc,0.6,0.5,0.7,retrospective\nd,0.6,0.5,0.7,prospective\n"
    path = write(tmp_path, text)
    assert load_studies(path, subset="rct").studies == ["a", "b"]
    assert load_studies(path, subset="observational").studies == ["c", "d"]
    with pytest.raises(InputError, match="needs a 'design' column"):
        load_studies(write(tmp_path, "study,log_hr,se\na,1,1\nb,1,1\n", "n.csv"), subset="rct")


# ---- every error: message names file, line and column; CLI exits 2 and writes nothing ----

ERRORS = [
    # (csv text, expected fragment of the message)
    ("log_hr,se\n0.1,0.2\n0.2,0.3\n", "line 1, column 'study': required column is missing"),
    ("study,log_hr,se\na,0.1,0.2\na,0.2,0.3\n", "line 3, column 'study': duplicate study 'a'"),
    ("study,log_hr,se\na,0.1,0.2\n ,0.2,0.3\n", "line 3, column 'study': study name is empty"),
    ("study,x\na,1\nb,2\n", "line 1: no effect columns"),
    ("study,hr,ci_lower,ci_upper,log_hr,se\na,1,0.5,2,0,1\nb,1,0.5,2,0,1\n", "line 1: give the effect in one form only"),
    ("study,hr,ci_lower\na,1,0.5\nb,1,0.5\n", "line 1, column 'ci_upper': required column is missing"),
    ("study,hr,ci_lower,ci_upper\na,1,0.5,2\nb,abc,0.5,2\n", "line 3, column 'hr': 'abc' is not a number"),
    ("study,hr,ci_lower,ci_upper\na,1,0.5,2\nb,inf,0.5,2\n", "line 3, column 'hr': 'inf' is not a finite number"),
    ("study,hr,ci_lower,ci_upper\na,1,0.5,2\nb,nan,0.5,2\n", "line 3, column 'hr': 'nan' is not a finite number"),
    ("study,hr,ci_lower,ci_upper\na,0,0.5,2\nb,1,0.5,2\n", "line 2, column 'hr': must be > 0"),
    ("study,hr,ci_lower,ci_upper\na,1,-0.5,2\nb,1,0.5,2\n", "line 2, column 'ci_lower': must be > 0"),
    ("study,hr,ci_lower,ci_upper\na,1,0.5,2\nb,1,0.5,\n", "line 3, column 'ci_upper': value is missing"),
    ("study,log_hr,se\na,0.1,0\nb,0.1,0.2\n", "line 2, column 'se': must be > 0"),
    ("study,log_hr,se\na,0.1,-1\nb,0.1,0.2\n", "line 2, column 'se': must be > 0"),
    ("study,hr,ci_lower,ci_upper\na,1,2,0.5\nb,1,0.5,2\n", "line 2, column 'ci_lower': ci_lower (2) must be < ci_upper (0.5)"),
    ("study,hr,ci_lower,ci_upper\na,1,1,1\nb,1,0.5,2\n", "line 2, column 'ci_lower': ci_lower (1) must be < ci_upper (1)"),
    ("study,hr,ci_lower,ci_upper\na,3,0.5,2\nb,1,0.5,2\n", "line 2, column 'hr': hr 3 lies outside its CI"),
    ("study,hr,ci_lower,ci_upper,ci_level\na,1,0.5,2,95\nb,1,0.5,2,0.95\n", "line 2, column 'ci_level': must be a probability in (0, 1)"),
    ("study,hr,ci_lower,ci_upper,ci_level\na,1,0.5,2,0\nb,1,0.5,2,0.95\n", "line 2, column 'ci_level': must be a probability in (0, 1)"),
    ("study,log_hr,se,design\na,0.1,0.2,rct\nb,0.1,0.2,cohort\n", "line 3, column 'design': unknown design 'cohort'"),
    ("study,log_hr,se\na,0.1,0.2\n", "1 usable study; pooling needs at least 2"),
    ("study,log_hr,se\n", "0 usable studies; pooling needs at least 2"),
    ("study;log_hr;se\na;0.1;0.2\nb;0.1;0.2\n", "line 1: the header looks ';'-delimited"),
    ("study\tlog_hr\tse\na\t0.1\t0.2\n", "line 1: the header looks tab-delimited"),
    ("study,log_hr,se\na,0.1,0.2,9\nb,0.1,0.2\n", "line 2: row has 4 fields but the header has 3"),
    ("study,log_hr,se\na,0.1\nb,0.1,0.2\n", "line 2: row has 2 fields but the header has 3"),
    ("", "file is empty"),
    ("\n\n  \n", "file is empty"),
    ("study,log_hr,log_hr\na,1,1\n", "line 1, column 'log_hr': duplicate column name"),
    ('study,log_hr,se\n"a,0.1,0.2\n', "malformed CSV"),
    ("study,include,log_hr,se\na,maybe,0.1,0.2\nb,true,0.1,0.2\n", "line 2, column 'include': 'maybe' is not true/false"),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_input_errors(tmp_path, capsys, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_studies(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert fragment in message
    out_dir = tmp_path / "out"
    code = main(["validate", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert fragment in captured.err and str(path) in captured.err
    assert captured.out == ""
    assert not out_dir.exists()


def test_missing_file_and_directory(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: file not found" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_not_utf8_and_binary(tmp_path):
    with pytest.raises(InputError, match="not valid UTF-8"):
        load_studies(write(tmp_path, "study,log_hr,se\nMüller,0.1,0.2\nb,0.1,0.2\n", encoding="latin-1"))
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\x00\x01\x02study")
    with pytest.raises(InputError, match="binary content"):
        load_studies(path)


def test_covariate_errors(tmp_path, capsys):
    path = write(tmp_path, "study,log_hr,se,bone\na,0.1,0.2,0.3\nb,0.1,0.2,lots\n")
    with pytest.raises(InputError, match="line 1, column 'age': covariate column is missing"):
        load_studies(path, covariates=["age"])
    with pytest.raises(InputError, match="line 3, column 'bone': 'lots' is not a number"):
        load_studies(path, covariates=["bone"])
    assert main(["validate", str(path), "--covariate", "bone"]) == 2
    assert "line 3, column 'bone'" in capsys.readouterr().err


def test_validate_json(tmp_path, capsys):
    path = write(tmp_path, f"{RATIO_HEADER}\nA,0.66,0.49,0.88,rct\nB,0.566,0.557,0.625,retrospective\n")
    assert main(["validate", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["k"] == 2
    assert [s["study"] for s in doc["studies"]] == ["A", "B"]
    assert set(doc["studies"][0]) >= {"study", "log_hr", "se", "design"}
    assert doc["studies"][1]["design"] == "retrospective"
    assert len(doc["warnings"]) == 1


def test_validate_text(tmp_path, capsys):
    path = write(tmp_path, "study,log_hr,se\na,0.1,0.2\nb,0.2,0.3\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 studies" in out and "0.1000" in out


# ---- property: no CSV content makes the loader crash with anything but InputError ----

cells = st.one_of(
    st.sampled_from(["", "0", "-1", "0.5", "1", "2", "1e308", "nan", "inf", "rct", "RCT", "x", '"', "true", "0.9"]),
    st.text(max_size=6),
)
headers = st.lists(
    st.sampled_from(["study", "hr", "ci_lower", "ci_upper", "ci_level", "log_hr", "se", "design", "include", "cohort", "x", ""]),
    min_size=0,
    max_size=7,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers, rows=st.lists(st.lists(cells, max_size=8), max_size=5), sep=st.sampled_from([",", ";", "\t"]))
def test_loader_never_crashes_on_structured_input(tmp_path, header, rows, sep):
    text = sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows)
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    try:
        table = load_studies(path, covariates=["x"] if "x" in header else ())
    except InputError:
        return
    assert table.k >= 2
    assert all(math.isfinite(v) for v in table.y) and all(s > 0 for s in table.se)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_loader_never_crashes_on_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    try:
        load_studies(path)
    except InputError:
        pass


def test_include_all_skips_excluded_rows_without_effect(tmp_path):
    text = "study,log_hr,se,include\na,0.1,0.2,true\nb,0.2,0.3,true\nc,,,false\nd,0.3,0.2,false\n"
    table = load_studies(write(tmp_path, text), include_all=True)
    assert table.studies == ["a", "b", "d"]
    assert any("line 4 (c)" in w and "no usable effect" in w for w in table.warnings)


def test_direction_check_ignores_close_medians(tmp_path):
    # E2108: HR 1.11 with medians 54.9 vs 53.1 months - too close to contradict the HR.
    text = "study,hr,ci_lower,ci_upper,median_os_lrt,median_os_control\nE2108,1.11,0.82,1.52,54.9,53.1\nb,0.8,0.6,1.0,30,20\n"
    assert load_studies(write(tmp_path, text)).warnings == ()
