"""The pooled site of a transfer experiment: every training site's training data in one table.

Centralized training on pooled data is the upper reference a real consortium cannot run (the notes
would have to move); in simulation all tables are on one machine, so `lang1-fl experiment transfer`
builds it. Only the `train` and `validation` rows of each training site are pooled — never a test
row, never the external system — and each row keeps the split its own site gave it, so the pooled
model is evaluated on exactly the test rows the federated model is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sites.config import ConsortiumConfig, DataSource, InvalidSiteConfig, SiteConfig
from sites.data_root import data_root
from sites.dataset import read_site_table, write_site_table
from sites.site_settings import TrainingSettings
from sites.tasks import SPLIT_COLUMN

POOLED_SITE = "pooled"
"""Name of the pooled site; no site of a consortium may use it in an experiment."""
POOLED_SPLITS = ("train", "validation")


def pooled_site(consortium: ConsortiumConfig, *, data_dir: Path | None) -> SiteConfig:
    """The pooled site's config, its table at `<data root>/<consortium>-pooled/` (the data root
    of `sites.data_root`'s rule for the consortium file and `data_dir`): the training
    sites' tasks and batch size, and as many local steps per round as all training sites
    together, so it sees as many examples as the federation."""
    if POOLED_SITE in {s.name for s in consortium.sites}:
        raise InvalidSiteConfig(
            f"{consortium.source}: a site is named {POOLED_SITE!r}, the name the transfer "
            "experiment gives its pooled site; rename that site")
    first = consortium.training_sites[0]
    if consortium.source is None and data_dir is None:
        raise InvalidSiteConfig(f"consortium {consortium.name!r} was built in code: pass "
                                "`data_dir`, the folder for its pooled table")
    root = (Path(data_dir) if consortium.source is None
            else data_root(data_dir, consortium.source).folder)
    folder = root / f"{consortium.name}-{POOLED_SITE}"
    return SiteConfig(
        name=POOLED_SITE,
        role="train",
        data=DataSource(path=folder / "encounters.parquet", format="parquet"),
        tasks=consortium.tasks,
        training=TrainingSettings(
            batch_size=first.training.batch_size,
            local_steps=sum(s.training.local_steps for s in consortium.training_sites),
            max_physical_batch_size=first.training.max_physical_batch_size),
        evaluation=first.evaluation,
        device=first.device,
        source=consortium.source,
    )


def with_pooled_site(consortium: ConsortiumConfig, *, data_dir: Path | None
                     ) -> ConsortiumConfig:
    """The consortium with its pooled site appended (simulation node N = the pooled site)."""
    return ConsortiumConfig(name=consortium.name, seed=consortium.seed,
                            sites=consortium.sites + (pooled_site(consortium, data_dir=data_dir),),
                            source=consortium.source)


def pooled_table(consortium: ConsortiumConfig) -> pd.DataFrame:
    """Training and validation rows of every training site, ids prefixed with the site's name
    (two hospitals may both have a patient `p1`); columns every training table has."""
    parts = []
    for site in consortium.training_sites:
        table = read_site_table(site)
        table = table[table[SPLIT_COLUMN].isin(POOLED_SPLITS)].copy()
        for column in ("encounter_id", "patient_id"):
            table[column] = site.name + "/" + table[column].astype(str)
        parts.append(table)
    shared = [c for c in parts[0].columns if all(c in part.columns for part in parts)]
    return pd.concat([part[shared] for part in parts], ignore_index=True)


def write_pooled_table(consortium: ConsortiumConfig, *, data_dir: Path | None) -> SiteConfig:
    """Build the pooled table from the training sites' tables (atomically); return its site."""
    site = pooled_site(consortium, data_dir=data_dir)
    write_site_table(pooled_table(consortium), site.data)
    return site
