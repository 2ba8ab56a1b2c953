"""`lang1-fl sites generate` and `lang1-fl sites check`: their parsers, and what they do as plain
functions (`generate`, `summarize`) that return what happened, so they are easy to test and to
call from notebooks.

The `lang1-fl` entry point (server/cli.py) attaches these parsers. `sites check` also prints what
other packages know about a site (its privacy budget and ledger: client/privacy/cli.py), passed in
as `site_reports`, since sites/ imports none of them. pandas and the importers are imported when
a command runs, so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sites.config import (
    DEFAULT_CONSORTIUM,
    DEFAULT_DATA_DIR,
    SiteConfig,
    load_consortium,
    load_site,
    resolve_consortium,
)
from sites.site_settings import TableFormat
from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SiteReport = Callable[[SiteConfig], str]
"""One more paragraph of `sites check` about a site, from a package sites/ does not import."""


def add_sites_parser(commands: argparse._SubParsersAction, *,
                     site_reports: Sequence[SiteReport] = ()) -> None:
    """`lang1-fl sites generate | check`; `check` prints `site_reports` after the summary."""
    sites = commands.add_parser("sites", help="generate or check site data").add_subparsers(
        dest="sites_command", required=True
    )
    generate = sites.add_parser("generate", help="write a consortium's synthetic hospitals to disk")
    generate.add_argument("consortium", nargs="?", default="default")
    generate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    generate.add_argument("--format", choices=("parquet", "jsonl", "csv"), default=None,
                          help="override the format named in the site YAMLs")
    generate.add_argument("--overwrite", action="store_true")
    generate.set_defaults(handler=cmd_generate)
    check = sites.add_parser("check", help="validate a site's YAML and data locally; print a summary")
    check.add_argument("site", type=Path)
    check.add_argument("--data-dir", type=Path, default=None,
                       help="folder relative data paths resolve against (default: the YAML's)")
    check.set_defaults(handler=functools.partial(cmd_check, site_reports=tuple(site_reports)))


def cmd_generate(args: argparse.Namespace) -> int:
    generate(resolve_consortium(args.consortium), args.data_dir.resolve(),
             overwrite=args.overwrite, fmt=args.format)
    return 0


def cmd_check(args: argparse.Namespace, *, site_reports: Sequence[SiteReport] = ()) -> int:
    site = load_site(args.site, data_root=args.data_dir)
    print(summarize(site))
    for report in site_reports:
        print(report(site))
    return 0

_SUFFIX: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def generate(
    consortium_path: str | Path = DEFAULT_CONSORTIUM,
    out_dir: str | Path = DEFAULT_DATA_DIR,
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
    import numpy as np

    from sites.importers.describe import unavailable_tasks
    from sites.importers.site_table import import_site_table

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
    import numpy as np

    if labels.empty:
        return "-"
    counts = np.bincount(labels.to_numpy(dtype=np.int64), minlength=spec.num_classes)
    shares = counts / counts.sum()
    if spec.is_binary:
        return f"{shares[1]:.1%} ({counts[1]})"
    return "/".join(f"{share * 100:.0f}" for share in shares) + "%"
