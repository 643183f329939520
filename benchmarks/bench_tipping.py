"""Time the tipping-point analysis (models/tipping.py) against one exact fit of the same model.

Run:  python benchmarks/bench_tipping.py [--grid 40] [--k 60] [--repeat 5] [--json]

For the bundled dnMBC studies (k = 17) and a simulated table of ``--k`` studies, reports

* ``grid_s``: the median wall time of the ``--grid`` x ``--grid`` tipping grid
  (:func:`synthesis.models.tipping.bias_prior_summaries`: P(HR < 0.8) and the median HR at every
  bias prior); target < 3 s for 40 x 40 on 2 cores;
* ``analysis_s``: the whole :func:`~synthesis.models.tipping.tipping_analysis` (grid, contour
  refined by Brent's method, the SD profile at bias mean 1, the 21-point down-weighting curve
  and its crossing);
* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the same model (the
  additive bias model at one bias prior), measured in the same run;
* ``grid_over_fit``: grid time / single-fit time (the grid holds grid^2 fits' worth of
  answers), and ``max_abs_diff``: the largest |P(HR < 0.8)| difference between the grid and
  ``fit_exact`` at the four corners and the centre.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.priors import resolve_priors
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.models.tipping import bias_prior_summaries, bias_spec, grid_axes, tipping_analysis

THRESHOLD = 0.8


def simulate(k: int = 60, seed: int = 20261203) -> ModelData:
    """k log HRs: 40% randomised (at least one of each design), the others biased by log 0.8,
    heterogeneity 0.15, standard errors 0.08-0.40."""
    rng = np.random.default_rng(seed)
    nr = rng.random(k) < 0.6
    nr[0], nr[1] = False, True
    se = rng.uniform(0.08, 0.40, k)
    y = -0.1 + np.log(0.8) * nr + rng.normal(0.0, 0.15, k) + rng.normal(0.0, se)
    return ModelData(
        studies=tuple(f"study {i + 1}" for i in range(k)), y=y, se=se, nonrandomised=nr,
        designs=tuple("retrospective" if n else "rct" for n in nr), covariates=(), x=np.zeros((k, 0)),
        centres=np.zeros(0), source=f"simulated k={k}",
    )


def _median_time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench(data: ModelData, grid: int, repeat: int) -> dict:
    priors = resolve_priors()
    means, sds = grid_axes((grid, grid))
    M, S = np.meshgrid(means, sds, indexing="ij")
    grid_s, summ = _median_time(lambda: bias_prior_summaries(data, priors, M, S, THRESHOLD), repeat)
    fit_s, _ = _median_time(lambda: fit_exact(data, bias_spec(priors, 1.0, 0.1), thresholds=(THRESHOLD,)), max(repeat, 11))
    analysis_s, res = _median_time(lambda: tipping_analysis(data, priors, threshold=THRESHOLD, grid=(grid, grid)), max(1, repeat // 2))
    diffs = []
    for i, j in [(0, 0), (0, grid - 1), (grid - 1, 0), (grid - 1, grid - 1), (grid // 2, grid // 2)]:
        ref = fit_exact(data, bias_spec(priors, means[i], sds[j]), thresholds=(THRESHOLD,)).p_hr_below[repr(THRESHOLD)]
        diffs.append(abs(summ.p_hr_below[i, j] - ref))
    return {
        "data": data.source,
        "k": data.k,
        "grid": f"{grid}x{grid}",
        "tau_nodes": summ.n_nodes,
        "grid_s": grid_s,
        "analysis_s": analysis_s,
        "analysis_parts_s": res.timing,
        "fit_ms": 1e3 * fit_s,
        "grid_over_fit": grid_s / fit_s,
        "grid_points_per_fit_time": grid * grid * fit_s / grid_s,
        "contour_points": len(res.contour),
        "max_abs_diff": float(max(diffs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=40)
    ap.add_argument("--k", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bundled = ModelData.from_table(load_dataset("dnmbc_lrt"), ModelSpec("bias"))
    rows = [bench(bundled, args.grid, args.repeat), bench(simulate(args.k), args.grid, args.repeat)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(
            f"{r['data']:<36} k={r['k']:<4} grid {r['grid']} ({r['tau_nodes']} tau nodes): "
            f"{r['grid_s']:.3f} s (target < 3 s); whole analysis {r['analysis_s']:.3f} s; "
            f"one fit_exact {r['fit_ms']:.1f} ms; grid / one fit = {r['grid_over_fit']:.1f} "
            f"(= {r['grid_points_per_fit_time']:.0f} grid points per fit's time); "
            f"contour points {r['contour_points']}; max |P - fit_exact| at corners+centre {r['max_abs_diff']:.1e}"
        )


if __name__ == "__main__":
    main()
