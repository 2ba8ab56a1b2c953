"""The site check: a site's table imported and validated, then the rules that span its table and its
settings, before anything trains.

`lang1-fl sites check` prints it and `lang1-fl run` calls `check_site_data` for every site before
Flower starts, so a training site with nothing to train on, or a label a split cannot score, stops
the run with one line instead of failing inside every round. Errors raise `InvalidSiteData`;
what is legal but probably wrong comes back as warnings, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sites.config import SiteConfig
from sites.encounter_table import InvalidSiteData
from sites.importers.site_table import ImportedTable, import_site_table
from sites.tasks import SPLIT_COLUMN, SPLITS, TASKS

MIN_POSITIVES = 10
"""Fewer positives than this in a task's split make its AUROC too noisy to compare sites by: the
check warns (one death in a validation split is a coin toss, not a measurement)."""


@dataclass(frozen=True)
class SiteCheck:
    """A site's validated table, how it was imported, and the warnings of its check."""

    site: SiteConfig
    imported: ImportedTable
    warnings: tuple[str, ...]

    @property
    def table(self) -> pd.DataFrame:
        return self.imported.table


def check_site_data(site: SiteConfig) -> SiteCheck:
    """Import and validate `site`'s table (`sites.importers.site_table`), then check it against
    the site's role, tasks and batch size; raises `InvalidSiteData` naming the file."""
    imported = import_site_table(site)
    table, file = imported.table, site.data.path
    train = table[table[SPLIT_COLUMN] == SPLITS[0]]
    if not site.is_external and train.empty:
        raise InvalidSiteData(
            f"{file}: site {site.name!r} has role 'train' but no encounter in the train split; "
            "expected some (check `data.split`, or give the site role 'external' to evaluate it "
            "only)")
    warnings = [*_thin_labels(site, table), *_batch_warnings(site, len(train))]
    return SiteCheck(site=site, imported=imported, warnings=tuple(warnings))


def class_counts(labels: pd.Series, task: str) -> np.ndarray:
    """Encounters of each class of `task` (binary: [negatives, positives])."""
    return np.bincount(labels.to_numpy(dtype=np.int64), minlength=TASKS[task].num_classes)


def _thin_labels(site: SiteConfig, table: pd.DataFrame) -> list[str]:
    """Warnings for tasks whose AUROC is undefined in a split (one class) and one line for the
    site's thin cells (fewer than `MIN_POSITIVES` positives: of a binary task's `yes`, of any class
    of a multi-class task), e.g. `mortality 'yes' validation 1, test 8`: a synthetic hospital
    of 1,500 encounters has several, and one line per site keeps them readable."""
    warnings, thin = [], []
    for task in site.tasks:
        spec = TASKS[task]
        names = spec.class_names[1:] if spec.is_binary else spec.class_names
        counts_in = {}
        for split in SPLITS:
            rows = table[table[SPLIT_COLUMN] == split]
            if rows.empty:
                continue
            counts = class_counts(rows[spec.label_column], task)
            if np.count_nonzero(counts) < 2:
                # Not an error: in a federation a small hospital may see no death in its
                # train split and still learn the other tasks while the others teach this one
                what = ("the site's own steps teach it nothing of this task; if that is "
                        "unexpected, check `data.columns` and `data.label_values`"
                        if split == SPLITS[0] else "its AUROC there is undefined (not scored)")
                warnings.append(f"site {site.name}: {task} has one class only in the {split} "
                                f"split: {what}")
                continue
            counts_in[split] = counts[1:] if spec.is_binary else counts
        for i, name in enumerate(names):
            low = [f"{split} {int(c[i])}" for split, c in counts_in.items() if c[i] < MIN_POSITIVES]
            if low:
                thin.append(f"{task} {name!r} {', '.join(low)}")
    if thin:
        warnings.append(f"site {site.name}: fewer than {MIN_POSITIVES} positives, so a noisy "
                        f"AUROC there: {'; '.join(thin)}")
    return warnings


def _batch_warnings(site: SiteConfig, train_rows: int) -> list[str]:
    if site.is_external or site.training.batch_size <= train_rows:
        return []
    return [f"site {site.name}: `training.batch_size` {site.training.batch_size} is larger than "
            f"its {train_rows} training encounters: every step takes the whole train split"]
