"""``synthesis reconcile``: the published pooled HRs reproduced from their own inputs and walked
to this tool's answer one change at a time (:mod:`synthesis.reconcile`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthesis.cli.common import check_out, emit, threshold_arg
from synthesis.errors import InputError

#: The command recorded in the marker of the folders ``reconcile --out`` writes.
OUTPUT_COMMAND = "reconcile"
#: The figure ``--out`` writes (file stem; PNG and SVG).
FIGURE_STEM = "reconcile_ladder"
#: The tables ``--out`` writes: file name -> ``ReconcileResult.to_frame`` argument.
TABLES: dict[str, str] = {"reconcile_steps.csv": "steps", "published_pools.csv": "pools"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconcile",
        help="reproduce the published pooled HRs from their inputs and walk each to this tool's answer",
        description="For each published meta-analysis whose inputs the sources give, pool those inputs as the "
        "paper did (its orientation, CI level, SE method and estimator), say whether the printed HR and CI "
        "are reproduced within their printed rounding, then change one thing at a time (orientation, CI "
        "level, SE method, the tool's trial reports, added trials and studies, the estimator, then the "
        "Bayesian models: random effects, design-bias adjusted, model-averaged given an effect and with "
        "the spike at HR = 1). Published pools whose inputs are not in the sources are listed with the "
        "reason they cannot be reproduced. The ladder ends at the bundled dataset.\n"
        "example: synthesis reconcile --threshold 0.8 --out reconcile_out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pools", metavar="FILE", default=None,
                   help="JSON of published pools and their inputs (default: the bundled "
                   "data/curation/published_pools.json; same format)")
    p.add_argument("--threshold", action="append", type=threshold_arg, default=None, metavar="T",
                   help="report P(HR < T) of the Bayesian steps, T a hazard ratio > 0 (repeatable; default 0.8 and 1.0)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write reconcile_steps.csv, published_pools.csv, reconcile.json and the ladder figure "
                   f"({FIGURE_STEM}.png and .svg) here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.reconcile import load_published_pools, reconcile

    thresholds = tuple(args.threshold) if args.threshold else DEFAULT_THRESHOLDS
    if len(set(thresholds)) != len(thresholds):
        raise InputError(f"--threshold: each threshold once, got {', '.join(f'{t:g}' for t in thresholds)}")
    pools = load_published_pools(args.pools)
    out = check_out(args.out, OUTPUT_COMMAND) if args.out is not None else None
    result = reconcile(pools, thresholds=thresholds)
    return emit(result, as_json=args.json, out=out, write=_write)


def _write(result, out: Path) -> list[str]:

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots import save_figure
    from synthesis.plots.reconcile import plot_reconcile_ladder
    from synthesis.spreadsheets import write_csv

    names = [*TABLES, "reconcile.json"]
    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        for name, what in TABLES.items():
            write_csv(result.to_frame(what), tmp / name)
        write_json(result.to_json(), tmp / "reconcile.json")
        names += [p.name for p in save_figure(plot_reconcile_ladder(result), tmp / FIGURE_STEM)]
    return names
