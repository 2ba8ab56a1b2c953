"""The settings a site YAML holds besides the site's identity, each a frozen, self-checking dataclass.

Each checks its own values in `__post_init__` (so settings built in code are checked too) and raises
`_FieldError` naming the field; `sites.config`'s loader adds the file and the key path. The site
and consortium themselves, and the loader, live in `sites.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

TableFormat = Literal["parquet", "jsonl", "csv"]
AccountantName = Literal["rdp", "prv"]


class InvalidSiteConfig(ValueError):
    """A site or consortium YAML is missing, malformed, or breaks a rule; the message says where."""


class _FieldError(InvalidSiteConfig):
    """A field rule broken in `__post_init__`; the loader adds the file and the key path."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"`{key}` is {value!r}; expected {expected}")
        self.key, self.value, self.expected = key, value, expected


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise _FieldError(key, value, expected)


@dataclass(frozen=True)
class DataSource:
    """Where a site's encounter table lives."""

    path: Path
    """Absolute path of the table (relative YAML paths are resolved by the loader)."""
    format: TableFormat
    """`parquet`, `jsonl` (one JSON object per line) or `csv`."""

    def __post_init__(self) -> None:
        _require(self.format in get_args(TableFormat), "format", self.format,
                 "'parquet', 'jsonl' or 'csv'")


@dataclass(frozen=True)
class TrainingSettings:
    """How a training site runs its local rounds."""

    batch_size: int = 16
    """Encounters per local step."""
    local_steps: int = 8
    """Optimizer steps per federated round (unless the run config overrides them)."""

    def __post_init__(self) -> None:
        for key in ("batch_size", "local_steps"):
            value = getattr(self, key)
            _require(_is_int(value) and value >= 1, key, value, "an integer >= 1")


@dataclass(frozen=True)
class EvaluationSettings:
    """How a site evaluates the global model."""

    batch_size: int = 64
    """Encounters per forward pass (no gradients, so larger than the training batch)."""
    max_examples: int = 0
    """Evaluate at most this many encounters of a split; 0 = the whole split."""

    def __post_init__(self) -> None:
        _require(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size",
                 self.batch_size, "an integer >= 1")
        _require(_is_int(self.max_examples) and self.max_examples >= 0, "max_examples",
                 self.max_examples, "an integer >= 0 (0 = the whole split)")


@dataclass(frozen=True)
class PrivacySettings:
    """A training site's differential-privacy budget for one run (DP-SGD with opacus).

    The site spends at most `target_epsilon` at `delta` over the whole planned run: the client
    derives one noise multiplier from it for rounds × local steps at its Poisson sampling rate.
    `delta` must also be below 1/n for the site's n training encounters, which only the data
    can tell: that check happens when the table is read (`client.privacy_plan`).
    """

    target_epsilon: float
    """ε the whole run may spend at this site (its budget)."""
    delta: float
    """δ of the (ε, δ) guarantee; below 1/n for n training encounters."""
    max_grad_norm: float
    """Per-encounter gradient clipping norm C (opacus `max_grad_norm`)."""
    accountant: AccountantName = "rdp"
    """opacus accountant that tracks the spend: `rdp` (default) or `prv`."""
    enabled: bool = True
    """`false` trains without DP: the site's reports say so loudly."""
    ledger_dir: Path | None = None
    """Folder of the site's privacy ledgers, one file per run (the loader defaults it to a
    `privacy-ledger` folder beside the data table)."""

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "enabled", self.enabled, "true or false")
        _require(_is_number(self.target_epsilon) and 0 < self.target_epsilon < float("inf"),
                 "target_epsilon", self.target_epsilon, "a finite number > 0")
        _require(_is_number(self.delta) and 0 < self.delta < 1, "delta", self.delta,
                 "a number with 0 < delta < 1 (and below 1/n for n training encounters)")
        _require(_is_number(self.max_grad_norm) and 0 < self.max_grad_norm < float("inf"),
                 "max_grad_norm", self.max_grad_norm, "a finite number > 0 (the clipping norm)")
        _require(self.accountant in get_args(AccountantName), "accountant", self.accountant,
                 "'rdp' or 'prv'")


@dataclass(frozen=True)
class SyntheticSpec:
    """How `lang1-fl sites generate` makes this site's table: a profile and a size."""

    profile: str
    """A profile of `sites.synthetic.profiles.PROFILES` (academic, community, ...)."""
    encounters: int
    """Number of encounters (rows) to generate."""

    def __post_init__(self) -> None:
        from sites.synthetic.profiles import PROFILES  # lazy: the generator needs numpy

        _require(self.profile in PROFILES, "profile", self.profile,
                 "one of " + ", ".join(PROFILES))
        _require(_is_int(self.encounters) and self.encounters >= 1, "encounters",
                 self.encounters, "an integer >= 1")
