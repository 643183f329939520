"""Evidence synthesis of log hazard ratios: validated study tables, frequentist pooling
(metafor-compatible), Bayesian hierarchical models (PyMC and an exact quadrature engine),
decision summaries, prior-sensitivity sweeps, plots and reports."""

from synthesis.errors import ConvergenceError, InputError, SynthesisError
from synthesis.studies import StudyTable, load_studies

__all__ = [
    "ConvergenceError",
    "InputError",
    "StudyTable",
    "SynthesisError",
    "load_dataset",
    "load_studies",
]
__version__ = "0.1.0"


def load_dataset(name: str, **kwargs) -> StudyTable:
    """Load a bundled dataset by name (e.g. ``"dnmbc_lrt"``) as a validated study table."""
    from synthesis.datasets import load_dataset as _load

    return _load(name, **kwargs)
