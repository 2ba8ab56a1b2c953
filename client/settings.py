"""What a client reads from the Flower run configuration and from each server message's config,
parsed once into typed settings (`ClientSettings`, `MessageConfig`).

The run configuration (`[tool.flwr.app.config]`, overridable with `--run-config`) is the same for
every node of a run, so every site builds the same model and trains the same tasks; site-specific
choices (batch size, local steps, device) come from the site's own YAML instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from flwr.app import ConfigRecord, Context, Message

from client.adapter_mode import AdapterMode, message_adapter_mode
from client.model import SCORINGS, LoraSettings, ModelSettings, default_max_length
from client.run_config import InvalidRunConfig, check_run_name, read_run_config
from client.train import OPTIMIZERS, SCHEDULES, OptimizerSettings
from sites.config import resolve_consortium
from sites.tasks import TASK_NAMES, resolve_tasks
from strategies.exchange import INTERVALS_KEY


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


def parse_experiment(value: str) -> str:
    """The run config's `experiment`: "" for a federation, or the name of an experiment."""
    if value not in EXPERIMENTS:
        raise InvalidRunConfig(f"run config: `experiment` is {value!r}; expected \"\" (a "
                               "federation) or \"transfer\"")
    return str(value)


@dataclass(frozen=True)
class ClientSettings:
    """Everything a site needs from the run configuration."""

    consortium: Path
    """Consortium YAML: in simulation, partition id N is the consortium's N-th site."""
    data_dir: Path | None
    """Folder that relative data paths in site YAMLs resolve against; None (`data-dir = ""`):
    each YAML file's folder, ./lang1-fl-data for the shipped consortia (`sites.data_root`)."""
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
    experiment: str
    """`` (a federation) or `transfer` (`lang1-fl experiment transfer`: in simulation, one more
    node than the consortium has sites serves the pooled site)."""

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> ClientSettings:
        seed = read_run_config(config, "seed")
        lora = LoraSettings(
            r=read_run_config(config, "lora-r"),
            alpha=read_run_config(config, "lora-alpha"),
            dropout=read_run_config(config, "lora-dropout"),
            layers=read_run_config(config, "lora-layers"),
        )
        max_length = read_run_config(config, "max-length")
        if max_length > 512:
            raise InvalidRunConfig(
                f"run config: `max-length` is {max_length}; expected at most 512 (tasks read the "
                "first 512 tokens of a note), or 0 for the base's default"
            )
        scoring = read_run_config(config, "scoring")
        if scoring not in SCORINGS:
            raise InvalidRunConfig(f"run config: `scoring` is {scoring!r}; expected one of "
                                   + ", ".join(SCORINGS))
        base = read_run_config(config, "base-model")
        model = ModelSettings(
            base=base,
            # 0: resolved here, where the server and every site read the run config alike
            max_length=max_length or default_max_length(base, scoring),
            lora=lora,
            tasks=parse_tasks(read_run_config(config, "tasks")),
            seed=seed,
            scoring=scoring,
        )
        schedule = read_run_config(config, "lr-schedule")
        if schedule not in SCHEDULES:
            raise InvalidRunConfig(f"run config: `lr-schedule` is {schedule!r}; expected one of "
                                   + ", ".join(SCHEDULES))
        optimizer = OptimizerSettings(
            learning_rate=read_run_config(config, "learning-rate"),
            head_learning_rate=read_run_config(config, "head-learning-rate"),
            schedule=schedule,
        )
        dp_name = read_run_config(config, "dp-optimizer")
        if dp_name not in OPTIMIZERS:
            raise InvalidRunConfig(f"run config: `dp-optimizer` is {dp_name!r}; expected one of "
                                   + ", ".join(OPTIMIZERS))
        dp_optimizer = OptimizerSettings(
            learning_rate=read_run_config(config, "dp-learning-rate"),
            head_learning_rate=read_run_config(config, "dp-head-learning-rate"),
            name=dp_name,
        )
        dp_state = read_run_config(config, "dp-optimizer-state")
        if dp_state not in DP_OPTIMIZER_STATES:
            raise InvalidRunConfig(f"run config: `dp-optimizer-state` is {dp_state!r}; expected "
                                   + " or ".join(f'"{s}"' for s in DP_OPTIMIZER_STATES))
        clip_share = read_run_config(config, "dp-adapter-clip-share")
        if not clip_share < 1:
            raise InvalidRunConfig(f"run config: `dp-adapter-clip-share` is {clip_share}; expected "
                                   "0 (one norm for all) or a share of C² below 1")
        return cls(
            consortium=resolve_consortium(read_run_config(config, "consortium")),
            data_dir=_data_dir(read_run_config(config, "data-dir")),
            model=model,
            optimizer=optimizer,
            dp_optimizer=dp_optimizer,
            dp_keeps_optimizer_state=dp_state == "kept",
            dp_adapter_clip_share=clip_share,
            local_steps=read_run_config(config, "local-steps"),
            num_rounds=read_run_config(config, "num-server-rounds"),
            bootstrap_resamples=read_run_config(config, "bootstrap-resamples"),
            seed=seed,
            experiment=parse_experiment(read_run_config(config, "experiment")),
        )


def _data_dir(value: str) -> Path | None:
    """The run config's `data-dir`: "" for `sites.data_root`'s default, else a folder."""
    return Path(value).expanduser().resolve() if value.strip() else None


# -----------------------------------------------------------------------------------------------
# What one server message says: the run and round it belongs to, and what it may change at a site:
# which tasks the model has, which splits to score, how many steps, how the adapter travels.
#
# The run config fixes everything else for the whole run. An experiment (`lang1-fl experiment
# transfer`) runs several regimes over the same nodes — joint five-task training and single-task
# training among them — so the task list can come with each message; and the server asks for the
# validation split (to select a round) and the test split (to report) separately, so that test data
# is scored only where it is reported.
# -----------------------------------------------------------------------------------------------


SCORED_SPLITS: tuple[str, ...] = ("validation", "test")


@dataclass(frozen=True)
class MessageConfig:
    """What one server message's config says, read once: the keys the server (and Flower's own
    strategies, which add `server-round` and FedProx's `proximal-mu`) put there."""

    run_name: str
    """`run-name`: a label for what the site stores per run (replies, egress log), never a
    budget; a plain file name, so a server cannot point a site's files anywhere else. A message
    without one is `flwr-run-<Flower's run id>`."""
    server_round: int | None
    """`server-round` (Flower's): the round a train or evaluate message belongs to."""
    tasks: tuple[str, ...] | None
    """`tasks` (comma list): the tasks of this message's model; None = the run config's."""
    local_steps: int
    """`local-steps` (the pooled site of an experiment gets all sites' steps); 0 = the run
    config's, else the site's own."""
    splits: frozenset[str]
    """`splits` (comma list of validation, test): what an evaluate message asks to be scored;
    both when it names none."""
    proximal_mu: float
    """`proximal-mu` (FedProx, set by Flower's strategy); 0 = no proximal term."""
    adapter_mode: AdapterMode
    """`adapter-mode` (set by the strategy): how the site holds, trains and sends the adapter."""
    intervals: bool = False
    """`intervals` (`strategies.exchange.INTERVALS_KEY`): compute the test AUROC's bootstrap
    interval; NaN under its keys when false (the rounds' evaluations: nothing reports them)."""

    @classmethod
    def from_message(cls, message: Message, context: Context, *,
                     kind: Literal["train", "evaluate", "query"]) -> MessageConfig:
        """The config of `message` (an empty one when it has none), checked key by key; `kind`
        names the message in errors."""
        config = message.content["config"] if "config" in message.content else ConfigRecord()
        return cls.from_record(config, run_id=context.run_id, kind=f"{kind} message")

    @classmethod
    def from_record(cls, config: ConfigRecord, *, run_id: int, kind: str = "message",
                    ) -> MessageConfig:
        """`from_message` for a config record on its own (`run_id` names a run without one)."""
        steps = int(config.get("local-steps", 0))
        if steps < 0:
            raise InvalidRunConfig(f"{kind}: `local-steps` is {steps}; expected >= 0")
        names = [s.strip() for s in str(config.get("splits", ",".join(SCORED_SPLITS))).split(",")
                 if s.strip()]
        if not names or any(s not in SCORED_SPLITS for s in names):
            raise InvalidRunConfig(
                f"{kind}: `splits` is {config.get('splits')!r}; expected a comma list of "
                f"{', '.join(SCORED_SPLITS)}")
        return cls(
            run_name=check_run_name(str(config.get("run-name", "") or f"flwr-run-{run_id}"),
                                    where=kind),
            server_round=int(config["server-round"]) if "server-round" in config else None,
            tasks=parse_tasks(str(config["tasks"])) if "tasks" in config else None,
            local_steps=steps,
            splits=frozenset(names),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
            adapter_mode=message_adapter_mode(config),
            intervals=_flag(config, INTERVALS_KEY, kind=kind),
        )

    def model_settings(self, settings: ModelSettings) -> ModelSettings:
        """The run's model settings, with this message's tasks when it names them."""
        return settings if self.tasks is None else replace(settings, tasks=self.tasks)


def _flag(config: ConfigRecord, key: str, *, kind: str) -> bool:
    """A boolean of a message config; false when absent."""
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRunConfig(f"{kind}: `{key}` is {value!r}; expected true or false")
    return value
