"""The settings a site YAML holds besides the site's identity, each a frozen, self-checking dataclass.

Each checks its own values in `__post_init__` (so settings built in code are checked too) and raises
`FieldError` naming the field; `sites.config`'s loader adds the file and the key path. The site
and consortium themselves, and the loader, live in `sites.config`; the split rules in
`sites.split_settings`, the shared field rules in `sites.field_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from sites.data_root import DataRoot
from sites.field_checks import did_you_mean, frozen_copy, is_int, is_name, is_number, require
from sites.split_settings import SplitByColumn, SplitByDate, SplitByPatient, SplitRule
from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, TASKS

TableFormat = Literal["parquet", "jsonl", "csv"]
DatasetFormat = Literal["mimic-iv", "meds"]
DataFormat = Literal["parquet", "jsonl", "csv", "mimic-iv", "meds"]
AccountantName = Literal["rdp", "prv"]
PrivacyUnit = Literal["encounter", "patient"]

MAPPABLE_COLUMNS: tuple[str, ...] = (
    *ID_COLUMNS, *NOTE_COLUMNS.values(), *(spec.label_column for spec in TASKS.values()))
"""Our columns a site may map to its own column names under `data.columns`."""
RAW_LABEL_TASKS: tuple[str, ...] = ("los", "comorbidity")
"""Tasks whose label may be given raw (days, Charlson points) under `data.raw_labels`; binned with
`sites.tasks.los_class` / `cci_class`."""
DATASET_NAMES: dict[str, str] = {"mimic-iv": "MIMIC-IV", "meds": "MEDS"}
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
"""Field separators a csv table may use (`data.delimiter`); a `.tsv` file defaults to a tab."""
MAX_BATCH_SIZE = 1_000_000
"""More encounters than any hospital's split: a batch size above it is a typo, not a setting."""




@dataclass(frozen=True)
class DataSource:
    """Where a site's encounter data lives and how it maps to our encounter table.

    A table (`parquet`, `jsonl`, `csv`) may keep the hospital's column names: `columns` maps ours
    to theirs, `raw_labels` names columns of raw length of stay / Charlson score to bin, and `split`
    says how encounters are split. A dataset folder (`mimic-iv`, `meds`) is read by its importer
    in `sites.importers`, which gets `options` verbatim.
    """

    path: Path
    """Absolute path of the table, or the dataset's root folder (relative YAML paths are resolved
    by the loader)."""
    format: DataFormat
    """`parquet`, `jsonl` (one JSON object per line) or `csv` tables; `mimic-iv` or `meds`
    dataset folders."""
    columns: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Our column name -> the table's (`MAPPABLE_COLUMNS`); unmapped columns keep our names. The
    two note types may name one column (in YAML, `note: TEXT` maps both): every task reads it."""
    raw_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Task (`los` or `comorbidity`) -> the table's column of raw days / Charlson points."""
    split: SplitRule | None = None
    """How encounters are split; None: the table's own `split` column, values as they are (an
    external site without one: every row is its test split)."""
    options: Mapping[str, object] | None = field(default=None, hash=False)
    """Settings of the `mimic-iv` / `meds` importer, passed to it verbatim."""
    delimiter: str = ","
    """Field separator of a csv table: one of `DELIMITERS` (a `.tsv` file: a tab)."""
    label_values: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict,
                                                                      hash=False)
    """Task -> our class name -> the table's values meaning it (compared as text, ignoring case
    and surrounding spaces), for labels a table writes in its own words, e.g. {mortality: {yes:
    [Expired], no: [Alive, Transferred]}}. A binary task needs none for 0/1, yes/no, y/n or
    true/false."""
    allow_outside_data_dir: bool = False
    """Read a relative `path` that leads outside its data root (`../`, or a symlink elsewhere);
    refused unless set (`sites.data_root`)."""
    root: DataRoot | None = field(default=None, compare=False)
    """The folder a relative `path` resolved against and why (None when built in code)."""

    def __post_init__(self) -> None:
        require(self.format in get_args(DataFormat), "format", self.format,
                "'parquet', 'jsonl' or 'csv' (a table), or 'mimic-iv' or 'meds' (a dataset "
                "folder)")
        is_table = self.format in get_args(TableFormat)
        for key in ("columns", "raw_labels"):
            value = getattr(self, key)
            require(isinstance(value, Mapping), key, value,
                    "a mapping of our names to the table's column names")
            require(is_table or not value, key, dict(value),
                    f"no `{key}` for a {self.format} dataset (its importer names the columns; "
                    "its settings go under `options`)")
        self._check_columns()
        self._check_label_values()
        require(self.delimiter in DELIMITERS, "delimiter", self.delimiter,
                "one of ',', ';', '\\t' (tab) or '|'")
        require(self.delimiter == "," or self.format == "csv", "delimiter", self.delimiter,
                "no `delimiter` for a format other than csv")
        require(isinstance(self.allow_outside_data_dir, bool), "allow_outside_data_dir",
                self.allow_outside_data_dir, "true or false")
        require(self.options is None or isinstance(self.options, Mapping), "options",
                self.options, "a mapping of importer settings")
        require(self.options is None or not is_table, "options", self.options,
                f"no `options` for a {self.format} table (map its columns under `columns`)")
        require(self.split is None or isinstance(self.split, (SplitByColumn, SplitByPatient,
                                                              SplitByDate)),
                "split", self.split, "a split rule")
        if self.format == "mimic-iv":
            require(self.split is not None and not isinstance(self.split, SplitByColumn),
                    "split", None if self.split is None else "by column",
                    "a split rule by patient or by date (MIMIC-IV has no split column), e.g. "
                    "{by: patient, seed: 7} or {by: date, column: admittime, test_from: "
                    "2017-01-01}")
        object.__setattr__(self, "columns", frozen_copy(self.columns))
        object.__setattr__(self, "raw_labels", frozen_copy(self.raw_labels))
        object.__setattr__(self, "label_values", {task: frozen_copy(classes) for task, classes
                                                  in self.label_values.items()})
        if self.options is not None:
            object.__setattr__(self, "options", frozen_copy(self.options))

    def _check_columns(self) -> None:
        used: dict[str, str] = {}
        for group, allowed in (("columns", MAPPABLE_COLUMNS), ("raw_labels", RAW_LABEL_TASKS)):
            for ours, theirs in getattr(self, group).items():
                if group == "columns" and ours == "split":
                    expected = "the split column under `split.column`, e.g. {column: fold}"
                else:
                    expected = f"keys from {', '.join(allowed)}{did_you_mean(ours, allowed)}"
                require(ours in allowed, f"{group}.{ours}", theirs, expected)
                require(is_name(theirs), f"{group}.{ours}", theirs,
                        "the name of a column of the table")
                notes = {f"columns.{note}" for note in NOTE_COLUMNS.values()}
                shared_note = f"{group}.{ours}" in notes and used.get(theirs) in notes
                require(theirs not in used or shared_note, f"{group}.{ours}", theirs,
                        f"a column not already mapped (it is mapped by `{used.get(theirs)}`; "
                        "only the two note types may share one column)")
                used.setdefault(theirs, f"{group}.{ours}")
        for task in self.raw_labels:
            require(task not in self.columns, f"raw_labels.{task}", self.raw_labels[task],
                    f"the label of {task!r} mapped once: under `columns` (class indices) or "
                    "`raw_labels` (raw values), not both")

    def _check_label_values(self) -> None:
        require(isinstance(self.label_values, Mapping), "label_values", self.label_values,
                "a mapping of task -> class name -> the table's values")
        require(self.is_table or not self.label_values, "label_values", self.label_values,
                f"no `label_values` for a {self.format} dataset (its importer derives labels)")
        for task, classes in self.label_values.items():
            key = f"label_values.{task}"
            require(task in TASKS, key, classes,
                    f"keys from {', '.join(TASKS)}{did_you_mean(task, tuple(TASKS))}")
            require(task not in self.raw_labels, key, classes,
                    f"the label of {task!r} given once: raw (`raw_labels`) or in words "
                    "(`label_values`), not both")
            names = TASKS[task].class_names
            require(isinstance(classes, Mapping) and len(classes) > 0, key, classes,
                    "a mapping of class name -> the table's values, e.g. {yes: [Y], no: [N]}")
            seen: dict[str, str] = {}
            for name, theirs in classes.items():
                require(name in names, f"{key}.{name}", theirs,
                        f"keys from {', '.join(names)} (the classes of {task!r})"
                        f"{did_you_mean(name, names)}")
                require(isinstance(theirs, tuple) and len(theirs) > 0
                        and all(isinstance(v, str) and v.strip() for v in theirs),
                        f"{key}.{name}", theirs, "a value or a list of values of the label "
                        "column (text or integers)")
                for value in theirs:
                    folded = value.strip().lower()
                    require(folded not in seen, f"{key}.{name}", value,
                            f"each value under one class only (it is also under "
                            f"{seen.get(folded)!r}; values are compared ignoring case)")
                    seen[folded] = name

    @property
    def is_table(self) -> bool:
        """True for a table format; False for a dataset folder read by its importer."""
        return self.format in get_args(TableFormat)


@dataclass(frozen=True)
class TrainingSettings:
    """How a training site runs its local rounds."""

    batch_size: int = 16
    """Encounters per local step."""
    local_steps: int = 8
    """Optimizer steps per federated round (unless the run config overrides them)."""
    lora_rank: int = 0
    """This site's own LoRA rank; 0 = the run's (`lora-r`). Only `strategy = "flora"` combines
    sites of different ranks (a smaller site, or one with a smaller GPU, may train a smaller
    adapter); any other strategy refuses a site whose rank differs."""
    max_physical_batch_size: int = 0
    """At most this many encounters in one forward and backward pass; 0 = the whole batch at once.
    A larger batch is then taken in pieces whose gradients add up to the same step (with DP,
    opacus clips each encounter's gradient in its piece and adds the noise once per step). DP
    wants large batches, since its noise is averaged over the batch; this lets a site whose GPU
    or RAM cannot hold one train it anyway."""

    def __post_init__(self) -> None:
        require(is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
                "batch_size", self.batch_size, f"an integer from 1 to {MAX_BATCH_SIZE:,}")
        require(is_int(self.local_steps) and self.local_steps >= 1, "local_steps",
                self.local_steps, "an integer >= 1")
        require(is_int(self.lora_rank) and self.lora_rank >= 0, "lora_rank", self.lora_rank,
                "an integer >= 1, or 0 for the run's rank")
        require(is_int(self.max_physical_batch_size)
                and 0 <= self.max_physical_batch_size <= MAX_BATCH_SIZE,
                "max_physical_batch_size", self.max_physical_batch_size,
                f"an integer from 1 to {MAX_BATCH_SIZE:,}, or 0 for the whole batch at once")


@dataclass(frozen=True)
class EvaluationSettings:
    """How a site evaluates the global model."""

    batch_size: int = 64
    """Encounters per forward pass (no gradients, so larger than the training batch)."""
    max_examples: int = 0
    """Evaluate at most this many encounters of a split; 0 = the whole split."""

    def __post_init__(self) -> None:
        require(is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
                "batch_size", self.batch_size, f"an integer from 1 to {MAX_BATCH_SIZE:,}")
        require(is_int(self.max_examples) and self.max_examples >= 0, "max_examples",
                self.max_examples, "an integer >= 0 (0 = the whole split)")


@dataclass(frozen=True)
class PrivacySettings:
    """A training site's differential-privacy budget (DP-SGD with opacus), owned by the site.

    The budget belongs to the site's data, not to a run: every run charges one lifetime ledger per
    site and dataset, kept in the site's state folder (`client.state`). Each run plans one
    noise multiplier that makes its rounds × local steps spend `run_epsilon_cap`; a run is declined
    before it trains if that would take the lifetime spend past `lifetime_epsilon`. Nothing a
    server sends can open a fresh budget. `delta` must also be below 1/n for the site's n training
    units (encounters or patients), which only the data can tell (`client.privacy.plan`).
    """

    lifetime_epsilon: float
    """ε this site's dataset may spend over all runs together (composed, not summed)."""
    delta: float
    """δ of the (ε, δ) guarantee; below 1/n for n training units (encounters or patients)."""
    max_grad_norm: float
    """Clipping norm C of each unit's gradient (opacus `max_grad_norm`)."""
    run_epsilon_cap: float | None = None
    """ε one run plans to spend and may not pass; None = `lifetime_epsilon` (one run may spend the
    whole budget, so a second run on the same data is declined). What a run has spent is
    `run_epsilon` in the ledger, the reply and metrics.json."""
    unit: PrivacyUnit = "encounter"
    """What one protected record is: `encounter` (one row of the table; a patient with k
    encounters is protected only as a group of k) or `patient` (all of a patient's encounters
    are sampled together and their summed gradient is clipped once)."""
    accountant: AccountantName = "rdp"
    """opacus accountant that tracks the spend: `rdp` (default) or `prv`."""
    enabled: bool = True
    """`false` trains without DP: the site's reports say so loudly."""
    signing_key: Path | None = None
    """OpenSSH private key that signs every ledger entry: the SuperNode key from `lang1-fl deploy
    site-key`, so a reviewer checks the ledger with the key the coordinator registered. None: a
    key generated once in the site's state folder (`signing-key`, `signing-key.pub`)."""
    noise_seed: int | None = None
    """Tests and benchmarks only: draw DP noise and batches from this seed (reproducible, hence
    NOT private: whoever knows the seed can subtract the noise). None (always, for a real site):
    a cryptographically secure generator."""

    def __post_init__(self) -> None:
        require(isinstance(self.enabled, bool), "enabled", self.enabled, "true or false")
        require(is_number(self.lifetime_epsilon) and 0 < self.lifetime_epsilon < float("inf"),
                "lifetime_epsilon", self.lifetime_epsilon, "a finite number > 0")
        require(self.run_epsilon_cap is None
                or (is_number(self.run_epsilon_cap)
                    and 0 < self.run_epsilon_cap <= self.lifetime_epsilon),
                "run_epsilon_cap", self.run_epsilon_cap,
                f"a number > 0 and at most `lifetime_epsilon` ({self.lifetime_epsilon!r}), or "
                "absent (one run may spend the whole budget)")
        require(is_number(self.delta) and 0 < self.delta < 1, "delta", self.delta,
                "a number with 0 < delta < 1 (and below 1/n for n training units)")
        require(is_number(self.max_grad_norm) and 0 < self.max_grad_norm < float("inf"),
                "max_grad_norm", self.max_grad_norm, "a finite number > 0 (the clipping norm)")
        require(self.unit in get_args(PrivacyUnit), "unit", self.unit,
                "'encounter' (one row) or 'patient' (all of a patient's encounters)")
        require(self.accountant in get_args(AccountantName), "accountant", self.accountant,
                "'rdp' or 'prv'")
        require(self.noise_seed is None or (is_int(self.noise_seed) and self.noise_seed >= 0),
                "noise_seed", self.noise_seed, "an integer >= 0 (tests only), or absent")

    @property
    def run_allocation(self) -> float:
        """ε one run plans to spend: `run_epsilon_cap`, else the whole lifetime budget."""
        return float(self.lifetime_epsilon if self.run_epsilon_cap is None
                     else self.run_epsilon_cap)


FaultKind = Literal["sign-flip", "scale"]


@dataclass(frozen=True)
class FaultSettings:
    """A drill: this site corrupts every update it sends, to test robust aggregation.

    Its update u = trained − received becomes −factor·u (`sign-flip`) or factor·u (`scale`) before
    it leaves the site. Real hospitals never set this; benchmarks and tests do (a faulty or
    malicious site looks exactly like this to the server).
    """

    update: FaultKind
    """`sign-flip` or `scale`."""
    factor: float = 1.0
    """Multiplier of the (flipped) update; > 0."""

    def __post_init__(self) -> None:
        require(self.update in get_args(FaultKind), "update", self.update,
                "'sign-flip' or 'scale'")
        require(is_number(self.factor) and 0 < self.factor < float("inf"), "factor",
                self.factor, "a finite number > 0")


@dataclass(frozen=True)
class SyntheticSpec:
    """How `lang1-fl sites generate` makes this site's table: a profile and a size."""

    profile: str
    """A profile of `sites.synthetic.profiles.PROFILES` (academic, community, ...)."""
    encounters: int
    """Number of encounters (rows) to generate."""

    def __post_init__(self) -> None:
        from sites.synthetic.profiles import PROFILES  # lazy: the generator needs numpy

        require(self.profile in PROFILES, "profile", self.profile,
                "one of " + ", ".join(PROFILES))
        require(is_int(self.encounters) and self.encounters >= 1, "encounters",
                self.encounters, "an integer >= 1")
