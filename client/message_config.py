"""What one server message may change at a site: which tasks the model has, which splits to score.

The run config fixes everything else for the whole run. An experiment (`lang1-fl experiment
transfer`) runs several regimes over the same nodes — joint five-task training and single-task
training among them — so the task list can come with each message; and the server asks for the
validation split (to select a round) and the test split (to report) separately, so that test data
is scored only where it is reported.
"""

from __future__ import annotations

from dataclasses import replace

from flwr.app import ConfigRecord

from client.model import ModelSettings
from client.run_settings import InvalidRunConfig, parse_tasks

SCORED_SPLITS: tuple[str, ...] = ("validation", "test")
DEFAULT_SPLITS = "validation,test"


def message_model_settings(settings: ModelSettings, config: ConfigRecord) -> ModelSettings:
    """The run's model settings, with the message's `tasks` (comma list) when it sends one."""
    if "tasks" not in config:
        return settings
    return replace(settings, tasks=parse_tasks(str(config["tasks"])))


def message_local_steps(config: ConfigRecord) -> int:
    """The message's `local-steps` (the pooled site of an experiment gets all sites' steps), or 0:
    the run config's, else the site's own."""
    steps = int(config.get("local-steps", 0))
    if steps < 0:
        raise InvalidRunConfig(f"train message: `local-steps` is {steps}; expected >= 0")
    return steps


def requested_splits(config: ConfigRecord) -> frozenset[str]:
    """The message's `splits` (comma list of validation, test); both when it sends none."""
    names = [s.strip() for s in str(config.get("splits", DEFAULT_SPLITS)).split(",") if s.strip()]
    unknown = [s for s in names if s not in SCORED_SPLITS]
    if unknown or not names:
        raise InvalidRunConfig(
            f"evaluate message: `splits` is {config.get('splits')!r}; expected a comma list of "
            f"{', '.join(SCORED_SPLITS)}")
    return frozenset(names)
