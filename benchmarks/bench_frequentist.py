"""Time the frequentist estimators against R's metafor on a simulated k = 40 meta-analysis.

Run:  python benchmarks/bench_frequentist.py [--k 40] [--seed 1] [--repeat 15] [--json]

For every tau^2 estimator it reports the median time per fit (median over ``--repeat`` batches of
the batch time divided by the batch size) of

* ``fit``:  :func:`synthesis.pooling.fit_model` (estimate, SE, CI, Q, I^2; what ``rma()`` does),
* ``pool``: :func:`synthesis.pooling.pool` (the above plus prediction interval and Q-profile
  tau^2 CI; what ``rma()`` + ``predict()`` + ``confint()`` do),

and, when ``Rscript`` with metafor is on the PATH, the same two things in metafor timed inside
one R process on the same data (R start-up excluded), with the ratio metafor / Python (> 1 means
Python is faster). This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synthesis.pooling import METHODS, fit_model, pool

R_SCRIPT = r"""
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
repeats <- as.integer(args[2])
target <- as.numeric(args[3])  # seconds per batch
per_fit <- function(f) {
  n <- 1L
  repeat {  # batch size so that one batch takes about `target` seconds
    t0 <- Sys.time(); for (i in seq_len(n)) f(); dt <- as.numeric(Sys.time() - t0, units = "secs")
    if (dt >= target || n >= 100000L) break
    n <- max(n * 2L, as.integer(ceiling(n * target / max(dt, 1e-6))))
  }
  times <- sapply(seq_len(repeats), function(r) {
    t0 <- Sys.time(); for (i in seq_len(n)) f(); as.numeric(Sys.time() - t0, units = "secs") / n
  })
  median(times)
}
out <- list(R = R.version.string, metafor = as.character(packageVersion("metafor")), fit = list(), pool = list())
for (m in c("FE", "DL", "REML", "ML", "PM", "HE", "SJ")) {
  out$fit[[m]] <- per_fit(function() rma(d$yi, d$vi, method = m))
  out$pool[[m]] <- per_fit(function() {
    r <- rma(d$yi, d$vi, method = m); p <- predict(r)
    if (m != "FE") ci <- confint(r)
  })
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def simulate(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """log HRs of k studies: true mean -0.2, tau^2 = 0.04, SEs uniform on [0.08, 0.45]."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.08, 0.45, size=k)
    theta = rng.normal(-0.2, 0.2, size=k)
    return rng.normal(theta, se), se**2


def per_fit(f, repeats: int, target: float) -> float:
    """Median over ``repeats`` batches of (batch time / batch size), batches of ~``target`` s."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        dt = time.perf_counter() - t0
        if dt >= target or n >= 100_000:
            break
        n = max(2 * n, int(np.ceil(n * target / max(dt, 1e-6))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def run_metafor(y: np.ndarray, v: np.ndarray, repeats: int, target: float) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.csv"
        data.write_text("yi,vi\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(y, v, strict=True)))
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        proc = subprocess.run(
            [rscript, str(script), str(data), str(repeats), str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        print(f"metafor timing failed:\n{proc.stderr}", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=15, help="batches per timing (median taken)")
    parser.add_argument("--batch-seconds", type=float, default=0.05, help="target duration of one batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    y, v = simulate(args.k, args.seed)
    py = {"fit": {}, "pool": {}}
    for m in METHODS:
        py["fit"][m] = per_fit(lambda m=m: fit_model(y, v, method=m), args.repeat, args.batch_seconds)
        py["pool"][m] = per_fit(lambda m=m: pool(y, v, method=m), args.repeat, args.batch_seconds)
    r = run_metafor(y, v, args.repeat, args.batch_seconds)

    result = {"k": args.k, "seed": args.seed, "python": py, "metafor": r}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"k = {args.k} simulated studies (seed {args.seed}); median time per fit in microseconds")
    if r is not None:
        print(f"metafor {r['metafor']} on {r['R']}, timed inside R")
    else:
        print("Rscript/metafor not available: Python timings only")
    head = f"{'method':<7}{'fit (py)':>10}{'rma()':>10}{'ratio':>8}   {'pool (py)':>10}{'rma+predict+confint':>21}{'ratio':>8}"
    print(head)
    print("-" * len(head))
    for m in METHODS:
        pf, pp = py["fit"][m] * 1e6, py["pool"][m] * 1e6
        if r is not None:
            rf, rp = r["fit"][m] * 1e6, r["pool"][m] * 1e6
            print(f"{m:<7}{pf:>10.1f}{rf:>10.1f}{rf / pf:>7.1f}x   {pp:>10.1f}{rp:>21.1f}{rp / pp:>7.1f}x")
        else:
            print(f"{m:<7}{pf:>10.1f}{'':>10}{'':>8}   {pp:>10.1f}")
    if r is not None:
        print("ratio = metafor time / Python time (> 1: Python faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
