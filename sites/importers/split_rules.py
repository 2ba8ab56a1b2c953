"""Assign every encounter a split by the site's rule: its own column, a seeded split by patient, or
a temporal split by date.

A hospital that already split its data (a `fold` column) should keep that split, so results are
comparable with its own studies; one that did not gets a seeded split by patient
(`sites.splits.split_by_patient`); and the Lang1 paper's evaluation — train on the past, test on the
future — is a split by date. Every rule keeps all encounters of a patient in one split, so a model
cannot recognise a patient instead of a risk. A split by date decides where a patient who straddles
a cut goes (`SplitByDate.straddling`); a split column may mark encounters to leave out
(`data.split.values.exclude`). Rows a rule drops are only marked here: the caller removes them and
keeps the file's row numbers for its error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sites.encounter_table import InvalidSiteData
from sites.split_settings import SplitByColumn, SplitByDate, SplitByPatient, SplitRule
from sites.splits import SplitFractions, split_by_patient
from sites.tasks import SPLIT_COLUMN, SPLITS

EXCLUDE = "exclude"
"""The pseudo-split of `data.split.values` whose encounters are left out."""


@dataclass(frozen=True)
class SplitOutcome:
    """The table with a `split` for every row, the rows to drop once it is validated, and what
    happened, in words, for `lang1-fl sites check`."""

    table: pd.DataFrame
    dropped: np.ndarray
    """One bool per row: True for encounters the rule leaves out (`values.exclude`, or
    `straddling: drop`)."""
    notes: tuple[str, ...] = ()


def apply_split_rule(df: pd.DataFrame, rule: SplitRule | None, *, file: Path | str) -> SplitOutcome:
    """`df` with our `split` column set by `rule` (None: the table's own `split` column, as is).

    `df` needs our `patient_id` column for a rule by patient or by date, and the rule's column."""
    keep = np.zeros(len(df), dtype=bool)
    if rule is None:
        if SPLIT_COLUMN not in df.columns:
            raise InvalidSiteData(
                f"{file}: column `{SPLIT_COLUMN}` is missing; expected it for the split (or a "
                "`data.split` rule in the site YAML: by patient or by date)")
        return SplitOutcome(df, keep)
    if not isinstance(rule, SplitByPatient):
        _require_column(df, rule.column, file=file, rule=rule)
    df = df.copy()
    if isinstance(rule, SplitByColumn):
        df[SPLIT_COLUMN] = _mapped_splits(df[rule.column], rule, file=file)
        excluded = (df[SPLIT_COLUMN] == EXCLUDE).to_numpy(dtype=bool)
        notes = ((f"{int(excluded.sum())} encounters left out: their `{rule.column}` is listed "
                  "under `data.split.values.exclude`",) if excluded.any() else ())
        return SplitOutcome(df, excluded, notes)
    if isinstance(rule, SplitByPatient):
        df[SPLIT_COLUMN] = split_by_patient(df["patient_id"].to_numpy(), seed=rule.seed,
                                            fractions=SplitFractions(*rule.fractions))
        return SplitOutcome(df, keep)
    return _by_date(df, rule, file=file)


def _require_column(df: pd.DataFrame, column: str, *, file: Path | str, rule: SplitRule) -> None:
    if column not in df.columns:
        what = "date" if isinstance(rule, SplitByDate) else "split"
        raise InvalidSiteData(f"{file}: column `{column}` is missing; expected it for the {what} "
                              "of each encounter (`data.split.column`)")


def _mapped_splits(values: pd.Series, rule: SplitByColumn, *, file: Path | str) -> pd.Series:
    """Our split name of each of the table's values (all text; unmapped values are errors)."""
    if not rule.values:
        return values  # already train/validation/test: the validation checks the values
    lookup = {theirs: split for split, listed in rule.values.items() for theirs in listed}
    blank = values.isna().to_numpy()
    text = values.astype(str).str.strip()
    mapped = text.map(lookup)
    bad = blank | mapped.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        shown = "empty" if blank[position] or text.iat[position] == "" else (
            f"{values.iat[position]!r}")
        raise InvalidSiteData(
            f"{file}: row {position + 1}, column `{rule.column}` is {shown}; expected one of "
            f"{', '.join(lookup)} (the values of `data.split.values`)")
    return mapped


def _by_date(df: pd.DataFrame, rule: SplitByDate, *, file: Path | str) -> SplitOutcome:
    """Each encounter's own split by its date; each patient's split is that of their first
    encounter; `straddling` says what happens to their encounters in a later split."""
    dates = parse_dates(df[rule.column], file=file, column=rule.column)
    test_from = pd.Timestamp(rule.test_from, tz="UTC")
    own = np.where(dates >= test_from, SPLITS[2], SPLITS[0]).astype(object)
    if rule.validation_from is not None:
        validation_from = pd.Timestamp(rule.validation_from, tz="UTC")
        own[(dates >= validation_from) & (dates < test_from)] = SPLITS[1]
    frame = pd.DataFrame({"patient": df["patient_id"].to_numpy(), "date": dates.to_numpy(),
                          "own": own})
    first = frame.sort_values("date", kind="stable").groupby("patient", sort=False,
                                                             dropna=False)["own"].first()
    patient_split = frame["patient"].map(first).to_numpy(dtype=object)
    straddle = own != patient_split
    df[SPLIT_COLUMN] = patient_split  # a patient's encounters stay together either way
    notes: tuple[str, ...] = ()
    if straddle.any():
        patients = frame.loc[straddle, "patient"].nunique()
        what = ("dropped (`straddling: drop`)" if rule.straddling == "drop"
                else "kept in the split of their first encounter (`straddling: first`)")
        notes = (f"split by date: {int(straddle.sum())} encounters of {patients} patients "
                 f"first seen in an earlier split {what}",)
    dropped = straddle if rule.straddling == "drop" else np.zeros(len(df), dtype=bool)
    return SplitOutcome(df, np.asarray(dropped, dtype=bool), notes)


def parse_dates(values: pd.Series, *, file: Path | str, column: str) -> pd.Series:
    """Dates (UTC timestamps) of ISO 8601 text or date values; a blank or unparseable value is an
    error naming the 1-based data row."""
    text = values.astype(str).str.strip()
    blank = values.isna().to_numpy() | (text == "").to_numpy()
    # pandas would read a number as nanoseconds since 1970: a date of 20230131 must be an error
    number = values.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(
        v, (bool, np.bool_))).to_numpy(dtype=bool) & ~blank
    if pd.api.types.is_datetime64_any_dtype(values):
        number[:] = False
    parsed = pd.to_datetime(values.where(~(blank | number)), errors="coerce", format="ISO8601",
                            utc=True)
    bad = blank | number | parsed.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        shown = "empty" if blank[position] else f"{values.iat[position]!r}"
        raise InvalidSiteData(
            f"{file}: row {position + 1}, column `{column}` is {shown}; expected a date like "
            "2024-01-31 (ISO 8601) for the split by date")
    return parsed
