"""``synthesis multiverse``: every combination of the curation switches x models x priors,
summarised as a specification curve and per-switch shifts."""

from __future__ import annotations

import argparse
import sys

from synthesis.base import DEFAULT_THRESHOLDS
from synthesis.cli.common import Once, add_input_arguments, threshold_arg, workers_arg
from synthesis.errors import InputError
from synthesis.specifications import (
    MULTIVERSE_BIAS_PRIORS,
    MULTIVERSE_MODELS,
    MULTIVERSE_TAU_PRIORS,
)

#: The command recorded in the marker of the folders ``multiverse --out`` writes.
OUTPUT_COMMAND = "multiverse"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "multiverse",
        help="multiverse: curation switches x models x priors, a specification curve",
        description="Fit every specification (each combination of the bundled dataset's curation switches,\n"
        "data/curation/switches.csv, x models x tau priors x bias priors) with the exact engine and\n"
        "report how P(HR < T) moves. On your own CSV only the model and prior dimensions apply.\n"
        "example: synthesis multiverse --threshold 0.8 --out multiverse --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument("--threshold", type=threshold_arg, action=Once, default=DEFAULT_THRESHOLDS[0], metavar="T",
                   help="T of P(HR < T), a hazard ratio > 0 (default %(default)s)")
    p.add_argument("--models", metavar="M,M,...", default=None,
                   help=f"models, comma-separated (default all: {', '.join(MULTIVERSE_MODELS)})")
    p.add_argument("--tau-priors", metavar="SPEC;SPEC;...", default=None,
                   help=f"tau priors, ';'-separated (default {'; '.join(MULTIVERSE_TAU_PRIORS)})")
    p.add_argument("--bias-priors", metavar="SPEC;SPEC;...", default=None,
                   help=f"bias priors of the bias model, ';'-separated (default {'; '.join(MULTIVERSE_BIAS_PRIORS)})")
    p.add_argument("--switch", action="append", default=[], metavar="NAME=ALT[,ALT]",
                   help="keep only these alternatives of a curation switch (repeatable; bundled data only)")
    p.add_argument("--workers", type=workers_arg, default=None, help="parallel processes, >= 1 (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None, help="send the fits to an existing Dask cluster")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write specifications.csv, multiverse.json and the specification curve here")
    p.set_defaults(handler=run)


def parse_switches(items: list[str]) -> dict[str, list[str]]:
    """``["khan_arm=R0,R1"]`` -> ``{"khan_arm": ["R0", "R1"]}`` (a repeated name is refused).

    Examples
    --------
    >>> parse_switches(["khan_arm=R0,R1", "posytive=as_printed"])
    {'khan_arm': ['R0', 'R1'], 'posytive': ['as_printed']}
    """
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, alts = item.partition("=")
        name = name.strip()
        values = [a.strip() for a in alts.split(",") if a.strip()]
        if not sep or not name or not values:
            raise InputError(f"--switch {item!r}: expected NAME=ALT[,ALT...], e.g. khan_arm=R0,R1")
        if name in out:
            raise InputError(f"--switch {name} given twice")
        out[name] = values
    return out


def _split(text: str | None, sep: str) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(sep) if t.strip()]


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_json, print_warnings
    from synthesis.specifications import run_multiverse
    from synthesis.studies import DEFAULT_SE_METHOD

    switches = parse_switches(args.switch)
    if args.file is None:
        if args.include_all:
            raise InputError("--include-all does not apply to the bundled data: its curation switches decide inclusion")
        if args.se_method != DEFAULT_SE_METHOD:
            if "se_method" in switches:
                raise InputError("give the SE method either as --se-method or as --switch se_method=..., not both")
            switches["se_method"] = [args.se_method]
        table = None
    else:
        table = load_table(args)
        print_warnings(table)
    if args.out:
        from synthesis.outputs import check_output_target

        check_output_target(args.out, OUTPUT_COMMAND)  # refuse before the fits, not after
    result = run_multiverse(
        table,
        threshold=args.threshold,
        switches=switches or None,
        models=_split(args.models, ","),
        tau_priors=_split(args.tau_priors, ";"),
        bias_priors=_split(args.bias_priors, ";"),
        subset=args.subset,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.quiet else None,
    )
    if args.out:
        _write(result, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(result)
    return 0


def _write(result, out: str) -> None:

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots.save import save_figure
    from synthesis.spreadsheets import write_csv

    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame(), tmp / "specifications.csv")
        write_json(result.to_json(), tmp / "multiverse.json")
        save_figure(result.plot_curve(), tmp / "specification_curve")
