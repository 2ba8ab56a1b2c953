"""A MEDS dataset (events, subject splits, task labels) -> the canonical encounter table.

Why here: MEDS is the common shape that ETLs of many health systems (MIMIC-IV, eICU, OMOP
extracts) already produce, so one importer reaches them all. The site's `data.options` say which
label files hold our tasks and which event codes are notes:

- An encounter is one label row, `(subject_id, prediction_time)`. With several tasks, the label
  files are joined on that pair: a pair missing from any task's labels is dropped (counted in the
  log); tasks labelled at different times need one site each. `encounter_id` is
  `"<subject_id>@<prediction_time ISO 8601>"`, e.g. `"1001@2020-01-05T12:00:00"`.
- A note is an event whose `code` is the configured code or extends it by `//...` (`NOTE//DISCHARGE`
  matches `NOTE//DISCHARGE` and `NOTE//DISCHARGE//ADDENDUM`, not `NOTE//DISCHARGEX`); its text is
  `text_value`. An encounter's note of a type is the latest such event at or before
  `prediction_time` (ties: the one read last, data files in path order), and no older than
  `max_note_age_days` if set. An encounter without one is dropped and counted (`missing_notes:
  drop`, the default) or is an error naming its label row (`missing_notes: error`).
- `split`: the subject's MEDS split, train / tuning / held_out -> train / validation / test.
- Length of stay labels are days (binned here) or class indices (`los_labels: days | class`);
  comorbidity labels are Charlson scores or class indices (`comorbidity_labels: score | class`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from sites.field_checks import FieldError
from sites.importers.checks import build, check_mapping, data_error, is_text, typed
from sites.importers.meds_files import (
    data_files,
    dataset_name,
    parquet_columns,
    read_parquet,
    subject_splits,
)
from sites.importers.meds_labels import ValueKind, label_files, read_labels
from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, TASK_NAMES, TASKS, NoteType

logger = logging.getLogger(__name__)

LosLabels = Literal["days", "class"]
ComorbidityLabels = Literal["score", "class"]
MissingNotes = Literal["drop", "error"]
NOTE_TYPES: tuple[str, ...] = tuple(NOTE_COLUMNS)
EVENT_COLUMNS: list[str] = ["subject_id", "time", "code", "text_value"]


@dataclass(frozen=True)
class MedsOptions:
    """What a site YAML says under `data.options` for `format: meds`."""

    labels: tuple[tuple[str, str], ...]
    """(task, label path) pairs; a path is a Parquet file or a folder of them, relative to the
    dataset root (or absolute). The tasks the table has labels for, in this order."""
    notes: tuple[tuple[str, str], ...] = ()
    """(note type, code) pairs: `admission` and/or `discharge`, as the labelled tasks need."""
    los_labels: LosLabels = "days"
    """`days` (binned here) or `class` (already a class index 0..3)."""
    comorbidity_labels: ComorbidityLabels = "score"
    """`score` (a Charlson score, binned here) or `class` (already a class index 0..4)."""
    missing_notes: MissingNotes = "drop"
    """An encounter without its note: `drop` it (counted in the log) or stop with an `error`."""
    max_note_age_days: float | None = None
    """A note older than this before `prediction_time` does not count; None = any age."""

    def __post_init__(self) -> None:
        if not self.labels:
            raise FieldError("labels", {}, f"a mapping of task -> label path, tasks from "
                              f"{', '.join(TASK_NAMES)}")
        note_codes = dict(self.notes)
        for task, _ in self.labels:
            if task not in TASKS:
                raise FieldError(f"labels.{task}", task, f"one of {', '.join(TASK_NAMES)}")
            note = TASKS[task].note
            if note not in note_codes:
                raise FieldError(f"notes.{note}", None, f"the event code of {note} notes "
                                  f"(task {task!r} reads them), e.g. 'NOTE//{note.upper()}'")
        for key, allowed in (("los_labels", LosLabels), ("comorbidity_labels", ComorbidityLabels),
                             ("missing_notes", MissingNotes)):
            if getattr(self, key) not in get_args(allowed):
                raise FieldError(key, getattr(self, key),
                                  " or ".join(repr(a) for a in get_args(allowed)))
        age = self.max_note_age_days
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))
                                or not age > 0):
            raise FieldError("max_note_age_days", age, "a number of days > 0, or null")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(task for task, _ in self.labels)

    def value_kind(self, task: str) -> ValueKind:
        """How the task's label values read: see `sites.importers.meds_labels`."""
        if task == "los":
            return self.los_labels
        if task == "comorbidity":
            return self.comorbidity_labels
        return "binary"

    @classmethod
    def from_mapping(cls, raw: object, *, where: str) -> MedsOptions:
        """Options from the raw YAML mapping; errors name `where` and `data.options.KEY`."""
        given = check_mapping(raw, where=where, key="", allowed=(
            "labels", "notes", "los_labels", "comorbidity_labels", "missing_notes",
            "max_note_age_days"))
        for key, allowed in (("labels", TASK_NAMES), ("notes", NOTE_TYPES)):
            mapping = check_mapping(given.get(key), where=where, key=key, allowed=allowed)
            for name, value in mapping.items():
                typed(value, where=where, key=f"{key}.{name}", ok=is_text,
                      expected="a non-empty path" if key == "labels" else "an event code")
            given[key] = tuple((str(name), str(value).strip()) for name, value in mapping.items())
        return build(cls, given, where=where)


def read_meds(root: Path, options: Mapping[str, object], *, where: str) -> pd.DataFrame:
    """The canonical encounter table of a MEDS dataset (see the module docstring)."""
    settings = MedsOptions.from_mapping(options, where=where)
    root = Path(root)
    name = dataset_name(root)
    splits_path, splits = subject_splits(root)
    events = data_files(root)
    encounters = _joined_labels(root, settings)
    encounters = _with_splits(encounters, splits, splits_path)
    for note in dict.fromkeys(TASKS[task].note for task in settings.tasks):
        code = dict(settings.notes)[note]
        encounters = _with_note(encounters, _note_events(events, code), note=note, code=code,
                                settings=settings)
    if encounters.empty:
        raise data_error(f"{root}: no labelled encounter has its notes; expected at least one "
                         "encounter")
    logger.info("MEDS %s: %d encounters for %s", name, len(encounters), ", ".join(settings.tasks))
    return _canonical(encounters, settings)


def _joined_labels(root: Path, settings: MedsOptions) -> pd.DataFrame:
    """One row per (subject_id, prediction_time) labelled for every task."""
    joined: pd.DataFrame | None = None
    for task, relative in settings.labels:
        files = label_files(root / relative, task=task, option=f"data.options.labels.{task}")
        labels = read_labels(files, task=task, kind=settings.value_kind(task))
        if joined is None:
            joined = labels
            continue
        merged = joined.merge(labels.drop(columns="source"), on=["subject_id", "prediction_time"])
        unmatched = len(joined) + len(labels) - 2 * len(merged)
        if unmatched:
            logger.warning("MEDS: dropped %d label rows of %s that lack a label of another task "
                           "at the same (subject_id, prediction_time)", unmatched,
                           ", ".join(settings.tasks))
        joined = merged
    assert joined is not None  # MedsOptions requires labels
    if joined.empty:
        raise data_error(f"{root}: the label files of {', '.join(settings.tasks)} share no "
                         "(subject_id, prediction_time); expected the same encounters in each "
                         "(or one site per task)")
    return joined


def _with_splits(encounters: pd.DataFrame, splits: pd.Series, path: Path) -> pd.DataFrame:
    split = encounters["subject_id"].map(splits)
    missing = split.isna().to_numpy()
    if missing.any():
        row = encounters.iloc[int(missing.nonzero()[0][0])]
        raise data_error(f"{row['source']}: subject_id {row['subject_id']} is not in {path}; "
                         "expected every labelled subject to have a split")
    return encounters.assign(**{SPLIT_COLUMN: split.astype(str)})


def _matches(codes: pd.Series, code: str) -> pd.Series:
    """The code itself, or a code that extends it by `//...`."""
    return (codes == code) | codes.str.startswith(code + "//")


def _note_events(files: list[Path], code: str) -> pd.DataFrame:
    """`subject_id`, `time`, `text` of every note event with `code`, in read order."""
    found = []
    for file in files:
        names = parquet_columns(file)
        missing = [column for column in EVENT_COLUMNS if column not in names]
        if missing:
            raise data_error(f"{file}: column `{missing[0]}` is missing; expected MEDS events "
                             f"with {', '.join(EVENT_COLUMNS)}")
        table = read_parquet(file, EVENT_COLUMNS)
        hit = _matches(table["code"].astype(str), code).to_numpy()
        table = table[hit]
        for column, expected in (("time", "the note's time"), ("text_value", "the note text")):
            empty = table[column].isna().to_numpy()
            if column == "text_value":
                empty = empty | (table[column].astype(str).str.strip() == "").to_numpy()
            if empty.any():
                position = int(table.index[empty.nonzero()[0][0]])
                raise data_error(f"{file}: row {position + 1}, column `{column}` is empty for "
                                 f"note code {table['code'].iat[int(empty.nonzero()[0][0])]!r}; "
                                 f"expected {expected}")
        found.append(pd.DataFrame({"subject_id": table["subject_id"].astype("int64"),
                                   "time": table["time"].astype("datetime64[us]"),
                                   "text": table["text_value"].astype(str)}))
    return pd.concat(found, ignore_index=True)


def _with_note(encounters: pd.DataFrame, notes: pd.DataFrame, *, note: NoteType, code: str,
               settings: MedsOptions) -> pd.DataFrame:
    """`encounters` with the latest note of `note` type at or before each prediction time."""
    column = NOTE_COLUMNS[note]
    left = encounters.sort_values("prediction_time", kind="stable")
    right = notes.sort_values("time", kind="stable")
    merged = pd.merge_asof(left, right, left_on="prediction_time", right_on="time",
                           by="subject_id", direction="backward", allow_exact_matches=True)
    found = merged["text"].notna()
    if settings.max_note_age_days is not None:
        age = pd.Timedelta(days=settings.max_note_age_days)
        found &= (merged["prediction_time"] - merged["time"]) <= age
    if not found.all():
        if settings.missing_notes == "error":
            row = merged[~found].iloc[0]
            raise data_error(f"{row['source']}: subject_id {row['subject_id']} has no {note} note "
                             f"(code {code!r}) at or before prediction_time "
                             f"{row['prediction_time']}; expected one (or `missing_notes: drop`)")
        logger.warning("MEDS: dropped %d encounters without a %s note (code %r) at or before "
                       "their prediction time", int((~found).sum()), note, code)
    merged = merged[found].drop(columns="time").rename(columns={"text": column})
    return merged.sort_values(["subject_id", "prediction_time"], ignore_index=True)


def _canonical(encounters: pd.DataFrame, settings: MedsOptions) -> pd.DataFrame:
    notes = [NOTE_COLUMNS[note] for note in NOTE_COLUMNS
             if note in {TASKS[task].note for task in settings.tasks}]
    labels = [TASKS[task].label_column for task in settings.tasks]
    table = pd.DataFrame({
        "encounter_id": [f"{subject}@{time.isoformat()}" for subject, time in
                         zip(encounters["subject_id"], encounters["prediction_time"])],
        "patient_id": encounters["subject_id"].astype(str),
    })
    for column in notes:
        table[column] = encounters[column].astype(str)
    for column in labels:
        table[column] = encounters[column].astype("int64")
    table[SPLIT_COLUMN] = encounters[SPLIT_COLUMN].astype(str)
    return table
