"""Bundled datasets, shipped as package data (``data/`` in the source tree, installed as
``synthesis.bundled``) and found with :mod:`importlib.resources` from any working directory."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthesis.errors import InputError
from synthesis.studies import StudyTable, load_studies

#: name -> (file in the bundle, one-line description)
DATASETS: dict[str, tuple[str, str]] = {
    "dnmbc_lrt": (
        "dnmbc_lrt.csv",
        "Locoregional treatment vs none in de novo stage IV breast cancer, overall survival",
    ),
    "dnmbc_lrt_all_inputs": (
        "dnmbc_lrt_all_inputs.csv",
        "The same question, every input with a usable HR (several per cohort; cluster column "
        "'cohort'; built by data/build_all_inputs.py)",
    ),
}
DEFAULT_DATASET = "dnmbc_lrt"


def dataset_path(name: str = DEFAULT_DATASET) -> Path:
    """Filesystem path of a bundled dataset's CSV.

    Examples
    --------
    >>> dataset_path("dnmbc_lrt").name
    'dnmbc_lrt.csv'
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; bundled: {', '.join(sorted(DATASETS))}")
    resource = resources.files("synthesis.bundled") / DATASETS[name][0]
    path = Path(str(resource))
    if not path.is_file():
        raise InputError(f"bundled dataset {name!r} is missing from the installation ({path})")
    return path


def load_dataset(name: str = DEFAULT_DATASET, **kwargs) -> StudyTable:
    """Load a bundled dataset as a validated :class:`StudyTable` (keyword arguments as in
    :func:`synthesis.studies.load_studies`).

    Examples
    --------
    >>> t = load_dataset("dnmbc_lrt")
    >>> t.k, t.excluded, t.studies[0]
    (17, 42, 'Badwe 2015 (TATA)')
    >>> load_dataset("dnmbc_lrt", subset="rct").k
    5
    >>> load_dataset("dnmbc_lrt_all_inputs").k
    30
    """
    kwargs.setdefault("display_name", f"{name} (bundled {DATASETS.get(name, ('?',))[0]})")
    return load_studies(dataset_path(name), **kwargs)
