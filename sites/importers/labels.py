"""Raw labels (length of stay in days, Charlson score) binned into class indices.

Hospitals store the quantity, not our bins. Binning here, with `sites.tasks.los_class` and
`cci_class`, keeps the bin edges in one place: an imported site and a generated one cannot disagree
about whether a 5.5-day stay is "4-5". A value that is not a number >= 0 (or, for the Charlson
score, not a whole number) is an error naming the file, the 1-based data row and the hospital's
column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sites.encounter_table import InvalidSiteData
from sites.tasks import TASKS, cci_class, los_class

_RAW: dict[str, tuple[Callable[[float], int], str]] = {
    "los": (los_class, "a length of stay in days >= 0"),
    "comorbidity": (cci_class, "a whole Charlson score >= 0"),
}
"""Task -> (its binning function in sites.tasks, what a raw value must be)."""


def bin_raw_labels(values: pd.Series, *, task: str, file: Path | str, column: str) -> pd.Series:
    """Class indices (int64) of raw `values` of `task` (`los` or `comorbidity`)."""
    binner, expected = _RAW[task]
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(values.where(text != "", np.nan), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(numbers) | (numbers < 0)
    if task == "comorbidity":
        bad |= numbers != np.round(numbers)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        number = numbers[position]
        if not np.isnan(number):
            shown = str(int(number)) if number == int(number) else str(number)
        elif text.iat[position] in ("", "nan", "None", "<NA>"):
            shown = "missing"
        else:
            shown = repr(values.iat[position])
        bins = ", ".join(TASKS[task].class_names)
        raise InvalidSiteData(
            f"{file}: row {position + 1}, column `{column}` is {shown}; expected {expected} "
            f"(`data.raw_labels.{task}`, binned {bins})")
    return pd.Series([binner(float(n)) for n in numbers], index=values.index, dtype=np.int64,
                     name=TASKS[task].label_column)


def map_label_values(values: pd.Series, classes: Mapping[str, tuple[str, ...]], *, task: str,
                     file: Path | str, column: str) -> pd.Series:
    """Class indices (int64) of labels the table writes in its own words (`data.label_values`),
    compared as text ignoring case and surrounding spaces; a value not listed is an error naming
    the 1-based data row, so a new code in the export is never read as a class silently."""
    spec = TASKS[task]
    lookup = {theirs.strip().lower(): spec.class_names.index(name)
              for name, listed in classes.items() for theirs in listed}
    text = values.astype(str).str.strip().str.lower()
    mapped = text.map(lookup)
    bad = mapped.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        value = values.iat[position]
        shown = "empty" if not str(value).strip() or pd.isna(value) else repr(value)
        listed = ", ".join(f"{theirs} ({name})" for name, group in classes.items()
                           for theirs in group)
        raise InvalidSiteData(
            f"{file}: row {position + 1}, column `{column}` is {shown}; expected one of "
            f"{listed} (`data.label_values.{task}`; add the value there if it has a class)")
    return pd.Series(mapped.to_numpy(dtype=np.int64), index=values.index,
                     name=spec.label_column)
