"""Installation contract: console script, ``python -m synthesis``, bundled data found from any
working directory, and the README's two set-up commands that CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_synthesis_and_help_from_elsewhere(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "synthesis", "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    for command in ("validate", "pool", "metareg", "bias", "fit", "sweep", "report", "run"):
        assert command in out


def test_every_command_help_has_an_example(capsys):
    import pytest

    from synthesis.cli import main

    for command in ("validate", "pool", "metareg", "bias", "fit", "sweep", "report", "run"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "example: synthesis" in capsys.readouterr().out, command


def test_bundled_dataset_found_from_any_directory(tmp_path):
    from synthesis.datasets import dataset_path

    assert dataset_path("dnmbc_lrt").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "synthesis", "validate", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert '"k"' in proc.stdout


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (python3 -m venv \.venv && .+)$", readme, flags=re.M)
    assert len(commands) == 2, commands
    run_cmd, test_cmd = commands
    assert run_cmd.endswith(".venv/bin/synthesis run")
    assert "'.[test]'" in test_cmd and "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run extracts the README's test command with this pattern and evals it.
    pattern = r"python3 -m venv .venv && .venv\/bin\/pip install .*\[test\].*"
    assert pattern in ci
    assert (ROOT / ".python-version").read_text().strip().startswith("3.12")
