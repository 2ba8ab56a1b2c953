"""Find and read the MIMIC-IV tables the importer needs, checking every value it will use.

MIMIC-IV ships each table as `<module>/<table>.csv.gz`; a hospital that unpacked them has `.csv`.
Either is accepted, never both (two copies that may differ). Every column is read as text and then
parsed here, so a bad value is reported as "FILE: row N, column `C` is 'V'; expected ..." (N is the
1-based data row, the header not counted, as in `sites.encounter_table`) instead of a pandas traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sites.importers.checks import data_error

SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv")


def find_table(root: Path, name: str) -> Path:
    """`root/name.csv.gz` or `root/name.csv`, whichever exists; an error naming both if neither
    (or both) does."""
    candidates = [root / f"{name}{suffix}" for suffix in SUFFIXES]
    present = [path for path in candidates if path.is_file()]
    if len(present) == 1:
        return present[0]
    if present:
        raise data_error(f"{present[0]} and {present[1]} both exist; expected one copy of the "
                         f"MIMIC-IV table {name}")
    raise data_error(f"{candidates[0]} does not exist (nor {candidates[1].name}); expected the "
                     f"MIMIC-IV table {name} under {root}")


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The `columns` of a MIMIC-IV CSV table as text ("" for an empty field)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except Exception as error:  # gzip, encoding and parser errors all mean "not this table"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise data_error(f"{path}: cannot be read as CSV ({reason}); expected a MIMIC-IV "
                         "table") from None
    missing = [column for column in columns if column not in header]
    if missing:
        raise data_error(f"{path}: column `{missing[0]}` is missing; expected columns "
                         f"{', '.join(columns)}")
    table = pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False,
                        na_values=[])
    return table[list(columns)].reset_index(drop=True)  # index = 0-based data row


def bad_row(path: Path, values: pd.Series, bad: np.ndarray, column: str, expected: str) -> None:
    """Raise for the first row where `bad` is true, if any. Row numbers come from the index
    (`read_table` numbers rows from 0, so a filtered table still names the file's row)."""
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise data_error(f"{path}: row {int(values.index[position]) + 1}, column `{column}` is "
                         f"{values.iat[position]!r}; expected {expected}")


def ids(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """An id column as int64 (MIMIC-IV ids are whole numbers)."""
    text = table[column].str.strip()
    bad = ~text.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool, na_value=True)
    bad_row(path, table[column], bad, column, "a whole-number id")
    return text.astype("int64")


def times(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A date-time column (MIMIC-IV: `YYYY-MM-DD HH:MM:SS`) as datetime64[ns]."""
    text = table[column].str.strip()
    parsed = pd.to_datetime(text.where(text != ""), format="ISO8601", errors="coerce")
    bad_row(path, table[column], parsed.isna().to_numpy(), column,
            "a date-time like 2180-05-06 22:23:00")
    return parsed.astype("datetime64[ns]")


def flags(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A 0/1 column as int64."""
    text = table[column].str.strip()
    bad_row(path, table[column], ~text.isin(["0", "1"]).to_numpy(), column, "0 or 1")
    return text.astype("int64")
