"""Time ``synthesis simulate`` (models/operating.py, synthesis/simulation.py) at both ends of
its range: 10,000 simulated syntheses of the bundled studies' shape (k = 17), and the default
12 scenarios x 200 syntheses of a 100,000-study design (issue #9's scale target).

Run:  python benchmarks/bench_simulate.py [--n-sim 10000] [--large-k 100000] [--large-n-sim 200] [--json]

Each synthesis is three exact analyses (design-bias model, naive pool, RCTs only) of one
simulated evidence base. Reports

* ``small``: wall time of :func:`synthesis.simulation.run_simulation` with one scenario of
  ``--n-sim`` replicates on 1 and 2 local processes (process start-up included; target < 60 s
  on 2 cores), ``speedup`` = one / two; ``fit_ms``, the baseline, one
  :func:`synthesis.models.exact.fit_exact` of the design-bias model (measured in the same run),
  and ``per_synthesis_over_fit``: one synthesis (three analyses) on one worker over that one fit;
  ``identical``: whether the two runs gave the same counts (they must: per-replicate seeds);
* ``large`` (``--large-k`` studies: SEs uniform on [0.05, 0.5], 40% randomised, as
  benchmarks/bench_scale.py's file): ``grid_s``, building the three analyses of every default
  scenario from a cold cache (locating each scenario's tau grid and the weights on it), their
  node counts and how many distinct (analysis, grid) pairs there are (scenarios share grids);
  ``batch_ms`` and ``batch_fixed_ms``, one batch of replicates analysed on the scenarios' grids
  and on a fixed 401-node grid over the prior's range (the former engine's cost), with their
  ratio; ``one_worker_s`` / ``two_workers_s``, the whole default simulation (target < 60 s; the
  CLI adds ~7 s of start-up and reading the CSV), ``peak_mb`` (this process's max RSS, and the
  largest worker's), ``fit_s``, one :func:`fit_exact` of the design-bias model at that k
  (``study_effects=False``) as the baseline, ``per_synthesis_over_fit``, and ``identical``.

The machine's load average is printed with the numbers (timings on a shared machine are noisy;
compare the ratios). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace

import numpy as np
from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.operating import (
    _WEIGHTS,
    DEFAULT_BIAS_MEANS,
    DEFAULT_BIAS_SDS,
    DEFAULT_TRUE_HRS,
    SIM_GRID,
    Analyses,
    BatchedExact,
    Truth,
    _Layout,
    _trapezoid_grid,
    batch_size,
    scenario_grid,
    simulate_data,
)
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.simulation import run_simulation


def _peak_mb() -> tuple[float, float]:
    """Max RSS of this process and of the largest finished child (MB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def large_design(k: int, seed: int = 9) -> ModelData:
    """A k-study design shaped as benchmarks/bench_scale.py's file (the data y are not used)."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.5, size=k)
    nr = rng.uniform(size=k) >= 0.4
    return ModelData(studies=tuple(f"S{i}" for i in range(k)), y=np.zeros(k), se=se, nonrandomised=nr,
                     designs=tuple("prospective" if v else "rct" for v in nr), covariates=(), x=np.zeros((k, 0)),
                     centres=np.zeros(0))


def small(n_sim: int) -> dict:
    spec = ModelSpec("bias")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    fit_s = median_time(lambda: fit_exact(data, spec), 5)
    kwargs = dict(true_hrs=[1.0], bias_means=[0.8], bias_sds=[0.2], n_sim=n_sim, progress=False)
    runs = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        res = run_simulation(data, spec, workers=workers, **kwargs)
        runs[workers] = (time.perf_counter() - t0, res.recommend)
    one, two = runs[1][0], runs[2][0]
    return {
        "n_sim": n_sim, "k": data.k, "one_worker_s": one, "two_workers_s": two, "speedup": one / two,
        "fit_ms": 1e3 * fit_s, "per_synthesis_over_fit": (one / n_sim) / fit_s,
        "identical": runs[1][1] == runs[2][1], "target_s": 60.0,
    }


def large(k: int, n_sim: int) -> dict:
    from threadpoolctl import threadpool_limits

    spec = ModelSpec("bias")
    data = large_design(k)
    scenarios = scenario_grid(DEFAULT_TRUE_HRS, DEFAULT_BIAS_MEANS, DEFAULT_BIAS_SDS)
    runs = {}
    for workers in (1, 2):  # first, so that the peak RSS is the simulation's
        t0 = time.perf_counter()
        res = run_simulation(data, spec, n_sim=n_sim, workers=workers, progress=False)
        runs[workers] = (time.perf_counter() - t0, res.recommend, res.notes)
    one, two = runs[1][0], runs[2][0]
    self_mb, child_mb = _peak_mb()
    with threadpool_limits(1):
        _WEIGHTS.clear()  # cold: as in a new worker process
        t0 = time.perf_counter()
        layout = _Layout.of(data, spec)
        nodes: dict[str, set[int]] = {}
        grids: set[tuple[str, bytes]] = set()
        for sc in scenarios:
            analyses = Analyses.of(layout, Truth.of(sc, 0.0))
            for name, eng in analyses.engines.items():
                nodes.setdefault(name, set()).add(eng.tau.size)
                grids.add((name, eng.tau.tobytes()))
        grid_s = time.perf_counter() - t0
        Y = simulate_data(scenarios[-1], len(scenarios) - 1, range(batch_size(k)), data.se, data.nonrandomised,
                          tau=0.0, seed=1, order=analyses.order)
        batch_s = median_time(lambda: analyses.p_below_ordered(Y, 0.8), 3)
        bias_s = median_time(lambda: analyses.engines["bias"].p_below(Y, 0.8), 3)
        prep = layout.prepared["bias"]
        lo, hi, c = prep.tau_range
        fixed = BatchedExact.build(prep.data, prep.spec, *_trapezoid_grid(lo, hi, c, SIM_GRID), d=prep.design)
        fixed_s = median_time(lambda: fixed.p_below(Y, 0.8), 3)
        y = np.empty(k)
        y[layout.order] = Y[0]  # engine order back to study order
        one_data = replace(data, y=y)
        fit_s = median_time(lambda: fit_exact(one_data, spec, study_effects=False), 1)
    return {
        "k": k, "n_sim": n_sim, "scenarios": len(scenarios), "grid_s": grid_s, "distinct_grids": len(grids),
        "nodes": {name: sorted(v) for name, v in nodes.items()},
        "batch": batch_size(k), "batch_ms": 1e3 * batch_s,
        "bias_batch_ms": 1e3 * bias_s, "bias_batch_fixed_ms": 1e3 * fixed_s, "fixed_over_scenario_grid": fixed_s / bias_s,
        "one_worker_s": one, "two_workers_s": two, "speedup": one / two,
        "peak_mb": self_mb, "worker_peak_mb": child_mb, "fit_s": fit_s,
        "per_synthesis_over_fit": (one / (n_sim * len(scenarios))) / fit_s,
        "identical": runs[1][1] == runs[2][1], "notes": runs[1][2], "target_s": 60.0, "target_mb": 2048.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=10_000)
    parser.add_argument("--large-k", type=int, default=100_000, help="0: skip the large design")
    parser.add_argument("--large-n-sim", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"load_average": os.getloadavg(), "small": small(args.n_sim)}
    if args.large_k:
        out["large"] = large(args.large_k, args.large_n_sim)
    out["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    s = out["small"]
    print(f"load average {out['load_average'][0]:.2f} before, {out['load_average_after'][0]:.2f} after")
    print(f"{s['n_sim']} syntheses (k = {s['k']}, 3 exact analyses each): 1 worker {s['one_worker_s']:.2f} s, "
          f"2 workers {s['two_workers_s']:.2f} s (speed-up {s['speedup']:.2f}; target < 60 s)")
    print(f"one exact fit (baseline): {s['fit_ms']:.1f} ms; one synthesis on 1 worker = "
          f"{s['per_synthesis_over_fit']:.3f} fits; identical counts: {s['identical']}")
    if "large" in out:
        g = out["large"]
        print(f"k = {g['k']:,}, {g['scenarios']} scenarios x {g['n_sim']}: analyses of every scenario built in "
              f"{g['grid_s']:.2f} s (tau grid nodes {g['nodes']}; {g['distinct_grids']} distinct (analysis, grid) pairs of {3 * g['scenarios']}); "
              f"a batch of {g['batch']} replicates "
              f"{g['batch_ms']:.0f} ms (design-bias analysis {g['bias_batch_ms']:.0f} ms; on a fixed {SIM_GRID}-node grid "
              f"{g['bias_batch_fixed_ms']:.0f} ms, x{g['fixed_over_scenario_grid']:.1f})")
        print(f"  whole simulation: 1 worker {g['one_worker_s']:.1f} s, 2 workers {g['two_workers_s']:.1f} s "
              f"(target < 60 s); peak RSS {g['peak_mb']:.0f} MB, largest worker {g['worker_peak_mb']:.0f} MB "
              f"(target < 2048 MB); one exact fit {g['fit_s']:.2f} s, one synthesis = "
              f"{g['per_synthesis_over_fit']:.4f} fits; identical counts: {g['identical']}; notes: {g['notes'] or 'none'}")


if __name__ == "__main__":
    main()
