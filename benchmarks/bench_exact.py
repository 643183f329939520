"""Time the exact engine (models/exact.py) on a simulated bias-metareg meta-analysis.

Run:  python benchmarks/bench_exact.py [--k 60] [--priors 200] [--repeat 21] [--json]

Reports

* ``fit_ms``: the median wall time of one :func:`synthesis.models.exact.fit_exact` call (bias-metareg,
  additive bias, one covariate, every study's shrunken HR and one ``--at`` HR included);
  target < 20 ms at k = 60;
* ``sweep_s``: one :func:`synthesis.models.exact.sweep_tau_priors` call over ``--priors`` tau priors
  (half-normal, half-Cauchy, exponential and half-t families over a range of scales); target < 2 s
  for 200 priors;
* ``sweep_per_prior_ms`` and the shared tau-grid size;
* ``fit_2d_ms``: one 2-D exact fit (``bias`` with the ``random`` variant: tau and kappa by
  quadrature) of the same table, every study's shrunken HR included; target < 50 ms at k = 60;
  ``fit_1d_ms`` the additive-bias (1-D) fit of the same table measured in the same run, and
  ``ratio_2d_1d`` their ratio; ``fit_3level_ms`` the three-level variant.

This is a benchmark, not a test: nothing is asserted. :func:`run_exact_benchmark` returns the
numbers as a dict (and the simulated data and spec) so that a PyMC timing of the same model can
be added beside it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
from timing import median_time

from synthesis.models.exact import _design, _grid_for, _pilot, fit_exact, sweep_tau_priors
from synthesis.models.priors import PriorSpec, parse_prior
from synthesis.models.spec import ModelData, ModelSpec


def simulate(k: int = 60, seed: int = 20261123) -> ModelData:
    """k log HRs: 40% randomised, a bias of 0.15 in the others, a covariate in [0, 1] with slope
    0.3, heterogeneity 0.15, standard errors 0.08-0.40."""
    rng = np.random.default_rng(seed)
    nr = rng.random(k) < 0.6
    nr[0], nr[1] = False, True
    x = rng.uniform(0.0, 1.0, size=(k, 1))
    se = rng.uniform(0.08, 0.40, k)
    theta = -0.2 + 0.15 * nr + 0.3 * (x[:, 0] - 0.5) + rng.normal(0.0, 0.15, k)
    y = theta + rng.normal(0.0, se)
    return ModelData(
        studies=tuple(f"study {i + 1}" for i in range(k)),
        y=y,
        se=se,
        nonrandomised=nr,
        designs=tuple("retrospective" if n else "rct" for n in nr),
        covariates=("bone_only_fraction",),
        x=x,
        centres=x.mean(axis=0),
        source=f"simulated k={k}",
    )


def sweep_priors(n: int = 200) -> list[PriorSpec]:
    """``n`` tau priors: four families, scales log-spaced from 0.02 to 2."""
    families = ("halfnormal({s})", "halfcauchy({s})", "exponential({r})", "halft(3, {s})")
    per = -(-n // len(families))
    scales = np.geomspace(0.02, 2.0, per)
    out = [
        parse_prior(f.format(s=f"{s:.5g}", r=f"{1.0 / s:.5g}"), "tau")
        for f in families
        for s in scales
    ]
    return out[:n]



def run_exact_benchmark(k: int = 60, n_priors: int = 200, repeat: int = 21) -> dict:
    """Time one exact bias-metareg fit on ``k`` simulated studies and a sweep of ``n_priors``
    tau priors; returns the timings (``fit_ms``, ``sweep_s``, ...), plus ``data`` and ``spec``
    (the :class:`ModelData` and :class:`ModelSpec` that were fitted) and ``fit`` (the result)."""
    data = simulate(k)
    spec = ModelSpec(model="bias-metareg", covariates=("bone_only_fraction",))
    at = {"bone_only_fraction=0.5": {"bone_only_fraction": 0.5}}
    fit_s = median_time(lambda: fit_exact(data, spec, at=at), repeat)
    fit = fit_exact(data, spec, at=at)
    priors = sweep_priors(n_priors)
    sweep_s = median_time(lambda: sweep_tau_priors(data, spec, priors), max(3, repeat // 7))
    grid = _grid_for(_pilot(_design(data, spec), priors), 257)
    plain = replace(data, covariates=(), x=np.zeros((k, 0)), centres=np.zeros(0))
    one_d = ModelSpec(model="bias")
    two_d = ModelSpec(model="bias", bias_variant="random")
    fit_1d_s = median_time(lambda: fit_exact(plain, one_d), repeat)
    fit_2d_s = median_time(lambda: fit_exact(plain, two_d), repeat)
    fit_3l_s = median_time(lambda: fit_exact(plain, ModelSpec(model="bias", bias_variant="three-level")), repeat)
    fit_2d = fit_exact(plain, two_d)
    return {
        "k": k,
        "model": spec.model,
        "fit_ms": 1000.0 * fit_s,
        "fit_target_ms": 20.0,
        "n_priors": n_priors,
        "sweep_s": sweep_s,
        "sweep_target_s": 2.0,
        "sweep_per_prior_ms": 1000.0 * sweep_s / n_priors,
        "shared_grid_nodes": int(grid.tau.size),
        "fit_grid_nodes": int(fit.tau_grid.size),
        "fit_1d_ms": 1000.0 * fit_1d_s,
        "fit_2d_ms": 1000.0 * fit_2d_s,
        "fit_2d_target_ms": 50.0,
        "ratio_2d_1d": fit_2d_s / fit_1d_s,
        "fit_3level_ms": 1000.0 * fit_3l_s,
        "fit_2d_nodes": int(fit_2d.tau_grid.size * fit_2d.kappa_grid.size),
        "fit_2d_kappa_median": fit_2d.parameters["kappa"].median,
        "data": data,
        "spec": spec,
        "fit": fit,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--priors", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    res = run_exact_benchmark(args.k, args.priors, args.repeat)
    out = {key: val for key, val in res.items() if key not in ("data", "spec", "fit")}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"exact engine, {res['model']}, k = {res['k']}")
    print(f"  one fit:            {res['fit_ms']:8.2f} ms   (target < {res['fit_target_ms']:g} ms; "
          f"{res['fit_grid_nodes']} tau nodes)")
    print(f"  sweep, {res['n_priors']} priors: {res['sweep_s']:8.3f} s    (target < "
          f"{res['sweep_target_s']:g} s; {res['sweep_per_prior_ms']:.2f} ms per prior, "
          f"{res['shared_grid_nodes']} shared tau nodes)")
    print(f"  2-D fit (random):   {res['fit_2d_ms']:8.2f} ms   (target < {res['fit_2d_target_ms']:g} ms; "
          f"{res['fit_2d_nodes']} (tau, kappa) nodes; {res['ratio_2d_1d']:.1f} x the 1-D additive fit of "
          f"the same table, {res['fit_1d_ms']:.2f} ms)")
    print(f"  2-D fit (three-level): {res['fit_3level_ms']:5.2f} ms")
    mu = res["fit"].parameters["mu"]
    print(f"  mu = {mu.median:.4f} [{mu.q025:.4f}, {mu.q975:.4f}], HR = {res['fit'].hr.median:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
