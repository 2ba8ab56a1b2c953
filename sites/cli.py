"""`lang1-fl sites generate` and `lang1-fl sites check`: their parsers, and what they do as plain
functions (`generate`, `summarize`) that return what happened, so they are easy to test and to
call from notebooks.

The `lang1-fl` entry point (server/cli.py) attaches these parsers. `sites check` also prints what
other packages know about a site, passed in since sites/ imports none of them: `site_reports` (its
privacy budget and ledger: client/privacy/cli.py) and `table_reports` (its note lengths in the
run's tokens: client/note_tokens.py). pandas and the importers are imported when a command runs,
so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sites.config import (
    DEFAULT_CONSORTIUM,
    InvalidSiteConfig,
    SiteConfig,
    is_consortium,
    load_consortium,
    load_site,
    resolve_consortium,
)
from sites.data_root import DATA_DIR_HELP
from sites.site_settings import TableFormat
from sites.tasks import TASKS
from sites.yaml_keys import read_yaml

if TYPE_CHECKING:
    import pandas as pd

    from sites.site_check import SiteCheck

log = logging.getLogger(__name__)

SiteReport = Callable[[SiteConfig], str]
"""One more paragraph of `sites check` about a site, from a package sites/ does not import."""
TableReport = Callable[[SiteConfig, "pd.DataFrame", Sequence[str], "str | None"], str]
"""One more paragraph of `sites check` about a site's validated table, given the `--set` run-config
overrides and the `--profile` name (e.g. the base model whose tokens it counts)."""


def add_sites_parser(commands: argparse._SubParsersAction, *,
                     site_reports: Sequence[SiteReport] = (),
                     table_reports: Sequence[TableReport] = ()) -> None:
    """`lang1-fl sites generate | check`; `check` prints the reports after the summary."""
    sites = commands.add_parser("sites", help="generate or check site data").add_subparsers(
        dest="sites_command", required=True
    )
    generate = sites.add_parser("generate", help="write a consortium's synthetic hospitals to disk")
    generate.add_argument("consortium", nargs="?", default="default")
    generate.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    generate.add_argument("--format", choices=("parquet", "jsonl", "csv"), default=None,
                          help="override the format named in the site YAMLs")
    generate.add_argument("--overwrite", action="store_true")
    generate.set_defaults(handler=cmd_generate)
    check = sites.add_parser("check", help="validate a site's (or every site of a consortium's) "
                             "YAML and data locally; print a summary to send the coordinator")
    check.add_argument("site", help="a site YAML, or a consortium YAML (or a shipped "
                       "consortium's name) to check each of its sites")
    check.add_argument("--site", dest="site_name", metavar="NAME",
                       help="of a consortium, check this site only")
    check.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    check.add_argument("--profile", metavar="NAME",
                       help="a run profile for the token counts, as `lang1-fl run` takes it, "
                       "e.g. --profile paper-512")
    check.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a run-config key for the token counts, as `lang1-fl run` takes it, "
                       "e.g. --set base-model=smollm2-135m --set max-length=256")
    check.set_defaults(handler=functools.partial(cmd_check, site_reports=tuple(site_reports),
                                                 table_reports=tuple(table_reports)))


def cmd_generate(args: argparse.Namespace) -> int:
    generate(resolve_consortium(args.consortium), args.data_dir,
             overwrite=args.overwrite, fmt=args.format)
    return 0


def cmd_check(args: argparse.Namespace, *, site_reports: Sequence[SiteReport] = (),
              table_reports: Sequence[TableReport] = ()) -> int:
    """Check one site YAML, or every site (or `--site NAME`) of a consortium YAML: a site that
    fails is reported on stderr in one line and the others are still checked; exit 2 if any
    failed."""
    from sites.encounter_table import InvalidSiteData
    from sites.site_check import check_site_data

    failed = 0
    for site in sites_to_check(args.site, site_name=args.site_name, data_dir=args.data_dir):
        try:
            check = check_site_data(site)
        except (InvalidSiteData, InvalidSiteConfig) as error:
            print(f"lang1-fl: site {site.name}: {error}", file=sys.stderr)
            failed += 1
            continue
        print(summarize(check))
        for table_report in table_reports:
            print(table_report(site, check.table, args.set or (), args.profile))
        for report in site_reports:
            print(report(site))
        print()
    return 2 if failed else 0


def sites_to_check(path: str, *, site_name: str | None, data_dir: Path | None
                   ) -> tuple[SiteConfig, ...]:
    """The sites a `sites check` argument names: a site YAML's site, or a consortium's sites
    (a shipped consortium by name too), `site_name` only when given."""
    file = resolve_consortium(path)
    if is_consortium(read_yaml(file, expected="a site or consortium YAML file")):
        consortium = load_consortium(file, data_root=data_dir)
        return (consortium.site(site_name),) if site_name else consortium.sites
    if site_name is not None:
        raise InvalidSiteConfig(f"{file}: is a site YAML; --site picks a site of a consortium "
                                "YAML (leave it out to check this site)")
    return (load_site(file, data_root=data_dir),)


_SUFFIX: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def generate(
    consortium_path: str | Path = DEFAULT_CONSORTIUM,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    fmt: TableFormat | None = None,
) -> dict[str, Path]:
    """Generate every synthetic site of a consortium under `out_dir` (the --data-dir its relative
    data paths resolve against; None: `sites.data_root`'s default). Existing tables are kept
    unless `overwrite`. `fmt` rewrites every site's table format (and file suffix); None keeps
    each site's own. Returns the paths written."""
    from sites.synthetic import generate_consortium

    consortium = load_consortium(consortium_path,
                                 data_root=None if out_dir is None else Path(out_dir))
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


def summarize(checked: SiteConfig | SiteCheck | pd.DataFrame) -> str:
    """A plain-text report to send the coordinator (no note text, no single encounter's value):
    encounters and patients per split, each task's prevalence with its positive count (binary)
    or class shares (multi-class) per split, note lengths in words, and the check's warnings.

    A site is checked first (`sites.site_check.check_site_data`, so this is also the check); the
    summary of a site says which importer, column mapping and split rule made the table and which
    tasks the site does not have; a DataFrame is summarised as it is, for the tasks whose label
    column it has."""
    from sites.importers.describe import unavailable_tasks
    from sites.site_check import SiteCheck, check_site_data
    from sites.site_summary import render_table_summary

    if isinstance(checked, SiteConfig):
        checked = check_site_data(checked)
    if isinstance(checked, SiteCheck):
        site = checked.site
        title = "\n".join([f"site {site.name} ({site.role}): {site.data.path}",
                           checked.imported.importer, *checked.imported.notes,
                           unavailable_tasks(site)])
        return render_table_summary(checked.table, site.tasks, title=title,
                                    warnings=checked.warnings)
    tasks = tuple(t for t, spec in TASKS.items() if spec.label_column in checked.columns)
    return render_table_summary(checked, tasks, title="encounter table")
