"""Aggregation rules over LoRA adapters, chosen by the run config's `strategy` key."""

from __future__ import annotations

from flwr.serverapp.strategy import Strategy

from strategies.fedavg import AdapterFedAvg
from strategies.roster import SiteEntry, SiteRoster
from strategies.site_aware import RunLog, SiteAware

STRATEGIES: dict[str, type[SiteAware]] = {"fedavg": AdapterFedAvg}


def build_strategy(name: str, *, roster: SiteRoster, min_train_sites: int) -> Strategy:
    """The strategy registered under `name`, aware of the sites' roles."""
    if name not in STRATEGIES:
        raise ValueError(
            f"run config: `strategy` is {name!r}; expected one of {', '.join(sorted(STRATEGIES))}"
        )
    return STRATEGIES[name](roster=roster, min_train_sites=min_train_sites)


__all__ = ["STRATEGIES", "RunLog", "SiteAware", "SiteEntry", "SiteRoster", "build_strategy"]
