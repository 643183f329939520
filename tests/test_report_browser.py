"""The HTML report in a real (headless) browser: it opens offline, every image decodes, the
decision table is there, and a screenshot renders.

Needs Chromium (``/usr/bin/chromium`` or ``chromium`` on PATH); skipped otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import make_result, tiny_figures

from synthesis.plots import plot_funnel
from synthesis.report import write_report

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = _chromium()
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
)
TIMEOUT_S = 20


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed")
    base = tmp_path_factory.mktemp("browser")
    result = make_result(base, converged=False)
    figures = tiny_figures() | {"funnel": plot_funnel(result.table, pooled=result.pools["all"]["REML"])}
    out = write_report(result, base / "report", figures=figures)
    return out / "report.html"


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def test_dom_after_load_has_images_and_decision_table(page, tmp_path):
    proc = _run(["--dump-dom", page.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-images-loaded="true"' in dom, "an <img> did not decode (or the load script did not run)"
    assert '<table id="decision-table">' in dom
    assert "Random effects, RCTs only" in dom and "0.93 [0.62, 1.35]" in dom
    assert "Convergence problems" in dom


def test_screenshot_renders(page, tmp_path):
    shot = tmp_path / "shot.png"
    proc = _run([f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colours = im.convert("RGB").resize((64, 100)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 20  # not a blank page
