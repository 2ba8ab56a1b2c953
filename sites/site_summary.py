"""The summary `lang1-fl sites check` prints: what a hospital can send its coordinator as it is.

Counts and shares only, never a note, an id or one encounter's value: encounters and patients per
split, each task's prevalence (binary, with its positive count) or class shares (multi-class) per
split, note lengths in words as percentiles, and the check's warnings. Token lengths need the run's
tokenizer, which lives in client/ (sites/ imports none of it): `lang1-fl sites check` appends them
through a table report (client/note_tokens.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS

PERCENTILES: tuple[int, ...] = (10, 50, 90, 99)
"""Length percentiles shown: no minimum or maximum, which would be one encounter's value."""


def render_table_summary(table: pd.DataFrame, tasks: Sequence[str], *, title: str,
                         warnings: Sequence[str] = ()) -> str:
    """The summary of a validated encounter table for `tasks`, under `title`."""
    lines = [title, f"{len(table)} encounters, {table['patient_id'].nunique()} patients"]
    splits = [s for s in SPLITS if (table[SPLIT_COLUMN] == s).any()]
    rows = {s: table[table[SPLIT_COLUMN] == s] for s in splits}
    lines += ["", f"{'':26s} " + " ".join(f"{s:>18s}" for s in splits),
              f"{'encounters':26s} " + " ".join(f"{len(rows[s]):>18d}" for s in splits),
              f"{'patients':26s} " + " ".join(
                  f"{rows[s]['patient_id'].nunique():>18d}" for s in splits)]
    for task in tasks:
        spec = TASKS[task]
        names = spec.class_names[1] if spec.is_binary else "/".join(spec.class_names)
        cells = [_shares(rows[s][spec.label_column], task) for s in splits]
        lines.append(f"{task + ' ' + names:26s} " + " ".join(f"{c:>18s}" for c in cells))
    lines.append("")
    for column, notes in note_columns(table, tasks).items():
        words = table[column].astype(str).str.split().str.len().to_numpy()
        lines.append(f"{notes} note words: {percentiles(words)}")
    if warnings:
        lines += ["", "warnings:", *(f"  - {warning}" for warning in warnings)]
    return "\n".join(lines)


def note_columns(table: pd.DataFrame, tasks: Sequence[str]) -> dict[str, str]:
    """Note columns `tasks` read -> the note types they hold ("admission/discharge" when one
    column serves both)."""
    columns: dict[str, list[str]] = {}
    for task in tasks:
        note = TASKS[task].note
        column = NOTE_COLUMNS[note]
        if column in table.columns:
            columns.setdefault(column, [])
            if note not in columns[column]:
                columns[column].append(note)
    merged: dict[str, str] = {}
    for column, notes in columns.items():
        same = next((other for other in merged if table[column].equals(table[other])), None)
        if same is None:
            merged[column] = "/".join(notes)
        else:  # one column mapped to both note types: shown once
            merged[same] += "/" + "/".join(notes)
    return merged


def percentiles(values: np.ndarray) -> str:
    """`p10 12, p50 80, ...` of `values` (PERCENTILES)."""
    cuts = np.percentile(values, PERCENTILES)
    return ", ".join(f"p{p} {cut:.0f}" for p, cut in zip(PERCENTILES, cuts))


def _shares(labels: pd.Series, task: str) -> str:
    """Positive share and count of a binary task; share of each class of a multi-class task."""
    spec = TASKS[task]
    if labels.empty:
        return "-"
    counts = np.bincount(labels.to_numpy(dtype=np.int64), minlength=spec.num_classes)
    shares = counts / counts.sum()
    if spec.is_binary:
        return f"{shares[1]:.1%} ({counts[1]})"
    return "/".join(f"{share * 100:.0f}" for share in shares) + "%"
