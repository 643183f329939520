"""``synthesis pool``, ``synthesis metareg`` and ``synthesis bias``: frequentist pooling that
matches metafor."""

from __future__ import annotations

import argparse

from synthesis.cli.common import add_input_arguments

METHODS = ("FE", "DL", "REML", "ML", "PM", "HE", "SJ")


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
    p.add_argument("--hksj", action="store_true", help="Hartung-Knapp-Sidik-Jonkman CI (t, k-1 df)")
    p.add_argument("--by-design", action="store_true", help="also pool by design (RCT vs non-randomised) with a test for subgroup differences")
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
    p.add_argument("--hksj", action="store_true", help="Knapp-Hartung adjustment (t and F tests)")
    p.set_defaults(handler=run_metareg)

    p = sub.add_parser(
        "bias",
        help="publication-bias diagnostics (Egger, Begg, trim-and-fill, fail-safe N, leave-one-out)",
        description="Small-study and publication-bias diagnostics.\nexample: synthesis bias studies.csv --json",
        formatter_class=raw,
    )
    add_input_arguments(p)
    p.set_defaults(handler=run_bias)


def run_pool(args: argparse.Namespace) -> int:
    raise NotImplementedError("pool")


def run_metareg(args: argparse.Namespace) -> int:
    raise NotImplementedError("metareg")


def run_bias(args: argparse.Namespace) -> int:
    raise NotImplementedError("bias")
