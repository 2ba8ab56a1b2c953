"""Read a hospital's own table (CSV, JSONL, Parquet) under its own column names, as our columns.

Hospitals export what their warehouse gives them, and asking them to rename columns invites silent
mistakes in a file nobody reviews again. The site YAML maps our names to theirs instead
(`data.columns`; `data.raw_labels` for length of stay in days and the Charlson score), and this
module reads the file with pandas, checks what the later validation cannot see (that each mapped
column exists, that text is text and valid UTF-8), bins raw labels and renames. Ids, labels and
splits are checked once, later, by `sites.encounter_table.validate_site_table`, which names the hospital's
columns through `MappedTable.names`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from sites.encounter_table import InvalidSiteData, required_columns
from sites.importers.labels import bin_raw_labels
from sites.site_settings import DataSource, SplitByColumn
from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, SPLIT_COLUMN, TASKS

_UNICODE_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class MappedTable:
    """A table under our column names, and how to name its columns in errors."""

    table: pd.DataFrame
    names: dict[str, str] = field(default_factory=dict)
    """Our column -> the hospital's column, where they differ."""


def read_mapped_table(source: DataSource, *, tasks: Sequence[str], site_name: str,
                      labels: bool = True) -> MappedTable:
    """The table at `source`, its mapped columns renamed to ours and raw labels binned; raises
    `InvalidSiteData` naming the file, the 1-based data row and the hospital's column. With
    `labels=False` (a table to score) label columns are neither required nor binned."""
    needed = _needed_columns(source, tasks, labels=labels)
    text = [theirs for ours, (theirs, _) in needed.items() if ours in _TEXT]
    df, replaced = _read(source, text_columns=[*text, *_split_text_column(source)],
                         site_name=site_name)
    file = source.path
    for ours, (theirs, why) in needed.items():
        if theirs not in df.columns:
            raise InvalidSiteData(f"{file}: column `{theirs}` is missing{_via(source, ours)}; "
                                  f"expected it for {why}{_close(theirs, df.columns)}")
    if df.empty:
        raise InvalidSiteData(f"{file}: has no rows; expected one row per encounter")
    df = df.reset_index(drop=True)
    for ours, (theirs, _) in needed.items():
        if ours in _TEXT:
            _check_text(df[theirs], file=file, column=theirs, ours=ours, replaced=replaced)
    return _renamed(df, source, tasks if labels else ())


def read_columns(source: DataSource, columns: Sequence[str], *, site_name: str) -> pd.DataFrame:
    """Only `columns` (the hospital's names) of the table, for work that must not read the notes
    (the privacy forecast counts training encounters before any data is touched)."""
    path = source.path
    _exists(path, source.format, site_name)
    try:
        if source.format == "parquet":
            return pd.read_parquet(path, columns=list(columns))
        if source.format == "csv":
            return pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False,
                               na_values=[], encoding_errors="replace")
        return pd.read_json(path, lines=True, dtype=False, encoding_errors="replace")[list(columns)]
    except (KeyError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidSiteData(
            f"{path}: columns {', '.join(f'`{c}`' for c in columns)} cannot all be read "
            f"({reason}); expected them for the split") from None


_TEXT = (*ID_COLUMNS, *NOTE_COLUMNS.values())
"""Our columns read as text from a CSV (ids like 007 keep their zeros)."""


def _needed_columns(source: DataSource, tasks: Sequence[str], *,
                    labels: bool = True) -> dict[str, tuple[str, str]]:
    """Our column -> (the hospital's column, why it is needed), for the site's tasks."""
    needed: dict[str, tuple[str, str]] = {}
    for ours, why in required_columns(tasks, labels=labels).items():
        if ours == SPLIT_COLUMN:
            continue  # the split rule reads its own column (`sites.importers.split_rules`)
        if ours in source.raw_labels:
            needed[ours] = (source.raw_labels[ours],
                            f"the raw label of task {ours!r} (`data.raw_labels.{ours}`)")
        else:
            needed[ours] = (source.columns.get(ours, ours), why)
    return needed


def _split_text_column(source: DataSource) -> list[str]:
    rule = source.split
    if rule is None:
        return [SPLIT_COLUMN]
    return [rule.column] if isinstance(rule, SplitByColumn) else []


def _exists(path: Path, fmt: str, site_name: str) -> None:
    if not path.exists():
        raise InvalidSiteData(
            f"{path}: does not exist; expected the encounter table of site {site_name!r} "
            "(`lang1-fl sites generate` writes synthetic ones)")
    if not path.is_file():
        raise InvalidSiteData(f"{path}: is a folder; expected a {fmt} file (`data.path`)")


def _read(source: DataSource, *, text_columns: list[str],
          site_name: str) -> tuple[pd.DataFrame, bool]:
    """The whole table, and whether bytes that are not UTF-8 were replaced (U+FFFD) to read it."""
    _exists(source.path, source.format, site_name)
    try:
        return _read_as(source, text_columns, "strict"), False
    except UnicodeDecodeError:
        pass  # read again, replacing bad bytes, to name the row and column that hold them
    except Exception as error:  # each reader raises its own types; all mean "not this format"
        _unreadable(source, error)
    try:
        return _read_as(source, text_columns, "replace"), True
    except Exception as error:
        _unreadable(source, error)


def _read_as(source: DataSource, text_columns: list[str], errors: str) -> pd.DataFrame:
    if source.format == "parquet":
        return pd.read_parquet(source.path)
    if source.format == "jsonl":
        return pd.read_json(source.path, lines=True, dtype=False, encoding_errors=errors)
    return pd.read_csv(source.path, dtype={c: str for c in text_columns}, keep_default_na=False,
                       na_values=[], encoding_errors=errors)


def _unreadable(source: DataSource, error: Exception) -> NoReturn:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise InvalidSiteData(
        f"{source.path}: cannot be read as {source.format} ({reason}); expected a {source.format} "
        "encounter table") from None


def _check_text(values: pd.Series, *, file: Path, column: str, ours: str, replaced: bool) -> None:
    """Notes must be text and ids text or whole numbers (blanks are reported by the validation)."""
    is_note = ours in NOTE_COLUMNS.values()
    if not isinstance(values.dtype, pd.StringDtype):
        def fits(value: object) -> bool:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                return True
            if isinstance(value, str):
                return True
            return not is_note and isinstance(value, (int, np.integer)) and not isinstance(
                value, (bool, np.bool_))

        wrong = ~values.map(fits).to_numpy(dtype=bool)
        if wrong.any():
            position = int(np.flatnonzero(wrong)[0])
            value = values.iat[position]
            expected = ("text (the " + ours.replace("_", " ") + ")" if is_note
                        else "a text or whole-number id")
            raise InvalidSiteData(f"{file}: row {position + 1}, column `{column}` is {value!r} "
                                  f"({type(value).__name__}); expected {expected}")
    if replaced:
        bad = values.map(lambda v: isinstance(v, str) and _UNICODE_REPLACEMENT in v)
        bad = bad.to_numpy(dtype=bool)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise InvalidSiteData(f"{file}: row {position + 1}, column `{column}` is not valid "
                                  "UTF-8; expected UTF-8 text (re-export the table as UTF-8)")


def _renamed(df: pd.DataFrame, source: DataSource, tasks: Sequence[str]) -> MappedTable:
    """Mapped columns under our names (a column of the hospital's that has one of our names but is
    not the mapped one is dropped, so it cannot be mistaken for ours); raw labels binned."""
    renames = {theirs: ours for ours, theirs in source.columns.items()
               if theirs != ours and theirs in df.columns}
    shadowed = [ours for ours in renames.values() if ours in df.columns and ours not in renames]
    table = df.drop(columns=shadowed).rename(columns=renames)
    names = {ours: theirs for theirs, ours in renames.items()}
    for task, theirs in source.raw_labels.items():
        if task in tasks:
            table[TASKS[task].label_column] = bin_raw_labels(df[theirs], task=task,
                                                             file=source.path, column=theirs)
    return MappedTable(table=table, names=names)


def _via(source: DataSource, ours: str) -> str:
    return f" (mapped to `{ours}` by `data.columns.{ours}`)" if ours in source.columns else ""


def _close(name: str, columns: pd.Index) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1, cutoff=0.8)
    return f" (the table has `{close[0]}`)" if close else ""
