"""Time ``synthesis plan``'s computation (models/preposterior.py) against one exact fit.

Run:  python benchmarks/bench_plan.py [--sizes 20] [--repeat 5] [--json]

On the bundled dnMBC studies (k = 17, design-bias model) reports

* ``plan_s``: median wall time of :func:`~synthesis.models.preposterior.plan_trial` over
  ``--sizes`` trial sizes (100 to 2000 events), the exact posterior included; target < 2 s for
  20 sizes on 2 cores;
* ``plan_gh_s``: the same with Gauss-Hermite quadrature per tau component for the smooth
  expectations (the reference method; G^2 x nodes work);
* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the same model,
  measured in the same run, and ``plan_over_fit``: plan time / fit time;
* ``max_gh_diff``: the largest difference in expected posterior SD or EVSI between the two
  quadratures.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.preposterior import plan_trial
from synthesis.models.spec import ModelData, ModelSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = ModelSpec("bias")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    events = np.linspace(100, 2000, args.sizes).round().tolist()
    fit_s = median_time(lambda: fit_exact(data, spec), args.repeat)
    plan_s = median_time(lambda: plan_trial(data, spec, events=events), args.repeat)
    gh_s = median_time(lambda: plan_trial(data, spec, events=events, quadrature="gauss-hermite"), max(1, args.repeat // 2))
    a = plan_trial(data, spec, events=events)
    b = plan_trial(data, spec, events=events, quadrature="gauss-hermite")
    diff = max(max(abs(x.expected_posterior_sd - y.expected_posterior_sd), abs(x.evsi - y.evsi))
               for x, y in zip(a.rows, b.rows, strict=True))
    out = {
        "sizes": args.sizes, "plan_s": plan_s, "plan_gh_s": gh_s, "fit_ms": 1e3 * fit_s,
        "plan_over_fit": plan_s / fit_s, "max_gh_diff": diff, "target_s": 2.0,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"plan over {args.sizes} sizes: {plan_s:.3f} s (target < 2 s); Gauss-Hermite: {gh_s:.3f} s")
        print(f"one exact fit (baseline): {1e3 * fit_s:.1f} ms; plan / fit = {plan_s / fit_s:.1f}")
        print(f"largest difference between the quadratures: {diff:.2e}")


if __name__ == "__main__":
    main()
