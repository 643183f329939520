"""``synthesis fit``: one Bayesian hierarchical model, sampled with PyMC/nutpie or computed exactly."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from synthesis.base import DEFAULT_SEED
from synthesis.cli.common import (
    SEED_HELP,
    add_cluster_arguments,
    add_input_arguments,
    check_cluster_arguments,
    check_out,
    load_table,
    print_json,
    print_warnings,
    seed_arg,
    threshold_arg,
)
from synthesis.errors import ConvergenceError, ModelError
from synthesis.models.fit import ENGINES
from synthesis.models.spec import ADAPTATION_CHOICES, BIAS_VARIANTS, DEFAULT_ADAPTATION, MODELS
from synthesis.outputs import atomic_directory, write_json, write_posterior

if TYPE_CHECKING:
    from synthesis.models.results import FitResult
    from synthesis.models.spec import ModelSpec

#: The command recorded in the marker of the folders ``fit --out`` writes.
OUTPUT_COMMAND = "fit"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Model and prior arguments shared by ``fit`` and ``sweep``."""
    from synthesis.models.priors import prior_help

    p.add_argument("--model", choices=MODELS, default="re", help="re (random effects), bias (design-bias adjusted), metareg, bias-metareg")
    p.add_argument("--bias-variant", choices=BIAS_VARIANTS, default="additive", help="how non-randomised studies are biased (bias models)")
    p.add_argument("--alpha", type=float, default=0.5, help="down-weighting factor in (0, 1] for --bias-variant downweight (variance of non-randomised studies divided by alpha)")
    p.add_argument("--covariate", action="append", default=[], metavar="C", help="covariate for the metareg models (repeatable)")
    p.add_argument("--mu-prior", metavar="SPEC", default=None, help="prior of mu, the log HR of a randomised comparison (default normal(0, 1))")
    p.add_argument("--tau-prior", metavar="SPEC", default=None, help="prior of tau, the between-study SD (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--bias-prior", metavar="SPEC", default=None, help="prior of delta, the design bias (default normal(0, 0.5))")
    p.add_argument("--kappa-prior", metavar="SPEC", default=None, help="prior of kappa, the SD of study-specific biases (--bias-variant random; default halfnormal(0.25))")
    p.add_argument("--beta-prior", metavar="SPEC", default=None, help="prior of each regression coefficient beta (default normal(0, 1))")
    p.add_argument("--threshold", action="append", type=threshold_arg, default=None, metavar="T", help="report P(HR < T), T a hazard ratio > 0 (repeatable; default 0.8 and 1.0)")
    add_cluster_arguments(p, tau_within_prior=True)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a Bayesian random-effects / bias / meta-regression model",
        description="Fit a Bayesian hierarchical model of log hazard ratios.\n"
        "example: synthesis fit --model bias --tau-prior 'halfnormal(0.5)' --threshold 0.8 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    p.add_argument("--at", action="append", default=[], metavar="C=X", help="metareg: HR at covariate value(s), e.g. bone_only_fraction=0.5 (repeatable)")
    p.add_argument("--engine", choices=ENGINES, default=None, help="pymc (NUTS via nutpie; the default) or exact (quadrature over tau; linear-Gaussian models only; the default with --cluster, where pymc also fits the multilevel model, with covariates imputed)")
    p.add_argument("--no-effect", action="store_true", help="fix mu = 0 (HR 1 in a randomised comparison): the null model of a Bayes factor for an effect; --engine exact only")
    p.add_argument("--common-effect", action="store_true", help="fix tau = 0 (no between-study heterogeneity); --engine exact only")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--target-accept", type=float, default=None, help="NUTS target acceptance (default 0.95; 0.99 for the random and three-level bias variants and when covariate values are imputed; 0.8 for many studies, whose effects the model integrates out, except three-level)")
    p.add_argument("--adaptation", choices=ADAPTATION_CHOICES, default=DEFAULT_ADAPTATION, help="nutpie mass-matrix adaptation: auto (default: low_rank, which gives 5-8x the ESS of mu/delta/beta in the bias meta-regressions, resampled with diag if it fails its diagnostics), low_rank or diag")
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.add_argument("--strict", action="store_true", help="exit with status 3 if sampling fails its diagnostics")
    p.add_argument("--out", metavar="DIR", default=None, help="write posterior.nc and fit.json here")
    p.set_defaults(handler=run)


#: Model-layer keyword -> the ``fit`` flag that sets it (in error messages).
FIXED_FLAGS: dict[str, str] = {"effect=False": "--no-effect", "heterogeneity=False": "--common-effect"}


def build_spec(args: argparse.Namespace) -> ModelSpec:
    """The model specification the arguments describe (priors = defaults | the user's;
    ``--no-effect`` / ``--common-effect`` where the command has them)."""
    from synthesis.models.priors import parse_prior, resolve_priors
    from synthesis.models.spec import ModelSpec

    check_cluster_arguments(args)
    tau_within = getattr(args, "tau_within_prior", None)
    priors = resolve_priors(
        {
            "mu": args.mu_prior,
            "tau": args.tau_prior,
            "delta": args.bias_prior,
            "kappa": args.kappa_prior,
            "beta": args.beta_prior,
        }
    )
    return ModelSpec(
        model=args.model,
        bias_variant=args.bias_variant,
        alpha=args.alpha,
        covariates=tuple(dict.fromkeys(args.covariate)),
        priors=priors,
        effect=not getattr(args, "no_effect", False),
        heterogeneity=not getattr(args, "common_effect", False),
        cluster=getattr(args, "cluster", None),
        rho=getattr(args, "rho", 0.0),
        tau_within_prior=parse_prior(tau_within, "tau") if tau_within is not None else None,
    )


def run(args: argparse.Namespace) -> int:
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.models.fit import fit

    spec = build_spec(args)
    table = load_table(args, covariates=spec.covariates)
    print_warnings(table, clustered=spec.multilevel)
    thresholds = tuple(args.threshold) if args.threshold else DEFAULT_THRESHOLDS
    out_dir = check_out(args.out, OUTPUT_COMMAND) if args.out else None
    engine = args.engine or ("exact" if spec.multilevel else "pymc")
    try:
        result = fit(
            table,
            spec,
            engine=engine,
            thresholds=thresholds,
            at=args.at,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            seed=args.seed,
            target_accept=args.target_accept,
            adaptation=args.adaptation,
        )
    except ModelError as exc:  # the model layer names keywords (effect=False); say the flags
        message = str(exc)
        for keyword, flag in FIXED_FLAGS.items():
            message = message.replace(keyword, flag)
        raise ModelError(message, parameter=exc.parameter) from exc
    converged = result.diagnostics is None or result.diagnostics.converged
    if not converged:
        _shout(result)
    failed_strict = not converged and args.strict
    # Write before printing: if --out cannot be written the command fails (exit 2) without
    # having printed results as if it had succeeded.
    written = write_fit(result, out_dir) if out_dir is not None and not failed_strict else None
    if args.json:
        print_json(fit_json(result))
    else:
        print(result)
        if spec.multilevel:
            print(multilevel_lines(result))
    if failed_strict:
        raise ConvergenceError(
            "sampling failed its diagnostics and --strict was given"
            + ("; nothing was written to --out" if out_dir else "")
            + ": " + "; ".join(result.diagnostics.messages)
        )
    if written is not None:
        print(f"wrote {', '.join(p.name for p in written)} to {out_dir}", file=sys.stderr)
    return 0


def fit_json(result: FitResult) -> dict:
    """The ``fit --json`` document: :meth:`FitResult.to_json` (for a multilevel model with
    ``tau_within`` beside ``tau``, the between-cluster SD, and ``cluster``, ``rho`` and the
    tau_within prior)."""
    return result.to_json()


def multilevel_lines(result: FitResult) -> str:
    """The multilevel part of a fit's printout (the variances' meaning and tau_within)."""
    spec = result.spec
    tw = result.parameters.get("tau_within")
    text = (
        f"Multilevel: rows clustered by {spec.cluster!r}"
        + (f" (within-cluster sampling correlation rho = {spec.rho:g})" if spec.rho else "")
        + "; tau is the SD between clusters, tau_within the SD of rows within a cluster"
    )
    if tw is not None and spec.heterogeneity:
        text += (
            f"\n  tau_within: median {tw.median:.3f} (95% CrI {tw.q025:.3f}-{tw.q975:.3f}); "
            f"prior {spec.tau_within.label}"
        )
    return text


def _shout(result: FitResult) -> None:
    """Non-convergence, loudly, on stderr."""
    d = result.diagnostics
    bar = "!" * 78
    lines = [bar, "WARNING: THE SAMPLER DID NOT CONVERGE - DO NOT USE THESE NUMBERS AS THEY ARE", bar]
    lines += [f"  - {m}" for m in d.messages]
    lines.append(bar)
    print("\n".join(lines), file=sys.stderr)


def write_fit(result: FitResult, out_dir: Path) -> list[Path]:
    """Write fit.json (and posterior.nc for the PyMC engine) into ``out_dir`` atomically.

    Both files are written into a temporary directory next to ``out_dir`` which is then renamed
    into place (:func:`synthesis.outputs.atomic_directory`), so a reader never sees a
    half-written result. Only a missing or empty folder, or an earlier ``fit --out`` output, is
    replaced; anything else, and a destination that cannot be written, is an ``InputError``.
    """
    out_dir = Path(out_dir)
    names = ["fit.json"]
    with atomic_directory(out_dir, command=OUTPUT_COMMAND) as tmp:
        write_json(fit_json(result), tmp / "fit.json")
        if result.posterior is not None:
            write_posterior(result.posterior, tmp / "posterior.nc")
            names.append("posterior.nc")
    return [out_dir / n for n in names]
