"""Time leave-one-study-out cross-validation (models/loo.py) against the fits it scores.

Run:  python benchmarks/bench_compare.py [--ks 17,100,200] [--variants all] [--pymc] [--json]

Reports, per bias variant and number of studies k (simulated bias data,
benchmarks/bench_exact.simulate without the covariate: rct and retrospective designs):

* ``fit_ms``: one exact fit (:func:`synthesis.models.exact.fit_exact`), the baseline measured
  in the same run (1-D quadrature over tau for additive and downweight, 2-D over (tau, kappa)
  for random and three-level);
* ``exact_loo_ms``: :func:`synthesis.models.loo.exact_loo` (k + 1 exact posteriors) and its
  ratio to ``fit_ms`` (k refits: the ratio grows like k);
* ``psis_ms``: :func:`synthesis.models.loo.psis_loo` on a made-up 4 x 2000-draw
  log-likelihood of the same k (PSIS itself, no sampling);
* ``compare_exact_s``: ``compare --engine exact`` on the bundled data (k = 17, all four variants,
  no sampling); with ``--pymc`` also ``--engine pymc`` (four variants sampled) and
  |elpd_loo PSIS - exact| of every variant.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import xarray as xr
from bench_exact import simulate

from synthesis.models.exact import fit_exact
from synthesis.models.loo import exact_loo, psis_loo
from synthesis.models.spec import BIAS_VARIANTS, ModelSpec


def _ms(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best


def bench_k(k: int, variant: str) -> dict:
    spec = ModelSpec("bias", bias_variant=variant)
    data = simulate(k)
    data = replace(data, covariates=(), x=np.zeros((k, 0)), centres=np.zeros(0))
    fit_ms = _ms(lambda: fit_exact(data, spec), repeat=3)
    loo_ms = _ms(lambda: exact_loo(data, spec))
    rng = np.random.default_rng(1)
    ll = xr.DataArray(rng.normal(-1.0, 0.3, (4, 2000, k)), dims=("chain", "draw", "study"))
    mu = xr.DataArray(rng.normal(size=(4, 2000)), dims=("chain", "draw"))
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": mu}), "log_likelihood": xr.Dataset({"y": ll})})
    psis_ms = _ms(lambda: psis_loo(dt))
    return {"variant": variant, "k": k, "fit_ms": round(fit_ms, 2), "exact_loo_ms": round(loo_ms, 1),
            "exact_loo_over_fit": round(loo_ms / fit_ms, 1), "psis_ms": round(psis_ms, 1)}


def bench_compare(pymc: bool) -> dict:
    import synthesis as syn
    from synthesis.models.loo import compare_variants

    table = syn.load_dataset("dnmbc_lrt")
    t0 = time.perf_counter()
    exact = compare_variants(table, ModelSpec("bias"), engine="exact")
    exact_s = time.perf_counter() - t0
    out = {"compare_exact_s": round(exact_s, 2),
           "exact_elpd": {v.variant: round(v.loo.elpd, 3) for v in exact.variants},
           "exact_weights": {v.variant: round(v.comparison.weight, 3) for v in exact.variants}}
    if pymc:
        t0 = time.perf_counter()
        res = compare_variants(table, ModelSpec("bias"), engine="pymc", seed=1)
        pymc_s = time.perf_counter() - t0
        out |= {"compare_pymc_s": round(pymc_s, 1), "pymc_over_exact": round(pymc_s / exact_s, 1),
                "abs_psis_minus_exact": {v.variant: round(abs(v.loo.elpd - v.exact_check.elpd), 3)
                                         for v in res.variants if v.exact_check}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="17,100,200")
    ap.add_argument("--variants", default="all", help="comma-separated bias variants, or all")
    ap.add_argument("--pymc", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    variants = BIAS_VARIANTS if args.variants == "all" else tuple(args.variants.split(","))
    rows = [bench_k(int(k), v) for v in variants for k in args.ks.split(",")]
    out = {"exact_loo": rows, "compare": bench_compare(args.pymc)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{'variant':>12} {'k':>6} {'fit ms':>8} {'exact LOO ms':>13} {'ratio':>7} {'PSIS ms':>8}")
    for r in rows:
        print(f"{r['variant']:>12} {r['k']:>6} {r['fit_ms']:>8} {r['exact_loo_ms']:>13} "
              f"{r['exact_loo_over_fit']:>7} {r['psis_ms']:>8}")
    print(json.dumps(out["compare"]))


if __name__ == "__main__":
    main()
