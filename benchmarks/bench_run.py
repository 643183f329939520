"""Benchmark of the main job: ``synthesis run`` on the bundled data, cold (fresh process, fresh
PyTensor and numba compile caches), wall time and peak memory (max RSS of the child process), plus the
time of the full prior sweep inside it (from the run's own timing record).

Targets (issue #6): under 90 s and under 2 GB peak on 2 cores; the full sweep under 10 s.

Run: ``python benchmarks/bench_run.py`` (prints JSON; ``--warm`` keeps the compile cache).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", action="store_true", help="reuse the PyTensor compile cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if not args.warm:
            env["PYTENSOR_FLAGS"] = f"compiledir={tmp}/pytensor"
            env["NUMBA_CACHE_DIR"] = f"{tmp}/numba"
        out = Path(tmp) / "report"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "synthesis", "run", "--out", str(out), "--quiet"],
            env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        run = json.loads((out / "run.json").read_text())
    timing = run.get("timing", {})
    result = {
        "cold": not args.warm,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "sweeps_s": timing.get("sweeps_s"),
        "timing": timing,
        "targets": {"wall_s": 90, "peak_rss_mb": 2048, "sweeps_s": 10},
    }
    result["meets_targets"] = (
        result["wall_s"] < 90 and result["peak_rss_mb"] < 2048 and (result["sweeps_s"] or 0) < 10
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
