"""``synthesis validate``: check a CSV of studies and print the normalised table."""

from __future__ import annotations

import argparse

import pandas as pd

from synthesis.cli.common import add_input_arguments, load_table, print_json

EXAMPLE = "example: synthesis validate studies.csv --json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a CSV of studies and print the normalised table",
        description="Validate a CSV of studies (hr/ci_lower/ci_upper[/ci_level] or log_hr/se) "
        "and print study, log_hr, se, design and covariates, with any warnings.\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument(
        "--covariate",
        action="append",
        default=[],
        metavar="C",
        help="numeric column to check and show (repeatable)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    table = load_table(args, covariates=tuple(args.covariate))
    if args.json:
        print_json(
            {
                "k": table.k,
                "source": table.source,
                "excluded": table.excluded,
                "studies": table.to_records(),
                "warnings": list(table.warnings),
            }
        )
        return 0
    frame = pd.DataFrame(table.to_records())
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(f"{table.source}: {table.k} studies" + (f" ({table.excluded} rows excluded by 'include')" if table.excluded else ""))
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if table.warnings:
        print(f"\n{len(table.warnings)} warning(s):")
        for w in table.warnings:
            print(f"  - {w}")
    return 0
