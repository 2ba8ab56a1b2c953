"""The coordinator's run settings, parsed once from the Flower run configuration."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from client.settings import ClientSettings, InvalidRunConfig, config_value, positive_config_value
from strategies import STRATEGIES, ClientDP, StrategyOptions

NOT_FOR_EXPERIMENTS: frozenset[str] = frozenset({"flora", "median", "trimmed-mean", "multi-krum"})


@dataclass(frozen=True)
class ServerSettings:
    """Run settings the server needs on top of what every client reads."""

    client: ClientSettings
    runs_dir: Path
    """Parent folder of run directories."""
    run_name: str
    """Run directory name under `runs_dir` (the run config's empty default becomes a UTC
    timestamp when parsed)."""
    num_rounds: int
    strategy: str
    min_train_sites: int
    """A training round with fewer replies than this is skipped (global adapter kept)."""
    round_timeout: float
    """Seconds to wait for the replies of one round."""
    regimes: frozenset[str]
    resume: bool
    """Continue the run in `run_dir` from its last checkpoint (`lang1-fl run --resume RUN_DIR`)
    instead of starting one."""
    """Transfer experiment only (`experiment-regimes`): the regime kinds to train, besides the
    untrained model."""
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
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.run_name):
            raise InvalidRunConfig(
                f"run config: `run-name` is {self.run_name!r}; expected letters, digits, '.', '_' "
                "or '-'"
            )

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_name

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> ServerSettings:
        client = ClientSettings.from_run_config(config)
        return cls(
            client=client,
            runs_dir=Path(config_value(config, "runs-dir", str)).expanduser().resolve(),
            run_name=str(config.get("run-name", ""))
            or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
            num_rounds=client.num_rounds,
            strategy=config_value(config, "strategy", str),
            min_train_sites=positive_config_value(config, "min-train-sites", int),
            round_timeout=positive_config_value(config, "round-timeout", float),
            regimes=parse_regimes(config_value(config, "experiment-regimes", str)),
            resume=config_value(config, "resume", bool),
            options=_strategy_options(config, client),
            client_dp=ClientDP(
                noise_multiplier=positive_config_value(config, "client-dp-noise-multiplier", float),
                clipping_norm=positive_config_value(config, "client-dp-clipping-norm", float),
                delta=positive_config_value(config, "client-dp-delta", float),
            ),
        )


def _strategy_options(config: Mapping[str, object], client: ClientSettings) -> StrategyOptions:
    try:
        return StrategyOptions(
            proximal_mu=positive_config_value(config, "proximal-mu", float, allow_zero=True),
            tolerated_bad_sites=positive_config_value(config, "tolerated-bad-sites", int,
                                                      allow_zero=True),
            server_learning_rate=positive_config_value(config, "server-learning-rate", float),
            server_beta_1=positive_config_value(config, "server-beta-1", float, allow_zero=True),
            server_beta_2=positive_config_value(config, "server-beta-2", float, allow_zero=True),
            server_tau=positive_config_value(config, "server-tau", float),
            lora_alpha=float(client.model.lora.alpha),
        )
    except ValueError as error:
        raise InvalidRunConfig(str(error)) from None


def parse_regimes(value: str) -> frozenset[str]:
    """`all`, or a comma list of the transfer experiment's regime kinds."""
    from server.transfer.experiment import TRAINED_KINDS

    if value.strip() == "all":
        return frozenset(TRAINED_KINDS)
    kinds = frozenset(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(kinds - set(TRAINED_KINDS))
    if unknown or not kinds:
        raise InvalidRunConfig(f"run config: `experiment-regimes` is {value!r}; expected 'all' or "
                               f"a comma list of {', '.join(TRAINED_KINDS)}")
    return kinds
