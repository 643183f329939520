"""Doctests of the model layer, collected under its installed name.

``pyproject.toml`` runs every module's examples as doctests (``--doctest-modules`` over
``synthesis/`` and ``models/``). ``models/`` is installed and imported as ``synthesis.models``; by
path, pytest would import ``models/fit.py`` as a top-level ``models.fit``, a second copy of the
model layer. Here the folder is collected by :class:`ModelLayer`, which imports each file as
``synthesis.models.<name>`` instead, so no top-level ``models`` module ever exists.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

MODEL_LAYER = Path(__file__).resolve().parent / "models"


class ModelLayerDoctests(DoctestModule):
    """The doctests of one ``models/*.py`` file, imported as ``synthesis.models.<stem>``."""

    def _getobj(self) -> ModuleType:
        import synthesis  # noqa: F401  (maps models/ to synthesis.models in a checkout)

        stem = self.path.stem
        return importlib.import_module("synthesis.models" if stem == "__init__" else f"synthesis.models.{stem}")


class ModelLayer(pytest.Directory):
    """``models/``: doctests only (its tests live in ``tests/``)."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        if not self.config.option.doctestmodules:
            return []
        return [ModelLayerDoctests.from_parent(self, path=p) for p in sorted(self.path.glob("*.py"))]


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path.resolve() == MODEL_LAYER:
        return ModelLayer.from_parent(parent, path=path)
    return None
