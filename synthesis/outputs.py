"""Writing outputs: strict-JSON conversion, and output folders written atomically (build
everything in a temporary sibling folder, then move it into place, so that an existing folder is
never half-overwritten and a failure leaves nothing behind)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` (rename), on error it is removed.

    The temporary folder lives next to ``target`` (same filesystem, so the final move is a rename).
    An existing ``target`` is moved aside first and deleted only after the new one is in place.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def jsonable(obj: Any) -> Any:
    """A strict-JSON copy: numpy scalars/arrays to Python, non-finite floats to null, paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _attr(value: Any) -> Any:
    """A NetCDF attribute: numbers and strings as they are, anything else as JSON text."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return json.dumps(jsonable(value))


def write_posterior(dt: Any, path: str | Path) -> None:
    """Write a posterior DataTree to NetCDF (h5netcdf); object-typed variables (nutpie's
    divergence messages) are dropped and attributes become strings or numbers."""
    import xarray as xr

    groups = {}
    for node in dt.subtree:
        ds = node.to_dataset(inherit=False)
        ds = ds.drop_vars([v for v in ds.data_vars if ds[v].dtype == object])
        ds.attrs = {k: _attr(v) for k, v in ds.attrs.items()}
        groups[node.path] = ds
    clean = xr.DataTree.from_dict(groups)
    clean.attrs = {k: _attr(v) for k, v in dt.attrs.items()}
    clean.to_netcdf(path, engine="h5netcdf")
