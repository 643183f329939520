"""CSV files that are safe to open in a spreadsheet.

Study names and other text cells come from the user's file. A cell starting with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return) is run as a formula by Excel, LibreOffice and
Google Sheets ("CSV injection"). Every CSV the tool writes goes through :func:`write_csv`,
which prefixes such text cells (and column names) with a single quote, as OWASP recommends.
Numeric columns are left alone (``-0.3`` stays a number), and so is text that is a plain
number.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: What is put before such a cell: spreadsheets show the rest as text.
FORMULA_ESCAPE = "'"
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading quote if it is text a spreadsheet would run as a formula.

    Examples
    --------
    >>> neutralise_cell("=HYPERLINK(1)"), neutralise_cell("-0.3"), neutralise_cell(-0.3), neutralise_cell("Smith")
    ("'=HYPERLINK(1)", '-0.3', -0.3, 'Smith')
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.match(value):
        return FORMULA_ESCAPE + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names cannot run as formulas.

    Parameters
    ----------
    frame
        Any table. Columns of a numeric or boolean dtype are not changed; in other columns
        only ``str`` cells are (numbers and missing values in an object column stay as they are).

    Returns
    -------
    pandas.DataFrame
        The neutralised copy.

    Examples
    --------
    >>> frame = pd.DataFrame({"study": ["@evil", "Smith"], "log_hr": [-0.3, 0.1]})
    >>> neutralise_formulas(frame)["study"].tolist(), neutralise_formulas(frame)["log_hr"].tolist()
    (["'@evil", 'Smith'], [-0.3, 0.1])
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        out[column] = series.map(neutralise_cell)
    out.columns = [neutralise_cell(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) as UTF-8 CSV at ``path``, formulas neutralised.

    Parameters
    ----------
    frame
        The table.
    path
        The file to write.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_csv(pd.DataFrame({"study": ["=1+1"], "hr": [0.7]}), Path(d) / "t.csv")
    ...     print(path.read_text(encoding="utf-8"), end="")
    study,hr
    '=1+1,0.7
    """
    path = Path(path)
    neutralise_formulas(frame).to_csv(path, index=False, encoding="utf-8")
    return path
