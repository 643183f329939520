"""The base layer: constants that the model layer (:mod:`synthesis.models`) and the pipeline
(loading, pooling, analysis, plots, report, CLI) share, defined once.

This module and :mod:`synthesis.errors` import nothing from the package, so both layers can use
them and the model layer never imports the pipeline.

Examples
--------
>>> from synthesis.base import INTERVAL_PROB, INTERVAL_LABEL, DEFAULT_THRESHOLDS
>>> INTERVAL_PROB, INTERVAL_LABEL, DEFAULT_THRESHOLDS
(0.95, '95%', (0.8, 1.0))
"""

from __future__ import annotations

#: Probability of every reported interval (equal-tailed credible, Wald or Knapp-Hartung
#: confidence, prediction): one constant, passed explicitly.
INTERVAL_PROB = 0.95
#: The same probability as printed ("95%").
INTERVAL_LABEL = f"{100 * INTERVAL_PROB:g}%"

#: Hazard-ratio thresholds T of P(HR < T) for ``fit`` and ``sweep`` unless the user gives others.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 1.0)
#: The thresholds of the main job's decision table (``run``/``report``).
DECISION_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)

#: Largest random seed: nutpie and PyMC both accept every integer in [0, SEED_MAX].
SEED_MAX = 2**32 - 1
#: The seed of every command and entry point unless the user gives another.
DEFAULT_SEED = 20261123

#: Study designs a table may name; ``rct`` is the reference (the effect ``mu`` is about).
DESIGNS: tuple[str, ...] = ("rct", "prospective", "retrospective")
REFERENCE_DESIGN = "rct"

#: How model parameters are printed in tables, captions and figure labels.
PARAMETER_SYMBOLS: dict[str, str] = {"mu": "μ", "tau": "τ", "delta": "δ", "kappa": "κ", "beta": "β"}
