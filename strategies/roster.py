"""Which Flower node is which hospital, as the sites themselves declared it.

The server never sees site data, but it must know roles: only `train` sites receive training
messages, while every site — the held-out `external` health system included — is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class SiteEntry:
    node_id: int
    name: str
    role: Literal["train", "external"]


@dataclass(frozen=True)
class SiteRoster:
    """The sites of a run, in consortium order.

    `trainers` and `evaluated` narrow who trains and who is evaluated for one strategy (an
    experiment's regime: one site alone, the federation without a site); None = by role, and
    everyone. They only ever narrow: a site whose role is `external` never trains.
    """

    entries: tuple[SiteEntry, ...]
    trainers: frozenset[str] | None = None
    evaluated: frozenset[str] | None = None

    def __post_init__(self) -> None:
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"two nodes claim the same site: {sorted(names)}")
        for field, chosen in (("trainers", self.trainers), ("evaluated", self.evaluated)):
            unknown = sorted((chosen or frozenset()) - set(names))
            if unknown:
                raise ValueError(f"`{field}` names {unknown}, not in the roster {names}")
        external = sorted(e.name for e in self.entries
                          if e.role == "external" and e.name in (self.trainers or ()))
        if external:
            raise ValueError(f"`trainers` names external sites {external}: they never train")

    def restrict(self, *, trainers: frozenset[str] | None = None,
                 evaluated: frozenset[str] | None = None) -> SiteRoster:
        """The same nodes, with only `trainers` training and only `evaluated` evaluated."""
        return replace(self, trainers=trainers, evaluated=evaluated)

    def with_entry(self, entry: SiteEntry) -> SiteRoster:
        """The roster with a site that identified itself after the run started (a late joiner);
        it trains by its role and is evaluated, unless an experiment narrowed the roster."""
        return replace(self, entries=(*self.entries, entry))

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(entry.node_id for entry in self.entries)

    @property
    def training_node_ids(self) -> frozenset[int]:
        return frozenset(e.node_id for e in self.entries if e.role == "train"
                         and (self.trainers is None or e.name in self.trainers))

    @property
    def evaluation_node_ids(self) -> frozenset[int]:
        return frozenset(e.node_id for e in self.entries
                         if self.evaluated is None or e.name in self.evaluated)

    def by_node(self, node_id: int) -> SiteEntry:
        for entry in self.entries:
            if entry.node_id == node_id:
                return entry
        raise KeyError(f"node {node_id} is not in the roster")
