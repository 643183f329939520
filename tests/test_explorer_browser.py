"""The sensitivity explorer (issue #15) in a real headless Chromium driven by Selenium 4: the page
opens offline from file://, every control moves the numbers, the HR and P(HR < T) it shows equal
the exact engine's answers (fit_exact, average_models) at that setting within the interpolation
error the page states, the command it prints names that setting, and a screenshot is not blank.

Needs Chromium and its WebDriver (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; .ci/run
installs Debian's ``chromium`` and ``chromium-driver``); skipped with the reason otherwise.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from synthesis.datasets import load_dataset
from synthesis.models import explorer_grid as eg
from synthesis.models.averaging import average_models
from synthesis.models.exact import fit_exact
from synthesis.models.priors import resolve_priors
from synthesis.models.spec import ModelData, ModelSpec, threshold_key
from synthesis.models.tipping import bias_spec, tipping_analysis
from synthesis.report.explorer import EXPLORER_FILE, explorer_page

pytestmark = pytest.mark.browser

#: The page's normal CDF (Numerical Recipes erfc, fractional error < 1.2e-7) and the float
#: printing of data attributes add at most this to the stated error.
JS_SLACK = 1e-6


def _find(name: str, fallback: str) -> str | None:
    found = shutil.which(name)
    return found or (fallback if Path(fallback).is_file() else None)


CHROMIUM = _find("chromium", "/usr/bin/chromium")
DRIVER = _find("chromedriver", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def table():
    return load_dataset("dnmbc_lrt")


@pytest.fixture(scope="module")
def data(table) -> ModelData:
    return ModelData.from_table(table, ModelSpec("bias"))


@pytest.fixture(scope="module")
def page(data, tmp_path_factory) -> tuple[Path, dict]:
    grid = eg.explorer_analysis(data, tipping=tipping_analysis(data))
    payload = grid.to_json()
    path = tmp_path_factory.mktemp("explorer") / EXPLORER_FILE
    path.write_text(explorer_page(payload), encoding="utf-8")
    return path, payload


@pytest.fixture(scope="module")
def driver():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless Chromium or chromedriver is not installed (Debian: chromium, chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"):
        opts.add_argument(flag)
    try:
        drv = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    except Exception as exc:  # noqa: BLE001 - any start-up failure means no browser here
        pytest.skip(f"Chromium could not be started by chromedriver: {exc}")
    yield drv
    drv.quit()


def _set(drv, ident: str, value: float | str) -> None:
    """Move a control as a user would, by value: sliders on the log scale take log(value)."""
    v = value if isinstance(value, str) else (math.log(value) if ident in ("ex-tau-scale", "ex-bias-mean", "ex-bias-sd") else value)
    drv.execute_script(
        "var e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event(e.tagName === 'SELECT' ? 'change' : 'input'));", ident, str(v))


def _shown(drv, models) -> dict[str, dict]:
    return drv.execute_script(
        "var out = {}; arguments[0].forEach(function (n) { var h = document.getElementById('ex-hr-' + n).dataset;"
        "var p = document.getElementById('ex-p-' + n); out[n] = {median: +h.median, lo: +h.lo, hi: +h.hi, p: +p.dataset.value,"
        "hr_text: document.getElementById('ex-hr-' + n).textContent, p_text: p.textContent,"
        "cmd: document.getElementById('ex-cmd-' + n).textContent}; }); return out;", list(models))


def _rct_only(data: ModelData) -> ModelData:
    keep = ~np.asarray(data.nonrandomised, dtype=bool)
    return replace(data, studies=tuple(np.array(data.studies)[keep]), y=data.y[keep], se=data.se[keep],
                   nonrandomised=data.nonrandomised[keep], designs=tuple(np.array(data.designs)[keep]), x=data.x[keep])


def _exact(table, data, s: eg.Setting) -> dict[str, tuple[float, float, float, float]]:
    """Each model at the setting, straight from fit_exact / average_models."""
    priors = replace(resolve_priors(), tau=eg.tau_prior(s.family, s.tau_scale))
    spec = bias_spec(priors, s.bias_mean, s.bias_sd)
    T, key = (s.threshold,), threshold_key(s.threshold)

    def four(fit):
        return fit.hr.median, fit.hr.q025, fit.hr.q975, fit.p_hr_below[key]

    rct = four(fit_exact(_rct_only(data), ModelSpec("re", priors=priors), thresholds=T))
    avg = average_models(table, spec, thresholds=T).averaged
    dw = rct if s.alpha == 0 else four(fit_exact(
        data, ModelSpec("bias", bias_variant="downweight", alpha=s.alpha, priors=priors), thresholds=T))
    return {"rct": rct, "bias": four(fit_exact(data, spec, thresholds=T)), "downweight": dw,
            "averaged": (avg.median, avg.q025, avg.q975, avg.p_below[key])}


#: One control moved at a time, from the report's starting setting.
MOVES = [
    ("ex-family", "halfcauchy", "family"),
    ("ex-tau-scale", 0.3, "tau_scale"),
    ("ex-bias-mean", 0.85, "bias_mean"),
    ("ex-bias-sd", 0.15, "bias_sd"),
    ("ex-alpha", 0.2, "alpha"),
    ("ex-threshold", 0.9, "threshold"),
    ("ex-family", "exponential", "family"),
    ("ex-alpha", 0.0, "alpha"),
]


def test_every_control_gives_the_exact_answer_within_the_stated_error(driver, page, table, data):
    path, payload = page
    driver.get(path.as_uri())
    assert driver.execute_script("return document.getElementById('ex-root').dataset.ready") == "true"
    # offline: the page fetched nothing
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    err = payload["max_error"]
    models = list(payload["models"])
    setting = eg.Setting(**payload["current"])
    before = _shown(driver, models)
    checked = []
    for ident, value, field in [(None, None, None), *MOVES]:
        if ident is not None:
            _set(driver, ident, value)
            setting = replace(setting, **{field: value})
        shown = _shown(driver, models)
        if ident is not None:
            assert shown != before, f"moving {ident} changed nothing"
        before = shown
        ref = _exact(table, data, setting)
        for m in models:
            got, want = shown[m], ref[m]
            bound = err["models"][m]  # the page states each model's own bound
            for x, y in zip((got["median"], got["lo"], got["hi"]), want[:3], strict=True):
                assert abs(x / y - 1) <= bound["hr"] + JS_SLACK, (m, setting, got, want)
            assert abs(got["p"] - want[3]) <= bound["p"] + JS_SLACK, (m, setting, got, want)
            assert got["hr_text"] == f"{got['median']:.2f} ({got['lo']:.2f}\u2013{got['hi']:.2f})"
            checked.append((m, abs(got["p"] - want[3])))
        cmd = shown["bias"]["cmd"]
        assert f"--threshold {setting.threshold:g}" in cmd and f"{setting.bias_sd:g})'" in cmd
        assert f"--tau-prior '{eg.tau_prior_text(setting.family, setting.tau_scale)}'" in cmd
        dw = shown["downweight"]["cmd"]
        assert (f"--alpha {setting.alpha:g}" in dw) if setting.alpha > 0 else ("--subset rct" in dw)
    assert len(checked) == 4 * (len(MOVES) + 1)


def test_commands_parse_as_the_cli_would_and_name_the_same_priors(driver, page):
    """The printed fit command, parsed by synthesis's own argument parser, builds the spec the
    explorer's setting describes."""
    import argparse
    import shlex

    from synthesis.cli import fit as fit_cli

    path, payload = page
    driver.get(path.as_uri())
    _set(driver, "ex-family", "halfcauchy")
    _set(driver, "ex-bias-mean", 0.9)
    cmd = _shown(driver, ["bias"])["bias"]["cmd"]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    fit_cli.add_parser(sub)
    args = parser.parse_args(shlex.split(cmd)[1:])
    spec = fit_cli.build_spec(args)
    assert spec.priors.tau.label == "half-Cauchy(scale=0.5)"
    assert spec.priors.delta.params == pytest.approx((math.log(0.9), 0.5), abs=1e-6)
    assert args.engine == "exact" and args.threshold == [0.8]


def test_screenshot_is_not_blank(driver, page):
    from matplotlib import image

    path, _ = page
    driver.get(path.as_uri())
    png = driver.get_screenshot_as_png()
    rgb = image.imread(io.BytesIO(png), format="png")[..., :3]
    colours = np.unique((rgb * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"only {len(colours)} distinct colours: a blank or broken page"
    dark = (rgb.sum(axis=-1) < 0.6).mean()
    assert 0.002 < dark < 0.5, f"dark fraction {dark:.4f}: no text/figures, or an all-dark page"
    # the heat map of the tipping figure is drawn (cells of the blue ramp)
    blue = (rgb[..., 2] > rgb[..., 0] + 0.25).mean()
    assert blue > 0.01


def test_page_states_its_size_and_it_is_small_enough_to_mail(page):
    path, payload = page
    size = path.stat().st_size
    assert size < 2_000_000
    assert f"This page is {size / 1e6:.2f} MB" in path.read_text()
    assert json.loads(json.dumps(payload))["n_checks"] == eg.DEFAULT_CHECK_POINTS
