"""Scale benchmark (issue #9): every command of the tool on a simulated 100,000-row CSV.

Each command runs in its own child process (``python -m synthesis ...``); the table gives its
wall time and peak memory (the child's max RSS, from ``wait4``), and as the project's other
benchmarks do, ratios against baselines measured in the same run: time and memory relative to
the same command at ``--base-k`` rows (1,000 by default) and relative to ``validate`` on the
large file (the cost of starting Python and reading the CSV).

The data are seeded: log HRs around -0.2 with tau = 0.2, SEs uniform on [0.05, 0.5], designs
rct / prospective / retrospective (40/30/30%, non-randomised studies biased by -0.1), a
covariate ``x`` in [0, 1] with 20% missing values (the PyMC engine imputes them) and a complete
one, ``year`` (the exact engine's meta-regressions, and the timeline's publication year), a
``group`` of every 5 rows (the multilevel commands' cluster); every row in the ratio form ``hr, ci_lower,
ci_upper`` (as the bundled data), rounded to 6 significant digits.

Targets: every command under ``--max-s`` (60 s) and ``--max-mb`` (2048 MB) at ``--k``; the
script exits with status 1 if one is missed (or a command fails).

Run: ``python benchmarks/bench_scale.py [--k 100000] [--base-k 1000] [--only bias,pool]
[--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Targets of issue #9 at k = 100,000.
MAX_SECONDS = 60.0
MAX_MB = 2048.0
#: Rows per ``group`` (the multilevel commands' cluster column; not named ``cohort``, which the
#: loader warns about for every shared cohort).
ROWS_PER_COHORT = 5
#: The per-child timeout: a command this slow has missed its target anyway.
TIMEOUT_FACTOR = 3.0

#: (name, arguments after ``synthesis``; ``{csv}`` and ``{out}`` are filled in).
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("validate", ("validate", "{csv}", "--json", "--covariate", "x")),
    ("pool REML hksj", ("pool", "{csv}", "--method", "REML", "--hksj", "--by-design", "--json")),
    ("pool FE", ("pool", "{csv}", "--method", "FE", "--json")),
    ("pool DL", ("pool", "{csv}", "--method", "DL", "--json")),
    ("pool ML", ("pool", "{csv}", "--method", "ML", "--json")),
    ("pool PM", ("pool", "{csv}", "--method", "PM", "--json")),
    ("pool HE", ("pool", "{csv}", "--method", "HE", "--json")),
    ("pool SJ", ("pool", "{csv}", "--method", "SJ", "--json")),
    ("metareg", ("metareg", "{csv}", "--covariate", "x", "--hksj", "--json")),
    ("bias DL", ("bias", "{csv}", "--json")),
    ("bias REML", ("bias", "{csv}", "--method", "REML", "--json")),
    ("fit exact re", ("fit", "{csv}", "--engine", "exact", "--model", "re", "--json")),
    ("fit exact bias", ("fit", "{csv}", "--engine", "exact", "--model", "bias", "--json")),
    ("fit exact bias-metareg", ("fit", "{csv}", "--engine", "exact", "--model", "bias-metareg",
                                "--covariate", "year", "--json")),
    ("fit pymc re", ("fit", "{csv}", "--engine", "pymc", "--model", "re", "--json")),
    ("fit pymc bias", ("fit", "{csv}", "--engine", "pymc", "--model", "bias", "--json")),
    ("fit pymc bias-metareg", ("fit", "{csv}", "--engine", "pymc", "--model", "bias-metareg",
                               "--covariate", "x", "--json")),
    ("sweep bias", ("sweep", "{csv}", "--model", "bias", "--engine", "auto", "--quiet",
                    "--json")),
    ("tipping", ("tipping", "{csv}", "--json")),
    ("average", ("average", "{csv}", "--json")),
    # four exact fits (two of them 2-D quadratures) and their leave-one-out downdates
    ("compare exact", ("compare", "{csv}", "--engine", "exact", "--json")),
    ("psense exact", ("psense", "{csv}", "--engine", "exact", "--json")),
    ("pool multilevel", ("pool", "{csv}", "--cluster", "group", "--json")),
    ("fit exact multilevel", ("fit", "{csv}", "--engine", "exact", "--model", "re", "--cluster", "group",
                              "--json")),
    ("plan", ("plan", "{csv}", "--json")),
    ("timeline", ("timeline", "{csv}", "--json")),
    ("simulate", ("simulate", "{csv}", "--quiet", "--n-sim", "200", "--json")),
    ("multiverse", ("multiverse", "{csv}", "--json")),
    ("report", ("report", "{csv}", "--covariate", "year", "--quiet", "--out", "{out}")),
    ("report imputed", ("report", "{csv}", "--covariate", "x", "--quiet", "--out", "{out}")),
)


def simulate_csv(path: Path, k: int, seed: int = 9) -> None:
    """Write a seeded k-row CSV of studies (see the module docstring)."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.5, size=k)
    design = rng.choice(np.array(["rct", "prospective", "retrospective"]), size=k, p=[0.4, 0.3, 0.3])
    x = rng.uniform(0.0, 1.0, size=k)
    theta = -0.2 + 0.1 * (x - 0.5) - 0.1 * (design != "rct") + rng.normal(0.0, 0.2, size=k)
    y = rng.normal(theta, se)
    z = 1.959963984540054
    hr, lo, hi = np.exp(y), np.exp(y - z * se), np.exp(y + z * se)
    year = rng.integers(1990, 2025, size=k)
    x_text = np.where(rng.uniform(size=k) < 0.2, "", np.char.mod("%.4f", x))
    width = len(str(k))
    with path.open("w", encoding="utf-8") as fh:
        fh.write("study,hr,ci_lower,ci_upper,design,x,year,group\n")
        for i in range(k):
            fh.write(f"S{i + 1:0{width}d},{hr[i]:.6g},{lo[i]:.6g},{hi[i]:.6g},{design[i]},{x_text[i]},{year[i]},"
                     f"C{i // ROWS_PER_COHORT}\n")


def run_measured(argv: list[str], timeout: float) -> dict:
    """Run ``python -m synthesis argv``: wall time, the child's own max RSS (``os.wait4``), status."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "synthesis", *argv], stdout=out, stderr=err)
        deadline = start + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout_bytes = len(out.read())
        stderr = err.read().decode(errors="replace")[-2000:]
    return {
        "wall_s": round(wall, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "rc": proc.returncode,
        "timed_out": timed_out,
        "stdout_bytes": stdout_bytes,
        "stderr": stderr,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=100_000, help="rows of the large file")
    parser.add_argument("--base-k", type=int, default=1_000, help="rows of the baseline file")
    parser.add_argument("--only", default="", help="comma-separated command names (default: all)")
    parser.add_argument("--max-s", type=float, default=MAX_SECONDS)
    parser.add_argument("--max-mb", type=float, default=MAX_MB)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds before a child is stopped (default {TIMEOUT_FACTOR:g} x --max-s)")
    args = parser.parse_args()
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    commands = [(n, a) for n, a in COMMANDS if not wanted or n in wanted or n.split()[0] in wanted]
    if not commands:
        print(f"no command matches {args.only!r}", file=sys.stderr)
        return 2
    timeout = args.timeout or args.max_s * TIMEOUT_FACTOR
    rows = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        files = {}
        for k in (args.base_k, args.k):
            files[k] = tmpdir / f"studies_{k}.csv"
            simulate_csv(files[k], k)
        reference = run_measured(
            ["validate", str(files[args.k]), "--json", "--covariate", "x"], timeout
        )
        for name, template in commands:
            row: dict = {"command": name}
            for k, key in ((args.base_k, "base"), (args.k, "large")):
                argv = [a.format(csv=files[k], out=tmpdir / f"out_{k}_{len(rows)}") for a in template]
                row[key] = run_measured(argv, timeout)
            large, base = row["large"], row["base"]
            row["time_ratio_vs_base_k"] = round(large["wall_s"] / base["wall_s"], 2)
            row["mem_ratio_vs_base_k"] = round(large["peak_mb"] / base["peak_mb"], 2)
            row["time_ratio_vs_validate"] = round(large["wall_s"] / reference["wall_s"], 2)
            row["mem_ratio_vs_validate"] = round(large["peak_mb"] / reference["peak_mb"], 2)
            row["ok"] = (
                large["rc"] == 0 and base["rc"] == 0 and not large["timed_out"]
                and large["wall_s"] < args.max_s and large["peak_mb"] < args.max_mb
            )
            ok &= row["ok"]
            rows.append(row)
            if not args.json:
                print(
                    f"{name:<24} k={args.base_k}: {base['wall_s']:7.2f} s {base['peak_mb']:7.0f} MB | "
                    f"k={args.k}: {large['wall_s']:7.2f} s {large['peak_mb']:7.0f} MB "
                    f"(x{row['time_ratio_vs_base_k']} time, x{row['mem_ratio_vs_base_k']} memory vs "
                    f"k={args.base_k}; x{row['time_ratio_vs_validate']} time vs validate) "
                    f"{'ok' if row['ok'] else 'MISSED'}",
                    flush=True,
                )
                for key in ("base", "large"):
                    if row[key]["rc"] != 0 or row[key]["timed_out"]:
                        print(f"    {key}: exit {row[key]['rc']}"
                              f"{' (timed out)' if row[key]['timed_out'] else ''}: "
                              f"{row[key]['stderr'].strip().splitlines()[-1:] }", flush=True)
    result = {
        "k": args.k,
        "base_k": args.base_k,
        "targets": {"wall_s": args.max_s, "peak_mb": args.max_mb},
        "validate_reference": reference,
        "commands": rows,
        "meets_targets": ok,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"validate at k={args.k}: {reference['wall_s']} s, {reference['peak_mb']} MB; "
              f"targets < {args.max_s:g} s and < {args.max_mb:g} MB: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
