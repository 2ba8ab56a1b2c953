"""Read, validate and write a site's encounter table (Parquet, JSONL or CSV).

The table is validated once, when it is read, and only for what the site's tasks need: the ids, the
split, the note columns those tasks read and their label columns (a site without the denial task
need not have a `denial` column; oracle columns are optional). An error names the file, the 1-based
data row, the column, the value and what was expected, so a hospital's data manager can fix the
extract without reading our code. Writes go to a temporary file renamed into place, so a reader
never sees a half-written table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sites.config import DataSource, SiteConfig
from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS


class InvalidSiteData(ValueError):
    """An encounter table is missing, unreadable or breaks a rule; the message says where."""


def required_columns(tasks: Sequence[str]) -> dict[str, str]:
    """Columns a table must have for `tasks`, each with why (for the error message)."""
    needed = {"encounter_id": "the encounter id", "patient_id": "the patient id",
              SPLIT_COLUMN: "the split"}
    for task in tasks:
        spec = TASKS[task]
        note = NOTE_COLUMNS[spec.note]
        needed.setdefault(note, f"the {spec.note} note read by task {task!r}")
        needed[spec.label_column] = f"the label of task {task!r}"
    return needed


def read_site_table(site: SiteConfig) -> pd.DataFrame:
    """The site's encounter table, validated for its tasks (ids and split as str, labels int64)."""
    table = _read(site.data, site_name=site.name)
    return validate_site_table(table, tasks=site.tasks, file=site.data.path)


def count_training_encounters(site: SiteConfig) -> int:
    """Rows of the table in the `train` split, reading the split column only (no note text):
    what a privacy forecast needs before any data is touched."""
    source = site.data
    if not source.path.is_file():
        raise InvalidSiteData(
            f"{source.path}: does not exist; expected the encounter table of site {site.name!r} "
            "(`lang1-fl sites generate` writes synthetic ones)")
    try:
        if source.format == "parquet":
            splits = pd.read_parquet(source.path, columns=[SPLIT_COLUMN])[SPLIT_COLUMN]
        elif source.format == "csv":
            splits = pd.read_csv(source.path, usecols=[SPLIT_COLUMN], dtype=str)[SPLIT_COLUMN]
        else:
            splits = pd.read_json(source.path, lines=True, dtype=False)[SPLIT_COLUMN]
    except (KeyError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidSiteData(f"{source.path}: no readable `{SPLIT_COLUMN}` column ({reason}); "
                              "expected an encounter table with a split per row") from None
    return int((splits == "train").sum())


def validate_site_table(df: pd.DataFrame, *, tasks: Sequence[str],
                        file: Path | str) -> pd.DataFrame:
    """A validated copy of `df`; raises `InvalidSiteData` naming `file`, row and column."""
    for column, why in required_columns(tasks).items():
        if column not in df.columns:
            raise InvalidSiteData(f"{file}: column `{column}` is missing; expected it for {why}")
    if df.empty:
        raise InvalidSiteData(f"{file}: has no rows; expected one row per encounter")
    df = df.reset_index(drop=True).copy()
    for column in (*ID_COLUMNS, SPLIT_COLUMN):
        _no_blanks(df[column], file, column, "a non-empty id" if column != SPLIT_COLUMN
                   else "one of " + ", ".join(SPLITS))
        df[column] = df[column].astype(str)
    _unique_encounters(df["encounter_id"], file)
    _known_splits(df[SPLIT_COLUMN], file)
    _one_split_per_patient(df, file)
    for note in dict.fromkeys(NOTE_COLUMNS[TASKS[t].note] for t in tasks):
        _no_blanks(df[note], file, note, "the note text")
        df[note] = df[note].astype(str)
    for task in tasks:
        spec = TASKS[task]
        df[spec.label_column] = _labels(df[spec.label_column], file, spec.label_column,
                                        spec.class_names)
    return df


def write_site_table(df: pd.DataFrame, source: DataSource) -> None:
    """Write `df` to `source` atomically: a temporary file in the same folder, then a rename."""
    path = source.path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if source.format == "parquet":
            df.to_parquet(temporary, index=False)
        elif source.format == "jsonl":
            df.to_json(temporary, orient="records", lines=True, force_ascii=False)
        else:
            df.to_csv(temporary, index=False)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read(source: DataSource, *, site_name: str) -> pd.DataFrame:
    path = source.path
    if not path.is_file():
        raise InvalidSiteData(
            f"{path}: does not exist; expected the encounter table of site {site_name!r} "
            "(`lang1-fl sites generate` writes synthetic ones)")
    try:
        if source.format == "parquet":
            return pd.read_parquet(path)
        if source.format == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        text_columns = {c: str for c in (*ID_COLUMNS, SPLIT_COLUMN, *NOTE_COLUMNS.values())}
        return pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values=[])
    except Exception as error:  # each reader raises its own types; all mean "not this format"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidSiteData(
            f"{path}: cannot be read as {source.format} ({reason}); expected a {source.format} "
            "encounter table") from None


def _row(position: int) -> int:
    """1-based data row of a 0-based position."""
    return int(position) + 1


def _no_blanks(values: pd.Series, file: Path | str, column: str, expected: str) -> None:
    blank = values.isna().to_numpy() | values.astype(str).str.strip().eq("").to_numpy()
    if blank.any():
        position = int(np.flatnonzero(blank)[0])
        raise InvalidSiteData(f"{file}: row {_row(position)}, column `{column}` is empty; "
                              f"expected {expected}")


def _unique_encounters(ids: pd.Series, file: Path | str) -> None:
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(ids.to_numpy() == ids.iat[position])[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position)}, column `encounter_id` is {ids.iat[position]!r}, "
            f"already used at row {_row(first)}; expected unique encounter ids")


def _known_splits(splits: pd.Series, file: Path | str) -> None:
    unknown = ~splits.isin(SPLITS).to_numpy()
    if unknown.any():
        position = int(np.flatnonzero(unknown)[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position)}, column `{SPLIT_COLUMN}` is {splits.iat[position]!r}; "
            f"expected one of {', '.join(SPLITS)}")


def _one_split_per_patient(df: pd.DataFrame, file: Path | str) -> None:
    first_split = df.groupby("patient_id", sort=False)[SPLIT_COLUMN].transform("first")
    conflict = (df[SPLIT_COLUMN] != first_split).to_numpy()
    if conflict.any():
        position = int(np.flatnonzero(conflict)[0])
        patient = df["patient_id"].iat[position]
        first = int(np.flatnonzero(df["patient_id"].to_numpy() == patient)[0])
        raise InvalidSiteData(
            f"{file}: row {_row(position)}, column `{SPLIT_COLUMN}`: patient {patient!r} is in "
            f"{df[SPLIT_COLUMN].iat[position]!r} but in {first_split.iat[position]!r} at row "
            f"{_row(first)}; expected all encounters of a patient in one split")


def _shown(value: object, number: float) -> str:
    """A bad label as the user wrote it: `missing`, a number, or the quoted text."""
    if not np.isnan(number):
        return str(int(number)) if number == int(number) else str(number)
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        return "missing"
    return repr(value)


def _labels(values: pd.Series, file: Path | str, column: str,
            class_names: tuple[str, ...]) -> pd.Series:
    numbers = pd.to_numeric(values.where(values.astype(str).str.strip() != "", np.nan),
                            errors="coerce").to_numpy(dtype=float)
    k = len(class_names)
    bad = np.isnan(numbers) | (numbers != np.round(numbers)) | (numbers < 0) | (numbers > k - 1)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        classes = ", ".join(f"{i} ({name})" for i, name in enumerate(class_names))
        shown = _shown(values.iat[position], numbers[position])
        raise InvalidSiteData(f"{file}: row {_row(position)}, column `{column}` is {shown}; "
                              f"expected an integer class: {classes}")
    return pd.Series(numbers.astype(np.int64), index=values.index, name=column)
