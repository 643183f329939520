"""The default 'auto' mass-matrix adaptation: low-rank first, diagonal if that run fails its
diagnostics (same compiled model), and the result says so."""

from __future__ import annotations

import pytest

import synthesis.models.pymc_fit as pf
from synthesis.datasets import load_dataset
from synthesis.models.spec import ModelData, ModelSpec


@pytest.mark.slow
def test_auto_adaptation_falls_back_to_diag(monkeypatch):
    used = []
    original = pf.CompiledModel.sample

    def recording(self, settings):
        used.append(settings.adaptation)
        return original(self, settings)

    monkeypatch.setattr(pf.CompiledModel, "sample", recording)
    spec = ModelSpec("re")
    data = ModelData.from_table(load_dataset("dnmbc_lrt"), spec)
    # 20 draws after 5 tuning steps cannot pass the ESS check: both runs happen.
    fit = pf.fit_pymc(data, spec, chains=2, draws=20, tune=5, seed=1)
    assert used == ["low_rank", "diag"]
    assert fit.diagnostics is not None and not fit.diagnostics.converged
    assert any("diagonal mass-matrix adaptation" in n for n in fit.notes)

    used.clear()
    fit = pf.fit_pymc(data, spec, chains=2, draws=20, tune=5, seed=1, adaptation="diag")
    assert used == ["diag"]
