"""``synthesis report`` and ``synthesis run``: the main job."""

from __future__ import annotations

import argparse

from synthesis.analysis import DEFAULT_COVARIATE
from synthesis.base import DEFAULT_SEED
from synthesis.cli.common import (
    SEED_HELP,
    add_input_arguments,
    seed_arg,
    threshold_arg,
    workers_arg,
)
from synthesis.errors import InputError
from synthesis.studies import LOG_COLUMNS, RATIO_COLUMNS, StudyTable

#: Columns of a study table that are never covariates.
NOT_COVARIATES = frozenset({"study", "design", "line", "include", "cohort", "ci_level", *RATIO_COLUMNS, *LOG_COLUMNS})


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
    p.add_argument("--covariate", default=None, metavar="COLUMN", help=f"numeric column of the meta-regression (default {DEFAULT_COVARIATE}; without that column the meta-regression is skipped, with a note)")
    p.add_argument("--threshold", action="append", type=threshold_arg, default=None, metavar="T", help="decision threshold, a hazard ratio > 0 (repeatable; default 0.7 0.8 0.9 1.0)")
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.add_argument("--workers", type=workers_arg, default=None, help="processes running the prior sweeps, one model each, >= 1 (default 1: in this process)")
    p.add_argument("--operating-characteristics", action="store_true", help="add the operating characteristics of the decision rule to 'What would settle it?' (simulated evidence bases; synthesis simulate computes more)")
    p.add_argument("--quiet", action="store_true")


def numeric_columns(table: StudyTable) -> list[str]:
    """Columns of ``table`` that can be a covariate (numeric, not an effect or design column)."""
    import pandas as pd

    frame = table.frame
    return [c for c in frame.columns if c not in NOT_COVARIATES and pd.api.types.is_numeric_dtype(frame[c])]


def _check_covariate(name: str, table: StudyTable) -> str:
    """An explicit ``--covariate`` must name a column of the file (exit 2 otherwise)."""
    if name not in table.frame.columns:
        numeric = numeric_columns(table)
        listed = f"numeric columns: {', '.join(numeric)}" if numeric else "the file has no numeric covariate columns"
        raise InputError(f"--covariate {name}: no column named {name!r} in {table.source} ({listed})")
    return name


def run_report(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from synthesis.analysis import run_analysis
    from synthesis.base import DECISION_THRESHOLDS
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.datasets import DEFAULT_DATASET
    from synthesis.outputs import check_output_target, output_folder_name
    from synthesis.report import REPORT_COMMAND, console_decision_table, write_report

    thresholds = tuple(args.threshold or DECISION_THRESHOLDS)
    if args.covariate is None:
        table, covariate = load_table(args), DEFAULT_COVARIATE
    else:  # read once (100,000 rows take seconds); the loader checks every value of the column
        try:
            table, covariate = load_table(args, covariates=(args.covariate,)), args.covariate
        except InputError:
            _check_covariate(args.covariate, load_table(args))  # no such column: list the numeric ones
            raise
    print_warnings(table)
    name = DEFAULT_DATASET if args.file is None else Path(args.file).stem
    out = Path(args.out) if args.out else Path("reports") / output_folder_name(name, default="report")
    check_output_target(out, REPORT_COMMAND)  # refuse before the fits, not after
    from synthesis.datasets import dataset_path

    source_path = str(dataset_path(DEFAULT_DATASET) if args.file is None else Path(args.file).resolve())
    result = run_analysis(
        table,
        source_path=source_path,
        name=name,
        covariate=covariate,
        thresholds=thresholds,
        seed=args.seed,
        workers=args.workers,
        progress=False if args.quiet else None,
        operating_characteristics=args.operating_characteristics,
    )
    path = write_report(result, out)
    for w in result.warnings:
        if w not in table.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        print(f"report written to {path}/report.html ({result.timing.get('total_s', 0):.1f} s)")
        print(console_decision_table(result))
    return 0
