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
    raise NotImplementedError("report")
