"""Time ``synthesis reconcile`` against one exact fit measured in the same run.

Run:  python benchmarks/bench_reconcile.py [--repeat 5] [--cli] [--json]

Reports

* ``fit_ms``: the baseline, one :func:`synthesis.models.exact.fit_exact` of the design-bias model
  on the bundled dnMBC studies (k = 17);
* ``reconcile_s``: :func:`synthesis.reconcile.reconcile` (12 published pools: the reproductions,
  every data rung of the 4 ladders and the model rungs, i.e. the random-effects and bias exact
  fits and the 8-model average), target < 2 s; ``reconcile_over_fit`` the ratio;
* ``figure_s``: drawing the ladder figure and writing it as PNG and SVG;
* with ``--cli``: ``cli_s``, the wall time of ``synthesis reconcile --json`` as a fresh process
  (interpreter start and imports included) and ``cli_out_s`` of ``synthesis reconcile --out``.

A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_time

from synthesis.datasets import load_dataset
from synthesis.models.exact import fit_exact
from synthesis.models.spec import ModelData, ModelSpec
from synthesis.reconcile import reconcile


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="also time the command as a fresh process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    table = load_dataset()
    spec = ModelSpec("bias")
    data = ModelData.from_table(table, spec)
    fit_s = median_time(lambda: fit_exact(data, spec), args.repeat)
    rec_s = median_time(reconcile, args.repeat)

    import matplotlib

    matplotlib.use("Agg")
    from synthesis.plots import save_figure
    from synthesis.plots.reconcile import plot_reconcile_ladder

    result = reconcile()
    with tempfile.TemporaryDirectory() as tmp:
        fig_s = median_time(lambda: save_figure(plot_reconcile_ladder(result), Path(tmp) / "ladder"),
                            max(1, args.repeat // 2))
        out = {
            "k": table.k,
            "fit_ms": 1e3 * fit_s,
            "reconcile_s": rec_s,
            "reconcile_over_fit": rec_s / fit_s,
            "figure_s": fig_s,
        }
        if args.cli:
            exe = str(Path(sys.executable).with_name("synthesis"))
            out["cli_s"] = _wall([exe, "reconcile", "--json"])
            out["cli_out_s"] = _wall([exe, "reconcile", "--out", str(Path(tmp) / "out")])
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"one exact fit (bias model, k = {out['k']}): {out['fit_ms']:.1f} ms")
    print(f"reconcile (12 pools, 4 ladders): {out['reconcile_s']:.3f} s  "
          f"({out['reconcile_over_fit']:.1f} x one fit; target < 2 s)")
    print(f"ladder figure, PNG + SVG: {out['figure_s']:.2f} s")
    if args.cli:
        print(f"synthesis reconcile --json (fresh process): {out['cli_s']:.2f} s; --out: {out['cli_out_s']:.2f} s")


if __name__ == "__main__":
    main()
