"""NUTS sampling of a built PyMC model: nutpie first, PyMC's own sampler as the fallback.

A fit here is compile-bound (see ``/work/shared/PERFORMANCE.md`` and
``benchmarks/bench_bayes.py``): nutpie compiles the log density once (numba backend) in several
seconds and then samples 4 x 1000 draws in well under a second. :class:`CompiledModel` keeps the
compiled function and re-samples it with new :func:`pymc.Data` values (prior hyperparameters of
the same family, or new data of the same shape) through nutpie's ``with_data``: a prior sweep
costs one compile plus one sampling run per prior instead of one compile per prior.

Two ways to hand a model to nutpie (:data:`COMPILE_MODES`): ``"cfunc"``, nutpie's own
:func:`nutpie.compile_pymc_model`, which wraps the log density in a numba C callback; and
``"pyfunc"`` (:func:`compile_pyfunc`), used for models whose gradient costs far more than a
Python call (the marginal form at large k): the log density is PyTensor's own numba function,
which PyTensor caches on disk, called through a thin ``nogil`` wrapper so that chains still run
in parallel threads. nutpie's C callback is recompiled from scratch in every process (measured
15-55 s for the marginal models on the shared 2-core machine, whatever k); the cached function
loads in 1-4 s once any process on the machine has compiled a model of the same structure (its
data are :func:`pymc.Data` containers, not constants, so another data set of the same shape of
model hits the same cache entry; e.g. the benchmark's k = 1,000 run warms it for k = 100,000),
and a cold compile took 13-21 s (see ``benchmarks/bench_scale.py``).

If nutpie cannot compile or sample the model, a notice goes to stderr and PyMC's NUTS
(:func:`pymc.sample`, 2 cores) is used instead; the result is the same kind of
:class:`xarray.DataTree` (groups ``posterior``, ``sample_stats`` with ``diverging``,
``observed_data`` and ``constant_data``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

# nutpie's mass-matrix adaptations are defined, with the reasons, in synthesis.models.spec (the
# CLI reads them there without importing PyMC); re-exported here.
from synthesis.models.spec import ADAPTATION_CHOICES as ADAPTATION_CHOICES
from synthesis.models.spec import ADAPTATIONS as ADAPTATIONS
from synthesis.models.spec import DEFAULT_ADAPTATION as DEFAULT_ADAPTATION

#: PERFORMANCE.md: with few randomised studies the bias models diverge at PyMC's default 0.8.
DEFAULT_TARGET_ACCEPT = 0.95
#: Chains run in parallel on at most this many cores (the machines here have 2).
DEFAULT_CORES = 2
#: How :meth:`CompiledModel.compile` hands a model to nutpie (see the module docstring).
COMPILE_MODES: tuple[str, ...] = ("cfunc", "pyfunc")

@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings (kept apart from the priors, which are part of the model)."""

    chains: int = 4
    draws: int = 2000
    tune: int = 1000
    seed: int | None = None
    target_accept: float = DEFAULT_TARGET_ACCEPT
    cores: int | None = None
    #: One nutpie adaptation per sampling run ("auto" is resolved by synthesis.models.pymc_fit.fit_pymc).
    adaptation: str = "diag"

    def __post_init__(self) -> None:
        from synthesis.errors import InputError
        from synthesis.models.spec import check_seed

        # A seed nutpie rejects would otherwise fall back to PyMC's sampler (or fail there too).
        object.__setattr__(self, "seed", check_seed(self.seed))
        if self.chains < 1:
            raise InputError(f"chains must be >= 1, got {self.chains}", parameter="chains")
        if self.draws < 1:
            raise InputError(f"draws must be >= 1, got {self.draws}", parameter="draws")
        if self.tune < 0:
            raise InputError(f"tune must be >= 0, got {self.tune}", parameter="tune")
        if not 0.0 < self.target_accept < 1.0:
            raise InputError(f"target_accept must be in (0, 1), got {self.target_accept:g}", parameter="target_accept")
        if self.adaptation not in ADAPTATIONS:
            raise InputError(f"adaptation must be one of {', '.join(ADAPTATIONS)}, got {self.adaptation!r}", parameter="adaptation")

    @property
    def n_cores(self) -> int:
        return max(1, min(self.chains, self.cores or min(DEFAULT_CORES, os.cpu_count() or 1)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "chains": self.chains,
            "draws": self.draws,
            "tune": self.tune,
            "seed": self.seed,
            "target_accept": self.target_accept,
            "cores": self.n_cores,
            "adaptation": self.adaptation,
        }


@dataclass
class Sampled:
    """The posterior of one sampling run and what it cost."""

    posterior: xr.DataTree
    sampler: str
    compile_s: float
    sample_s: float
    notes: list[str] = field(default_factory=list)


def _notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


#: One sampling at a time per process (see :meth:`CompiledModel.sample`).
_SAMPLING_LOCK = threading.RLock()


@dataclass(frozen=True)
class CompiledModel:
    """A PyMC model compiled once by nutpie; re-sampled with new data via :meth:`with_data`.

    Attributes
    ----------
    model
        The PyMC model.
    compiled
        nutpie's compiled model, or ``None`` when nutpie failed and PyMC's sampler is used.
    compile_s
        Seconds spent compiling (0 when nothing was compiled here).
    overrides
        :func:`pymc.Data` values that replace the model's (accumulated by :meth:`with_data`).
    """

    model: pm.Model
    compiled: Any
    compile_s: float
    backend: str = "numba"
    overrides: Mapping[str, np.ndarray] = field(default_factory=dict)
    fallback_reason: str | None = None

    @classmethod
    def compile(
        cls,
        model: pm.Model,
        *,
        backend: str = "numba",
        freeze: Sequence[str] | None = None,
        mode: str = "cfunc",
    ) -> CompiledModel:
        """Compile ``model`` with nutpie (``backend`` "numba", or "jax" when jax is installed).

        ``freeze`` names :func:`pymc.Data` containers to compile in as constants (with the
        dims: :func:`pymc.model.transform.optimization.freeze_dims_and_data`); they can then no
        longer be swapped by :meth:`with_data`. ``mode`` is one of :data:`COMPILE_MODES`
        (``"pyfunc"``: :func:`compile_pyfunc`, numba backend only; if it fails, nutpie's own
        compile is tried before PyMC's sampler).
        """
        import nutpie

        if mode not in COMPILE_MODES:
            raise ValueError(f"mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        start = time.perf_counter()
        if freeze:
            from pymc.model.transform.optimization import freeze_dims_and_data

            model = freeze_dims_and_data(model, data=list(freeze))
        if mode == "pyfunc" and backend == "numba":
            try:
                return cls(model, compile_pyfunc(model), time.perf_counter() - start, backend)
            except Exception as exc:  # noqa: BLE001 - nutpie's own compile is the fallback
                _notice(f"the cached numba log density could not be built ({type(exc).__name__}: {exc}); "
                        "compiling with nutpie instead")
        try:
            compiled = nutpie.compile_pymc_model(model, backend=backend)
        except Exception as exc:  # noqa: BLE001 - any nutpie failure falls back to PyMC
            reason = f"nutpie could not compile the model ({type(exc).__name__}: {exc})"
            _notice(reason + "; falling back to PyMC's NUTS sampler (slower)")
            return cls(model, None, time.perf_counter() - start, backend, {}, reason)
        return cls(model, compiled, time.perf_counter() - start, backend)

    @property
    def data_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.model.data_vars)

    def with_data(self, **updates: Any) -> CompiledModel:
        """The same compiled model with new values of named :func:`pymc.Data` containers
        (same shapes). Compile time is not repeated, so the copy reports ``compile_s = 0``."""
        unknown = set(updates) - set(self.data_names)
        if unknown:
            raise KeyError(f"no data container(s) {', '.join(sorted(unknown))} in the model")
        values = {}
        for name, value in updates.items():
            old = np.asarray(self.model[name].get_value())
            values[name] = np.asarray(value, dtype=old.dtype)
            if old.shape != values[name].shape:
                raise ValueError(f"data {name!r} has shape {old.shape}; got {values[name].shape}")
        compiled = self.compiled
        if compiled is not None and values:
            compiled = compiled.with_data(**values)
        return replace(self, compiled=compiled, compile_s=0.0, overrides={**self.overrides, **values})

    def _apply_overrides(self) -> dict[str, np.ndarray]:
        """Set the model's shared variables to this object's values; return the old ones."""
        old = {}
        for name, value in self.overrides.items():
            var = self.model[name]
            old[name] = var.get_value()
            var.set_value(np.asarray(value, dtype=old[name].dtype))
        return old

    def _restore(self, old: Mapping[str, np.ndarray]) -> None:
        for name, value in old.items():
            self.model[name].set_value(value)

    def sample(self, settings: SamplerSettings) -> Sampled:
        """Draw from the posterior (nutpie; PyMC's NUTS if nutpie is unavailable or fails).

        The data overrides are set on the PyMC model, which every copy made by
        :meth:`with_data` shares, and read there (nutpie's initial points, PyMC's sampler): two
        threads sampling copies at once (a threaded Dask worker, ``sweep --scheduler``) would
        read each other's priors. :data:`_SAMPLING_LOCK` makes the samplings of a process take
        turns, so a fit's numbers do not depend on what else runs; nutpie still runs a fit's
        chains on every core."""
        notes: list[str] = []
        if self.fallback_reason:
            notes.append(self.fallback_reason + "; sampled with PyMC's NUTS")
        with _SAMPLING_LOCK:
            return self._sample_with_overrides(settings, notes)

    def _sample_with_overrides(self, settings: SamplerSettings, notes: list[str]) -> Sampled:
        old = self._apply_overrides()
        try:
            if self.compiled is not None:
                try:
                    return self._sample_nutpie(settings, notes)
                except Exception as exc:  # noqa: BLE001
                    reason = f"nutpie failed while sampling ({type(exc).__name__}: {exc})"
                    _notice(reason + "; falling back to PyMC's NUTS sampler (slower)")
                    notes.append(reason + "; sampled with PyMC's NUTS")
            return self._sample_pymc(settings, notes)
        finally:
            self._restore(old)

    def _sample_nutpie(self, settings: SamplerSettings, notes: list[str]) -> Sampled:
        import nutpie
        from pymc.backends.arviz import patch_nutpie_idata

        start = time.perf_counter()
        dt = nutpie.sample(
            self.compiled,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.n_cores,
            seed=settings.seed,
            target_accept=settings.target_accept,
            adaptation=settings.adaptation,
            save_warmup=False,
            progress_bar=False,
        )
        elapsed = time.perf_counter() - start
        if not isinstance(dt, xr.DataTree):  # older nutpie returned InferenceData
            dt = _to_datatree(dt)
        patch_nutpie_idata(dt, self.model, elapsed)
        dt.attrs["sampler"] = "nutpie"
        return Sampled(dt, "nutpie", self.compile_s, time.perf_counter() - start, notes)

    def _sample_pymc(self, settings: SamplerSettings, notes: list[str]) -> Sampled:
        """PyMC's NUTS (its own diagonal mass-matrix adaptation; ``adaptation`` is nutpie's)."""
        start = time.perf_counter()
        dt = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.n_cores,
            random_seed=settings.seed,
            target_accept=settings.target_accept,
            progressbar=False,
            nuts_sampler="pymc",  # PyMC 6 would otherwise pick nutpie again when installed
            mp_ctx="forkserver",  # not fork: this process may already run threads (nutpie, BLAS)
            model=self.model,
        )
        if not isinstance(dt, xr.DataTree):
            dt = _to_datatree(dt)
        dt.attrs["sampler"] = "pymc"
        return Sampled(dt, "pymc", 0.0, time.perf_counter() - start, notes)


def _nogil_caller(jit_fn: Any, n_args: int) -> Any:
    """A numba function ``f(x, s0, ..., s{n-1})`` that calls the compiled ``jit_fn`` with the GIL
    released (PyTensor's functions keep it, which would run nutpie's chains one at a time)."""
    import numba

    names = ", ".join(["x", *(f"s{i}" for i in range(n_args))])
    namespace: dict[str, Any] = {"jit_fn": jit_fn}
    exec(f"def call({names}):\n    return jit_fn({names})\n", namespace)  # noqa: S102 - fixed template
    return numba.njit(nogil=True)(namespace["call"])


def compile_pyfunc(model: pm.Model) -> Any:
    """``model`` as a nutpie model whose log density and gradient are PyTensor's numba function.

    PyTensor compiles the log density and its gradient (the graph nutpie builds,
    ``nutpie.compile_pymc._make_functions``) into numba functions that it caches on disk
    (``pytensor.config.numba__cache``), keyed by the graph: the :func:`pymc.Data` containers are
    arguments, so a model of the same structure on other data, or a later process, loads the
    compiled code instead of compiling it again. nutpie calls it through a ``nogil`` numba
    wrapper (:func:`_nogil_caller`) from its sampler threads, with the containers' current
    values as keyword arguments (:meth:`nutpie.compiled_pyfunc.PyFuncModel.with_data` swaps
    them). The log density is the same function nutpie's own compile builds (the same graph
    and rewrites), so the draws are those of :func:`nutpie.compile_pymc_model` up to
    floating-point rounding. One Python call per gradient: meant for models whose gradient
    costs far more than that (the marginal models at large k).

    Examples
    --------
    Skipped here (a first compile on a machine takes seconds); tests/test_pymc_marginal.py
    checks the log density and gradient against PyMC's to 1e-9 (slow run).

    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0.0, 1.0)
    ...     _ = pm.Normal("y", mu, 1.0, observed=np.array([0.5, 1.5]))
    >>> compiled = compile_pyfunc(model)  # doctest: +SKIP
    >>> compiled.n_dim  # doctest: +SKIP
    1
    """
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords, _wrap_with_lock
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    pymc_initial = _wrap_with_lock(
        make_initial_point_fn(
            model=model, default_strategy="support_point", jitter_rvs=set(model.free_RVs), return_transformed=True
        )
    )
    n_dim, _, logp_pt, expand_pt, initial_point, shape_info, reparameterized = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=False, pymc_initial_point_fn=pymc_initial,
    )
    logp_names = [v.name for v in logp_pt.get_shared()]
    expand_names = [v.name for v in expand_pt.get_shared()]
    shared: dict[str, np.ndarray] = {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        shared[var.name] = np.array(var.get_value(), order="C", copy=True)
    logp_call = _nogil_caller(logp_pt.vm.jit_fn, len(logp_names))
    expand_fn = expand_pt.vm.jit_fn
    names, _, shapes = shape_info
    dtypes = [np.dtype("float64")] * len(names)
    # compile (or load from PyTensor's cache) now, not in the first sampler thread
    x0 = np.asarray(initial_point(0), dtype=float)
    logp_call(x0, *[shared[n] for n in logp_names])
    expand_fn(x0, *[shared[n] for n in expand_names])

    def make_logp_func() -> Any:
        def logp(x: np.ndarray, **data: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = logp_call(x, *[data[n] for n in logp_names])
            return float(value), np.asarray(grad, dtype="float64", order="C")

        return logp

    def make_expand_func(seed1: int, seed2: int, chain: int) -> Any:
        def expand(x: np.ndarray, **data: np.ndarray) -> dict[str, np.ndarray]:
            values = expand_fn(x, *[data[n] for n in expand_names])
            return {
                name: np.asarray(value, order="C", dtype=dtype).reshape(shape)
                for name, value, dtype, shape in zip(names, values, dtypes, shapes, strict=True)
            }

        return expand

    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_func,
        make_expand_fn=make_expand_func,
        make_initial_point_fn=initial_point,
        expanded_dtypes=dtypes,
        expanded_shapes=shapes,
        expanded_names=names,
        shared_data=shared,
        dims=dims,
        coords=coords,
        reparameterized_names=reparameterized,
    )


def _to_datatree(obj: Any) -> xr.DataTree:
    """Convert an ArviZ 0.x ``InferenceData`` (or anything arviz_base accepts) to a DataTree."""
    import arviz_base as azb

    return azb.convert_to_datatree(obj)


def sample_model(model: pm.Model, settings: SamplerSettings, *, backend: str = "numba") -> Sampled:
    """Compile ``model`` and sample it once."""
    return CompiledModel.compile(model, backend=backend).sample(settings)


def sampler_versions() -> dict[str, str]:
    """Versions of the packages a posterior depends on (recorded in its attributes).

    Examples
    --------
    >>> versions = sampler_versions()
    >>> [name in versions for name in ("pymc", "nutpie", "numpy", "python")]
    [True, True, True, True]
    >>> versions["pymc"] == pm.__version__
    True
    """
    import platform

    import arviz_base
    import arviz_stats
    import nutpie
    import pytensor

    versions = {
        "pymc": pm.__version__,
        "pytensor": pytensor.__version__,
        "nutpie": nutpie.__version__,
        "arviz_base": arviz_base.__version__,
        "arviz_stats": arviz_stats.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "python": platform.python_version(),
    }
    try:
        import arviz

        versions["arviz"] = arviz.__version__
    except ImportError:  # pragma: no cover - arviz_base/arviz_stats suffice
        pass
    return versions
