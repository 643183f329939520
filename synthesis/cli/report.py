"""``synthesis report`` and ``synthesis run``: the main job."""

from __future__ import annotations

import argparse

from synthesis.cli.common import add_input_arguments


def add_parsers(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "report",
        help="decision summaries, sweeps, plots and a self-contained report for a CSV of studies",
        description="Fit the standard set of models and write reports/<name>/ (report.html, report.md, "
        "CSV tables, figures, posteriors, run.json).\nexample: synthesis report studies.csv --out reports/mine",
        formatter_class=raw,
    )
    add_input_arguments(p, json_flag=False)
    _common(p)
    p.set_defaults(handler=run_report)

    p = sub.add_parser(
        "run",
        help="everything, on the bundled dnMBC dataset (or FILE)",
        description="The main job: the report on the bundled dnMBC dataset.\nexample: synthesis run",
        formatter_class=raw,
    )
    add_input_arguments(p, json_flag=False)
    _common(p)
    p.set_defaults(handler=run_report)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None, help="report folder (default reports/<name>)")
    p.add_argument("--covariate", default="bone_only_fraction", help="covariate of the meta-regression model")
    p.add_argument("--threshold", action="append", type=float, default=None, metavar="T", help="decision thresholds (default 0.7 0.8 0.9 1.0)")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--quiet", action="store_true")


def run_report(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from synthesis.analysis import DECISION_THRESHOLDS, run_analysis
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.datasets import DEFAULT_DATASET
    from synthesis.outputs import check_output_target, output_folder_name
    from synthesis.report import write_report

    thresholds = tuple(args.threshold or DECISION_THRESHOLDS)
    if any(not t > 0 for t in thresholds):
        from synthesis.errors import InputError

        raise InputError("--threshold values must be hazard ratios > 0")
    table = load_table(args)
    print_warnings(table)
    name = DEFAULT_DATASET if args.file is None else Path(args.file).stem
    out = Path(args.out) if args.out else Path("reports") / output_folder_name(name, default="report")
    check_output_target(out, "report")  # refuse before the fits, not after
    from synthesis.datasets import dataset_path

    source_path = str(dataset_path(DEFAULT_DATASET) if args.file is None else Path(args.file).resolve())
    result = run_analysis(
        table,
        source_path=source_path,
        name=name,
        covariate=args.covariate,
        thresholds=thresholds,
        seed=args.seed,
        workers=args.workers,
        progress=False if args.quiet else None,
    )
    path = write_report(result, out)
    for w in result.warnings:
        if w not in table.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        print(f"report written to {path}/report.html ({result.timing.get('total_s', 0):.1f} s)")
        frame = result.decision.to_frame()
        cols = ["model", "engine", "k", "hr_median", "hr_q025", "hr_q975"] + [
            c for c in frame.columns if c.startswith("p_hr_below_")
        ]
        print("posterior median HR with 95% equal-tailed credible interval; P(HR < T):")
        print(frame[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0
