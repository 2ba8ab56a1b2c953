"""What `lang1-fl sites generate` and `lang1-fl sites check` do, as plain functions.

The command-line parser lives with the rest of the `lang1-fl` command (server/cli.py); these
functions do the work and return what happened, so they are easy to test and to call from notebooks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sites.config import DEFAULT_CONSORTIUM, SiteConfig, load_consortium
from sites.importers.describe import unavailable_tasks
from sites.importers.site_table import import_site_table
from sites.site_settings import TableFormat
from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS

log = logging.getLogger(__name__)

_SUFFIX: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def generate(
    consortium_path: str | Path = DEFAULT_CONSORTIUM,
    out_dir: str | Path = "lang1-fl-data",
    *,
    overwrite: bool = False,
    fmt: TableFormat | None = None,
) -> dict[str, Path]:
    """Generate every synthetic site of a consortium under `out_dir` (the folder its relative data
    paths resolve against). Existing tables are kept unless `overwrite`. `fmt` rewrites every
    site's table format (and file suffix); None keeps each site's own. Returns the paths written."""
    from sites.synthetic import generate_consortium

    consortium = load_consortium(consortium_path, data_root=Path(out_dir))
    if fmt is not None:
        if fmt not in _SUFFIX:
            raise ValueError(f"`fmt` is {fmt!r}; expected one of {', '.join(_SUFFIX)}")
        sites = tuple(dataclasses.replace(site, data=dataclasses.replace(
            site.data, format=fmt, path=site.data.path.with_suffix(_SUFFIX[fmt])))
            for site in consortium.sites)
        consortium = dataclasses.replace(consortium, sites=sites)
    start = time.perf_counter()
    written = generate_consortium(consortium, overwrite=overwrite)
    log.info("consortium %s: wrote %d of %d sites in %.1f s", consortium.name, len(written),
             len(consortium.sites), time.perf_counter() - start)
    return written


def summarize(site_or_table: SiteConfig | pd.DataFrame) -> str:
    """A plain-text report of a site's table: encounters and patients per split, each task's
    prevalence (binary) or class shares (multi-class) per split, and note lengths in words.

    A `SiteConfig` is imported and validated first (so this is also the check), and the summary
    says which importer, column mapping and split rule made the table and which tasks the site
    does not have; a DataFrame is summarised as it is, for the tasks whose label column it has."""
    if isinstance(site_or_table, SiteConfig):
        imported = import_site_table(site_or_table)
        table = imported.table
        title = "\n".join([
            f"site {site_or_table.name} ({site_or_table.role}): {site_or_table.data.path}",
            imported.importer, *imported.notes, unavailable_tasks(site_or_table)])
        tasks = site_or_table.tasks
    else:
        table, title = site_or_table, "encounter table"
        tasks = tuple(t for t, spec in TASKS.items() if spec.label_column in table.columns)
    lines = [f"{title}",
             f"{len(table)} encounters, {table['patient_id'].nunique()} patients"]
    splits = [s for s in SPLITS if (table[SPLIT_COLUMN] == s).any()]
    header = f"{'task':12s} {'classes':>22s} " + " ".join(f"{s:>24s}" for s in splits)
    lines += ["", header,
              f"{'encounters':12s} {'':>22s} " + " ".join(
                  f"{int((table[SPLIT_COLUMN] == s).sum()):>24d}" for s in splits)]
    for task in tasks:
        spec = TASKS[task]
        names = spec.class_names[1] if spec.is_binary else "/".join(spec.class_names)
        cells = [_shares(table.loc[table[SPLIT_COLUMN] == s, spec.label_column], spec)
                 for s in splits]
        lines.append(f"{task:12s} {names:>22s} " + " ".join(f"{c:>24s}" for c in cells))
    lines.append("")
    for note, column in NOTE_COLUMNS.items():
        if column in table.columns:
            words = table[column].astype(str).str.split().str.len().to_numpy()
            lines.append(f"{note} note words: median {np.median(words):.0f}, "
                         f"min {words.min()}, max {words.max()}")
    return "\n".join(lines)


def _shares(labels: pd.Series, spec) -> str:
    """Positive share of a binary task; share of each class of a multi-class task."""
    if labels.empty:
        return "-"
    counts = np.bincount(labels.to_numpy(dtype=np.int64), minlength=spec.num_classes)
    shares = counts / counts.sum()
    if spec.is_binary:
        return f"{shares[1]:.1%} ({counts[1]})"
    return "/".join(f"{share * 100:.0f}" for share in shares) + "%"
