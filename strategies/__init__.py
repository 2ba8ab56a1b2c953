"""Aggregation rules over LoRA adapters, chosen by the run config's `strategy` key.

Each is a Flower strategy with lang1-fl's site awareness mixed in (strategies/site_aware.py);
what travels between a site and the server is named once, in strategies/exchange.py:

| `strategy`     | rule                                                        | module        |
|----------------|-------------------------------------------------------------|---------------|
| `fedavg`       | FedAvg of adapter and heads, weighted by examples           | fedavg.py     |
| `ffa-lora`     | A frozen at its shared init, FedAvg of B and heads (exact)  | ffa_lora.py   |
| `fedprox`      | FedAvg, sites pulled toward the global adapter              | fedprox.py    |
| `flora`        | sites' factors stacked (exact, per-site ranks)              | flora.py      |
| `median`       | coordinate-wise median (Flower's), tolerates f bad sites    | robust.py     |
| `trimmed-mean` | coordinate-wise trimmed mean (Flower's), cuts f per end     | robust.py     |
| `multi-krum`   | FedAvg over the n − f most central updates (Flower's)       | robust.py     |
| `fedadam`      | Adam on the server over the averaged update (Flower's)      | fedadam.py    |
| `dp-fedavg`    | client-level DP: clipped updates, Gaussian noise at server  | dp_fedavg.py  |
"""

from __future__ import annotations

from flwr.serverapp.strategy import Strategy

from strategies.dp_fedavg import ClientDP, ClientLevelDPFedAvg
from strategies.fedadam import AdapterFedAdam
from strategies.fedavg import AdapterFedAvg
from strategies.fedprox import AdapterFedProx
from strategies.ffa_lora import FfaLoraFedAvg
from strategies.flora import FLoRA
from strategies.options import StrategyOptions
from strategies.robust import RobustMedian, RobustMultiKrum, RobustTrimmedMean
from strategies.roster import SiteEntry, SiteRoster
from strategies.run_log import ClientLevelPrivacy, RunLog
from strategies.site_aware import SiteAware

STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": AdapterFedAvg,
    "ffa-lora": FfaLoraFedAvg,
    "fedprox": AdapterFedProx,
    "flora": FLoRA,
    "median": RobustMedian,
    "trimmed-mean": RobustTrimmedMean,
    "multi-krum": RobustMultiKrum,
    "fedadam": AdapterFedAdam,
    "dp-fedavg": ClientLevelDPFedAvg,
}


_READ_OPTIONS: tuple[type[Strategy], ...] = (AdapterFedProx, RobustMedian, RobustTrimmedMean,
                                            RobustMultiKrum, AdapterFedAdam, FLoRA)
"""The rules that read `StrategyOptions`."""


def training_sites_needed(name: str, *, min_train_sites: int, options: StrategyOptions,
                          num_training_sites: int) -> int:
    """Training sites that must have joined before round 1 of strategy `name`: `min-train-sites`,
    or more where the rule needs more — every one for `dp-fedavg` (its noise is sized for all,
    so it takes no late joiners), 2f + 1..3 for the robust rules."""
    cls = STRATEGIES.get(name)
    if cls is ClientLevelDPFedAvg:
        return num_training_sites
    if cls in (RobustMedian, RobustTrimmedMean, RobustMultiKrum):
        return max(min_train_sites, 2 * options.tolerated_bad_sites + cls.extra_replies)
    return min_train_sites


def build_strategy(
    name: str, *, roster: SiteRoster, min_train_sites: int, client_dp: ClientDP | None = None,
    options: StrategyOptions | None = None,
) -> Strategy:
    """The strategy registered under `name`, aware of the sites' roles.

    `client_dp` (noise multiplier, clipping norm, δ) is needed by `dp-fedavg` only; `options`
    holds the settings of the rules that have any (each reads its own), and is needed by those
    only (`fedprox`, `median`, `trimmed-mean`, `multi-krum`, `fedadam`, `flora`): the server
    builds both from the run config, so no value here comes from anywhere else.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"run config: `strategy` is {name!r}; expected one of {', '.join(STRATEGIES)}"
        )
    cls = STRATEGIES[name]
    common = {"roster": roster, "min_train_sites": min_train_sites}
    if issubclass(cls, ClientLevelDPFedAvg):
        if client_dp is None:
            raise ValueError(f"`strategy` {name!r} needs the `client-dp-*` settings (client_dp)")
        return cls(**common, client_dp=client_dp)
    if options is None:
        if cls in _READ_OPTIONS:
            raise ValueError(f"`strategy` {name!r} needs its settings from the run config "
                             "(options: StrategyOptions)")
        return cls(**common)
    if cls is AdapterFedProx:
        return cls(**common, proximal_mu=options.proximal_mu)
    if cls in (RobustMedian, RobustTrimmedMean, RobustMultiKrum):
        return cls(**common, tolerated_bad_sites=options.tolerated_bad_sites)
    if cls is AdapterFedAdam:
        return cls(**common, eta=options.server_learning_rate, beta_1=options.server_beta_1,
                   beta_2=options.server_beta_2, tau=options.server_tau)
    if cls is FLoRA:
        return cls(**common, lora_alpha=options.lora_alpha)
    return cls(**common)


__all__ = [
    "STRATEGIES",
    "ClientDP",
    "ClientLevelPrivacy",
    "RunLog",
    "SiteAware",
    "SiteEntry",
    "SiteRoster",
    "StrategyOptions",
    "build_strategy",
    "training_sites_needed",
]
