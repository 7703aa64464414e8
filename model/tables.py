"""The one table reader: which files are tables, and reading one into a frame.

Training data, drift inputs and offline scoring accept the same files: CSV (plain, gzip
or bzip2) and Parquet. Missing values in CSV are pandas' defaults (`model.values`).
pandas is imported when a file is read, so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq")
FileType = Literal["csv", "parquet"]


class TableError(ValueError):
    """A file cannot be read as a table; the message says why, in one line."""


def file_type(path: Path) -> FileType:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    accepted = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
    raise TableError(f"{path}: unsupported file type (use {accepted})")


def read_table(path: Path, text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; in CSV, `text_columns` are read as text, not numbers."""
    import pandas as pd

    kind = file_type(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"{path}: cannot read: {first_line}") from exc
