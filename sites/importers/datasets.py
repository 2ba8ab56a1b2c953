"""Dataset folders (MIMIC-IV, MEDS): call their importer, then check it gave what the site needs.

A public dataset is not one table: `sites.importers.mimic` and `sites.importers.meds` assemble the
encounter table from its files, with the site YAML's `data.options` passed to them verbatim. This
module is the seam between those readers and the rest of the import: it imports them lazily (they
are large and only MIMIC-IV or MEDS sites need them), and it refuses a task the dataset has no
labels for with an error saying so, instead of a missing-column message deep in the validation.
Label columns of tasks the site does not declare are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from sites.config import SiteConfig, display_path
from sites.encounter_table import InvalidSiteData, required_columns
from sites.importers.tables import MappedTable
from sites.site_settings import DATASET_NAMES
from sites.tasks import SPLIT_COLUMN, TASKS

Reader = Callable[..., pd.DataFrame]


def reader_for(fmt: str) -> Reader:
    """The importer function of a dataset format (imported on first use)."""
    if fmt == "mimic-iv":
        from sites.importers.mimic import read_mimic

        return read_mimic
    if fmt == "meds":
        from sites.importers.meds import read_meds

        return read_meds
    raise ValueError(f"`fmt` is {fmt!r}; expected one of {', '.join(DATASET_NAMES)}")


def read_dataset(site: SiteConfig) -> MappedTable:
    """The encounter table the site's dataset importer builds, with only the declared tasks'
    labels; raises `InvalidSiteData` for a missing folder or a task the dataset cannot label."""
    source, name = site.data, DATASET_NAMES[site.data.format]
    root = source.path
    if not root.exists():
        raise InvalidSiteData(f"{root}: does not exist; expected the {name} root folder of site "
                              f"{site.name!r} (`data.path`)")
    if not root.is_dir():
        raise InvalidSiteData(f"{root}: is a file; expected the {name} root folder of site "
                              f"{site.name!r} (`data.path`)")
    options: Mapping[str, object] = source.options if source.options is not None else {}
    table = reader_for(source.format)(Path(root), options, where=display_path(site.source))
    for column, why in required_columns(site.tasks).items():
        if column in table.columns or column == SPLIT_COLUMN:
            continue  # the split rule makes or checks the split
        task = next((t for t in site.tasks if TASKS[t].label_column == column), None)
        if task is not None:
            raise InvalidSiteData(
                f"{root}: task {task!r} is unavailable for {name} (its importer gives no "
                f"`{column}` labels); expected `tasks` without {task!r} in "
                f"{display_path(site.source)}")
        raise InvalidSiteData(f"{root}: the {name} importer gave no `{column}` column; expected "
                              f"it for {why}")
    undeclared = [spec.label_column for task, spec in TASKS.items()
                  if task not in site.tasks and spec.label_column in table.columns]
    return MappedTable(table=table.drop(columns=undeclared))
