"""What a site's encounter table is: the columns its tasks need and the checks it passes, once.

Every importer (sites/importers/) ends with `validate_site_table`, for what the site's tasks need
only: the ids, the split, the note columns those tasks read and their label columns (a site without
the denial task need not have a `denial` column; oracle columns are optional). An error names the
file, the 1-based data row, the column, the value and what was expected, so a hospital's data
manager can fix the extract without reading our code. `TrainingUnits` counts what a site trains
on, in either privacy unit. A table read only to be scored by a finished model
(`validate_scoring_table`) needs its ids and notes, and neither split nor labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS


class InvalidSiteData(ValueError):
    """An encounter table is missing, unreadable or breaks a rule; the message says where."""


def required_columns(tasks: Sequence[str], *, labels: bool = True) -> dict[str, str]:
    """Columns a table must have for `tasks`, each with why (for the error message); with
    `labels=False` (a table to score) only the ids and the notes the tasks read."""
    needed = {"encounter_id": "the encounter id", "patient_id": "the patient id"}
    if labels:
        needed[SPLIT_COLUMN] = "the split"
    for task in tasks:
        spec = TASKS[task]
        note = NOTE_COLUMNS[spec.note]
        needed.setdefault(note, f"the {spec.note} note read by task {task!r}")
        if labels:
            needed[spec.label_column] = f"the label of task {task!r}"
    return needed


@dataclass(frozen=True)
class TrainingUnits:
    """How many records a site trains on, in each privacy unit."""

    encounters: int
    patients: int


def validate_site_table(df: pd.DataFrame, *, tasks: Sequence[str], file: Path | str,
                        names: Mapping[str, str] | None = None,
                        rows: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
    """A validated copy of `df`; raises `InvalidSiteData` naming `file`, row and column. `names`
    maps our column names to the hospital's (`data.columns`), so errors name the column the
    hospital knows; `rows` is the file's 1-based data row of each row of `df` (default: its
    position + 1), so errors name the file's rows after an importer dropped some."""
    shown = dict(names or {})
    at = np.arange(1, len(df) + 1) if rows is None else np.asarray(rows, dtype=np.int64)
    df = _columns_and_rows(df, required_columns(tasks), file, shown)
    for column in (*ID_COLUMNS, SPLIT_COLUMN):
        _no_blanks(df[column], file, shown.get(column, column), "a non-empty id"
                   if column != SPLIT_COLUMN else "one of " + ", ".join(SPLITS), at)
        df[column] = df[column].astype(str)
    _unique_encounters(df["encounter_id"], file, shown.get("encounter_id", "encounter_id"), at)
    _known_splits(df[SPLIT_COLUMN], file, shown.get(SPLIT_COLUMN, SPLIT_COLUMN), at)
    _one_split_per_patient(df, file, shown.get(SPLIT_COLUMN, SPLIT_COLUMN), at)
    for note in dict.fromkeys(NOTE_COLUMNS[TASKS[t].note] for t in tasks):
        _no_blanks(df[note], file, shown.get(note, note), "the note text", at)
        df[note] = df[note].astype(str)
        _no_nul_bytes(df[note], file, shown.get(note, note), at)
    for task in tasks:
        spec = TASKS[task]
        column = spec.label_column
        df[column] = _labels(df[column], file, shown.get(column, column), spec.class_names, at)
    return df


def _columns_and_rows(df: pd.DataFrame, required: Mapping[str, str], file: Path | str,
                      shown: Mapping[str, str]) -> pd.DataFrame:
    """A fresh-indexed copy of `df`, once every required column is there and it has rows."""
    for column, why in required.items():
        if column not in df.columns:
            raise InvalidSiteData(f"{file}: column `{shown.get(column, column)}` is missing; "
                                  f"expected it for {why}")
    if df.empty:
        raise InvalidSiteData(f"{file}: has no rows; expected one row per encounter")
    return df.reset_index(drop=True).copy()


def validate_scoring_table(df: pd.DataFrame, *, tasks: Sequence[str], file: Path | str,
                           names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A validated copy of `df` for scoring by a model of `tasks`: ids present (encounters unique)
    and the notes those tasks read present and non-empty, as text; split and label columns are
    neither needed nor checked. Raises `InvalidSiteData` naming `file`, row and column as
    `validate_site_table` does."""
    shown = dict(names or {})
    df = _columns_and_rows(df, required_columns(tasks, labels=False), file, shown)
    at = np.arange(1, len(df) + 1)
    for column in ID_COLUMNS:
        _no_blanks(df[column], file, shown.get(column, column), "a non-empty id", at)
        df[column] = df[column].astype(str)
    _unique_encounters(df["encounter_id"], file, shown.get("encounter_id", "encounter_id"), at)
    for note in dict.fromkeys(NOTE_COLUMNS[TASKS[t].note] for t in tasks):
        _no_blanks(df[note], file, shown.get(note, note), "the note text", at)
        df[note] = df[note].astype(str)
        _no_nul_bytes(df[note], file, shown.get(note, note), at)
    return df


def _row(position: int, rows: np.ndarray) -> int:
    """The file's 1-based data row of a 0-based position in the table."""
    return int(rows[int(position)])


def _no_blanks(values: pd.Series, file: Path | str, column: str, expected: str,
               rows: np.ndarray) -> None:
    blank = values.isna().to_numpy() | values.astype(str).str.strip().eq("").to_numpy()
    if blank.any():
        position = int(np.flatnonzero(blank)[0])
        raise InvalidSiteData(f"{file}: row {_row(position, rows)}, column `{column}` is empty; "
                              f"expected {expected}")


def _no_nul_bytes(values: pd.Series, file: Path | str, column: str, rows: np.ndarray) -> None:
    """A NUL byte in a note is a broken export (a binary field, a C string cut short): the
    tokenizer would read it as text without a word of warning."""
    nul = values.str.contains("\x00", regex=False).to_numpy(dtype=bool)
    if nul.any():
        position = int(np.flatnonzero(nul)[0])
        raise InvalidSiteData(f"{file}: row {_row(position, rows)}, column `{column}` holds a NUL "
                              "byte (\\x00); expected plain text (re-export the notes as text)")


def _unique_encounters(ids: pd.Series, file: Path | str, column: str, rows: np.ndarray) -> None:
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(ids.to_numpy() == ids.iat[position])[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position, rows)}, column `{column}` is {ids.iat[position]!r}, "
            f"already used at row {_row(first, rows)}; expected unique encounter ids")


def _known_splits(splits: pd.Series, file: Path | str, column: str, rows: np.ndarray) -> None:
    unknown = ~splits.isin(SPLITS).to_numpy()
    if unknown.any():
        position = int(np.flatnonzero(unknown)[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position, rows)}, column `{column}` is {splits.iat[position]!r}; "
            f"expected one of {', '.join(SPLITS)}")


def _one_split_per_patient(df: pd.DataFrame, file: Path | str, column: str,
                           rows: np.ndarray) -> None:
    first_split = df.groupby("patient_id", sort=False)[SPLIT_COLUMN].transform("first")
    conflict = (df[SPLIT_COLUMN] != first_split).to_numpy()
    if conflict.any():
        position = int(np.flatnonzero(conflict)[0])
        patient = df["patient_id"].iat[position]
        first = int(np.flatnonzero(df["patient_id"].to_numpy() == patient)[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position, rows)}, column `{column}`: patient {patient!r} is in "
            f"{df[SPLIT_COLUMN].iat[position]!r} but in {first_split.iat[position]!r} at row "
            f"{_row(first, rows)}; expected all encounters of a patient in one split")


def _shown(value: object, number: float) -> str:
    """A bad label as the user wrote it: `missing`, a number, or the quoted text."""
    if not np.isnan(number):
        return str(int(number)) if number == int(number) else str(number)
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        return "missing"
    return repr(value)


_BINARY_WORDS: dict[str, int] = {"true": 1, "yes": 1, "y": 1, "false": 0, "no": 0, "n": 0}
"""A binary label may also be true/false, yes/no or y/n (any case, booleans too), as exports write
it; other words need `data.label_values`."""


def _binary_words(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values

    def number(value: object) -> object:
        if isinstance(value, (bool, np.bool_)):
            return int(value)
        if isinstance(value, str):
            return _BINARY_WORDS.get(value.strip().lower(), value)
        return value

    return values.astype(object).map(number)


def _labels(values: pd.Series, file: Path | str, column: str,
            class_names: tuple[str, ...], rows: np.ndarray) -> pd.Series:
    k = len(class_names)
    words = _binary_words(values) if k == 2 else values
    numbers = pd.to_numeric(words.where(words.astype(str).str.strip() != "", np.nan),
                            errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(numbers) | (numbers != np.round(numbers)) | (numbers < 0) | (numbers > k - 1)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        classes = ", ".join(f"{i} ({name})" for i, name in enumerate(class_names))
        shown = _shown(values.iat[position], numbers[position])
        also = (" (true/false, yes/no and y/n also work; map other words under "
                "`data.label_values`)" if k == 2 else " (or map the table's words under "
                "`data.label_values`)")
        raise InvalidSiteData(f"{file}: row {_row(position, rows)}, column `{column}` is {shown}; "
                              f"expected an integer class: {classes}{also}")
    return pd.Series(numbers.astype(np.int64), index=values.index, name=column)
