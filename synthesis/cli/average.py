"""``synthesis average``: Bayesian model averaging over effect, design bias and heterogeneity
(exact marginal likelihoods; :mod:`synthesis.models.averaging`)."""

from __future__ import annotations

import argparse
import math
import re

from synthesis.cli.common import (
    add_cluster_arguments,
    add_input_arguments,
    check_cluster_arguments,
    load_table,
    print_json,
    print_warnings,
    threshold_arg,
)
from synthesis.errors import InputError, ModelError
from synthesis.models.spec import BIAS_VARIANTS

#: Model-layer parameter names -> the flags of this command (for error messages; the others are
#: translated by :func:`synthesis.cli.as_flags`).
_FLAGS = {"prior_prob": "--prior-prob", "bias_variants": "--bias-variants"}
_ASSIGNED = re.compile(r"\b(prior_prob|bias_variants)='([^']*)'")


def _as_flags(message: str, parameter: str | None) -> str:
    """``prior_prob: ...`` -> ``--prior-prob: ...`` and ``bias_variants='a,b'`` -> ``--bias-variants a,b``.

    Examples
    --------
    >>> _as_flags("prior_prob: effect must be a probability in [0, 1], got 2", "prior_prob")
    '--prior-prob: effect must be a probability in [0, 1], got 2'
    >>> _as_flags("use bias_variants='additive,downweight'", None)
    'use --bias-variants additive,downweight'
    """
    message = _ASSIGNED.sub(lambda m: f"{_FLAGS[m.group(1)]} {m.group(2)}", message)
    if parameter in _FLAGS and message.startswith(parameter):
        message = _FLAGS[parameter] + message[len(parameter):]
    return message


def _alpha(text: str) -> float:
    """``--alpha``: a number in (0, 1], whether or not the downweight variant is used.

    Examples
    --------
    >>> _alpha("0.5")
    0.5
    >>> _alpha("nan")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a number in (0, 1], got 'nan'
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.models.priors import prior_help

    p = sub.add_parser(
        "average",
        help="Bayesian model averaging: posterior model probabilities, inclusion Bayes factors, averaged HR",
        description="Average the models {mu = 0, mu free} x {delta = 0, delta free} x {tau = 0, tau free} "
        "(the bias dimension only when the table has randomised and non-randomised studies) with exact "
        "marginal likelihoods. Reports posterior model probabilities, inclusion Bayes factors and the "
        "model-averaged HR of a randomised comparison, with and without the spike at HR = 1 of the "
        "no-effect models.\n"
        "example: synthesis average --prior-prob effect=0.5,bias=0.5,heterogeneity=0.5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument("--mu-prior", metavar="SPEC", default=None, help="prior of mu when free (default normal(0, 1))")
    p.add_argument("--tau-prior", metavar="SPEC", default=None, help="prior of tau when free (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--bias-prior", metavar="SPEC", default=None, help="prior of delta when free (default normal(0, 0.5))")
    p.add_argument("--kappa-prior", metavar="SPEC", default=None, help="prior of kappa (random and three-level variants; default halfnormal(0.25))")
    p.add_argument("--bias-variant", choices=BIAS_VARIANTS, default="additive", help="the bias model of the 'bias free' models (default additive)")
    p.add_argument("--alpha", type=_alpha, default=0.5, help="down-weighting factor in (0, 1] for the downweight variant (checked even when that variant is not used)")
    p.add_argument(
        "--bias-variants", metavar="all|V1,V2", default=None,
        help="average over several bias variants: 'all' (additive, random, downweight, three-level) or a comma-separated list; "
        "the bias inclusion probability is split equally among them",
    )
    p.add_argument(
        "--prior-prob", metavar="C=P,...", default=None,
        help="prior inclusion probability per component, e.g. effect=0.5,bias=0.5,heterogeneity=0.5 (the default: "
        "all models equally likely); a model's prior probability is the product over components",
    )
    p.add_argument("--threshold", action="append", type=threshold_arg, default=None, metavar="T", help="report P(HR < T), T a hazard ratio > 0 (repeatable; default 0.8 and 1.0)")
    add_cluster_arguments(p, tau_within_prior=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.models.averaging import average_models
    from synthesis.models.priors import parse_prior, resolve_priors
    from synthesis.models.spec import ModelSpec

    check_cluster_arguments(args)
    priors = resolve_priors(
        {"mu": args.mu_prior, "tau": args.tau_prior, "delta": args.bias_prior, "kappa": args.kappa_prior}
    )
    # --cluster: every model of the space is multilevel; "no heterogeneity" fixes both tau
    # (between clusters) and tau_within at 0
    tau_within = parse_prior(args.tau_within_prior, "tau") if args.tau_within_prior is not None else None
    spec = ModelSpec(
        model="re", bias_variant=args.bias_variant, alpha=args.alpha, priors=priors,
        cluster=args.cluster, rho=args.rho, tau_within_prior=tau_within,
    )
    table = load_table(args)
    print_warnings(table, clustered=spec.multilevel)
    thresholds = tuple(args.threshold) if args.threshold else DEFAULT_THRESHOLDS
    try:
        result = average_models(
            table, spec, prior_prob=args.prior_prob, bias_variants=args.bias_variants, thresholds=thresholds
        )
    except (InputError, ModelError) as exc:
        raise type(exc)(_as_flags(str(exc), exc.parameter), parameter=exc.parameter) from None
    if args.json:
        out = result.to_json()
        if spec.multilevel:
            out["multilevel"] = multilevel_record(spec)
        print_json(out)
    else:
        print(result)
        if spec.multilevel:
            print(
                f"Multilevel: rows clustered by {spec.cluster!r}"
                + (f" (within-cluster sampling correlation rho = {spec.rho:g})" if spec.rho else "")
                + f"; in every model tau is the SD between clusters and tau_within ~ {spec.tau_within.label} "
                "the SD within; 'heterogeneity' means both are free, its absence both fixed at 0"
            )
    return 0


def multilevel_record(spec) -> dict:  # noqa: ANN001 (a ModelSpec)
    """The JSON record of a multilevel model choice: cluster column, rho and the tau_within prior."""
    return {
        "cluster": spec.cluster,
        "rho": spec.rho,
        "tau_within_prior": spec.tau_within.label,
        "heterogeneity": "tau (between clusters) and tau_within both free, or both fixed at 0",
    }
