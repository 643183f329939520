"""Make a source checkout import as the installed package does.

``pyproject.toml`` installs the top-level folders ``models/`` as ``synthesis.models`` and ``data/``
as ``synthesis.bundled`` (setuptools ``package-dir``). A checkout that is not installed
(``python -m pytest`` from the repository, a notebook next to it) has no such mapping, so
:func:`map_subpackages` registers the two folders under their installed names when, and only when,
the import system cannot already find them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: installed subpackage name -> folder at the top of the source tree
SUBPACKAGES: dict[str, str] = {"models": "models", "bundled": "data"}


def map_subpackages(package: str, package_file: str) -> None:
    """Register each folder of :data:`SUBPACKAGES` as ``package.<name>`` in a source checkout.

    Examples
    --------
    Once ``synthesis`` is imported the subpackages are importable under their installed names, and
    a second call changes nothing:

    >>> import importlib.util
    >>> import synthesis
    >>> map_subpackages("synthesis", synthesis.__file__)
    >>> importlib.util.find_spec("synthesis.bundled") is not None
    True
    """
    root = Path(package_file).resolve().parent.parent
    for name, folder in SUBPACKAGES.items():
        full = f"{package}.{name}"
        if full in sys.modules or importlib.util.find_spec(full) is not None:
            continue
        init = root / folder / "__init__.py"
        if not init.is_file():
            continue
        spec = importlib.util.spec_from_file_location(full, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
