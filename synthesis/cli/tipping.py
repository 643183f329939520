"""``synthesis tipping``: where the answer flips as the design-bias prior and the weight of the
non-randomised studies change (issue #11)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthesis.cli.common import (
    add_input_arguments,
    check_out,
    emit,
    int_at_least,
    probability_arg,
    threshold_arg,
)
from synthesis.errors import InputError

#: The command recorded in the marker of the folders ``tipping --out`` writes.
OUTPUT_COMMAND = "tipping"
#: Figures written by ``--out`` (file stems; PNG and SVG each).
FIGURE_STEMS: tuple[str, str] = ("tipping_map", "alpha_curve")


class _Once(argparse.Action):
    """Store an option's value, refusing the option when given twice (exit 2): ``tipping``
    analyses one threshold; a repeated ``--threshold`` must not silently keep the last."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        seen = getattr(namespace, "_given_once", set())
        if self.dest in seen:
            raise argparse.ArgumentError(
                self, f"given more than once (now {values!r}); tipping analyses one value: run it once per value"
            )
        namespace._given_once = seen | {self.dest}
        setattr(namespace, self.dest, values)


def grid_arg(text: str) -> tuple[int, int]:
    """``--grid``: ``N`` (N bias means x N bias SDs) or ``NxM`` (N means x M SDs), each >= 2."""
    parts = text.lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"must be N or NxM with integers >= 2 (e.g. 40 or 40x30), got {text!r}")
    from synthesis.models.tipping import MAX_GRID_SIDE

    if max(sizes) > MAX_GRID_SIDE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_GRID_SIDE} a side (e.g. 40 or 40x30), got {text!r}")
    return sizes  # type: ignore[return-value]


#: ``--alpha-points``: an integer >= 2.
count_arg = int_at_least(2)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.models.priors import prior_help
    from synthesis.models.tipping import (
        BIAS_MEAN_RANGE,
        BIAS_SD_RANGE,
        DEFAULT_ALPHA_POINTS,
        DEFAULT_GRID,
        DEFAULT_LEVEL,
        DEFAULT_THRESHOLD,
        MAX_GRID_SIDE,
    )

    p = sub.add_parser(
        "tipping",
        help="tipping point: for which design-bias priors and weights P(HR < T) crosses a level",
        description=(
            "Fit the design-bias model (bias, additive variant: theta_i = mu + delta nr_i + tau z_i) "
            "exactly over a grid of bias priors delta ~ N(log b, sd^2), where b (the bias prior's "
            "mean) is on the HR scale: the factor by which a non-randomised study's HR is believed "
            f"to be multiplied by its design bias (b from {BIAS_MEAN_RANGE[0]:g} to {BIAS_MEAN_RANGE[1]:g}; "
            f"1 = unbiased) and sd is the prior SD of that bias on the log-HR scale ({BIAS_SD_RANGE[0]:g} "
            f"to {BIAS_SD_RANGE[1]:g}). Reports P(HR < T) of a randomised comparison at each grid point, "
            "the contour where it crosses --level, a sentence (for a bias prior centred on no bias, "
            "b = 1: which SDs give P(HR < T) above the level, stated as the 95% prior interval of "
            "the bias factor; then on which side of b = 1, and over which b and SDs, the grid is "
            "above the level too), and the down-weighting "
            "curve (alpha = 0: randomised studies only; 1: every study pooled as equal).\n"
            "In --json and the CSV files, bias_mean is the bias factor b on the HR scale while bias_sd "
            "is the prior SD of log b (log-HR scale).\n"
            "example: synthesis tipping --threshold 0.8 --level 0.5 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument("--threshold", type=threshold_arg, action=_Once, default=DEFAULT_THRESHOLD, metavar="T",
                   help="the decision threshold T of P(HR < T), a hazard ratio > 0; give it once "
                   "(one threshold per run; default %(default)s)")
    p.add_argument("--level", type=probability_arg, default=DEFAULT_LEVEL, metavar="P",
                   help="the probability level whose crossing is the tipping point, in (0, 1) (default %(default)s)")
    p.add_argument("--grid", type=grid_arg, default=DEFAULT_GRID, metavar="N|NxM",
                   help=f"grid size: N, or N bias means x M bias SDs, each from 2 to {MAX_GRID_SIDE} "
                   f"(default {DEFAULT_GRID[0]}x{DEFAULT_GRID[1]})")
    p.add_argument("--alpha-points", type=count_arg, default=DEFAULT_ALPHA_POINTS, metavar="N",
                   help="points of the down-weighting curve, alpha = (i/(N-1))^2 from 0 to 1 (default %(default)s)")
    p.add_argument("--mu-prior", metavar="SPEC", default=None,
                   help="prior of mu, the log HR of a randomised comparison (default normal(0, 1); must be normal)")
    p.add_argument("--tau-prior", metavar="SPEC", default=None,
                   help="prior of tau, the between-study SD (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write tipping.csv, contour.csv, alpha_curve.csv, tipping.json and the two figures (PNG and SVG) here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.models.priors import resolve_priors
    from synthesis.models.spec import ModelData, ModelSpec
    from synthesis.models.tipping import tipping_analysis

    priors = resolve_priors({"mu": args.mu_prior, "tau": args.tau_prior})
    table = load_table(args)
    print_warnings(table)
    if not table.has_design:
        raise InputError(
            f"{table.source}: a tipping-point analysis needs a 'design' column "
            "(rct / prospective / retrospective) with both randomised and non-randomised studies"
        )
    data = ModelData.from_table(table, ModelSpec("re", priors=priors))
    out = check_out(args.out, OUTPUT_COMMAND) if args.out is not None else None
    result = tipping_analysis(
        data, priors, threshold=args.threshold, level=args.level, grid=args.grid, alpha_points=args.alpha_points
    )
    return emit(result, as_json=args.json, out=out, write=_write)


def _write(result, out: Path) -> list[str]:

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots import save_figure
    from synthesis.plots.tipping import plot_alpha_curve, plot_tipping_map
    from synthesis.spreadsheets import write_csv

    names = ["tipping.csv", "contour.csv", "alpha_curve.csv", "tipping.json"]
    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame("grid"), tmp / "tipping.csv")
        write_csv(result.to_frame("contour"), tmp / "contour.csv")
        write_csv(result.to_frame("alpha"), tmp / "alpha_curve.csv")
        write_json(result.to_json(), tmp / "tipping.json")
        for stem, plot in zip(FIGURE_STEMS, (plot_tipping_map, plot_alpha_curve), strict=True):
            names += [p.name for p in save_figure(plot(result), tmp / stem)]
    return names
