"""Time the PyMC engine (models/pymc_fit.py) on a simulated bias-metareg meta-analysis.

Run:  python benchmarks/bench_bayes.py [--k 60] [--sweep 4] [--compile-study] [--json]

Reports (wall times in this process, after the imports; 2 cores)

* ``fit``: one bias-metareg fit of k = 60 studies (the data of ``bench_exact.simulate``),
  4 chains x 1000 draws after 1000 tuning steps: ``compile_s``, ``sample_s``, ``total_s``
  (build + compile + sample + summaries; target < 20 s), bulk ESS of mu, tau, delta, beta
  (target >= 1000; if short, the compiled model is re-sampled with proportionally more draws
  and that run is reported too) and divergences (target 0), with the default ``auto``
  mass-matrix adaptation (nutpie's ``low_rank``, ``diag`` if that fails its diagnostics); the
  same with ``low_rank`` forced;
* ``exact``: the exact engine on the same data and model (``run_exact_benchmark``) and the
  ratio PyMC total / exact fit (target >= 500x);
* ``sweep``: N tau priors of one family over one compiled model (``with_data``) against N
  separate build + compile + sample runs (the ratio of the two);
* ``--compile-study``: the compile time in fresh processes under variants: the default, a cold
  PyTensor/numba cache (``base_compiledir`` in a temporary directory), ``NUMBA_OPT=1``
  (LLVM -O1 instead of -O3), each without freezing, and structural data frozen into the graph
  (``freeze_dims_and_data``, what ``compile_for`` does). The JAX backend is not installed, so it
  is not measured.

This is a benchmark, not a test: nothing is asserted. Other work on the machine inflates the
times; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

HEADLINE = ("mu", "tau", "delta", "beta")
TARGET_TOTAL_S = 20.0
TARGET_ESS = 1000.0
TARGET_RATIO = 500.0


def _spec(tau: str = "halfnormal(0.5)"):
    from synthesis.models.priors import resolve_priors
    from synthesis.models.spec import ModelSpec

    return ModelSpec(model="bias-metareg", covariates=("bone_only_fraction",), priors=resolve_priors({"tau": tau}))


def _ess(fit) -> dict[str, float]:
    out = {n: fit.parameters[n].ess_bulk for n in ("mu", "tau", "delta")}
    out["beta"] = min(s.ess_bulk for s in fit.beta.values())
    return out


def bench_fit(k: int, seed: int = 1) -> dict:
    """One cold fit (compile + sample), then more draws from the same compile if ESS is short."""
    from bench_exact import simulate

    from synthesis.models.pymc_fit import compile_for, fit_pymc

    data = simulate(k)
    spec = _spec()
    at = {"bone_only_fraction=0.5": {"bone_only_fraction": 0.5}}
    t0 = time.perf_counter()
    compiled = compile_for(data, spec, cache=False)
    fit = fit_pymc(data, spec, at=at, chains=4, draws=1000, tune=1000, seed=seed, compiled=compiled)
    total = time.perf_counter() - t0
    ess = _ess(fit)
    res = {
        "k": k,
        "model": spec.model,
        "chains": 4,
        "draws": 1000,
        "tune": 1000,
        "compile_s": compiled.compile_s,
        "sample_s": fit.timing["sample_s"],
        "total_s": total,
        "ess_bulk": ess,
        "divergences": fit.diagnostics.divergences,
        "max_r_hat": fit.diagnostics.max_r_hat,
        "fit": fit,
    }
    worst = min(ess.values())
    if worst < TARGET_ESS:
        draws = int(math.ceil(1000 * 1.25 * TARGET_ESS / worst / 100.0) * 100)
        t1 = time.perf_counter()
        more = fit_pymc(data, spec, at=at, chains=4, draws=draws, tune=1000, seed=seed, compiled=compiled)
        res["more_draws"] = {
            "draws": draws,
            "sample_s": more.timing["sample_s"],
            "total_s": total + (time.perf_counter() - t1),
            "ess_bulk": _ess(more),
            "divergences": more.diagnostics.divergences,
        }
        res["fit"] = more
    t1 = time.perf_counter()
    lr = fit_pymc(data, spec, at=at, chains=4, draws=1000, tune=1000, seed=seed, compiled=compiled, adaptation="low_rank")
    res["low_rank"] = {
        "draws": 1000,
        "sample_s": lr.timing["sample_s"],
        "total_s": total + (time.perf_counter() - t1),
        "ess_bulk": _ess(lr),
        "divergences": lr.diagnostics.divergences,
    }
    return res


def bench_exact_ratio(pymc_total_s: float, k: int) -> dict:
    try:
        from bench_exact import run_exact_benchmark
    except ImportError as exc:  # pragma: no cover
        return {"error": f"run_exact_benchmark unavailable: {exc}"}
    ex = run_exact_benchmark(k=k, n_priors=20, repeat=11)
    return {"exact_fit_ms": ex["fit_ms"], "pymc_total_s": pymc_total_s, "ratio": pymc_total_s / (ex["fit_ms"] / 1000.0), "fit": ex["fit"]}


def bench_sweep(k: int, n: int, seed: int = 1) -> dict:
    """n half-normal tau priors: one compile + n samples vs n x (build + compile + sample)."""
    from bench_exact import simulate

    from synthesis.models.pymc_fit import compile_for, fit_pymc, fit_pymc_many

    data = simulate(k)
    scales = [0.1 * 2 ** (i / 2) for i in range(n)]
    specs = [_spec(f"halfnormal({s:.4g})") for s in scales]
    kw = dict(chains=4, draws=1000, tune=1000, seed=seed)
    from synthesis.models import pymc_fit

    pymc_fit._COMPILED.clear()
    t0 = time.perf_counter()
    once = fit_pymc_many(data, specs, **kw)
    t_once = time.perf_counter() - t0
    per_prior = [f.timing["sample_s"] for f in once[1:]]
    t0 = time.perf_counter()
    separate = []
    for spec in specs:
        compiled = compile_for(data, spec, cache=False)
        separate.append(fit_pymc(data, spec, compiled=compiled, **kw))
    t_sep = time.perf_counter() - t0
    same = max(abs(a.parameters["tau"].median - b.parameters["tau"].median) for a, b in zip(once, separate, strict=True))
    return {
        "n_priors": n,
        "one_compile_s": t_once,
        "separate_compiles_s": t_sep,
        "ratio": t_sep / t_once,
        "resample_per_prior_s": statistics.median(per_prior) if per_prior else None,
        "max_tau_median_difference": same,
    }


def _worker(variant: str, k: int) -> None:
    """In a fresh process: build and compile the k-study model once; print JSON timings."""
    t_import = time.perf_counter()
    from bench_exact import simulate

    from synthesis.models.pymc_models import build_model
    from synthesis.models.sampling import CompiledModel, SamplerSettings

    t_import = time.perf_counter() - t_import
    data = simulate(k)
    model = build_model(data, _spec())
    from synthesis.models.pymc_models import structural_data

    freeze = structural_data(model) if variant == "freeze" else None
    t0 = time.perf_counter()
    compiled = CompiledModel.compile(model, freeze=freeze)
    compile_s = time.perf_counter() - t0
    sampled = compiled.sample(SamplerSettings(chains=4, draws=1000, tune=1000, seed=1))
    print(json.dumps({"variant": variant, "import_s": t_import, "compile_s": compile_s, "sample_s": sampled.sample_s}))


def compile_study(k: int, repeat: int) -> list[dict]:
    variants = ["no-freeze", "cold-cache", "numba-opt1", "freeze"]
    rows = []
    for _ in range(repeat):
        for variant in variants:
            env = dict(os.environ)
            with tempfile.TemporaryDirectory() as tmp:
                if variant == "cold-cache":
                    env["PYTENSOR_FLAGS"] = f"base_compiledir={tmp}"
                    env["NUMBA_CACHE_DIR"] = tmp
                if variant == "numba-opt1":
                    env["NUMBA_OPT"] = "1"
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", variant, "--k", str(k)],
                    env=env, capture_output=True, text=True, check=False,
                )
            if proc.returncode != 0:
                rows.append({"variant": variant, "error": proc.stderr[-500:]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]) | {"load": os.getloadavg()[0]})
    return rows


def _summarise_study(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        ok = [r for r in rows if r["variant"] == variant and "error" not in r]
        if ok:
            out[variant] = {
                "compile_s_median": statistics.median(r["compile_s"] for r in ok),
                "compile_s_all": [round(r["compile_s"], 2) for r in ok],
                "sample_s_median": statistics.median(r["sample_s"] for r in ok),
                "runs": len(ok),
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--sweep", type=int, default=4, help="number of priors in the sweep comparison (0: skip)")
    parser.add_argument("--compile-study", action="store_true", help="compile-time variants in fresh processes")
    parser.add_argument("--repeat", type=int, default=2, help="repeats of each compile-study variant")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.k)
        return 0
    out: dict = {"load_average_start": os.getloadavg()[0]}
    fit = bench_fit(args.k)
    out["fit"] = {key: v for key, v in fit.items() if key != "fit"}
    out["exact"] = {key: v for key, v in bench_exact_ratio(fit["total_s"], args.k).items() if key != "fit"}
    if args.sweep:
        out["sweep"] = bench_sweep(args.k, args.sweep)
    if args.compile_study:
        out["compile_study"] = _summarise_study(compile_study(args.k, args.repeat))
    out["load_average_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    f = out["fit"]
    print(f"PyMC engine (nutpie), {f['model']}, k = {f['k']}, 4 chains x 1000 draws (+1000 tuning); load {out['load_average_start']:.1f}")
    print(f"  compile {f['compile_s']:.2f} s, sample {f['sample_s']:.2f} s, total {f['total_s']:.2f} s (target < {TARGET_TOTAL_S:g} s)")
    print("  bulk ESS " + ", ".join(f"{n} {v:.0f}" for n, v in f["ess_bulk"].items()) + f"; divergences {f['divergences']}; max R-hat {f['max_r_hat']:.4f}")
    if "more_draws" in f:
        m = f["more_draws"]
        print(f"  re-sampled with {m['draws']} draws per chain (same compile): sample {m['sample_s']:.2f} s, total {m['total_s']:.2f} s; ESS "
              + ", ".join(f"{n} {v:.0f}" for n, v in m["ess_bulk"].items()) + f"; divergences {m['divergences']}")
    if "low_rank" in f:
        m = f["low_rank"]
        print(f"  adaptation low_rank, 1000 draws (same compile): sample {m['sample_s']:.2f} s, total {m['total_s']:.2f} s; ESS "
              + ", ".join(f"{n} {v:.0f}" for n, v in m["ess_bulk"].items()) + f"; divergences {m['divergences']}")
    e = out["exact"]
    if "ratio" in e:
        print(f"  exact engine: {e['exact_fit_ms']:.2f} ms per fit; PyMC / exact = {e['ratio']:.0f}x (target >= {TARGET_RATIO:g}x)")
    if "sweep" in out:
        s = out["sweep"]
        print(f"  sweep of {s['n_priors']} tau priors: one compile {s['one_compile_s']:.1f} s vs separate compiles "
              f"{s['separate_compiles_s']:.1f} s (ratio {s['ratio']:.1f}x; {s['resample_per_prior_s']:.2f} s per extra prior)")
    if "compile_study" in out:
        for variant, r in out["compile_study"].items():
            print(f"  compile [{variant}]: median {r['compile_s_median']:.2f} s {r['compile_s_all']}, sample {r['sample_s_median']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
