"""Writing outputs: strict-JSON conversion, and output folders that never destroy a user's file.

Every command that writes a folder (``fit --out``, ``sweep --out``, ``report``/``run``) goes
through :func:`atomic_directory`, which follows one rule:

* the output folder is created new, or replaced only when it is recognisably an earlier output
  of the same command: it carries the marker file :data:`MARKER_NAME` that this module writes
  into every output folder, and every file in it is one the marker lists (an existing empty
  folder may be used too: nothing is lost). Anything else is refused with an
  :class:`~synthesis.errors.InputError` (exit 2) that says what is there and how to proceed;
* everything is built in a temporary sibling folder ``.<name>.tmp-<hex>`` (created with
  ``os.mkdir``, so the umask applies as to any other file the user creates) and renamed into
  place, so an existing output is never half-overwritten and a failure leaves nothing behind;
* the earlier output is moved aside to ``.<name>.old-<hex>`` and then only the files its marker
  lists are deleted, so a file that was not ours survives even a race;
* temporary folders a killed run left beside the target are removed by the next run into the
  same place, but only those that carry our marker;
* a read-only or full destination is an :class:`~synthesis.errors.InputError`, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from synthesis.errors import InputError

#: The marker file written into every output folder (and first thing into every temporary one).
MARKER_NAME = ".synthesis-output.json"
#: The commands that write output folders (the ``command`` recorded in the marker).
OUTPUT_COMMANDS: tuple[str, ...] = ("fit", "sweep", "report", "tipping", "reconcile", "plan", "timeline", "simulate", "multiverse")
#: How many names an error message lists before it says "...".
_SHOWN = 5
#: Sibling temporary folders: ``.<name>.tmp-<hex>`` (being built), ``.<name>.old-<hex>`` (moved aside).
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}")
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}


def output_folder_name(stem: str, default: str) -> str:
    """A safe folder name derived from an input file's stem.

    Parameters
    ----------
    stem
        The name to derive from (e.g. ``Path(file).stem``).
    default
        The name used when nothing usable is left.

    Returns
    -------
    str
        ``stem`` with path separators, spaces and other odd characters replaced by ``_``, and
        leading dots, dashes and underscores removed (so never ``.``, ``..``, a hidden name or
        an option-like name); ``default`` if nothing is left.

    Examples
    --------
    >>> output_folder_name("my studies (v2)", "run"), output_folder_name(".hidden", "run")
    ('my_studies_v2', 'hidden')
    >>> output_folder_name("..", "run")
    'run'
    """
    name = re.sub(r"[^\w.+-]+", "_", stem).lstrip("._-").rstrip("._")
    return name[:100] or default


def check_output_target(target: str | Path, command: str) -> Path:
    """Refuse an output folder that :func:`atomic_directory` must not replace.

    Call it before a long computation so the user learns of the problem at once;
    :func:`atomic_directory` calls it again before it writes.

    Parameters
    ----------
    target
        The output folder the user asked for.
    command
        The command writing it, one of :data:`OUTPUT_COMMANDS`.

    Returns
    -------
    Path
        The absolute (symlink-resolved) path of ``target``.

    Raises
    ------
    InputError
        If ``target`` is the working folder or contains it, is a file, or is a folder that is not
        empty and not an earlier output of ``command`` (marker present, every file listed in it).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     new = check_output_target(Path(d) / "out", "fit")
    ...     _ = (Path(d) / "notes.txt").write_text("mine")
    ...     check_output_target(d, "fit")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: output folder ... exists and holds 1 file that synthesis did not write (notes.txt)...
    """
    if command not in OUTPUT_COMMANDS:
        raise ValueError(f"unknown output command {command!r}")
    shown = str(target)
    try:
        path = Path(target).resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:
        raise InputError(f"output folder {shown}: cannot resolve the path ({exc})") from exc
    if path == cwd or path in cwd.parents:
        where = "the folder you are working in" if path == cwd else "a folder that contains the one you are working in"
        raise InputError(
            f"output folder {shown} is {where}; synthesis writes its output into a folder of its "
            "own and never replaces that one: choose a new folder with --out"
        )
    if not os.path.lexists(path):
        return path
    if not path.is_dir() or path.is_symlink():
        raise InputError(
            f"output folder {shown} exists and is a file, not a folder; synthesis will not replace "
            "it: choose a new folder with --out, or move the file away yourself"
        )
    try:
        entries = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in path.iterdir())
    except OSError as exc:
        raise InputError(f"output folder {shown} cannot be read ({_reason(exc)}): choose a new folder with --out") from exc
    if not entries:
        return path
    marker = _read_marker(path)
    if marker is None or marker.get("state") != "complete":
        raise InputError(
            f"output folder {shown} exists and holds {_count(entries)} that synthesis did not write "
            f"({_names(entries)}); refusing to replace it: choose a new folder with --out, or move or "
            "remove its contents yourself"
        )
    if marker.get("command") != command:
        raise InputError(
            f"output folder {shown} holds the output of 'synthesis {marker.get('command')}', not of "
            f"'synthesis {command}'; refusing to replace it: choose a new folder with --out"
        )
    foreign = _foreign_files(path, marker)
    if foreign:
        raise InputError(
            f"output folder {shown} is an earlier 'synthesis {command}' output but also holds "
            f"{_count(foreign)} that synthesis did not write ({_names(foreign)}); refusing to "
            "replace it: move those out, or choose a new folder with --out"
        )
    return path


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, command: str) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``target``, on error it is removed.

    Parameters
    ----------
    target
        The output folder. It may be missing, an empty folder, or an earlier output of the same
        ``command``; anything else is refused (see :func:`check_output_target`).
    command
        The command writing the folder, one of :data:`OUTPUT_COMMANDS`; recorded in the marker.

    Yields
    ------
    Path
        A new folder next to ``target`` (same file system, so the final move is a rename) that
        already holds the marker file. Write the output into it.

    Raises
    ------
    InputError
        If ``target`` may not be replaced, or the destination cannot be written (read-only,
        full, permission denied); nothing is left behind and an earlier output stays as it was.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     target = Path(d) / "out"
    ...     with atomic_directory(target, command="fit") as tmp:
    ...         _ = (tmp / "summary.txt").write_text("done")
    ...     sorted(p.name for p in target.iterdir())
    ['.synthesis-output.json', 'summary.txt']
    """
    path = check_output_target(target, command)
    shown = str(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(shown, exc) from exc
    _clean_leftovers(path)
    tmp = _make_temp(path, command, shown)
    try:
        yield tmp
        _write_marker(tmp, command, state="complete", files=_files_under(tmp))
        check_output_target(target, command)  # the folder may have changed during a long run
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(shown, exc) from exc
        raise
    old = None
    try:
        if os.path.lexists(path):
            old = _sibling(path, "old")
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as exc:
        if old is not None and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(shown, exc) from exc
    if old is not None and not _remove_ours(old):
        print(f"note: kept {old}: it holds files synthesis did not write", file=sys.stderr)


def _sibling(path: Path, kind: str) -> Path:
    """A fresh name ``.<name>.<kind>-<hex>`` next to ``path`` (nothing exists there)."""
    while True:
        candidate = path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}")
        if not os.path.lexists(candidate):
            return candidate


def _make_temp(path: Path, command: str, shown: str) -> Path:
    """Create the temporary folder (umask permissions) and write the marker into it first."""
    while True:
        tmp = _sibling(path, "tmp")
        try:
            os.mkdir(tmp)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(shown, exc) from exc
    try:
        _write_marker(tmp, command, state="temporary")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(shown, exc) from exc
    return tmp


def _write_marker(folder: Path, command: str, *, state: str, files: list[str] | None = None) -> None:
    from synthesis import __version__

    doc: dict[str, Any] = {"tool": "synthesis", "command": command, "version": __version__, "state": state}
    if files is None:
        doc["pid"] = os.getpid()
    else:
        doc["files"] = files
    (folder / MARKER_NAME).write_text(json.dumps(doc, indent=2) + "\n")


def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder`` if it is a valid one of ours, else None."""
    marker = folder / MARKER_NAME
    try:
        if marker.is_symlink() or not marker.is_file():
            return None
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != "synthesis" or doc.get("command") not in OUTPUT_COMMANDS:
        return None
    if doc.get("state") == "complete" and not (
        isinstance(doc.get("files"), list) and all(isinstance(f, str) for f in doc["files"])
    ):
        return None
    return doc


def _files_under(folder: Path) -> list[str]:
    """Every non-folder entry under ``folder`` (symlinks not followed), relative, except the marker."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        names = files + [d for d in dirs if os.path.islink(os.path.join(root, d))]
        found += [(rel / n).as_posix() for n in names]
    return sorted(f for f in found if f != MARKER_NAME)


def _foreign_files(folder: Path, marker: Mapping[str, Any]) -> list[str]:
    """Files under ``folder`` that ``marker`` does not list (that synthesis did not write)."""
    ours = set(marker.get("files") or ())
    return [f for f in _files_under(folder) if f not in ours]


def _remove_ours(folder: Path) -> bool:
    """Delete the files the marker of ``folder`` lists, then the folders left empty.

    Returns True if ``folder`` is gone; anything synthesis did not write stays where it is.
    """
    marker = _read_marker(folder)
    ours = set(marker.get("files") or ()) if marker and marker.get("state") == "complete" else set()
    ours.add(MARKER_NAME)
    for root, dirs, files in os.walk(folder, topdown=False):
        rel = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            if (rel / name).as_posix() in ours:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))
        with contextlib.suppress(OSError):
            os.rmdir(root)
    return not os.path.lexists(folder)


def _pid_running(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _clean_leftovers(path: Path) -> None:
    """Remove ``.<name>.tmp-*`` / ``.<name>.old-*`` folders a killed run left beside ``path``.

    Only folders with our marker are touched: a complete one loses just the files its marker
    lists; a temporary one (marker written first thing, before any output) is removed whole once
    the process that made it has gone.
    """
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sib in siblings:
        m = _LEFTOVER.fullmatch(sib.name)
        if m is None or m["name"] != path.name or sib.is_symlink() or not sib.is_dir():
            continue
        marker = _read_marker(sib)
        if marker is None:
            continue
        if marker.get("state") == "complete":
            _remove_ours(sib)
        elif marker.get("state") == "temporary" and m["kind"] == "tmp" and not _pid_running(marker.get("pid")):
            shutil.rmtree(sib, ignore_errors=True)


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)


def _write_error(shown: str, exc: OSError) -> InputError:
    """The user-facing error for a destination that cannot be written."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return InputError(
        f"could not write the output folder {shown}: {_reason(exc)}{where}; nothing was written "
        "and any earlier output there is unchanged: "
        + ("free some space, or choose a folder on another disk with --out" if full else "choose a folder you can write to with --out")
    )


def _count(names: list[str]) -> str:
    """'3 files', '2 files and 1 folder' (folder names end in '/')."""
    folders = sum(n.endswith("/") for n in names)
    parts = [(len(names) - folders, "file"), (folders, "folder")]
    return " and ".join(f"{n} {what}" + ("" if n == 1 else "s") for n, what in parts if n) or "nothing"


def _names(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def jsonable(obj: Any) -> Any:
    """A strict-JSON copy: numpy scalars/arrays to Python, non-finite floats to null, paths to str.

    Plain ``float``/``int``/``str``/``dict``/``list`` values are dispatched on their exact type
    first, and a numeric numpy array is converted with one ``tolist()`` (non-finite values
    replaced in bulk): a 100,000-study fit converts in well under a second.

    Examples
    --------
    >>> import numpy as np
    >>> from pathlib import Path
    >>> jsonable({"k": np.int64(3), "hr": np.array([0.5, np.nan]), "file": Path("a.csv")})
    {'k': 3, 'hr': [0.5, None], 'file': 'a.csv'}
    >>> jsonable((1, [2.0, float("inf")], {4: np.float32(0.5)}, np.array([[1, 2]])))
    [1, [2.0, None], {'4': 0.5}, [[1, 2]]]
    """
    kind = type(obj)
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    # containers: plain str/int/finite-float items are kept inline (no call per item;
    # ``v - v == 0.0`` is False for inf and nan)
    if kind is dict:
        return {
            k if type(k) is str else str(k): v
            if (type(v) is float and v - v == 0.0) or type(v) is str or type(v) is int
            else jsonable(v)
            for k, v in obj.items()
        }
    if kind is list or kind is tuple:
        return [
            v if (type(v) is float and v - v == 0.0) or type(v) is str or type(v) is int else jsonable(v)
            for v in obj
        ]
    if isinstance(obj, np.ndarray):
        return _jsonable_array(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
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


def _jsonable_array(a: np.ndarray) -> Any:
    """A numpy array as nested lists: booleans, integers and finite floats by one ``tolist()``;
    non-finite floats become None; any other dtype element by element."""
    if a.dtype.kind in "biu":
        return a.tolist()
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if finite.all():
            return a.astype(float, copy=False).tolist()
        out = a.astype(float).astype(object)
        out[~finite] = None
        return out.tolist()
    return [jsonable(v) for v in a.tolist()]


def _attr(value: Any) -> Any:
    """A NetCDF attribute: numbers and strings as they are, anything else as JSON text."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return json.dumps(jsonable(value))


def write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as strict, indented JSON (:func:`jsonable`: no NaN, numpy converted) with a
    final newline: every JSON file an output folder holds.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_json({"hr": np.float64(0.8), "p": float("nan")}, Path(d) / "x.json")
    ...     print((Path(d) / "x.json").read_text(), end="")
    {
      "hr": 0.8,
      "p": null
    }
    """
    Path(path).write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_posterior(dt: Any, path: str | Path) -> None:
    """Write a posterior DataTree to NetCDF (h5netcdf); object-typed variables (nutpie's
    divergence messages) are dropped and attributes become strings or numbers.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import xarray as xr
    >>> dt = xr.DataTree.from_dict(
    ...     {"posterior": xr.Dataset({"mu": ("draw", np.array([0.1, 0.2]))}, attrs={"info": {"a": 1}})}
    ... )
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_posterior(dt, Path(d) / "posterior.nc")
    ...     with xr.open_datatree(Path(d) / "posterior.nc", engine="h5netcdf") as back:
    ...         back["posterior"]["mu"].values.tolist(), back["posterior"].attrs["info"]
    ([0.1, 0.2], '{"a": 1}')
    """
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
