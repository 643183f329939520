"""Time the sensitivity explorer's grid (models/explorer_grid.py) against one exact fit, and
report the page size and the interpolation error by grid resolution.

Run:  python benchmarks/bench_explorer.py [--repeat 3] [--checks 200] [--resolutions] [--json]

On the bundled dnMBC studies (k = 17), reports

* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the additive bias
  model at one bias prior (median of ``--repeat``), measured in the same run;
* ``grid_s``: the median wall time of :func:`~synthesis.models.explorer_grid.build_grid` at the
  default resolution without the error check (the part of ``synthesis report/run`` that grows
  with the grid), ``settings``: the number of (model, setting) cells it holds (each a full
  summary: median, 95% interval and P(HR < T) at every grid T), ``grid_over_fit``: grid time /
  single-fit time, and ``fits_per_fit_time``: settings / grid_over_fit (how many settings the
  grid computes in the time of one fit);
* ``grid_cpu_s``: the process CPU time of one grid build (a proxy for the unloaded wall time on a
  shared machine);
* ``check_s`` and ``max_error``: :func:`~synthesis.models.explorer_grid.interpolation_error` at
  ``--checks`` random settings (the report runs DEFAULT_CHECK_POINTS of them);
* ``explorer_bytes``: the size of explorer.html (target < 2 MB: small enough to mail);
* with ``--resolutions``: grid time, size and worst error (100 settings) for coarser and finer
  grids than the default, the measurement the default resolution was chosen from.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time

from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models import explorer_grid as eg
from synthesis.models.exact import fit_exact
from synthesis.models.priors import resolve_priors
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.models.tipping import bias_spec
from synthesis.report.explorer import explorer_page

#: Resolutions compared with --resolutions (the default is DEFAULT_RESOLUTION).
RESOLUTIONS = {
    "coarse": {"tau_per_octave": 1, "mean_per_octave": 8, "sd_per_octave": 4, "alpha": 21, "t_step": 0.05},
    "default": dict(eg.DEFAULT_RESOLUTION),
    "fine": {"tau_per_octave": 2, "mean_per_octave": 16, "sd_per_octave": 4, "alpha": 31, "t_step": 0.02},
}


def _cells(grid: eg.ExplorerGrid) -> int:
    return sum(int(v["p"][..., 0].size) for v in grid.values.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checks", type=int, default=eg.DEFAULT_CHECK_POINTS)
    parser.add_argument("--resolutions", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    spec = bias_spec(resolve_priors(), 1.0, 0.5)
    fit_s = median_time(lambda: fit_exact(data, spec, thresholds=(0.8,)), max(args.repeat, 5))
    grid_s = median_time(lambda: eg.build_grid(data, check_points=0), args.repeat)
    c0 = time.process_time()
    grid = eg.build_grid(data, check_points=0)
    grid_cpu_s = time.process_time() - c0
    t0 = time.perf_counter()
    err = eg.interpolation_error(grid, data, n=args.checks)
    check_s = time.perf_counter() - t0
    grid.max_error, grid.n_checks = err, args.checks
    page = explorer_page(grid.to_json())
    out = {
        "fit_ms": 1e3 * fit_s,
        "grid_s": grid_s,
        "grid_cpu_s": grid_cpu_s,
        "settings": _cells(grid),
        "grid_over_fit": grid_s / fit_s,
        "fits_per_fit_time": _cells(grid) / (grid_s / fit_s),
        "check_s": check_s,
        "checks": args.checks,
        "max_error": err,
        "explorer_bytes": len(page.encode()),
        "resolution": {k: int(v.size) for k, v in grid.axes.items()},
    }
    if args.resolutions:
        rows = {}
        for name, res in RESOLUTIONS.items():
            t0 = time.perf_counter()
            g = eg.build_grid(data, resolution=res, check_points=0)
            t = time.perf_counter() - t0
            e = eg.interpolation_error(g, data, n=100)
            rows[name] = {"grid_s": t, "settings": _cells(g), "bytes": len(explorer_page(g.to_json()).encode()), "max_error": e}
        out["resolutions"] = rows
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"one exact fit (bias model, k = {data.k}):   {out['fit_ms']:.1f} ms")
    print(f"explorer grid ({out['settings']} settings):  {grid_s:.2f} s = {out['grid_over_fit']:.0f} fits' time "
          f"({out['fits_per_fit_time']:.1f} settings per fit time); CPU {grid_cpu_s:.2f} s")
    print(f"interpolation check ({args.checks} settings): {check_s:.2f} s; worst error HR {100 * err['hr']:.2f}% "
          f"(relative), P(HR < T) {err['p']:.4f} (absolute)")
    for name, e in err["models"].items():
        print(f"  {name:10s} worst error HR {100 * e['hr']:.2f}%, P {e['p']:.4f}")
    print(f"explorer.html: {out['explorer_bytes'] / 1e6:.2f} MB; axes {out['resolution']}")
    for name, r in out.get("resolutions", {}).items():
        print(f"  {name:8s} grid {r['grid_s']:.2f} s, {r['settings']} settings, {r['bytes'] / 1e6:.2f} MB, "
              f"worst error HR {100 * r['max_error']['hr']:.2f}%, P {r['max_error']['p']:.4f}")


if __name__ == "__main__":
    main()
