"""How a site's encounters are split into train, validation and test: the three rules a site YAML's
`data.split` may name (`sites.importers.split_rules` applies them to a table)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from sites.field_checks import did_you_mean, frozen_copy, is_int, is_name, is_number, require
from sites.tasks import SPLITS

Straddling = Literal["first", "drop"]
SPLIT_VALUE_KEYS: tuple[str, ...] = (*SPLITS, "exclude")
"""Keys of `data.split.values`: our splits, and `exclude` for encounters to leave out."""


@dataclass(frozen=True)
class SplitByColumn:
    """The table's own split column, its values mapped to train/validation/test."""

    column: str = "split"
    """The table's column holding each encounter's split."""
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    """Our split name -> the table's values meaning it (compared as text); values under `exclude`
    mark encounters to leave out. Empty: the column already says `train`, `validation` or
    `test`."""

    def __post_init__(self) -> None:
        require(is_name(self.column), "column", self.column, "the name of the split column")
        require(isinstance(self.values, Mapping), "values", self.values,
                "a mapping like {train: TRAIN, validation: VAL, test: TEST}")
        seen: dict[str, str] = {}
        for split, theirs in self.values.items():
            require(split in SPLIT_VALUE_KEYS, f"values.{split}", theirs,
                    f"keys from {', '.join(SPLIT_VALUE_KEYS)}{did_you_mean(split, SPLIT_VALUE_KEYS)}")
            require(isinstance(theirs, tuple) and len(theirs) > 0
                    and all(isinstance(v, str) for v in theirs), f"values.{split}", theirs,
                    "a value or a list of values of the split column (text or integers)")
            for value in theirs:
                require(value not in seen, f"values.{split}", value,
                        f"each value under one split only (it is also under {seen.get(value)!r})")
                seen[value] = split
        object.__setattr__(self, "values", frozen_copy(self.values))


@dataclass(frozen=True)
class SplitByPatient:
    """A seeded split by patient (`sites.splits.split_by_patient`): no patient in two splits."""

    seed: int
    """Seeds the shuffle of patients: the same seed and patients give the same split."""
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    """Share of patients in train, validation and test; they sum to 1."""

    def __post_init__(self) -> None:
        from sites.splits import SplitFractions  # lazy: the splitter needs numpy

        require(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        ok = (isinstance(self.fractions, tuple) and len(self.fractions) == 3
              and all(is_number(f) for f in self.fractions))
        if ok:
            try:
                SplitFractions(*self.fractions)
            except ValueError:
                ok = False
        shown = (dict(zip(SPLITS, self.fractions)) if isinstance(self.fractions, tuple)
                 else self.fractions)
        require(ok, "fractions", shown, "shares {train, validation, test} >= 0 that sum to 1")


@dataclass(frozen=True)
class SplitByDate:
    """A temporal split (as Lang1 evaluates): train before `validation_from`, validation until
    `test_from`, test from `test_from` on. A patient's encounters all go to one split: the split of
    their first encounter (`straddling: first`), or their encounters that fall in a later split
    are dropped (`straddling: drop`)."""

    column: str
    """The table's column with each encounter's date (ISO 8601, e.g. 2023-01-31)."""
    test_from: dt.date
    """First date of the test split."""
    validation_from: dt.date | None = None
    """First date of the validation split; None: no validation split (train until `test_from`)."""
    straddling: Straddling = "first"
    """A patient with encounters on both sides of a cut: `first` puts all of them in the split of
    their first encounter (keeps every encounter; training may hold stays after the cut), `drop`
    drops those after their first split (each split stays inside its dates)."""

    def __post_init__(self) -> None:
        require(is_name(self.column), "column", self.column, "the name of the date column")
        for key in ("test_from", "validation_from"):
            value = getattr(self, key)
            if isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value.strip())
                except ValueError:
                    pass
            if isinstance(value, dt.datetime):
                value = value.date()
            require(isinstance(value, dt.date) or (value is None and key != "test_from"), key,
                    value, "a date like 2024-01-01")
            object.__setattr__(self, key, value)
        if self.validation_from is not None:
            require(self.validation_from < self.test_from, "validation_from",
                    self.validation_from, f"a date before `test_from` ({self.test_from})")
        require(self.straddling in get_args(Straddling), "straddling", self.straddling,
                "'first' (a patient goes where their first encounter falls) or 'drop' (their "
                "encounters in a later split are dropped)")


SplitRule = SplitByColumn | SplitByPatient | SplitByDate
