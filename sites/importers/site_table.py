"""A site's encounter table from whatever it holds: read, map, split, validate — in that order.

This is the one path from a site YAML's `data` block to the validated table the client trains on
(`sites.dataset.read_site_table` calls it), so a generated Parquet file, a hospital's CSV under its
own column names and a MIMIC-IV folder all arrive with the same columns and the same guarantees.
Every error names the row of the file (rows a split rule leaves out are removed first, their
numbers kept); nothing is written anywhere, so a failure leaves nothing half-done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from sites.config import SiteConfig
from sites.encounter_table import (
    InvalidSiteData,
    TrainingUnits,
    validate_scoring_table,
    validate_site_table,
)
from sites.importers.describe import describe_source
from sites.importers.split_rules import SplitOutcome, apply_split_rule
from sites.importers.tables import read_columns, read_mapped_table
from sites.split_settings import SplitByColumn, SplitByDate
from sites.tasks import SPLIT_COLUMN, SPLITS


@dataclass(frozen=True)
class ImportedTable:
    """A validated encounter table and, in words, how it was made (for `lang1-fl sites check`)."""

    table: pd.DataFrame
    importer: str
    """Which importer, column mapping and split rule made the table."""
    notes: tuple[str, ...] = ()
    """What the import did beyond the mapping (e.g. encounters a split by date dropped)."""


def import_site_table(site: SiteConfig) -> ImportedTable:
    """The site's table, read by its importer, split by its rule and validated for its tasks."""
    source = site.data
    if source.is_table:
        mapped = read_mapped_table(source, tasks=site.tasks, site_name=site.name)
    else:
        from sites.importers.datasets import read_dataset  # its readers are large: lazily

        mapped = read_dataset(site)
    outcome = _split(mapped.table, site)
    kept = ~outcome.dropped
    if not kept.any():
        raise InvalidSiteData(
            f"{source.path}: no rows left after the split rule left out all "
            f"{len(kept)} encounters ({'; '.join(outcome.notes)}); expected at least one encounter")
    names = dict(mapped.names)
    if isinstance(source.split, SplitByColumn):
        names[SPLIT_COLUMN] = source.split.column
    table = validate_site_table(outcome.table.loc[kept], tasks=site.tasks, file=source.path,
                                names=names, rows=np.flatnonzero(kept) + 1)
    return ImportedTable(table=table, importer=describe_source(site), notes=outcome.notes)


def _split(table: pd.DataFrame, site: SiteConfig) -> SplitOutcome:
    """The site's split rule applied. An external site is evaluated whole, never trained on
    (client/site.py), so it needs no split: without a rule or a split column, all its rows are
    `test`."""
    if site.is_external and site.data.split is None and SPLIT_COLUMN not in table.columns:
        return SplitOutcome(table.assign(**{SPLIT_COLUMN: SPLITS[2]}),
                            np.zeros(len(table), dtype=bool),
                            ("external site without a split: its whole table is the test split",))
    return apply_split_rule(table, site.data.split, file=site.data.path)


def import_scoring_table(site: SiteConfig, *, tasks: Sequence[str]) -> pd.DataFrame:
    """Every encounter of the site's data, for scoring by a model of `tasks` (which need not be
    the site's own): ids and the notes those tasks read, validated; no split rule is applied and
    labels are not needed (a table keeps any it has, unchecked). A dataset folder is imported as
    for training, with `tasks` as the site's tasks."""
    source = site.data
    if source.is_table:
        mapped = read_mapped_table(source, tasks=tasks, site_name=site.name, labels=False)
    else:
        from sites.importers.datasets import read_dataset  # its readers are large: lazily

        mapped = read_dataset(replace(site, tasks=tuple(tasks)))
    return validate_scoring_table(mapped.table, tasks=tasks, file=source.path, names=mapped.names)


def training_units(site: SiteConfig) -> TrainingUnits:
    """Encounters and patients in the site's `train` split, reading only the id columns and the
    columns its split rule needs (no notes) from a table; a dataset folder is imported whole (its
    importer decides what it reads)."""
    table = _ids_and_splits(site)
    train = table[table[SPLIT_COLUMN] == SPLITS[0]]
    return TrainingUnits(encounters=len(train), patients=int(train["patient_id"].nunique()))


def count_training_rows(site: SiteConfig) -> int:
    """Encounters in the site's `train` split (see `training_units`)."""
    return training_units(site).encounters


def dataset_fingerprint(site: SiteConfig) -> str:
    """`sha256:<hex>` over the sorted patient ids and encounter ids of every encounter the site's
    table holds (any split): what the site's lifetime privacy budget is keyed by. It does not
    change when the table is re-exported in another format, reordered, re-split or its notes are
    re-processed (the same patients); it changes when encounters are added or removed."""
    return table_fingerprint(_ids_and_splits(site))


def table_fingerprint(table: pd.DataFrame) -> str:
    """`dataset_fingerprint` of an encounter table already read (its id columns only)."""
    digest = hashlib.sha256()
    for column in ("patient_id", "encounter_id"):
        digest.update(f"{column}\n".encode())
        for value in sorted(table[column].astype(str).unique()):
            digest.update(value.encode("utf-8") + b"\n")
    return "sha256:" + digest.hexdigest()


def _ids_and_splits(site: SiteConfig) -> pd.DataFrame:
    """`encounter_id`, `patient_id` and `split` of every kept encounter, without the notes."""
    source = site.data
    if not source.is_table:
        return import_site_table(site).table[["encounter_id", "patient_id", SPLIT_COLUMN]]
    rule = source.split
    ids = {ours: source.columns.get(ours, ours) for ours in ("encounter_id", "patient_id")}
    wanted = list(ids.values())
    if isinstance(rule, SplitByColumn) or (rule is None and not site.is_external):
        wanted.append(SPLIT_COLUMN if rule is None else rule.column)
    elif isinstance(rule, SplitByDate):
        wanted.append(rule.column)
    columns = read_columns(source, list(dict.fromkeys(wanted)), site_name=site.name)
    columns = columns.rename(columns={theirs: ours for ours, theirs in ids.items()})
    outcome = _split(columns, site)
    return outcome.table.loc[~outcome.dropped, ["encounter_id", "patient_id", SPLIT_COLUMN]]
