"""The app's default run configuration, read from pyproject.toml as Flower reads it."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def default_run_config(**overrides: object) -> dict[str, object]:
    """`[tool.flwr.app.config]` with keys overridden (underscores stand for dashes)."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    config = dict(config)
    for key, value in overrides.items():
        key = key.replace("_", "-")
        if key not in config:
            raise KeyError(f"{key} is not a run-config key of pyproject.toml")
        config[key] = value
    return config


def default_strategy_options(**overrides: object):
    """The aggregation rules' settings as the server builds them from `default_run_config` (with
    `overrides`): pyproject.toml's values, for a test that cares about one or two of them."""
    from server.settings import strategy_options

    return strategy_options(default_run_config(**overrides))
