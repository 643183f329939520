"""Evidence synthesis of log hazard ratios: validated study tables, frequentist pooling
(metafor-compatible), Bayesian hierarchical models (PyMC and an exact quadrature engine),
decision summaries, prior-sensitivity sweeps, plots and reports.

``import synthesis as syn`` is the front door (:mod:`synthesis.api`): every function takes the
studies (a :class:`StudyTable`, a DataFrame or a CSV path) and keyword arguments.

Examples
--------
>>> import synthesis as syn
>>> table = syn.load_dataset("dnmbc_lrt")
>>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
>>> print(f"HR {fit.hr.median:.2f} ({fit.hr.q025:.2f} to {fit.hr.q975:.2f})")
HR 0.91 (0.78 to 1.06)
"""

import functools
import importlib

from synthesis._source_layout import map_subpackages

# Before any other import: in a source checkout, models/ and data/ become synthesis.models and
# synthesis.bundled here, as the installed package maps them.
map_subpackages(__name__, __file__)

from synthesis.api import (  # noqa: E402
    analyse,
    average,
    bias_diagnostics,
    compare,
    fit,
    load_dataset,
    load_studies,
    metareg,
    multiverse,
    plan,
    pool,
    pool_multilevel,
    psense,
    reconcile_published,
    simulate,
    sweep,
    timeline,
    tipping,
    write_report,
)
from synthesis.errors import ConvergenceError, InputError, ModelError, SynthesisError  # noqa: E402
from synthesis.models.priors import PriorSpec, parse_prior  # noqa: E402
from synthesis.models.results import register_plotting  # noqa: E402
from synthesis.studies import StudyTable  # noqa: E402

# Fit results (model layer) draw their figures with synthesis.plots, imported when first used.
register_plotting(functools.partial(importlib.import_module, "synthesis.plots"))

__all__ = [
    "ConvergenceError",
    "InputError",
    "ModelError",
    "PriorSpec",
    "StudyTable",
    "SynthesisError",
    "analyse",
    "average",
    "bias_diagnostics",
    "compare",
    "fit",
    "load_dataset",
    "load_studies",
    "metareg",
    "multiverse",
    "parse_prior",
    "plan",
    "pool",
    "pool_multilevel",
    "psense",
    "reconcile_published",
    "simulate",
    "sweep",
    "timeline",
    "tipping",
    "write_report",
]
__version__ = "0.1.0"
