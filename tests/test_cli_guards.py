"""Issue 9, command-line arguments and presentation: never a traceback.

Every bad value is a clear message and exit status 2 (argparse usage errors included); odd
study names are drawn, written to Markdown and to CSV safely; Ctrl-C is one line, exit 130.
One real ``synthesis report`` run (exact-engine models only: the file has no covariate column)
serves the tests of the report's contents.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_report import make_result  # noqa: E402

from synthesis import plots  # noqa: E402
from synthesis.base import SEED_MAX  # noqa: E402
from synthesis.cli import EXIT_INPUT, EXIT_INTERRUPTED, main  # noqa: E402
from synthesis.datasets import load_dataset  # noqa: E402
from synthesis.errors import InputError  # noqa: E402
from synthesis.models.fit import fit  # noqa: E402
from synthesis.models.sampling import SamplerSettings  # noqa: E402
from synthesis.models.spec import ModelData, ModelSpec  # noqa: E402
from synthesis.spreadsheets import neutralise_formulas  # noqa: E402
from synthesis.sweeps import run_sweep, split_specs  # noqa: E402

#: Study names that are invalid mathtext, raw HTML, Markdown table syntax or spreadsheet formulas.
ODD_NAMES = (
    "Trial $x^$ arm",
    '=HYPERLINK("http://example.invalid")',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "+cmd|' /C calc'!A0",
    "50% \\n $\\frac{1}{0}$ | pipe",
    "@SUM(1+1)",
    "-2+3 study",
)
ODD_CSV_ROWS = (
    (1.04, 0.81, 1.34, "rct"),
    (0.66, 0.49, 0.88, "rct"),
    (1.11, 0.82, 1.52, "rct"),
    (0.69, 0.36, 1.33, "prospective"),
    (0.60, 0.40, 0.90, "retrospective"),
    (0.61, 0.53, 0.70, "retrospective"),
    (0.55, 0.40, 0.75, "retrospective"),
    (0.70, 0.50, 0.95, "prospective"),
)


def write_odd_csv(path: Path, *, extra: str | None = None) -> Path:
    """A CSV of the odd study names (with an optional numeric column ``extra``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["study", "hr", "ci_lower", "ci_upper", "design"] + ([extra] if extra else []))
    for i, (name, row) in enumerate(zip(ODD_NAMES, ODD_CSV_ROWS, strict=True)):
        writer.writerow([name, *row] + ([0.1 * i] if extra else []))
    path.write_text(buf.getvalue())
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr); argparse errors included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, *words: str) -> None:
    assert code == EXIT_INPUT, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


# --------------------------------------------------------------------------------------------
# seeds, thresholds, workers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["fit", "sweep", "report", "run"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**64), "1.5", "x"])
def test_bad_seed_is_a_usage_error(command, seed, capsys):
    code, _, err = run_cli([command, "--seed", seed], capsys)
    assert_usage_error(code, err, "argument --seed", str(SEED_MAX), repr(seed))


def test_largest_seed_is_accepted(capsys):
    code, _, err = run_cli(["fit", "--engine", "exact", "--seed", str(SEED_MAX)], capsys)
    assert code == 0, err


@pytest.mark.parametrize("bad", [-1, 2**32, 2**64, 1.5, True, "7"])
def test_library_seed_is_checked_before_sampling(bad):
    with pytest.raises(InputError, match=r"^seed must be an integer from 0 to 4294967295"):
        SamplerSettings(seed=bad)
    table = load_dataset("dnmbc_lrt")
    with pytest.raises(InputError, match="seed"):
        fit(table, ModelSpec("re"), engine="pymc", seed=bad)
    assert SamplerSettings(seed=SEED_MAX).seed == SEED_MAX


@pytest.mark.parametrize("command", ["fit", "sweep", "report"])
@pytest.mark.parametrize("threshold", ["0", "-1", "inf", "nan", "-inf", "x"])
def test_bad_threshold_is_a_usage_error(command, threshold, capsys):
    code, _, err = run_cli([command, f"--threshold={threshold}"], capsys)  # "-inf" alone reads as an option
    assert_usage_error(code, err, "argument --threshold", "hazard ratio > 0")


@pytest.mark.parametrize("command", ["sweep", "report"])
@pytest.mark.parametrize("workers", ["0", "-1", "1.5"])
def test_bad_workers_is_a_usage_error(command, workers, capsys):
    code, _, err = run_cli([command, "--workers", workers], capsys)
    assert_usage_error(code, err, "argument --workers", ">= 1")


@pytest.fixture(scope="module")
def re_data():
    table = load_dataset("dnmbc_lrt")
    spec = ModelSpec("re")
    return ModelData.from_table(table, spec), spec, split_specs("halfnormal(0.5)", [], "tau")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": (0.0,)}, "hazard ratio > 0"),
        ({"thresholds": (float("nan"),)}, "hazard ratio > 0"),
        ({"thresholds": (float("inf"),)}, "hazard ratio > 0"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_run_sweep_checks_its_arguments(re_data, kwargs, message):
    data, spec, tau = re_data
    with pytest.raises(InputError, match=message):
        run_sweep(data, spec, tau_priors=tau, engine="exact", **kwargs)


# --------------------------------------------------------------------------------------------
# --scheduler
# --------------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_quick_clear_error(capsys, monkeypatch):
    """The connection gives up after SCHEDULER_TIMEOUT_S (shortened here; the message says how
    long it waited) with exit 2 and a clear message, instead of a traceback after 30 s."""
    pytest.importorskip("dask.distributed")
    import synthesis.sweeps

    monkeypatch.setattr(synthesis.sweeps, "SCHEDULER_TIMEOUT_S", 0.5)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    code, out, err = run_cli(
        ["sweep", "--engine", "pymc", "--tau-priors", "halfnormal(0.5)", "--scheduler", address, "--quiet"], capsys
    )
    assert_usage_error(code, err, f"--scheduler {address}: could not connect", "0.5 s")
    assert out == ""


def test_malformed_scheduler_address_is_a_clear_error(capsys):
    pytest.importorskip("dask.distributed")
    code, _, err = run_cli(
        ["sweep", "--engine", "pymc", "--tau-priors", "halfnormal(0.5)", "--scheduler", "nothing", "--quiet"], capsys
    )
    assert_usage_error(code, err, "--scheduler nothing: could not connect")


def test_unused_scheduler_is_mentioned(capsys):
    code, _, err = run_cli(
        ["sweep", "--engine", "exact", "--tau-priors", "halfnormal(0.5)", "--scheduler", "tcp://127.0.0.1:1"], capsys
    )
    assert code == 0, err
    assert "--scheduler tcp://127.0.0.1:1 was not used" in err


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------
def test_keyboard_interrupt_is_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("synthesis.cli.validate.run", interrupted)
    code, out, err = run_cli(["validate"], capsys)
    assert code == EXIT_INTERRUPTED
    assert err == "synthesis: interrupted\n"
    assert out == ""


@pytest.mark.slow  # writes a whole report (5-9 s): CI's slow run
def test_keyboard_interrupt_while_writing_a_report_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Interrupted in the middle of writing: no report folder, no temporary folder."""
    (tmp_path / "data").mkdir()
    result = make_result(tmp_path / "data")
    monkeypatch.setattr("synthesis.analysis.run_analysis", lambda table, **kw: result)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("synthesis.report.writer._write_tables", interrupted)
    out_dir = tmp_path / "reports" / "mine"
    code, _, err = run_cli(["report", "--out", str(out_dir), "--quiet"], capsys)
    assert code == EXIT_INTERRUPTED
    assert err.strip().splitlines()[-1] == "synthesis: interrupted"
    assert "Traceback" not in err
    assert not out_dir.exists()
    assert list((tmp_path / "reports").iterdir()) == []


# --------------------------------------------------------------------------------------------
# --covariate of the report
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["report", "run"])
def test_explicit_covariate_must_exist(command, tmp_path, capsys):
    path = write_odd_csv(tmp_path / "odd.csv", extra="age_mean")
    out_dir = tmp_path / "out"
    code, _, err = run_cli([command, str(path), "--covariate", "bone_only", "--out", str(out_dir)], capsys)
    assert_usage_error(code, err, "--covariate bone_only", "'bone_only'", "numeric columns: age_mean")
    assert not out_dir.exists()


# --------------------------------------------------------------------------------------------
# one report on odd study names, without the default covariate column
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def odd_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("odd")
    path = write_odd_csv(base / "odd.csv")
    out_dir = base / "report"
    capture = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(capture), contextlib.redirect_stdout(io.StringIO()):
        code = main(["report", str(path), "--out", str(out_dir), "--quiet"])
    return code, capture.getvalue(), out_dir


@pytest.mark.slow  # one full report (about 20 s): CI's slow run
def test_report_on_odd_study_names_succeeds(odd_report):
    code, err, out_dir = odd_report
    assert code == 0, err
    assert "Traceback" not in err
    for stem in ("forest", "funnel"):
        assert (out_dir / "figures" / f"{stem}.png").stat().st_size > 0
    svg = (out_dir / "figures" / "forest.svg").read_text()
    assert "Trial $x^$ arm" in svg  # drawn literally (svg.fonttype none keeps text as text)


@pytest.mark.slow  # one full report (about 20 s): CI's slow run
def test_missing_default_covariate_is_said(odd_report):
    code, err, out_dir = odd_report
    note = "no meta-regression: "
    assert note in err and "'bone_only_fraction'" in err
    assert note in (out_dir / "report.md").read_text()
    assert note in (out_dir / "report.html").read_text()


@pytest.mark.slow  # one full report (about 20 s): CI's slow run
def test_markdown_report_has_no_raw_html(odd_report):
    _, _, out_dir = odd_report
    md = (out_dir / "report.md").read_text()
    assert "<script" not in md and "<img" not in md and "</" not in md
    assert "&lt;script>alert(1)&lt;/script>" in md
    assert "P(HR < " in md or "P(HR <" in md or "HR <" in md  # ordinary "<" stays readable
    table_lines = [line for line in md.splitlines() if "pipe" in line and line.startswith("|")]
    assert table_lines and all("\\| pipe" in line for line in table_lines)


@pytest.mark.slow  # one full report (about 20 s): CI's slow run
def test_csv_cells_cannot_run_as_formulas(odd_report):
    _, _, out_dir = odd_report
    for name in ("studies.csv", "decision.csv", "pools.csv"):
        with open(out_dir / name, newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    if cell[:1] in ("=", "+", "@", "\t", "\r"):
                        raise AssertionError(f"{name}: {cell!r}")
                    if cell.startswith("-"):
                        float(cell)  # negative numbers stay numbers
    studies = pd.read_csv(out_dir / "studies.csv")
    assert set(studies["study"]) >= {"'=HYPERLINK(\"http://example.invalid\")", "'+cmd|' /C calc'!A0", "'@SUM(1+1)",
                                      "'-2+3 study", "Trial $x^$ arm"}
    assert pd.api.types.is_float_dtype(studies["log_hr"]) and (studies["log_hr"] < 0).any()


def test_neutralise_formulas_keeps_numbers():
    frame = pd.DataFrame({
        "study": ["=1+2", "-0.3", "-x", "plain", None],
        "log_hr": [-0.3, 0.1, -1e-3, 2.0, 0.0],
        "mixed": [-0.5, "@x", None, "+1", "\tx"],
        "=evil": [1, 2, 3, 4, 5],
    })
    out = neutralise_formulas(frame)
    assert out["study"].tolist()[:4] == ["'=1+2", "-0.3", "'-x", "plain"] and pd.isna(out["study"].iloc[4])
    assert out["log_hr"].tolist() == frame["log_hr"].tolist()
    assert out["mixed"].tolist()[:2] == [-0.5, "'@x"] and out["mixed"].tolist()[3:] == ["+1", "'\tx"]
    assert list(out.columns) == ["study", "log_hr", "mixed", "'=evil"]
    assert frame["study"].iloc[0] == "=1+2"  # the input is not changed


# --------------------------------------------------------------------------------------------
# plain-text study names in figures
# --------------------------------------------------------------------------------------------
def test_figures_draw_names_as_plain_text_outside_the_report_style(tmp_path):
    """Saved with ``fig.savefig`` under matplotlib's own style (mathtext on), odd names still draw."""
    assert matplotlib.rcParams["text.parse_math"]  # the global default is untouched
    result = make_result(tmp_path)
    fit_ = result.fits["re_all"]
    effects = [replace(e, study=ODD_NAMES[i % len(ODD_NAMES)] + f" {i}") for i, e in enumerate(fit_.study_effects)]
    fig = plots.plot_forest({"Model $a^$ {x}": replace(fit_, study_effects=effects)})
    fig.savefig(io.BytesIO(), format="png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "Trial $x^$ arm 0" in labels
    bubble = plots.plot_bubble(result.table, result.fits["bias_metareg"], result.covariate, label="Label $^$ {")
    bubble.savefig(io.BytesIO(), format="png")
