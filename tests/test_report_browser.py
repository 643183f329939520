"""The HTML report in a real (headless) browser: it opens offline, every image decodes, the
decision table is there, and a screenshot renders.

Needs Chromium (``/usr/bin/chromium`` or ``chromium`` on PATH); skipped otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.figure import Figure
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
    marker = Figure(figsize=(4.0, 3.0), facecolor=(1.0, 0.0, 1.0))
    figures = tiny_figures() | {
        "funnel": plot_funnel(result.table, pooled=result.pools["all"]["REML"]),
        "marker": marker,
    }
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


def _marker_size(page: Path) -> tuple[int, int]:
    """Pixel size of the embedded marker figure, decoded from the page itself."""
    import base64
    import io
    import re

    from PIL import Image

    html = page.read_text()
    data = re.search(r'<figure id="fig-marker"><img src="data:image/png;base64,([^"]+)"', html).group(1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return im.size


def test_screenshot_shows_the_figures_at_their_size_and_the_text(page, tmp_path):
    """The marker figure (solid magenta) appears on screen as a magenta block of its own pixel
    size, so figures decode, are laid out unscaled and are not hidden; the top of the page
    carries dark text (the title), not a blank or error page."""
    import numpy as np
    from PIL import Image

    shot = tmp_path / "shot.png"
    proc = _run([f"--screenshot={shot}", "--window-size=1280,8000", page.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 8000)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    magenta = (rgb[..., 0] > 230) & (rgb[..., 1] < 30) & (rgb[..., 2] > 230)
    rows, cols = np.nonzero(magenta)
    assert rows.size, "the marker figure is not on screen"
    width, height = _marker_size(page)
    assert cols.max() - cols.min() + 1 == pytest.approx(width, abs=2)
    assert rows.max() - rows.min() + 1 == pytest.approx(height, abs=2)
    assert magenta.sum() == pytest.approx(width * height, rel=0.02)
    top = rgb[:200]
    assert ((top.sum(axis=-1) < 200).sum()) > 500, "no dark text at the top of the page"
