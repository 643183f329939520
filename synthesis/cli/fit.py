"""``synthesis fit``: one Bayesian hierarchical model, sampled with PyMC/nutpie or computed exactly."""

from __future__ import annotations

import argparse

from synthesis.cli.common import add_input_arguments

MODELS = ("re", "bias", "metareg", "bias-metareg")
BIAS_VARIANTS = ("additive", "random", "downweight", "three-level")
ENGINES = ("pymc", "exact")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Model and prior arguments shared by ``fit`` and ``sweep``."""
    from models.priors import prior_help

    p.add_argument("--model", choices=MODELS, default="re", help="re (random effects), bias (design-bias adjusted), metareg, bias-metareg")
    p.add_argument("--bias-variant", choices=BIAS_VARIANTS, default="additive", help="how non-randomised studies are biased (bias models)")
    p.add_argument("--alpha", type=float, default=0.5, help="down-weighting factor in (0, 1] for --bias-variant downweight (variance of non-randomised studies divided by alpha)")
    p.add_argument("--covariate", action="append", default=[], metavar="C", help="covariate for the metareg models (repeatable)")
    p.add_argument("--mu-prior", metavar="SPEC", default=None, help="prior of mu, the log HR of a randomised comparison (default normal(0, 1))")
    p.add_argument("--tau-prior", metavar="SPEC", default=None, help="prior of tau, the between-study SD (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--bias-prior", metavar="SPEC", default=None, help="prior of delta, the design bias (default normal(0, 0.5))")
    p.add_argument("--kappa-prior", metavar="SPEC", default=None, help="prior of kappa, the SD of study-specific biases (--bias-variant random; default halfnormal(0.25))")
    p.add_argument("--beta-prior", metavar="SPEC", default=None, help="prior of each regression coefficient beta (default normal(0, 1))")
    p.add_argument("--threshold", action="append", type=float, default=None, metavar="T", help="report P(HR < T) (repeatable; default 0.8 and 1.0)")


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
    p.add_argument("--engine", choices=ENGINES, default="pymc", help="pymc (NUTS via nutpie) or exact (quadrature over tau; linear-Gaussian models only)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--target-accept", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--strict", action="store_true", help="exit with status 3 if sampling fails its diagnostics")
    p.add_argument("--out", metavar="DIR", default=None, help="write posterior.nc and fit.json here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("fit")
