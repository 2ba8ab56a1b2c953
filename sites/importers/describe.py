"""How a site's table is imported, in words: the importer, the column mapping, the split rule and
the tasks the site does not have.

`lang1-fl sites check` prints these lines above the counts, so the data manager who wrote the
mapping sees it read back from the parsed settings (not from their YAML) and can catch a swapped
column before a run. Built from the configuration alone: describing reads no data.
"""

from __future__ import annotations

from sites.config import SiteConfig
from sites.site_settings import DATASET_NAMES
from sites.split_settings import SplitByColumn, SplitByPatient, SplitRule
from sites.tasks import SPLITS, TASK_NAMES


def describe_source(site: SiteConfig) -> str:
    """`importer: ...`, then the column mapping, raw labels and split rule on indented lines."""
    source = site.data
    if source.is_table:
        lines = [f"importer: {source.format} table (sites.importers.tables)"]
        mapped = [f"{ours} <- {theirs}" for ours, theirs in source.columns.items()]
        lines.append("columns: " + (", ".join(mapped) if mapped else "as named (no mapping)"))
        raw = [f"{task} <- {theirs} ({'days' if task == 'los' else 'Charlson score'}, binned)"
               for task, theirs in source.raw_labels.items()]
        if raw:
            lines.append("raw labels: " + ", ".join(raw))
    else:
        module = "mimic" if source.format == "mimic-iv" else "meds"
        options = dict(source.options or {})
        lines = [f"importer: {DATASET_NAMES[source.format]} folder (sites.importers.{module})",
                 f"options: {options}" if options else "options: none (the importer's defaults)"]
    lines.append("split: " + describe_split(source.split))
    return "\n  ".join(lines)


def describe_split(rule: SplitRule | None) -> str:
    """The split rule in words, e.g. `by date admit_date: test from 2024-01-01`."""
    if rule is None:
        return "from column `split` (train/validation/test)"
    if isinstance(rule, SplitByColumn):
        if not rule.values:
            return f"from column `{rule.column}` (train/validation/test)"
        values = ", ".join(f"{split} = {'/'.join(theirs)}" for split, theirs in rule.values.items())
        return f"from column `{rule.column}` ({values})"
    if isinstance(rule, SplitByPatient):
        shares = "/".join(f"{share:g}" for share in rule.fractions)
        return f"by patient, seed {rule.seed}, {'/'.join(SPLITS)} shares {shares}"
    cuts = (f"validation from {rule.validation_from}, " if rule.validation_from else "")
    return (f"by date `{rule.column}`: {cuts}test from {rule.test_from}, straddling patients "
            f"{'dropped' if rule.straddling == 'drop' else 'by first encounter'}")


def unavailable_tasks(site: SiteConfig) -> str:
    """One line naming the tasks this site does not declare (they are not trained or scored
    here), with the reason where the dataset cannot have them."""
    missing = [task for task in TASK_NAMES if task not in site.tasks]
    if not missing:
        return "tasks unavailable here: none (all five declared)"
    why = {"denial": "MIMIC-IV has no insurance claims"} if site.data.format == "mimic-iv" else {}
    shown = [f"{task} ({why.get(task, 'not in `tasks`')})" for task in missing]
    return f"tasks unavailable here: {', '.join(shown)}"
