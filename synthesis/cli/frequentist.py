"""``synthesis pool``, ``synthesis metareg`` and ``synthesis bias``: frequentist pooling that
matches metafor."""

from __future__ import annotations

import argparse
import sys

from synthesis.cli.common import (
    add_cluster_arguments,
    add_input_arguments,
    check_cluster_arguments,
    load_table,
    print_json,
    print_warnings,
)
from synthesis.errors import InputError
from synthesis.metaregression import metaregression_table
from synthesis.pooling import METHODS, pool_table
from synthesis.pubbias import bias_table
from synthesis.subgroups import pool_by_design


def add_parsers(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "pool",
        help="common-effect or random-effects pooling (metafor-compatible)",
        description="Pool log hazard ratios with a common-effect (FE) or random-effects model.\n"
        "example: synthesis pool studies.csv --method REML --hksj --json",
        formatter_class=raw,
    )
    add_input_arguments(p)
    p.add_argument("--method", choices=METHODS, default="REML", help="tau^2 estimator (default REML)")
    p.add_argument("--hksj", action="store_true", help="Hartung-Knapp-Sidik-Jonkman CI (t, k-1 df); with --cluster: t tests on k - p df without rescaling (rma.mv test=\"t\")")
    p.add_argument("--by-design", action="store_true", help="also pool by design (RCT vs non-randomised) with a test for subgroup differences")
    add_cluster_arguments(p)
    p.set_defaults(handler=run_pool)

    p = sub.add_parser(
        "metareg",
        help="mixed-effects meta-regression on study covariates",
        description="Mixed-effects meta-regression; rows missing a named covariate are dropped "
        "and counted.\nexample: synthesis metareg --covariate bone_only_fraction --json",
        formatter_class=raw,
    )
    add_input_arguments(p)
    p.add_argument("--covariate", action="append", required=True, metavar="C", help="numeric column (repeatable)")
    p.add_argument("--method", choices=METHODS, default="REML", help="residual tau^2 estimator (default REML)")
    p.add_argument("--hksj", action="store_true", help="Knapp-Hartung adjustment (t and F tests); with --cluster: t and F tests on k - p df without rescaling (rma.mv test=\"t\")")
    add_cluster_arguments(p)
    p.set_defaults(handler=run_metareg)

    p = sub.add_parser(
        "bias",
        help="publication-bias diagnostics (Egger, Begg, trim-and-fill, fail-safe N, leave-one-out)",
        description="Small-study and publication-bias diagnostics.\nexample: synthesis bias studies.csv --json",
        formatter_class=raw,
    )
    add_input_arguments(p)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="DL",
        help="tau^2 estimator of the fit the diagnostics use (default DL)",
    )
    p.set_defaults(handler=run_bias)


def _multilevel(args: argparse.Namespace, covariates: tuple[str, ...] = ()) -> int:
    """``pool``/``metareg --cluster``: the multilevel model (REML or ML; ``--hksj``: t tests
    with k - p df, as rma.mv(test = "t"))."""
    from synthesis.multilevel import MULTILEVEL_METHODS, pool_multilevel

    if args.method not in MULTILEVEL_METHODS:
        raise InputError(
            f"--cluster fits a multilevel model by REML or ML; --method {args.method} is not available for it"
        )
    if getattr(args, "by_design", False):
        raise InputError("--by-design is not available with --cluster")
    table = load_table(args, covariates=covariates)
    print_warnings(table, clustered=True)
    result = pool_multilevel(
        table, args.cluster, method=args.method, rho=args.rho, test="t" if args.hksj else "z", covariates=covariates
    )
    _print_result_warnings(table.source, result.warnings)
    if args.json:
        print_json(result.to_json())
        return 0
    print(result)
    return 0


def run_pool(args: argparse.Namespace) -> int:
    check_cluster_arguments(args)
    if args.cluster is not None:
        return _multilevel(args)
    table = load_table(args)
    print_warnings(table)
    result = pool_table(table, method=args.method, hksj=args.hksj)
    out = result.to_json()
    subgroups = pool_by_design(table, method=args.method, hksj=args.hksj) if args.by_design else None
    _print_result_warnings(table.source, result.warnings)
    for name, g in (subgroups.groups.items() if subgroups is not None else ()):
        _print_result_warnings(f"{table.source} [{name}]", g.warnings)
    if subgroups is not None:
        out["subgroups"] = subgroups.to_dict()
    if args.json:
        print_json(out)
        return 0
    print(result)
    if subgroups is not None:
        print()
        print(subgroups)
    return 0


def run_metareg(args: argparse.Namespace) -> int:
    covariates = tuple(dict.fromkeys(args.covariate))
    check_cluster_arguments(args)
    if args.cluster is not None:
        return _multilevel(args, covariates)
    table = load_table(args, covariates=covariates)
    print_warnings(table)
    result = metaregression_table(table, covariates, method=args.method, hksj=args.hksj)
    _print_result_warnings(table.source, result.warnings)
    if args.json:
        print_json(result.to_json())
        return 0
    print(result)
    return 0


def run_bias(args: argparse.Namespace) -> int:
    table = load_table(args)
    print_warnings(table)
    result = bias_table(table, method=args.method)
    if args.json:
        print_json(result.to_json())
        return 0
    print(result)
    return 0


def _print_result_warnings(source: str, warnings: tuple[str, ...]) -> None:
    """A result's warnings on stderr (also in its JSON ``warnings``), so that stdout stays clean."""
    for w in warnings:
        print(f"warning: {source}: {w}", file=sys.stderr)
