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
from sites.importers.labels import bin_raw_labels, map_label_values
from sites.site_settings import DataSource
from sites.split_settings import SplitByColumn
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
                                  f"expected it for {why}{_close(theirs, df.columns)}"
                                  f"{_delimiter_hint(source, df.columns)}")
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
    _exists(source, site_name)
    try:
        if source.format == "parquet":
            return pd.read_parquet(path, columns=list(columns))
        if source.format == "csv":
            return pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False,
                               na_values=[], encoding_errors="replace", sep=source.delimiter)
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


def _exists(source: DataSource, site_name: str) -> None:
    path = source.path
    if not path.exists():
        rule = f"; {source.root.explain()}" if source.root is not None else ""
        raise InvalidSiteData(
            f"{path}: does not exist; expected the encounter table of site {site_name!r}{rule} "
            "(`lang1-fl sites generate` writes synthetic ones)")
    if not path.is_file():
        raise InvalidSiteData(f"{path}: is a folder; expected a {source.format} file "
                              "(`data.path`)")


def _read(source: DataSource, *, text_columns: list[str],
          site_name: str) -> tuple[pd.DataFrame, bool]:
    """The whole table, and whether bytes that are not UTF-8 were replaced (U+FFFD) to read it."""
    _exists(source, site_name)
    _unique_header(source)
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
                       na_values=[], encoding_errors=errors, sep=source.delimiter)


def _unique_header(source: DataSource) -> None:
    """A column name twice in the header: pandas would keep one and rename or drop the other, so
    the table read would silently not be the one exported."""
    names = _header(source)
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise InvalidSiteData(
                f"{source.path}: the header names column `{name}` twice (columns {seen[name]} and "
                f"{position}); expected each column name once (rename or drop one in the export)")
        seen[name] = position


def _header(source: DataSource) -> list[str]:
    """The column names as the file writes them: the first line of a csv or jsonl table, the
    schema of a parquet file."""
    import csv
    import json

    if source.format == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(source.path).names)
        except Exception:  # not parquet: reading the table says why, naming the format
            return []
    with open(source.path, encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
    if source.format == "csv":
        return next(csv.reader([first], delimiter=source.delimiter), [])
    try:
        pairs = json.loads(first, object_pairs_hook=lambda items: items) if first.strip() else []
    except ValueError:
        return []  # reading the table says why
    return [str(name) for name, _ in pairs] if isinstance(pairs, list) else []


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
    not the mapped one is dropped, so it cannot be mistaken for ours; one note column mapped to
    both note types is copied); raw labels binned, labels in the table's words mapped."""
    present = {ours: theirs for ours, theirs in source.columns.items() if theirs in df.columns}
    first: dict[str, str] = {}  # their column -> the first of our columns it is mapped to
    for ours, theirs in present.items():
        first.setdefault(theirs, ours)
    renames = {theirs: ours for theirs, ours in first.items() if theirs != ours}
    copies = {ours: first[theirs] for ours, theirs in present.items() if first[theirs] != ours}
    shadowed = [ours for ours in (*renames.values(), *copies)
                if ours in df.columns and ours not in renames]
    table = df.drop(columns=shadowed).rename(columns=renames)
    for ours, copied in copies.items():
        table[ours] = table[copied]
    names = {ours: theirs for ours, theirs in present.items() if theirs != ours}
    for task, theirs in source.raw_labels.items():
        if task in tasks:
            table[TASKS[task].label_column] = bin_raw_labels(df[theirs], task=task,
                                                             file=source.path, column=theirs)
    for task, classes in source.label_values.items():
        if task in tasks:
            column = TASKS[task].label_column
            table[column] = map_label_values(table[column], classes, task=task, file=source.path,
                                             column=names.get(column, column))
    return MappedTable(table=table, names=names)


def _delimiter_hint(source: DataSource, columns: pd.Index) -> str:
    """When a csv header reads as one column holding another separator, say which to set."""
    if source.format != "csv" or len(columns) != 1:
        return ""
    for delimiter, shown in ((";", "';'"), ("\t", "'\\t'"), ("|", "'|'"), (",", "','")):
        if delimiter != source.delimiter and delimiter in str(columns[0]):
            return (f" (the header reads as one column: the file seems separated by {shown}; set "
                    f"`data.delimiter: {shown}`)")
    return ""


def _via(source: DataSource, ours: str) -> str:
    return f" (mapped to `{ours}` by `data.columns.{ours}`)" if ours in source.columns else ""


def _close(name: str, columns: pd.Index) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1, cutoff=0.8)
    return f" (the table has `{close[0]}`)" if close else ""
