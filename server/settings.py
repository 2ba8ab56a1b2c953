"""The coordinator's run settings, parsed once from the Flower run configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from client.run_config import InvalidRunConfig, check_run_name, read_run_config
from client.settings import ClientSettings
from server.round_selection import CRITERIA
from strategies import STRATEGIES, ClientDP, StrategyOptions

NOT_FOR_EXPERIMENTS: frozenset[str] = frozenset({"flora", "median", "trimmed-mean", "multi-krum"})

TRAINED_KINDS: tuple[str, ...] = ("federated", "local", "leave-one-out", "pooled", "single-task")
"""The transfer experiment's regime kinds that train (`experiment-regimes`), besides the untrained
model it always scores (server/transfer/experiment.py)."""


@dataclass(frozen=True)
class ServerSettings:
    """Run settings the server needs on top of what every client reads."""

    client: ClientSettings
    """What every site reads too: the model, the optimizers, `num-server-rounds`, the seed."""
    runs_dir: Path
    """Parent folder of run directories."""
    run_name: str
    """Run directory name under `runs_dir` (the run config's empty default becomes a UTC
    timestamp when parsed)."""
    strategy: str
    round_selection: str
    """`server.round_selection.CRITERIA`: what chooses the reported round (`loss` or `auroc`)."""
    profile: str
    """The run profile `--profile` applied (`[tool.lang1-fl.profiles.<name>]`), "" for none."""
    min_train_sites: int
    """A training round with fewer replies than this is skipped (global adapter kept); also the
    training sites the run needs connected to start once `start_wait` has passed."""
    round_timeout: float
    """Seconds to wait for the replies of one round."""
    start_wait: float
    """Seconds to wait for every site before the run starts (server/discovery.py)."""
    regimes: frozenset[str]
    """Transfer experiment only (`experiment-regimes`): the regime kinds to train, besides the
    untrained model."""
    resume: bool
    """Continue the run in `run_dir` from its last checkpoint (`lang1-fl run --resume RUN_DIR`)
    instead of starting one."""
    options: StrategyOptions
    """Settings of the rules that have any (`proximal-mu`, `tolerated-bad-sites`, `server-*`)."""
    client_dp: ClientDP
    """Client-level DP (`client-dp-noise-multiplier`, `client-dp-clipping-norm`, `client-dp-delta`):
    read and checked always, used only by `strategy = "dp-fedavg"`."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidRunConfig(
                f"run config: `strategy` is {self.strategy!r}; expected one of "
                f"{', '.join(STRATEGIES)}"
            )
        if self.round_selection not in CRITERIA:
            raise InvalidRunConfig(
                f"run config: `round-selection` is {self.round_selection!r}; expected one of "
                f"{', '.join(CRITERIA)}"
            )
        for key, value in (("client-dp-noise-multiplier", self.client_dp.noise_multiplier),
                           ("client-dp-clipping-norm", self.client_dp.clipping_norm)):
            if not math.isfinite(value):
                raise InvalidRunConfig(
                    f"run config: `{key}` is {value!r}; expected a finite number > 0"
                )
        if not 0 < self.client_dp.delta < 1:
            raise InvalidRunConfig(
                f"run config: `client-dp-delta` is {self.client_dp.delta!r}; expected 0 < δ < 1, "
                "and far below 1/number-of-training-sites (the unit is a site), e.g. 1e-5"
            )
        if self.client.experiment and self.strategy in NOT_FOR_EXPERIMENTS:
            raise InvalidRunConfig(
                f"run config: `strategy` is {self.strategy!r}, which the transfer experiment "
                "cannot use: it trains single hospitals (local regimes) and scores each regime's "
                "adapter itself; the robust rules need several sites per round and FLoRA's state "
                "is not an adapter. Expected another strategy, e.g. 'fedavg'")
        check_run_name(self.run_name, where="run config")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_name

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> ServerSettings:
        client = ClientSettings.from_run_config(config)
        return cls(
            client=client,
            runs_dir=Path(read_run_config(config, "runs-dir")).expanduser().resolve(),
            run_name=read_run_config(config, "run-name")
            or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
            strategy=read_run_config(config, "strategy"),
            round_selection=read_run_config(config, "round-selection"),
            profile=read_run_config(config, "profile"),
            min_train_sites=read_run_config(config, "min-train-sites"),
            round_timeout=read_run_config(config, "round-timeout"),
            start_wait=read_run_config(config, "start-wait"),
            regimes=parse_regimes(read_run_config(config, "experiment-regimes")),
            resume=read_run_config(config, "resume"),
            options=strategy_options(config),
            client_dp=ClientDP(
                noise_multiplier=read_run_config(config, "client-dp-noise-multiplier"),
                clipping_norm=read_run_config(config, "client-dp-clipping-norm"),
                delta=read_run_config(config, "client-dp-delta"),
            ),
        )


def strategy_options(config: Mapping[str, object]) -> StrategyOptions:
    """The aggregation rules' settings from the run config (every one, whichever rule runs)."""
    try:
        return StrategyOptions(
            proximal_mu=read_run_config(config, "proximal-mu"),
            tolerated_bad_sites=read_run_config(config, "tolerated-bad-sites"),
            server_learning_rate=read_run_config(config, "server-learning-rate"),
            server_beta_1=read_run_config(config, "server-beta-1"),
            server_beta_2=read_run_config(config, "server-beta-2"),
            server_tau=read_run_config(config, "server-tau"),
            lora_alpha=read_run_config(config, "lora-alpha"),
        )
    except ValueError as error:
        raise InvalidRunConfig(str(error)) from None


def parse_regimes(value: str) -> frozenset[str]:
    """`all`, or a comma list of the transfer experiment's regime kinds."""
    if value.strip() == "all":
        return frozenset(TRAINED_KINDS)
    kinds = frozenset(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(kinds - set(TRAINED_KINDS))
    if unknown or not kinds:
        raise InvalidRunConfig(f"run config: `experiment-regimes` is {value!r}; expected 'all' or "
                               f"a comma list of {', '.join(TRAINED_KINDS)}")
    return kinds
