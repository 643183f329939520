"""Installation contract: console script, ``python -m synthesis``, bundled data found from any
working directory, and the README's two set-up commands that CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


_WITHOUT_INSTALL = """
import sys
sys.meta_path = [f for f in sys.meta_path if 'ditable' not in str(f)]
sys.path_hooks = [h for h in sys.path_hooks if 'ditable' not in str(h)]
sys.path.insert(0, {root!r})
import synthesis
from synthesis.models.spec import ModelSpec
table = synthesis.load_dataset('dnmbc_lrt')
print(synthesis.__file__, ModelSpec.__module__, table.k, 'models' in sys.modules)
"""


def test_source_checkout_imports_as_installed(tmp_path):
    """Without the install's mapping (a notebook next to a checkout), models/ is synthesis.models,
    data/ is synthesis.bundled, and no top-level ``models`` module appears."""
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_INSTALL.format(root=str(ROOT))],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    where, module, k, top_level = proc.stdout.split()
    assert Path(where).resolve() == ROOT / "synthesis" / "__init__.py"
    assert module == "synthesis.models.spec"
    assert int(k) == 17 and top_level == "False"


def test_wheel_installs_models_as_synthesis_models(tmp_path):
    """The wheel holds synthesis/models/ and synthesis/bundled/, and no top-level models/ or data/."""
    import zipfile

    pytest.importorskip("setuptools")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "synthesis/models/exact.py" in names and "synthesis/bundled/dnmbc_lrt.csv" in names
    assert "models" not in tops and "data" not in tops
    # Every subpackage of the checkout (synthesis/cli, plots, report, ...) is in the wheel.
    for init in sorted((ROOT / "synthesis").glob("*/__init__.py")):
        assert f"synthesis/{init.parent.name}/__init__.py" in names, f"pyproject.toml packages lacks {init.parent.name}"


def test_layers_import_downwards_only():
    """The model layer imports only itself and the base layer (synthesis.base, synthesis.errors);
    the base layer imports nothing from the package."""
    import ast

    base = {"synthesis.base", "synthesis.errors"}

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return {n for n in names if n.split(".")[0] in ("synthesis", "models")}

    for path in (ROOT / "models").glob("*.py"):
        bad = {n for n in imported(path) if not (n.startswith("synthesis.models") or n in base)}
        assert not bad, f"{path.name} imports the pipeline: {bad}"
    for name in ("base.py", "errors.py"):
        assert not imported(ROOT / "synthesis" / name), name
