"""What a client reads from the Flower run configuration, parsed once into typed settings.

The run configuration (`[tool.flwr.app.config]`, overridable with `--run-config`) is the same for
every node of a run, so every site builds the same model and trains the same tasks; site-specific
choices (batch size, local steps, device) come from the site's own YAML instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from flwr.app import ConfigRecord

from client.model import SCORINGS, LoraSettings, ModelSettings
from client.train import OPTIMIZERS, OptimizerSettings
from sites.config import DEFAULT_CONSORTIUM
from sites.tasks import TASK_NAMES, resolve_tasks


class InvalidRunConfig(ValueError):
    """A run-configuration value is missing or out of range."""


def config_value(config: Mapping[str, object], key: str, kind: type) -> object:
    if key not in config:
        raise InvalidRunConfig(f"run config: `{key}` is missing; set it in [tool.flwr.app.config]")
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRunConfig(
            f"run config: `{key}` is {value!r}; expected a {kind.__name__}"
        )
    return value


def positive_config_value(config: Mapping[str, object], key: str, kind: type, *, allow_zero: bool = False):
    value = config_value(config, key, kind)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidRunConfig(f"run config: `{key}` is {value!r}; expected a number {bound}")
    return value


def parse_tasks(value: str) -> tuple[str, ...]:
    """`all` means joint five-task finetuning; otherwise a comma-separated list of task names."""
    if value.strip() == "all":
        return TASK_NAMES
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        return resolve_tasks(names, where="run config `tasks`")
    except ValueError as error:
        raise InvalidRunConfig(str(error)) from None


EXPERIMENTS: tuple[str, ...] = ("", "transfer")
DP_OPTIMIZER_STATES: tuple[str, ...] = ("kept", "fresh")


def parse_experiment(value: object) -> str:
    """The run config's `experiment`: "" for a federation, or the name of an experiment."""
    if value not in EXPERIMENTS:
        raise InvalidRunConfig(f"run config: `experiment` is {value!r}; expected \"\" (a "
                               "federation) or \"transfer\"")
    return str(value)


def resolve_consortium(value: str) -> Path:
    """A consortium shipped with the package by name (`default`, `private`: the files in
    sites/consortia/), or else the path of a consortium YAML."""
    shipped = DEFAULT_CONSORTIUM.parent / f"{value}.yaml"
    if "/" not in value and shipped.is_file():
        return shipped
    return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class ClientSettings:
    """Everything a site needs from the run configuration."""

    consortium: Path
    """Consortium YAML: in simulation, partition id N is the consortium's N-th site."""
    data_dir: Path
    """Folder that relative data paths in site YAMLs resolve against."""
    model: ModelSettings
    optimizer: OptimizerSettings
    dp_optimizer: OptimizerSettings
    """What sites with DP train with (`dp-optimizer`, `dp-learning-rate`, `dp-head-learning-rate`)."""
    dp_keeps_optimizer_state: bool
    """`dp-optimizer-state = "kept"`: a DP site carries its optimizer's state from round to round on
    its disk (client/privacy/optimizer_memory.py); "fresh": a new optimizer every round."""
    dp_adapter_clip_share: float
    """`dp-adapter-clip-share`: 0 clips each encounter's whole gradient to C; s in (0, 1) gives the
    adapter s of C² and the heads the rest (client/privacy/dp_sgd.py). Same σ and ε either way."""
    local_steps: int
    """Optimizer steps per round; 0 = each site's own `training.local_steps`."""
    num_rounds: int
    """Planned federated rounds: a private site spreads its budget over all of them."""
    bootstrap_resamples: int
    seed: int
    experiment: str = ""
    """`` (a federation) or `transfer` (`lang1-fl experiment transfer`: in simulation, one more
    node than the consortium has sites serves the pooled site)."""

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> ClientSettings:
        seed = config_value(config, "seed", int)
        lora = LoraSettings(
            r=positive_config_value(config, "lora-r", int),
            alpha=positive_config_value(config, "lora-alpha", int),
            dropout=positive_config_value(config, "lora-dropout", float, allow_zero=True),
        )
        max_length = positive_config_value(config, "max-length", int)
        if max_length > 512:
            raise InvalidRunConfig(
                f"run config: `max-length` is {max_length}; expected at most 512 (tasks read the "
                "first 512 tokens of a note)"
            )
        scoring = config_value(config, "scoring", str)
        if scoring not in SCORINGS:
            raise InvalidRunConfig(f"run config: `scoring` is {scoring!r}; expected one of "
                                   + ", ".join(SCORINGS))
        model = ModelSettings(
            base=config_value(config, "base-model", str),
            max_length=max_length,
            lora=lora,
            tasks=parse_tasks(config_value(config, "tasks", str)),
            seed=seed,
            scoring=scoring,
        )
        optimizer = OptimizerSettings(
            learning_rate=positive_config_value(config, "learning-rate", float),
            head_learning_rate=positive_config_value(config, "head-learning-rate", float),
        )
        dp_name = config_value(config, "dp-optimizer", str)
        if dp_name not in OPTIMIZERS:
            raise InvalidRunConfig(f"run config: `dp-optimizer` is {dp_name!r}; expected one of "
                                   + ", ".join(OPTIMIZERS))
        dp_optimizer = OptimizerSettings(
            learning_rate=positive_config_value(config, "dp-learning-rate", float),
            head_learning_rate=positive_config_value(config, "dp-head-learning-rate", float),
            name=dp_name,
        )
        dp_state = config_value(config, "dp-optimizer-state", str)
        if dp_state not in DP_OPTIMIZER_STATES:
            raise InvalidRunConfig(f"run config: `dp-optimizer-state` is {dp_state!r}; expected "
                                   + " or ".join(f'"{s}"' for s in DP_OPTIMIZER_STATES))
        clip_share = positive_config_value(config, "dp-adapter-clip-share", float,
                                           allow_zero=True)
        if not clip_share < 1:
            raise InvalidRunConfig(f"run config: `dp-adapter-clip-share` is {clip_share}; expected "
                                   "0 (one norm for all) or a share of C² below 1")
        return cls(
            consortium=resolve_consortium(config_value(config, "consortium", str)),
            data_dir=Path(config_value(config, "data-dir", str)).expanduser().resolve(),
            model=model,
            optimizer=optimizer,
            dp_optimizer=dp_optimizer,
            dp_keeps_optimizer_state=dp_state == "kept",
            dp_adapter_clip_share=clip_share,
            local_steps=positive_config_value(config, "local-steps", int, allow_zero=True),
            num_rounds=positive_config_value(config, "num-server-rounds", int),
            bootstrap_resamples=positive_config_value(config, "bootstrap-resamples", int),
            seed=seed,
            experiment=parse_experiment(config.get("experiment", "")),
        )


# -----------------------------------------------------------------------------------------------
# What one server message may change at a site: which tasks the model has, which splits to score.
#
# The run config fixes everything else for the whole run. An experiment (`lang1-fl experiment
# transfer`) runs several regimes over the same nodes — joint five-task training and single-task
# training among them — so the task list can come with each message; and the server asks for the
# validation split (to select a round) and the test split (to report) separately, so that test data
# is scored only where it is reported.
# -----------------------------------------------------------------------------------------------


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
