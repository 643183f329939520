"""``synthesis pool``, ``synthesis metareg`` and ``synthesis bias``: frequentist pooling that
matches metafor."""

from __future__ import annotations

import argparse
import math
import sys

from synthesis.cli.common import add_input_arguments, load_table, print_json, print_warnings
from synthesis.metaregression import metaregression_table
from synthesis.pooling import PoolResult, pool
from synthesis.pubbias import bias_table
from synthesis.subgroups import pool_by_design

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
    p.add_argument(
        "--method",
        choices=METHODS,
        default="DL",
        help="tau^2 estimator of the fit the diagnostics use (default DL)",
    )
    p.set_defaults(handler=run_bias)


def run_pool(args: argparse.Namespace) -> int:
    table = load_table(args)
    print_warnings(table)
    result = pool(table.y, table.v, method=args.method, hksj=args.hksj)
    out = result.to_dict()
    subgroups = pool_by_design(table, method=args.method, hksj=args.hksj) if args.by_design else None
    _print_result_warnings(table.source, result.warnings)
    for name, g in (subgroups.groups.items() if subgroups is not None else ()):
        _print_result_warnings(f"{table.source} [{name}]", g.warnings)
    if subgroups is not None:
        out["subgroups"] = subgroups.to_dict()
    if args.json:
        print_json(out)
        return 0
    print(f"{table.source}: k = {result.k}" + (f" ({table.excluded} rows excluded by 'include')" if table.excluded else ""))
    print(_pool_text(result))
    if subgroups is not None:
        print("\nBy design (random effects with a separate tau^2 per subgroup; Q_between of the "
              "subgroup estimates):")
        for name, g in subgroups.groups.items():
            print(f"  {name:<14} k = {g.k:<3} HR {_hr_ci(g.estimate, g.ci_lower, g.ci_upper)}"
                  f"  tau^2 = {g.tau2:.4g}, I^2 = {g.i2:.1f}%")
        if subgroups.q_between is not None:
            print(f"  Test for subgroup differences: Q_between = {subgroups.q_between:.3f} on "
                  f"{subgroups.df} df, {_peq(subgroups.p)}")
        for n in subgroups.notes:
            print(f"  note: {n}")
    return 0


def run_metareg(args: argparse.Namespace) -> int:
    covariates = tuple(dict.fromkeys(args.covariate))
    table = load_table(args, covariates=covariates)
    print_warnings(table)
    result = metaregression_table(table, covariates, method=args.method, hksj=args.hksj)
    _print_result_warnings(table.source, result.warnings)
    if args.json:
        print_json(result.to_dict())
        return 0
    kind = "Fixed-effects" if result.method == "FE" else f"Mixed-effects ({result.method})"
    adj = ", Knapp-Hartung" if result.hksj else ""
    print(f"{table.source}: {kind} meta-regression{adj}, k = {result.k}"
          + (f" ({result.dropped} dropped for a missing covariate)" if result.dropped else ""))
    stat = "t" if result.hksj else "z"
    print(f"  {'coefficient':<24}{'estimate':>10}{'SE':>10}{'95% CI':>22}{stat:>9}{'p':>9}")
    for name, c in result.coefficients.items():
        ci = f"{c.ci_lower:.4f} to {c.ci_upper:.4f}"
        print(f"  {name:<24}{c.estimate:>10.4f}{c.se:>10.4f}{ci:>22}{c.statistic:>9.3f}{_p(c.pvalue):>9}")
    test = "F" if result.hksj else "QM"
    df = f"{result.qm_df[0]} and {result.qm_df[1]}" if result.hksj else f"{result.qm_df[0]}"
    print(f"  Test of moderators: {test} = {result.qm:.3f} on {df} df, {_peq(result.qm_pvalue)}")
    print(f"  Residual heterogeneity: tau^2 = {result.tau2:.4g}, I^2 = {result.i2:.1f}%, "
          f"QE = {result.qe:.3f} on {result.k - len(result.coefficients)} df, {_peq(result.qe_pvalue)}"
          + (f", R^2 = {result.r2:.1f}%" if result.r2 is not None else ""))
    for n in result.notes:
        print(f"  note: {n}")
    return 0


def run_bias(args: argparse.Namespace) -> int:
    table = load_table(args)
    print_warnings(table)
    result = bias_table(table, method=args.method)
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"{table.source}: small-study / publication-bias diagnostics on the {result.method} fit, k = {result.k}")
    if result.egger is not None:
        e = result.egger
        print(f"  Egger's regression test: z = {e.z:.3f}, {_peq(e.p)} "
              f"(limit estimate HR {_hr_ci(e.limit_estimate, e.limit_ci_lower, e.limit_ci_upper)})")
    if result.begg is not None:
        b = result.begg
        print(f"  Begg & Mazumdar rank correlation: Kendall's tau = {b.tau:.3f}, {_peq(b.p)} "
              f"({'exact' if b.exact else 'normal approximation'})")
    if result.trimfill is not None:
        t = result.trimfill
        print(f"  Trim and fill (L0): {t.k0} {'study' if t.k0 == 1 else 'studies'} filled on the {t.side}; "
              f"HR {_hr_ci(t.estimate, t.ci_lower, t.ci_upper)}")
    print(f"  Rosenthal's fail-safe N: {result.failsafe_n.rosenthal} "
          f"(alpha = {result.failsafe_n.alpha:g}, combined {_peq(result.failsafe_n.p)})")
    if result.leave_one_out:
        print("  Leave-one-out (HR, 95% CI, tau^2):")
    width = max((len(r.study) for r in result.leave_one_out), default=0)
    for r in result.leave_one_out:
        print(f"    without {r.study:<{width}}  {_hr_ci(r.estimate, r.ci_lower, r.ci_upper)}  {r.tau2:.4g}")
    for n in result.notes:
        print(f"  note: {n}")
    return 0


def _print_result_warnings(source: str, warnings: tuple[str, ...]) -> None:
    """A result's warnings on stderr (also in its JSON ``warnings``), so that stdout stays clean."""
    for w in warnings:
        print(f"warning: {source}: {w}", file=sys.stderr)


def _p(p: float | None) -> str:
    """A p-value for a table column."""
    if p is None or not math.isfinite(p):
        return "NA"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _peq(p: float | None) -> str:
    """``p = 0.0123`` or ``p < 0.0001`` for running text."""
    text = _p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _hr_ci(est: float, lo: float, hi: float) -> str:
    def f(x: float) -> str:
        return f"{math.exp(x):.3f}" if math.isfinite(x) else "NA"

    return f"{f(est)} ({f(lo)} to {f(hi)})"


def _pool_text(r: PoolResult) -> str:
    if r.method == "FE":
        head = "Common-effect (inverse-variance) model"
    else:
        head = f"Random-effects model, tau^2 by {r.method}"
    if r.hksj:
        head += f", Hartung-Knapp-Sidik-Jonkman CI (t, {r.df} df)"
    stat = "t" if r.hksj else "z"
    level = f"{100 * r.level:g}%"
    lines = [
        head,
        f"  pooled HR {_hr_ci(r.estimate, r.ci_lower, r.ci_upper)} [{level} CI]; log HR {r.estimate:.4f} "
        f"(SE {r.se:.4f}), {stat} = {r.statistic:.3f}, {_peq(r.pvalue)}",
        f"  {level} prediction interval: HR {math.exp(r.pi_lower):.3f} to {math.exp(r.pi_upper):.3f}",
    ]
    tau_ci = ""
    if r.tau2_ci_lower is not None and r.tau2_ci_upper is not None:
        tau_ci = f" ({level} CI {r.tau2_ci_lower:.4g} to {r.tau2_ci_upper:.4g})"
    lines.append(
        f"  heterogeneity: tau^2 = {r.tau2:.4g}{tau_ci}, tau = {r.tau:.4g}, I^2 = {r.i2:.1f}%, "
        f"H^2 = {r.h2:.3f}, Q = {r.q:.3f} on {r.q_df} df ({_peq(r.q_pvalue)})"
    )
    lines.extend(f"  note: {n}" for n in r.notes)
    return "\n".join(lines)
