"""The Flower run configuration, raw to typed: every key's one type and bound, read in one place.

The run configuration is `[tool.flwr.app.config]` in pyproject.toml (the only place its defaults
are written), overridden with `flwr run --run-config` or `lang1-fl ... --set KEY=VALUE`. Both apps
read it: the ClientApp into `client.settings.ClientSettings`, the ServerApp into
`server.settings.ServerSettings`, each through `read_run_config` here, so that a key has one type
and one bound wherever it is read. Rules that span keys, and choices among names, are checked by
the settings that use them.

Light on purpose (no torch, no Flower): the `lang1-fl` command parses `--set` and reads the
defaults with it before anything heavy is imported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

Bound = Literal["any", ">= 0", "> 0"]

RUN_CONFIG_KEYS: dict[str, tuple[type, Bound]] = {
    # where things are
    "consortium": (str, "any"),
    "data-dir": (str, "any"),
    "runs-dir": (str, "any"),
    "run-name": (str, "any"),
    # the federation and its aggregation rule
    "num-server-rounds": (int, "> 0"),
    "strategy": (str, "any"),
    "round-selection": (str, "any"),
    "proximal-mu": (float, ">= 0"),
    "tolerated-bad-sites": (int, ">= 0"),
    "server-learning-rate": (float, "> 0"),
    "server-beta-1": (float, ">= 0"),
    "server-beta-2": (float, ">= 0"),
    "server-tau": (float, "> 0"),
    "min-train-sites": (int, "> 0"),
    "round-timeout": (float, "> 0"),
    "start-wait": (float, "> 0"),
    "client-dp-noise-multiplier": (float, "> 0"),
    "client-dp-clipping-norm": (float, "> 0"),
    "client-dp-delta": (float, "> 0"),
    # the model and its training
    "tasks": (str, "any"),
    "base-model": (str, "any"),
    "scoring": (str, "any"),
    "max-length": (int, ">= 0"),  # 0: by scoring (client.model.default_max_length)
    "lora-r": (int, "> 0"),
    "lora-alpha": (float, "> 0"),  # peft scales the update by alpha / r; any number > 0 will do
    "lora-dropout": (float, ">= 0"),
    "lora-layers": (int, ">= 0"),  # as many as the base has, or more, = all
    "learning-rate": (float, "> 0"),
    "head-learning-rate": (float, "> 0"),
    "lr-schedule": (str, "any"),
    "dp-optimizer": (str, "any"),
    "dp-learning-rate": (float, "> 0"),
    "dp-head-learning-rate": (float, "> 0"),
    "dp-optimizer-state": (str, "any"),
    "dp-adapter-clip-share": (float, ">= 0"),
    "local-steps": (int, ">= 0"),
    "bootstrap-resamples": (int, "> 0"),
    "seed": (int, "any"),
    # experiments and resuming
    "experiment": (str, "any"),
    "experiment-regimes": (str, "any"),
    "resume": (bool, "any"),
    "profile": (str, "any"),
}
"""Each run-config key of pyproject.toml: its type (an int is accepted where a float is expected,
as TOML writes `16` for 16.0) and its bound."""


_KIND_WORDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
"""How an error names what a key's type expects, in the words of the config's own reference."""


class InvalidRunConfig(ValueError):
    """A run-configuration value is missing or out of range."""


def read_run_config(config: Mapping[str, object], key: str):
    """The value of `key` in `config`, of its one type and within its bound, or an
    `InvalidRunConfig` that names the key and what was expected."""
    kind, bound = RUN_CONFIG_KEYS[key]
    if key not in config:
        raise InvalidRunConfig(f"run config: `{key}` is missing; set it in [tool.flwr.app.config]")
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRunConfig(f"run config: `{key}` is {value!r}; expected {_KIND_WORDS[kind]}")
    if bound != "any" and (value < 0 or (value == 0 and bound == "> 0")):
        raise InvalidRunConfig(f"run config: `{key}` is {value!r}; expected a number {bound}")
    return value


_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_run_name(name: str, *, where: str) -> str:
    """`name` if it is a plain file name (letters, digits, '.', '_', '-', not starting with '.'):
    a run name names a folder of the coordinator's and files at every site, so neither the run
    config nor a server message may point them anywhere else. `where` starts the error message
    (`run config`, `train message`)."""
    if not _RUN_NAME.fullmatch(name):
        raise InvalidRunConfig(f"{where}: `run-name` is {name!r}; expected letters, digits, '.', "
                               "'_' or '-', not starting with '.'")
    return name


# -----------------------------------------------------------------------------------------------
# The run config as the `lang1-fl` command builds it: pyproject.toml's defaults, a run profile's
# values (client/run_profiles.py), `--set` overrides.
# -----------------------------------------------------------------------------------------------

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
"""The project's pyproject.toml, where the Flower app and its run-config defaults are declared."""


def default_run_config() -> dict[str, object]:
    """The app's `[tool.flwr.app.config]`: the values a run uses unless overridden."""
    import tomllib

    if not PYPROJECT.exists():
        raise FileNotFoundError(f"{PYPROJECT} not found: lang1-fl needs its source checkout "
                                "(pip install -e .), where the Flower app is declared")
    return dict(tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"])


def run_config_overrides(items: list[str] | None) -> dict[str, object]:
    """`--set key=value` pairs as run-config overrides. A key the app does not have stops here,
    named, rather than in Flower, whose refusal ("Invalid run configuration") names no key."""
    overrides = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise InvalidRunConfig(f"--set {item!r}: expected KEY=VALUE, e.g. --set tasks=mortality")
        check_known_key(key, where=f"--set {item}")
        if key == "profile":  # a label of what --profile applied; set alone, it would lie
            raise InvalidRunConfig(f"--set {item}: `profile` names the run profile whose values "
                                   "the run took; expected --profile NAME, which applies them")
        overrides[key] = _parse_value(value.strip())
    return overrides


def check_known_key(key: str, *, where: str) -> None:
    """Raise `InvalidRunConfig` when `key` is not a run-config key, with the nearest one."""
    if key in RUN_CONFIG_KEYS:
        return
    near = difflib.get_close_matches(key, RUN_CONFIG_KEYS, n=1)
    hint = f"did you mean `{near[0]}`? " if near else ""
    raise InvalidRunConfig(f"{where}: `{key}` is not a run-config key; {hint}expected a key of "
                           "[tool.flwr.app.config] in pyproject.toml (docs/configuration.md)")


def _parse_value(text: str) -> object:
    """`--set key=value`: numbers and booleans as such, anything else as a string."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip('"')


def planned_run_config(items: list[str] | None, *, rounds: int | None,
                       profile: Mapping[str, object] | None = None) -> dict[str, object]:
    """The run config a command plans with: the app's, with a run profile's values
    (`client.run_profiles.profile_overrides`), then `--set` and `--rounds`, applied."""
    config = {**default_run_config(), **(profile or {}), **run_config_overrides(items)}
    if rounds is not None:
        config["num-server-rounds"] = rounds
    return config
