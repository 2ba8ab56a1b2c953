"""Read MEDS label files and turn each row's value into one of our class indices.

A MEDS label file (Parquet) has `subject_id`, `prediction_time` and a value in one of
`boolean_value`, `integer_value`, `float_value` (`categorical_value` is not read: our classes are
numbers). A row's value is the first of those three that is not null. What the value means is the
task's and the site's choice: readmission, mortality and denial take a boolean (or 0/1); length of
stay takes days (binned by `sites.tasks.los_class`) or a class index; comorbidity takes a Charlson
score (binned by `sites.tasks.cci_class`) or a class index. Errors name the file and its 1-based
row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pandas as pd

from sites.importers.checks import data_error
from sites.importers.meds_files import parquet_columns, read_parquet
from sites.tasks import TASKS, cci_class, los_class

ValueKind = Literal["binary", "days", "score", "class"]
VALUE_COLUMNS: tuple[str, ...] = ("boolean_value", "integer_value", "float_value")
KEY_COLUMNS: tuple[str, ...] = ("subject_id", "prediction_time")


def label_files(path: Path, *, task: str, option: str) -> list[Path]:
    """The Parquet files of one task's labels: `path` itself, or every `*.parquet` under it."""
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        raise data_error(f"{path}: no label file (`{option}`); expected a Parquet file, or a "
                         f"folder of them, with the labels of task {task!r}")
    return files


def read_labels(files: list[Path], *, task: str, kind: ValueKind) -> pd.DataFrame:
    """`subject_id`, `prediction_time`, the task's class index (column named after the task's
    label column), and `source` ("FILE: row N", for later errors), one row per label."""
    frames = [_read_one(file, task=task, kind=kind) for file in files]
    labels = pd.concat(frames, ignore_index=True)
    duplicated = labels.duplicated(list(KEY_COLUMNS)).to_numpy()
    if duplicated.any():
        position = int(duplicated.nonzero()[0][0])
        row = labels.iloc[position]
        raise data_error(f"{row['source']}: subject_id {row['subject_id']} at prediction_time "
                         f"{row['prediction_time']} is labelled twice for task {task!r}; expected "
                         "one label per (subject_id, prediction_time)")
    return labels


def _read_one(file: Path, *, task: str, kind: ValueKind) -> pd.DataFrame:
    names = parquet_columns(file)
    missing = [column for column in KEY_COLUMNS if column not in names]
    values = [column for column in VALUE_COLUMNS if column in names]
    if missing or not values:
        wanted = missing[0] if missing else " or ".join(VALUE_COLUMNS)
        raise data_error(f"{file}: column `{wanted}` is missing; expected a MEDS label file with "
                         f"subject_id, prediction_time and one of {', '.join(VALUE_COLUMNS)}")
    table = read_parquet(file, [*KEY_COLUMNS, *values])
    for column in KEY_COLUMNS:
        null = table[column].isna().to_numpy()
        if null.any():
            raise data_error(f"{file}: row {int(null.nonzero()[0][0]) + 1}, column `{column}` "
                             f"is empty; expected a value in every label row")
    label_column = TASKS[task].label_column
    classes = [_class_of(table, position, values, file=file, task=task, kind=kind)
               for position in range(len(table))]
    return pd.DataFrame({
        "subject_id": table["subject_id"].astype("int64"),
        "prediction_time": table["prediction_time"].astype("datetime64[us]"),
        label_column: pd.Series(classes, dtype="int64"),
        "source": [f"{file}: row {position + 1}" for position in range(len(table))],
    })


def _class_of(table: pd.DataFrame, position: int, columns: list[str], *, file: Path, task: str,
              kind: ValueKind) -> int:
    """The class index of one label row (its first non-null value column)."""
    for column in columns:
        raw = table[column].iat[position]
        if raw is not None and not pd.isna(raw):
            break
    else:
        raise data_error(f"{file}: row {position + 1}: every value column is empty; expected "
                         f"the label of task {task!r} in one of {', '.join(columns)}")
    value = float(raw)
    k = TASKS[task].num_classes
    whole = math.isfinite(value) and value == int(value)
    if kind == "days" and math.isfinite(value) and value >= 0:
        return los_class(value)
    if kind == "score" and whole and value >= 0:
        return cci_class(int(value))
    if kind in ("binary", "class") and whole and 0 <= value < k:
        return int(value)
    expected = {"binary": "true/false or 0/1", "days": "a number of days >= 0",
                "score": "a whole Charlson score >= 0",
                "class": f"a class index 0..{k - 1}"}[kind]
    shown = raw.item() if hasattr(raw, "item") else raw  # numpy scalar -> plain Python
    raise data_error(f"{file}: row {position + 1}, column `{column}` is {shown!r}; expected "
                     f"{expected} for task {task!r}")
