"""Time ``synthesis simulate`` (models/operating.py, synthesis/simulation.py): 10,000 simulated
syntheses of the bundled studies' shape (k = 17) on 1 and 2 worker processes, against one exact fit.

Run:  python benchmarks/bench_simulate.py [--n-sim 10000] [--json]

Each synthesis is three exact analyses (design-bias model, naive pool, RCTs only) of one
simulated evidence base. Reports

* ``one_worker_s`` and ``two_workers_s``: wall time of :func:`synthesis.simulation.run_simulation`
  with one scenario of ``--n-sim`` replicates on 1 and 2 local processes (process start-up
  included); target < 60 s on 2 cores; ``speedup`` = one / two;
* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the design-bias
  model (measured in the same run), and ``per_synthesis_over_fit``: the time of one synthesis
  (three analyses) on one worker over that one fit;
* ``identical``: whether the two runs gave the same counts (they must: per-replicate seeds).

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time

from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.simulation import run_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = ModelSpec("bias")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    fit_s = median_time(lambda: fit_exact(data, spec), 5)
    kwargs = dict(true_hrs=[1.0], bias_means=[0.8], bias_sds=[0.2], n_sim=args.n_sim, progress=False)
    runs = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        res = run_simulation(data, spec, workers=workers, **kwargs)
        runs[workers] = (time.perf_counter() - t0, res.recommend)
    one, two = runs[1][0], runs[2][0]
    out = {
        "n_sim": args.n_sim, "k": data.k, "one_worker_s": one, "two_workers_s": two, "speedup": one / two,
        "fit_ms": 1e3 * fit_s, "per_synthesis_over_fit": (one / args.n_sim) / fit_s,
        "identical": runs[1][1] == runs[2][1], "target_s": 60.0,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.n_sim} syntheses (k = {data.k}, 3 exact analyses each): 1 worker {one:.2f} s, "
              f"2 workers {two:.2f} s (speed-up {one / two:.2f}; target < 60 s)")
        print(f"one exact fit (baseline): {1e3 * fit_s:.1f} ms; one synthesis on 1 worker = "
              f"{out['per_synthesis_over_fit']:.3f} fits; identical counts: {out['identical']}")


if __name__ == "__main__":
    main()
