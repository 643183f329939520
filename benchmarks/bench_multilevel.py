"""Multilevel models (issue #13): exact and REML fits of 100 rows in 17 clusters.

Targets (2 cores): the exact multilevel fit (2-D quadrature over tau and tau_within, with the
study effects; also timed without them) under 50 ms, reported with its ratio to a one-level
exact random-effects fit of the same rows measured in the same run (the exact fits are timed
round-robin, one call of each in turn, so that a burst of load on a shared machine hits all of
them alike; medians, with the minima and the load average in the JSON); the REML multilevel fit
at least 10x faster than metafor's
``rma.mv(yi, vi, random = ~ 1 | cluster/row)`` on the same data, timed inside one R process with
``system.time`` over many repetitions (not process start-up), when ``Rscript`` with metafor is on
the PATH. Both with rho = 0 and rho = 0.5 (``vcalc``).

    .venv/bin/python benchmarks/bench_multilevel.py [--k 100 --clusters 17 --repeat 7 --json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from timing import median_time

from synthesis.models.exact import fit_exact
from synthesis.models.multilevel import Clusters
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.multilevel import fit_multilevel

R_SCRIPT = r"""
suppressPackageStartupMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
n <- as.integer(args[2])
d$row <- seq_len(nrow(d))
out <- list(R = R.version.string, metafor = as.character(packageVersion("metafor")))
for (rho in c(0, 0.5)) {
  V <- if (rho > 0) vcalc(d$vi, cluster = d$cluster, obs = d$row, rho = rho) else d$vi
  fit <- function() rma.mv(d$yi, V, random = ~ 1 | cluster / row, data = d, method = "REML")
  invisible(fit())
  t <- system.time(for (i in seq_len(n)) fit())[["elapsed"]] / n
  f <- fit()
  out[[paste0("rho", rho)]] <- list(seconds = t, sigma2 = as.numeric(f$sigma2), beta = as.numeric(f$beta))
}
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def simulate(k: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """k rows in n_clusters clusters (every cluster at least one row), log HRs with a between-
    cluster SD 0.15 and a within SD 0.1 around -0.2, sampling SDs uniform on [0.05, 0.4]."""
    rng = np.random.default_rng(seed)
    cluster = np.concatenate([np.arange(n_clusters), rng.integers(0, n_clusters, k - n_clusters)])
    se = rng.uniform(0.05, 0.4, k)
    u = rng.normal(0, 0.15, n_clusters)
    y = -0.2 + u[cluster] + rng.normal(0, 0.1, k) + rng.normal(0, se)
    return y, se**2, [f"c{c:02d}" for c in cluster]


class _Table:
    """The minimum of a study table that ModelData.from_table reads."""

    def __init__(self, y: np.ndarray, v: np.ndarray, clusters: list[str]) -> None:
        import pandas as pd

        self.source = "simulated"
        self.has_design = False
        self.y, self.se = y, np.sqrt(v)
        self.k = y.size
        self.studies = [f"row {i + 1}" for i in range(self.k)]
        self.nonrandomised = np.zeros(self.k, dtype=bool)
        self.designs = [None] * self.k
        self.frame = pd.DataFrame({"cluster": clusters})

    def covariate_matrix(self, names):  # noqa: ANN001, ANN201
        return np.zeros((self.k, 0))

    def line_of(self, i: int) -> None:
        return None


def round_robin_times(
    calls: dict[str, Callable[[], object]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU (this process, all threads) times of ``repeat`` calls of each function, one
    call of each in turn (after one warm-up call each). On a loaded machine the CPU time is the
    steadier measure of the work; the target is on the wall time."""
    for fn in calls.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def run_metafor(y: np.ndarray, v: np.ndarray, clusters: list[str], repeats: int) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.csv"
        data.write_text(
            "yi,vi,cluster\n" + "".join(f"{a!r},{b!r},{c}\n" for a, b, c in zip(y.tolist(), v.tolist(), clusters, strict=True))
        )
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        proc = subprocess.run([rscript, str(script), str(data), str(repeats)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"metafor timing failed:\n{proc.stderr}", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=17)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per measurement (median taken)")
    parser.add_argument("--r-repeat", type=int, default=10, help="rma.mv fits timed inside R per rho")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    y, v, labels = simulate(args.k, args.clusters, args.seed)
    table = _Table(y, v, labels)
    result: dict = {
        "k": args.k, "clusters": args.clusters, "seed": args.seed, "load_average_before": os.getloadavg()[0],
        "exact": {}, "reml": {},
    }
    one = ModelSpec("re")
    data_one = ModelData.from_table(table, one)
    calls = {"one": lambda: fit_exact(data_one, one)}
    for rho in (0.0, 0.5):
        spec = ModelSpec("re", cluster="cluster", rho=rho)
        data = ModelData.from_table(table, spec)
        calls[f"rho{rho:g}"] = lambda spec=spec, data=data: fit_exact(data, spec)
        calls[f"rho{rho:g}_pooled"] = lambda spec=spec, data=data: fit_exact(data, spec, study_effects=False)
    times, cpu = round_robin_times(calls, args.repeat)
    base, base_cpu = statistics.median(times["one"]), statistics.median(cpu["one"])
    result["exact"]["one_level_s"] = base
    result["exact"]["one_level_min_s"] = min(times["one"])
    result["exact"]["one_level_cpu_s"] = base_cpu
    for rho in (0.0, 0.5):
        key = f"rho{rho:g}"
        t, t_pooled = statistics.median(times[key]), statistics.median(times[f"{key}_pooled"])
        result["exact"][key] = {
            "seconds": t, "ratio_to_one_level": t / base, "target_s": 0.05, "pooled_only_seconds": t_pooled,
            "min_seconds": min(times[key]), "min_ratio_to_one_level": min(times[key]) / min(times["one"]),
            "cpu_seconds": statistics.median(cpu[key]), "cpu_ratio_to_one_level": statistics.median(cpu[key]) / base_cpu,
        }
    for rho in (0.0, 0.5):
        c = Clusters.from_labels(labels, rho=rho)
        tr = median_time(lambda c=c: fit_multilevel(y, v, c), args.repeat)
        fit = fit_multilevel(y, v, c)
        result["reml"][f"rho{rho:g}"] = {
            "seconds": tr, "sigma2": [fit.sigma2_between, fit.sigma2_within], "beta": fit.intercept.estimate,
        }
    result["load_average_after"] = os.getloadavg()[0]
    r = run_metafor(y, v, labels, args.r_repeat)
    result["metafor"] = r
    if r is not None:
        for rho in ("rho0", "rho0.5"):
            result["reml"][rho]["speedup_vs_rma_mv"] = r[rho]["seconds"] / result["reml"][rho]["seconds"]
            ours, theirs = np.array(result["reml"][rho]["sigma2"]), np.array(r[rho]["sigma2"])
            # a component metafor puts on the boundary (about 1e-10) is compared absolutely
            result["reml"][rho]["max_rel_diff_sigma2_vs_rma_mv"] = float(
                np.max(np.abs(ours - theirs) / np.maximum(theirs, 1e-6))
            )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.k} rows in {args.clusters} clusters (seed {args.seed}); median of {args.repeat} calls, round-robin; "
          f"1-min load average {result['load_average_before']:.2f} before, {result['load_average_after']:.2f} after")
    print(f"  one-level exact RE fit (baseline)         {1e3 * base:8.1f} ms  (CPU {1e3 * base_cpu:.1f} ms)")
    for rho in ("rho0", "rho0.5"):
        e = result["exact"][rho]
        ok = "meets" if e["seconds"] < 0.05 else "MISSES"
        print(f"  exact multilevel fit, {rho:<7}            {1e3 * e['seconds']:8.1f} ms  "
              f"({e['ratio_to_one_level']:.1f}x the one-level fit; {ok} the 50 ms target; "
              f"CPU {1e3 * e['cpu_seconds']:.1f} ms, {e['cpu_ratio_to_one_level']:.1f}x); "
              f"without the {args.k} row effects {1e3 * e['pooled_only_seconds']:.1f} ms")
    for rho in ("rho0", "rho0.5"):
        m = result["reml"][rho]
        line = f"  REML multilevel fit, {rho:<7}             {1e3 * m['seconds']:8.1f} ms"
        if r is not None:
            ok = "meets" if m["speedup_vs_rma_mv"] >= 10 else "MISSES"
            line += (f"  rma.mv {1e3 * r[rho]['seconds']:8.1f} ms: {m['speedup_vs_rma_mv']:.0f}x faster ({ok} the 10x target); "
                     f"sigma2 within {m['max_rel_diff_sigma2_vs_rma_mv']:.1e} relative (absolute below 1e-6)")
        print(line)
    if r is None:
        print("Rscript/metafor not available: no rma.mv timing")
    else:
        print(f"  (metafor {r['metafor']} on {r['R']}, timed inside R over {args.r_repeat} fits)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
