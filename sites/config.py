"""Site and consortium YAML, parsed once into frozen dataclasses.

A site YAML says where a hospital's encounter table is, which tasks it has, its role (`train` or
`external`), its batch sizes and device, and optionally how `lang1-fl sites generate` makes it
synthetically. A consortium YAML names a seed and lists sites, inline or as paths to site YAMLs.

Every rule is checked here, so the raw dict never travels further: value rules live in the
dataclasses' `__post_init__` (so a config built in code is checked too; the nested settings are in
`sites.site_settings`) and the loader adds the file and key path to their message; rules spanning
sites live in `ConsortiumConfig.__post_init__`. Errors are one line: file, key path in backticks,
the value, and what was expected, e.g.
"consortia/x.yaml: `sites[2].role` is 'trainer'; expected 'train' or 'external'".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from sites.data_root import DEFAULT_DATA_DIR, DataRoot
from sites.data_root import data_root as root_for
from sites.data_source_yaml import data_source
from sites.field_checks import InvalidSiteConfig, is_int, require
from sites.site_settings import (
    DataSource,
    EvaluationSettings,
    FaultSettings,
    PrivacySettings,
    SyntheticSpec,
    TrainingSettings,
)
from sites.state_folder import default_state_dir
from sites.tasks import TASK_NAMES, TASKS
from sites.yaml_keys import check_keys, display_path, get_key, join_key, located, read_yaml

__all__ = [
    "DEFAULT_CONSORTIUM", "DEFAULT_DATA_DIR", "ConsortiumConfig", "DataSource", "EvaluationSettings",
    "InvalidSiteConfig", "PrivacySettings", "SiteConfig", "SyntheticSpec", "TrainingSettings",
    "display_path", "load_consortium", "load_site", "resolve_consortium",
]

Role = Literal["train", "external"]

DEFAULT_CONSORTIUM: Path = Path(__file__).resolve().parent / "consortia" / "default.yaml"
"""The consortium shipped with the package: four training hospitals and one external system."""

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
PRECISIONS = ("auto", "fp32")
"""A site's `precision` values (client/precision.py decides what `auto` is on its device)."""
_KEY_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
"""`ssh-keygen -lf`'s SHA-256 fingerprint, as `lang1-fl deploy register` prints it."""


@dataclass(frozen=True)
class SiteConfig:
    """One hospital: its data, tasks, role and local settings."""

    name: str
    """Unique site name, `[A-Za-z0-9_-]+`, kept as written: it keys the site's state folder and
    ledger, so it is never rewritten (two sites whose names differ only in case are refused, as
    their folders would be one on a case-insensitive file system)."""
    role: Role
    """`train`: takes part in training; `external`: evaluated only (a held-out health system)."""
    data: DataSource
    """Where the site's encounter table (or dataset folder) is and how its columns map to ours."""
    tasks: tuple[str, ...]
    """Task names of `sites.tasks.TASKS` whose labels this site has."""
    training: TrainingSettings = TrainingSettings()
    """How the site trains in each round (ignored for an external site)."""
    evaluation: EvaluationSettings = EvaluationSettings()
    """How the site evaluates the global model."""
    device: str = "auto"
    """`auto` (cuda when available, else cpu), `cpu`, `cuda` or `cuda:N`."""
    precision: str = "auto"
    """`auto`: bf16 where the device computes it natively (a GPU with bf16, a CPU with AVX512-BF16
    or AMX) and the site trains without DP, fp32 elsewhere (`client.precision`); `fp32`: always."""
    synthetic: SyntheticSpec | None = None
    """Set for simulated sites: how to generate the table when it is missing."""
    privacy: PrivacySettings | None = None
    """The site's DP budget; None (no `privacy` block) trains without differential privacy."""
    fault: FaultSettings | None = None
    """A robustness drill only: the site corrupts every update it sends (never set for real)."""
    source: Path | None = None
    """The YAML file this site was read from (None when built in code)."""
    state_dir: Path | None = None
    """The site's own state folder: privacy ledger, stored replies, egress log, optimizer memory
    (`client.state`). None: `<state home>/sites/<name>` (`sites.state_folder`); never shared
    by two sites."""
    key_fingerprint: str | None = None
    """The fingerprint of the site's registered SuperNode public key (`SHA256:...`, as `lang1-fl
    deploy register` prints it): discovery refuses a node claiming this site unless Flower
    authenticated it with that key. None: not checked (simulation has no keys)."""

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None, "name",
                self.name, "a name of letters, digits, '_' or '-'")
        require(self.role in get_args(Role), "role", self.role, "'train' or 'external'")
        require(isinstance(self.device, str) and _DEVICE.fullmatch(self.device) is not None,
                "device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        require(self.precision in PRECISIONS, "precision", self.precision,
                "'auto' (bf16 where the device computes it natively) or 'fp32'")
        shown = list(self.tasks) if isinstance(self.tasks, tuple) else self.tasks
        require(isinstance(self.tasks, tuple) and len(self.tasks) > 0, "tasks", shown,
                "a non-empty list of tasks from " + ", ".join(TASK_NAMES))
        for index, task in enumerate(self.tasks):
            close = difflib.get_close_matches(str(task), TASK_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            require(task in TASKS, f"tasks[{index}]", task,
                    "one of " + ", ".join(TASK_NAMES) + hint)
            require(task not in self.tasks[:index], f"tasks[{index}]", task,
                    "each task listed once")
        self._check_data_fits_tasks()
        require(not (self.is_external and self.privacy is not None), "privacy",
                "a privacy block", "none for an external site (it is evaluated only, never "
                "trained on, so it spends no privacy budget): remove the `privacy` block")
        if self.state_dir is None:
            object.__setattr__(self, "state_dir", default_state_dir(self.name))
        require(isinstance(self.state_dir, Path), "state_dir", self.state_dir, "a folder path")
        require(self.key_fingerprint is None or (isinstance(self.key_fingerprint, str) and
                _KEY_FINGERPRINT.fullmatch(self.key_fingerprint) is not None),
                "key_fingerprint", self.key_fingerprint, "the site's SuperNode key fingerprint "
                "as `lang1-fl deploy register` prints it: 'SHA256:' and 43 base64 characters")

    def _check_data_fits_tasks(self) -> None:
        """A label mapped for an undeclared task is a forgotten task or a stale mapping; a task
        the dataset has no labels for cannot be trained."""
        labels = {spec.label_column: name for name, spec in TASKS.items()}
        for group in ("columns", "raw_labels"):
            for ours, theirs in getattr(self.data, group).items():
                task = labels.get(ours, ours if group == "raw_labels" else None)
                require(task is None or task in self.tasks, f"data.{group}.{ours}", theirs,
                        f"labels only for tasks the site declares (add {task!r} to `tasks` or "
                        "remove this mapping)")
        for task, classes in self.data.label_values.items():
            require(task in self.tasks, f"data.label_values.{task}", dict(classes),
                    f"labels only for tasks the site declares (add {task!r} to `tasks` or "
                    "remove this mapping)")
        if self.data.format == "mimic-iv" and "denial" in self.tasks:
            require(False, f"tasks[{self.tasks.index('denial')}]", "denial",
                    "tasks MIMIC-IV has labels for: readmission, mortality, los, comorbidity "
                    "(denial is unavailable for MIMIC-IV: it has no insurance claims)")

    @property
    def is_external(self) -> bool:
        return self.role == "external"

    @property
    def is_private(self) -> bool:
        """True when the site trains with DP-SGD."""
        return self.privacy is not None and self.privacy.enabled


@dataclass(frozen=True)
class ConsortiumConfig:
    """A federation: a seed and its sites, in order (simulation partition N is `sites[N]`)."""

    name: str
    """The consortium's name, shown in reports."""
    seed: int
    """Seeds the synthetic generator (each site derives its own seed from it and its name)."""
    sites: tuple[SiteConfig, ...]
    """The sites, in order: inline site mappings or paths of site YAML files."""
    source: Path | None = None

    def __post_init__(self) -> None:
        where = f"{display_path(self.source)}: " if self.source else ""
        require(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        if not self.sites:
            raise InvalidSiteConfig(f"{where}`sites` is empty; expected at least one site")
        seen: dict[str, int] = {}
        for index, site in enumerate(self.sites):
            if site.name.lower() in seen:
                other = seen[site.name.lower()]
                raise InvalidSiteConfig(
                    f"{where}`sites[{index}].name` is {site.name!r}, already used by "
                    f"`sites[{other}]` ({self.sites[other].name!r}); expected site names that "
                    "differ in more than case (each names a state folder)")
            seen[site.name.lower()] = index
        if not self.training_sites:
            raise InvalidSiteConfig(
                f"{where}`sites[*].role`: no site has role 'train'; expected at least one")
        owners: dict[Path, SiteConfig] = {}
        for index, site in enumerate(self.sites):
            other = owners.setdefault(site.state_dir, site)
            if other is not site:
                raise InvalidSiteConfig(
                    f"{where}`sites[{index}].state_dir` of site {site.name!r} is {site.state_dir}, "
                    f"the state folder of site {other.name!r}; expected a folder of its own (each "
                    "site's privacy ledger, stored replies and egress log are its own)")
        self._check_key_fingerprints(where)
        first = self.sites[0]
        for index, site in enumerate(self.sites):
            if set(site.tasks) != set(first.tasks):  # in any order
                raise InvalidSiteConfig(
                    f"{where}`sites[{index}].tasks` of site {site.name!r} is {list(site.tasks)}; "
                    f"expected the same tasks as site {first.name!r} (in any order): "
                    f"{list(first.tasks)}")

    def _check_key_fingerprints(self, where: str) -> None:
        """Named for one site, a fingerprint must be named for all (a site left out could be
        claimed by any registered node), and no two sites can hold one key."""
        named: dict[str | None, SiteConfig] = {}
        for site in self.sites:
            if site.key_fingerprint:
                named.setdefault(site.key_fingerprint, site)
        for index, site in enumerate(self.sites):
            if named and site.key_fingerprint is None:
                raise InvalidSiteConfig(
                    f"{where}`sites[{index}].key_fingerprint` of site {site.name!r} is missing; "
                    "expected one for every site once any site names one (copy it from "
                    "`lang1-fl deploy register`'s output for that site's public key)")
            if named.get(site.key_fingerprint, site) is not site:
                raise InvalidSiteConfig(
                    f"{where}`sites[{index}].key_fingerprint` of site {site.name!r} is "
                    f"{site.key_fingerprint!r}, the key of site "
                    f"{named[site.key_fingerprint].name!r}; expected each site's own key")

    @property
    def training_sites(self) -> tuple[SiteConfig, ...]:
        return tuple(s for s in self.sites if s.role == "train")

    @property
    def external_sites(self) -> tuple[SiteConfig, ...]:
        return tuple(s for s in self.sites if s.role == "external")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks every site shares, in the order of `sites.tasks.TASKS` (sites may list them
        in any order)."""
        return tuple(task for task in TASK_NAMES if task in self.sites[0].tasks)

    def site(self, name: str) -> SiteConfig:
        for site in self.sites:
            if site.name == name:
                return site
        raise InvalidSiteConfig(
            f"consortium {self.name!r} has no site {name!r}; expected one of "
            + ", ".join(s.name for s in self.sites))


# ---------------------------------------------------------------------------------------------
# Loading


def resolve_consortium(value: str) -> Path:
    """A consortium shipped with the package by name (`default`, `private`: the files in
    sites/consortia/), or else the path of a consortium YAML."""
    shipped = DEFAULT_CONSORTIUM.parent / f"{value}.yaml"
    if "/" not in value and shipped.is_file():
        return shipped
    return Path(value).expanduser().resolve()


def load_site(path: str | Path, *, data_root: Path | None = None) -> SiteConfig:
    """Read one site YAML. Relative data paths resolve by `sites.data_root`'s rule: against
    `data_root` (the --data-dir) when given, else the YAML file's folder."""
    file = Path(path).expanduser().resolve()
    raw = read_yaml(file, expected="a site YAML file")
    if is_consortium(raw):
        raise InvalidSiteConfig(
            f"{display_path(file)}: is a consortium YAML (it lists `sites`); expected a site YAML "
            "file (`lang1-fl sites check` checks every site of a consortium, or one with --site)")
    return _site(raw, file=file, key="", data_base=root_for(data_root, file))


def is_consortium(raw: object) -> bool:
    """True for the parsed YAML of a consortium (a mapping that lists `sites`), not of a site."""
    return isinstance(raw, dict) and "sites" in raw


def load_consortium(path: str | Path, *, data_root: Path | None = None) -> ConsortiumConfig:
    """Read a consortium YAML and every site it lists (inline mappings or site YAML paths, the
    latter relative to the consortium file). Relative data paths resolve by `sites.data_root`'s
    rule: against `data_root` (the --data-dir) when given, else the folder of the YAML file that
    names them (./lang1-fl-data for the shipped consortia)."""
    file = Path(path).expanduser().resolve()
    raw = read_yaml(file, expected="a consortium YAML file")
    check_keys(raw, ("name", "seed", "sites"), file=file, key="")
    name = get_key(raw, "name", file=file, key="", expected="the consortium's name")
    if not isinstance(name, str) or not name:
        raise InvalidSiteConfig(
            f"{display_path(file)}: `name` is {name!r}; expected a non-empty string")
    entries = get_key(raw, "sites", file=file, key="", expected="a list of sites")
    if not isinstance(entries, list):
        raise InvalidSiteConfig(f"{display_path(file)}: `sites` is {entries!r}; expected a list of "
                                "site mappings or site YAML paths")
    sites = tuple(_consortium_site(entry, index, file=file, data_root=data_root)
                  for index, entry in enumerate(entries))
    seed = get_key(raw, "seed", file=file, key="", expected="an integer >= 0")
    with located(file, ""):
        return ConsortiumConfig(name=name, seed=seed, sites=sites, source=file)


def _consortium_site(entry: object, index: int, *, file: Path,
                     data_root: Path | None) -> SiteConfig:
    key = f"sites[{index}]"
    if isinstance(entry, str):
        site_file = (file.parent / entry).expanduser().resolve()
        if not site_file.is_file():
            raise InvalidSiteConfig(
                f"{display_path(file)}: `{key}` is {entry!r}, which does not exist; expected a path "
                f"to a site YAML file relative to {display_path(file.parent)}")
        raw = read_yaml(site_file, expected="a site YAML file")
        return _site(raw, file=site_file, key="", data_base=root_for(data_root, site_file))
    return _site(entry, file=file, key=key, data_base=root_for(data_root, file))


def _site(raw: object, *, file: Path, key: str, data_base: DataRoot) -> SiteConfig:
    site_keys = ("name", "role", "data", "tasks", "training", "evaluation", "device", "precision",
                 "synthetic", "privacy", "fault", "state_dir", "key_fingerprint")
    check_keys(raw, site_keys, file=file, key=key)
    assert isinstance(raw, dict)
    tasks = get_key(raw, "tasks", file=file, key=key, expected="a list of task names")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise InvalidSiteConfig(f"{display_path(file)}: `{join_key(key, 'tasks')}` is {tasks!r}; expected "
                                f"a list of task names from {', '.join(TASK_NAMES)}")
    data = data_source(raw, file=file, key=key, base=data_base)
    fields = {
        "name": get_key(raw, "name", file=file, key=key, expected="the site's name"),
        "role": get_key(raw, "role", file=file, key=key, expected="'train' or 'external'"),
        "data": data,
        "tasks": tuple(tasks),
        "training": _section(raw, "training", TrainingSettings, file=file, key=key),
        "evaluation": _section(raw, "evaluation", EvaluationSettings, file=file, key=key),
        "device": raw.get("device", "auto"),
        "precision": raw.get("precision", "auto"),
        "synthetic": _section(raw, "synthetic", SyntheticSpec, file=file, key=key),
        "privacy": _privacy(raw, file=file, key=key),
        "fault": _section(raw, "fault", FaultSettings, file=file, key=key),
        "source": file,
        "state_dir": _folder(raw, "state_dir", file=file, key=key),
        "key_fingerprint": raw.get("key_fingerprint"),
    }
    with located(file, key):
        return SiteConfig(**fields)


_MOVED_PRIVACY_KEYS = {
    "target_epsilon": "the budget now belongs to the site's data across runs: set "
                      "`lifetime_epsilon` (all runs together) and, if you like, `run_epsilon_cap` "
                      "(what one run may spend)",
    "run_epsilon": "what one run may spend is `run_epsilon_cap` (`run_epsilon` is what a run has "
                   "spent, in the ledger, the reply and metrics.json)",
    "ledger_dir": "the ledger now lives in the site's own state folder: set `state_dir` on the "
                  "site instead",
}


def _privacy(raw: dict, *, file: Path, key: str) -> PrivacySettings | None:
    """The optional `privacy` block; every budget field is required when it is present."""
    if "privacy" not in raw:
        return None
    value, key = raw["privacy"], join_key(key, "privacy")
    for old, why in _MOVED_PRIVACY_KEYS.items():
        if isinstance(value, dict) and old in value:
            raise InvalidSiteConfig(f"{display_path(file)}: `{join_key(key, old)}` is no longer "
                                    f"read; {why}")
    allowed = tuple(PrivacySettings.__dataclass_fields__)
    check_keys(value, allowed, file=file, key=key)
    assert isinstance(value, dict)
    for field, expected in (("lifetime_epsilon", "the ε budget of this site's data over all "
                             "runs, a number > 0"),
                            ("delta", "δ, a number below 1/n for n training units"),
                            ("max_grad_norm", "the clipping norm, a number > 0")):
        get_key(value, field, file=file, key=key, expected=expected)
    signing_key = _folder(value, "signing_key", file=file, key=key, what="a key file path")
    with located(file, key):
        return PrivacySettings(**{**value, "signing_key": signing_key})


def _folder(raw: dict, name: str, *, file: Path, key: str, what: str = "a folder path"
            ) -> Path | None:
    """An optional path key, relative paths resolved against the YAML file's folder."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidSiteConfig(f"{display_path(file)}: `{join_key(key, name)}` is {value!r}; "
                                f"expected {what}")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else file.parent / path).resolve()


def _section(raw: dict, name: str, cls: type, *, file: Path, key: str):
    """An optional nested mapping (`training`, `evaluation`, `synthetic`) built into `cls`."""
    optional = cls in (SyntheticSpec, FaultSettings)  # absent = none, not defaults
    if name not in raw:
        return None if optional else cls()
    key = join_key(key, name)
    value = raw[name]
    allowed = tuple(cls.__dataclass_fields__)
    check_keys(value, allowed, file=file, key=key)
    if cls is SyntheticSpec:
        for field in allowed:
            get_key(value, field, file=file, key=key, expected=f"the synthetic site's {field}")
    if cls is FaultSettings:
        get_key(value, "update", file=file, key=key, expected="'sign-flip' or 'scale'")
    with located(file, key):
        return cls(**value)
