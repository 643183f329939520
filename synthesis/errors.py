"""Exceptions with the context a user needs to fix the problem.

Every error caused by user input is an :class:`InputError`; the command line turns it into a
message on stderr and exit status 2 (see ``synthesis.cli``).
"""

from __future__ import annotations


class SynthesisError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(SynthesisError):
    """Bad user input: a file, a CSV cell, a prior specification or a command-line value.

    The message names the file, the CSV line number (header = line 1) and the column whenever
    they are known, e.g. ``studies.csv: line 4, column 'ci_upper': must be > ci_lower``. A
    bad argument of a Python function is named by its ``parameter`` (``"chains must be >= 1"``);
    the command line shows the flag instead (``--chains must be >= 1``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: str | None = None,
        parameter: str | None = None,
    ) -> None:
        self.file = file
        self.parameter = parameter
        self.line = line
        self.column = column
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__((", ".join(where) + ": " if where else "") + message)


class ModelError(SynthesisError):
    """A model that cannot be built or fitted as asked (e.g. the exact engine refusing a model).

    ``parameter`` names the Python parameter at fault when there is one (``"engine"``).
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message)


class ConvergenceError(SynthesisError):
    """Sampling finished but failed its diagnostics and the user asked for ``--strict``."""
