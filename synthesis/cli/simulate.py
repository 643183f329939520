"""``synthesis simulate``: operating characteristics of the decision rule P(HR < T) > level over
a grid of truths, for the design-bias model, the naive pool and the RCTs alone (issue #14)."""

from __future__ import annotations

import argparse

from synthesis.base import DEFAULT_SEED
from synthesis.cli.common import (
    SEED_HELP,
    Once,
    add_input_arguments,
    check_out,
    emit,
    int_at_least,
    probability_arg,
    seed_arg,
    threshold_arg,
    workers_arg,
)
from synthesis.cli.plan import _number_list
from synthesis.errors import InputError

#: The command recorded in the marker of the folders ``simulate --out`` writes.
OUTPUT_COMMAND = "simulate"


#: Simulated truths on the HR scale lie between 1/HR_MOST and HR_MOST, SDs (log scale) up to
#: SD_MOST: beyond them every simulated study is degenerate (and the tau grid cannot hold them).
HR_MOST = 100.0
SD_MOST = 5.0


def _sd_list(text: str) -> list[float]:
    """Comma-separated SDs >= 0."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not (0.0 <= value <= SD_MOST):
            raise argparse.ArgumentTypeError(f"must be a comma-separated list of SDs from 0 to {SD_MOST:g}, got {text!r}")
        values.append(value)
    return values


def _sd(text: str) -> float:
    """One SD >= 0 (``--tau``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0.0 <= value <= SD_MOST):
        raise argparse.ArgumentTypeError(f"must be an SD from 0 to {SD_MOST:g}, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.models.operating import (
        DEFAULT_BIAS_MEANS,
        DEFAULT_BIAS_SDS,
        DEFAULT_N_SIM,
        DEFAULT_TRUE_HRS,
    )
    from synthesis.models.preposterior import RULE_LEVEL, RULE_THRESHOLD
    from synthesis.models.priors import prior_help
    from synthesis.simulation import MAX_N_SIM

    def listed(values: tuple[float, ...]) -> str:
        return ",".join(f"{v:g}" for v in values)

    p = sub.add_parser(
        "simulate",
        help="operating characteristics of the decision rule over simulated evidence bases",
        description=(
            "Simulate evidence bases shaped like the input (its SEs and designs) under a grid of "
            "truths (true randomised HR; bias factor b of the non-randomised studies on the HR "
            "scale and its study-to-study SD on the log scale), analyse each exactly with the "
            "design-bias model, the naive pool of all studies and the randomised studies alone, "
            "and report how often 'recommend if P(HR < T) > level' recommends: at a true HR of 1 "
            "the error rate; at a true HR of T the boundary of the rule's claim (about 1 - level "
            "when calibrated); below T the power. Results do not depend on --workers or --scheduler "
            "(each replicate's seed is spawned from --seed by scenario and replicate index).\n"
            "example: synthesis simulate --true-hr 1,0.8 --bias-mean 1,0.7 --bias-sd 0.1 --n-sim 2000 --workers 2 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument("--true-hr", type=_number_list("hazard ratios", most=HR_MOST), default=list(DEFAULT_TRUE_HRS), metavar="HR,...",
                   help=f"true randomised HRs (default {listed(DEFAULT_TRUE_HRS)})")
    p.add_argument("--bias-mean", type=_number_list("bias factors", most=HR_MOST), default=list(DEFAULT_BIAS_MEANS), metavar="B,...",
                   help=f"bias factors b of non-randomised studies, HR scale, 1 = unbiased (default {listed(DEFAULT_BIAS_MEANS)})")
    p.add_argument("--bias-sd", type=_sd_list, default=list(DEFAULT_BIAS_SDS), metavar="SD,...",
                   help=f"study-to-study SDs of the bias, log scale (default {listed(DEFAULT_BIAS_SDS)})")
    p.add_argument("--n-sim", type=int_at_least(1), default=DEFAULT_N_SIM, metavar="N",
                   help=f"simulated evidence bases per scenario, 1 to {MAX_N_SIM} (default %(default)s)")
    p.add_argument("--tau", type=_sd, default=0.0, metavar="SD",
                   help="true between-study SD of the simulated effects, log scale (default 0)")
    p.add_argument("--threshold", type=threshold_arg, action=Once, default=RULE_THRESHOLD, metavar="T",
                   help="the rule's HR threshold T (default %(default)s)")
    p.add_argument("--level", type=probability_arg, default=RULE_LEVEL, metavar="P",
                   help="the rule recommends when P(HR < T) > P (default %(default)s)")
    p.add_argument("--mu-prior", metavar="SPEC", default=None, help="prior of mu (default normal(0, 1); normal)")
    p.add_argument("--tau-prior", metavar="SPEC", default=None, help="prior of tau (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--bias-prior", metavar="SPEC", default=None, help="prior of delta in the design-bias model (default normal(0, 0.5))")
    p.add_argument("--bias-variant", choices=("additive", "downweight"), default="additive",
                   help="design-bias analysis: additive bias term, or down-weighted non-randomised studies")
    p.add_argument("--alpha", type=float, default=0.5, help="down-weighting factor in (0, 1] (--bias-variant downweight)")
    p.add_argument("--common-effect", action="store_true", help="analyse with tau fixed at 0 (common-effect models)")
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.add_argument("--workers", type=workers_arg, default=1, help="local worker processes, >= 1 (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None, help="run the jobs on an existing Dask cluster (tcp://HOST:PORT)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", metavar="DIR", default=None, help="write simulate.csv and simulate.json here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.models.priors import resolve_priors
    from synthesis.models.spec import ModelData, ModelSpec
    from synthesis.simulation import run_simulation

    priors = resolve_priors({"mu": args.mu_prior, "tau": args.tau_prior, "delta": args.bias_prior})
    spec = ModelSpec("bias", bias_variant=args.bias_variant, alpha=args.alpha, priors=priors,
                     heterogeneity=not args.common_effect)
    table = load_table(args)
    print_warnings(table)
    from synthesis.models.averaging import has_bias_dimension

    if not has_bias_dimension(table):
        raise InputError(
            f"{table.source}: simulate needs a 'design' column with both randomised and non-randomised "
            "studies (it compares the design-bias model, the naive pool and the randomised studies alone)"
        )
    data = ModelData.from_table(table, spec)
    out = check_out(args.out, OUTPUT_COMMAND) if args.out is not None else None
    result = run_simulation(
        data, spec, true_hrs=args.true_hr, bias_means=args.bias_mean, bias_sds=args.bias_sd, n_sim=args.n_sim,
        tau=args.tau, threshold=args.threshold, level=args.level, seed=args.seed, workers=args.workers,
        scheduler=args.scheduler, progress=False if args.quiet else None,
    )
    return emit(result, as_json=args.json, out=out, write=_write)


def _write(result, out) -> list[str]:  # noqa: ANN001

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.spreadsheets import write_csv

    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame(), tmp / "simulate.csv")
        write_json(result.to_json(), tmp / "simulate.json")
    return ["simulate.csv", "simulate.json"]
