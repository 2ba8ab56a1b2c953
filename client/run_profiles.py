"""Named run profiles: a documented set of run-config values that `--profile NAME` applies.

A protocol is more than one key (the paper's reads 512 tokens; the decoder is a base, a scoring and
a length), and spelling it as `--set`s each time lets runs that mean the same protocol drift apart.
A profile is a table of pyproject.toml, `[tool.lang1-fl.profiles.<name>]`, beside the defaults it
changes, with the comment above it saying what it is for (docs/configuration.md shows both). The
`lang1-fl` commands that take `--set` take `--profile` too; the order is pyproject's defaults, the
profile, then `--set` and the command's own flags, so an explicit value always wins.

A profile is checked before anything starts: its name, each key (a run-config key, and none the
command line sets itself) and each value's type and bound. The run config then carries
`profile = NAME`, so the run records which profile it ran (run_config.json in its folder); the
values themselves are in their own keys, and a plain `flwr run --run-config` applies no profile.

Light on purpose (no torch, no Flower), like client/run_config.py.
"""

from __future__ import annotations

import tomllib

from client.run_config import PYPROJECT, InvalidRunConfig, check_known_key, read_run_config

PROFILES_TABLE = "tool.lang1-fl.profiles"
"""Where the profiles are, as a dotted TOML table name: one sub-table per profile."""

COMMAND_LINE_KEYS: frozenset[str] = frozenset({
    "consortium", "data-dir", "runs-dir", "run-name", "experiment", "experiment-regimes",
    "resume", "profile"})
"""Keys a profile may not set: which sites, where the run is written, its name and which command
runs it are the command line's own (its flags would silently override a profile's value)."""

PROFILE_HELP = ("apply a named run profile: a documented set of run-config values "
                "([tool.lang1-fl.profiles] in pyproject.toml, e.g. paper-512 or decoder; "
                "docs/configuration.md); --set wins over it")


def run_profiles() -> dict[str, dict[str, object]]:
    """Every profile of pyproject.toml, by name, as written (unchecked; `profile_overrides`
    checks the one a command uses)."""
    if not PYPROJECT.exists():
        raise FileNotFoundError(f"{PYPROJECT} not found: lang1-fl needs its source checkout "
                                "(pip install -e .), where the run profiles are declared")
    table: object = tomllib.loads(PYPROJECT.read_text())
    for part in ("tool", "lang1-fl", "profiles"):
        table = table.get(part, {}) if isinstance(table, dict) else {}
    return {name: dict(values) for name, values in table.items() if isinstance(values, dict)}


def profile_overrides(name: str | None) -> dict[str, object]:
    """The run-config values profile `name` sets, with `profile = name` to record it; {} for
    None (no `--profile`). An unknown name, a key that is not a run-config key (or is one the
    command line sets) and a value of the wrong type or bound raise `InvalidRunConfig`, naming
    the profile, the key, and the profiles there are."""
    if name is None:
        return {}
    profiles = run_profiles()
    known = ", ".join(sorted(profiles)) or "none"
    if name not in profiles:
        raise InvalidRunConfig(f"--profile {name}: no such run profile; expected one of {known} "
                               f"([{PROFILES_TABLE}.<name>] in {PYPROJECT})")
    where = f"run profile `{name}` ([{PROFILES_TABLE}.{name}] in {PYPROJECT})"
    values, checked = profiles[name], {}
    for key in values:
        try:
            check_known_key(key, where=where)
        except InvalidRunConfig as error:
            raise InvalidRunConfig(f"{error}; the profiles are {known}") from None
        if key in COMMAND_LINE_KEYS:
            raise InvalidRunConfig(f"{where}: `{key}` is the command line's to set (its flags "
                                   "would override the profile); expected a key of the run's "
                                   f"model, training or federation; the profiles are {known}")
        try:
            checked[key] = read_run_config(values, key)
        except InvalidRunConfig as error:
            raise InvalidRunConfig(f"{where}: {str(error).removeprefix('run config: ')}"
                                   ) from None
    return {**checked, "profile": name}
