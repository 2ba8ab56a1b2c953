"""Aggregation rules over LoRA adapters, chosen by the run config's `strategy` key."""

from __future__ import annotations

from flwr.serverapp.strategy import Strategy

from strategies.dp_fedavg import ClientDP, ClientLevelDPFedAvg, ClientLevelPrivacy
from strategies.fedavg import AdapterFedAvg
from strategies.roster import SiteEntry, SiteRoster
from strategies.site_aware import RunLog, SiteAware

STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": AdapterFedAvg,
    "dp-fedavg": ClientLevelDPFedAvg,
}


def build_strategy(
    name: str, *, roster: SiteRoster, min_train_sites: int, client_dp: ClientDP | None = None
) -> Strategy:
    """The strategy registered under `name`, aware of the sites' roles.

    `client_dp` (noise multiplier, clipping norm, δ) is needed by `dp-fedavg` only.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"run config: `strategy` is {name!r}; expected one of {', '.join(STRATEGIES)}"
        )
    cls = STRATEGIES[name]
    if issubclass(cls, ClientLevelDPFedAvg):
        if client_dp is None:
            raise ValueError(f"`strategy` {name!r} needs the `client-dp-*` settings (client_dp)")
        return cls(roster=roster, min_train_sites=min_train_sites, client_dp=client_dp)
    return cls(roster=roster, min_train_sites=min_train_sites)


__all__ = [
    "STRATEGIES",
    "ClientDP",
    "ClientLevelPrivacy",
    "RunLog",
    "SiteAware",
    "SiteEntry",
    "SiteRoster",
    "build_strategy",
]
