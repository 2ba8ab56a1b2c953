"""The files of a MEDS dataset: where they are, and reading them with errors that name the file.

MEDS (Medical Event Data Standard) lays a dataset out as `data/**/*.parquet` (events: `subject_id`,
`time`, `code`, `numeric_value`, `text_value`), `metadata/subject_splits.parquet` (`subject_id`,
`split`: train, tuning or held_out) and `metadata/dataset.json` (name and versions). Label files
live wherever the site's options say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from sites.importers.checks import data_error

MEDS_SPLITS: dict[str, str] = {"train": "train", "tuning": "validation", "held_out": "test"}
"""MEDS split -> our split."""


def parquet_columns(file: Path) -> list[str]:
    """Column names of a Parquet file (its schema only)."""
    try:
        return list(pq.read_schema(file).names)
    except Exception as error:  # pyarrow raises several types; all mean "not a Parquet file"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise data_error(f"{file}: cannot be read as Parquet ({reason}); expected a MEDS "
                         "Parquet file") from None


def read_parquet(file: Path, columns: list[str]) -> pd.DataFrame:
    """`columns` of a Parquet file; times as datetime64[us]."""
    table = pq.read_table(file, columns=columns).to_pandas()
    for column in table.columns:
        if pd.api.types.is_datetime64_any_dtype(table[column]):
            table[column] = table[column].astype("datetime64[us]")
    return table.reset_index(drop=True)


def data_files(root: Path) -> list[Path]:
    """Every `data/**/*.parquet` of the dataset, in path order."""
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise data_error(f"{root / 'data'}: no Parquet file; expected the MEDS events as "
                         f"{root / 'data' / '**' / '*.parquet'}")
    return files


def dataset_name(root: Path) -> str:
    """`dataset_name` of `metadata/dataset.json` (which must exist and be a JSON object)."""
    path = root / "metadata" / "dataset.json"
    if not path.is_file():
        raise data_error(f"{path} does not exist; expected the MEDS dataset metadata")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise data_error(f"{path}: not valid JSON ({error}); expected the MEDS dataset "
                         "metadata") from None
    if not isinstance(metadata, dict):
        raise data_error(f"{path}: is a JSON {type(metadata).__name__}; expected an object "
                         "with dataset_name, meds_version, ...")
    return str(metadata.get("dataset_name", root.name))


def subject_splits(root: Path) -> tuple[Path, pd.Series]:
    """`metadata/subject_splits.parquet` as our split per subject_id (index), and its path."""
    path = root / "metadata" / "subject_splits.parquet"
    if not path.is_file():
        raise data_error(f"{path} does not exist; expected the MEDS subject splits "
                         "(subject_id, split)")
    names = parquet_columns(path)
    for column in ("subject_id", "split"):
        if column not in names:
            raise data_error(f"{path}: column `{column}` is missing; expected subject_id, split")
    table = read_parquet(path, ["subject_id", "split"])
    unknown = ~table["split"].isin(list(MEDS_SPLITS)).to_numpy()
    if unknown.any():
        position = int(unknown.nonzero()[0][0])
        raise data_error(f"{path}: row {position + 1}, column `split` is "
                         f"{table['split'].iat[position]!r}; expected one of "
                         f"{', '.join(MEDS_SPLITS)}")
    twice = table["subject_id"].duplicated().to_numpy()
    if twice.any():
        position = int(twice.nonzero()[0][0])
        raise data_error(f"{path}: row {position + 1}, column `subject_id` is "
                         f"{table['subject_id'].iat[position]!r}, listed before; expected one "
                         "split per subject")
    splits = table["split"].map(MEDS_SPLITS)
    splits.index = table["subject_id"].astype("int64").to_numpy()
    return path, splits
