"""Time ``synthesis multiverse`` (synthesis/multiverse.py) against one exact fit.

Run:  python benchmarks/bench_multiverse.py [--workers 2] [--repeat 1] [--json]

Reports, on the bundled dnMBC studies,

* ``multiverse_s``: wall time of the full multiverse (every curation switch x 5 models x 4 tau
  priors x 3 bias priors: 7,200 specifications, of which the distinct ones are fitted exactly);
  target < 15 s on 2 cores; ``multiverse_cpu_s``: CPU time of this process and its workers
  (on a shared machine the wall time also measures the other load, the CPU time does not);
* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the design-bias model
  on the default table, measured in the same run, and ``multiverse_over_fit``: multiverse time
  / one fit, against ``n_specifications`` (the specifications are cheaper than that many fits
  because tables, grids and likelihoods are shared);
* ``report_s``: the reduced multiverse of the report section (default priors only), target < 5 s.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.specifications import run_multiverse


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    spec = ModelSpec("bias")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    fit_s = median_time(lambda: fit_exact(data, spec, thresholds=(0.8,)), 20)

    walls, cpus, result = [], [], None
    for _ in range(args.repeat):
        c0, t0 = _cpu(), time.perf_counter()
        result = run_multiverse(workers=args.workers, progress=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    wall, cpu = min(walls), min(cpus)

    from synthesis.specifications import REPORT_MULTIVERSE

    t0 = time.perf_counter()
    report = run_multiverse(workers=args.workers, progress=False, **REPORT_MULTIVERSE)
    report_s = time.perf_counter() - t0

    out = {
        "cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "workers": args.workers,
        "n_specifications": result.n_specifications,
        "n_exact_fits": result.n_fits,
        "n_tables": result.n_tables,
        "multiverse_s": round(wall, 2),
        "multiverse_cpu_s": round(cpu, 2),
        "target_s": 15.0,
        "fit_ms": round(1000 * fit_s, 2),
        "multiverse_over_fit": round(wall / fit_s, 1),
        "report_specifications": report.n_specifications,
        "report_s": round(report_s, 2),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
