"""Read, count, fingerprint and write a site's encounter table (Parquet, JSONL or CSV).

Reading goes through `sites.importers`, which maps a hospital's own column names, bins raw labels,
applies the site's split rule and reads MIMIC-IV / MEDS folders, then validates the table once, for
what the site's tasks need (sites/encounter_table.py: an error names the file, the 1-based data row,
the column, the value and what was expected). Writes go to a temporary file renamed into place, so
a reader never sees a half-written table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sites.config import DataSource, SiteConfig
from sites.encounter_table import TrainingUnits
from sites.importers.site_table import (
    count_training_rows,
    import_scoring_table,
    import_site_table,
    training_units,
)
from sites.importers.site_table import dataset_fingerprint as _dataset_fingerprint
from sites.importers.site_table import table_fingerprint as _table_fingerprint


def read_site_table(site: SiteConfig) -> pd.DataFrame:
    """The site's encounter table, validated for its tasks (ids and split as str, labels int64):
    read by its importer (`sites.importers`: a table under our or the hospital's column names, or
    a MIMIC-IV / MEDS folder) and split by its `data.split` rule."""
    return import_site_table(site).table


def read_scoring_table(site: SiteConfig, *, tasks: Sequence[str]) -> pd.DataFrame:
    """Every encounter of the site's table (no split rule, no labels needed), with the ids and
    the notes that a model of `tasks` reads, validated (ids as str): what a finished model scores
    (client/score.py). Errors name the file, row and column as `read_site_table`'s do."""
    return import_scoring_table(site, tasks=tasks)


def count_training_encounters(site: SiteConfig) -> int:
    """Rows of the table in the `train` split, reading only the columns the split needs (no note
    text): what a privacy forecast needs before any data is touched."""
    return count_training_rows(site)


def count_training_units(site: SiteConfig) -> TrainingUnits:
    """Encounters and patients of the `train` split (`TrainingUnits`), without reading a note:
    the privacy plan's n in either privacy unit."""
    return training_units(site)


def dataset_fingerprint(site: SiteConfig) -> str:
    """The fingerprint the site's lifetime privacy budget is keyed by (ids only, no notes)."""
    return _dataset_fingerprint(site)


def table_fingerprint(table: pd.DataFrame) -> str:
    """`dataset_fingerprint` of a table already read (a site's runtime reads it anyway)."""
    return _table_fingerprint(table)


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
