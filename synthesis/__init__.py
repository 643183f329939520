"""Evidence synthesis of log hazard ratios: validated study tables, frequentist pooling
(metafor-compatible), Bayesian hierarchical models (PyMC and an exact quadrature engine),
decision summaries, prior-sensitivity sweeps, plots and reports."""

from synthesis._source_layout import map_subpackages

# Before any other import: in a source checkout, models/ and data/ become synthesis.models and
# synthesis.bundled here, as the installed package maps them.
map_subpackages(__name__, __file__)

from synthesis.errors import ConvergenceError, InputError, SynthesisError  # noqa: E402
from synthesis.studies import StudyTable, load_studies  # noqa: E402

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
