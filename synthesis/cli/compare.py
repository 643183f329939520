"""``synthesis compare``: the bias variants weighed by leave-one-study-out cross-validation and
stacking, with the stacked HR of a randomised comparison (:func:`synthesis.models.loo.compare_variants`)."""

from __future__ import annotations

import argparse
import sys

from synthesis.base import DEFAULT_SEED
from synthesis.cli.common import (
    SEED_HELP,
    add_input_arguments,
    load_table,
    print_json,
    print_warnings,
    seed_arg,
)
from synthesis.cli.fit import add_model_arguments, build_spec
from synthesis.errors import ConvergenceError, InputError
from synthesis.models.averaging import ALL_VARIANTS, parse_bias_variants
from synthesis.models.fit import ENGINES
from synthesis.models.spec import BIAS_VARIANTS


def variants_arg(text: str) -> tuple[str, ...]:
    """``--bias-variants``: ``all`` or a comma-separated list of bias variants.

    Examples
    --------
    >>> variants_arg("all") == BIAS_VARIANTS, variants_arg("additive, downweight")
    (True, ('additive', 'downweight'))
    """
    try:
        return parse_bias_variants(text, ALL_VARIANTS)
    except InputError:
        raise argparse.ArgumentTypeError(
            f"must be {ALL_VARIANTS!r} or a comma-separated list of {', '.join(BIAS_VARIANTS)}, got {text!r}"
        ) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="weigh the bias variants by leave-one-study-out cross-validation and stacking",
        description="Fit each bias variant of the bias model, score it by leave-one-study-out\n"
        "cross-validation (PSIS-LOO, or exact LOO with --engine exact), weight the variants by\n"
        "stacking (Yao et al. 2018) and print the stacked HR and P(HR < T).\n"
        "With --cluster (a multilevel model) the unit left out is the cluster: exact\n"
        "leave-one-cluster-out, --engine exact only; the additive and downweight variants.\n"
        "example: synthesis compare --engine exact --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    # compare fits the bias model's variants: --model defaults to bias, and --bias-variant (one
    # variant, from fit's arguments) gives way to --bias-variants.
    p.set_defaults(model="bias", bias_variant=None)
    p.add_argument(
        "--bias-variants",
        type=variants_arg,
        default=BIAS_VARIANTS,
        metavar="all|V1,V2",
        help=f"bias variants to compare: {ALL_VARIANTS} or a comma-separated list (default: {ALL_VARIANTS}, {','.join(BIAS_VARIANTS)})",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="pymc",
        help="pymc (NUTS, PSIS-LOO; exact LOO as a check where possible) or exact (exact fits and "
        "exact LOO for every variant; random and three-level by 2-D quadrature)",
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.add_argument("--strict", action="store_true", help="exit with status 3 if any sampling fails its diagnostics")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.models.loo import compare_variants

    if args.bias_variant is not None:
        raise InputError("compare takes --bias-variants (a comma-separated list), not --bias-variant")
    if args.model not in ("bias", "bias-metareg"):
        raise InputError(
            f"compare weighs the variants of the bias models: --model must be bias or bias-metareg, got {args.model}"
        )
    args.bias_variant = BIAS_VARIANTS[0]  # build_spec needs one; compare_variants sets each in turn
    spec = build_spec(args)
    table = load_table(args, covariates=spec.covariates)
    print_warnings(table, clustered=spec.multilevel)
    thresholds = tuple(args.threshold) if args.threshold else DEFAULT_THRESHOLDS
    result = compare_variants(
        table,
        spec,
        variants=args.bias_variants,
        engine=args.engine,
        thresholds=thresholds,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        seed=args.seed,
    )
    if not result.converged:
        bar = "!" * 78
        lines = [bar, "WARNING: THE SAMPLER DID NOT CONVERGE FOR SOME VARIANTS - DO NOT USE THESE NUMBERS AS THEY ARE", bar]
        lines += [f"  - {w}" for w in result.warnings() if "did not converge" in w]
        lines.append(bar)
        print("\n".join(lines), file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(result)
    if not result.converged and args.strict:
        raise ConvergenceError("sampling failed its diagnostics and --strict was given")
    return 0
