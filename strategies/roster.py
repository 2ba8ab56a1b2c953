"""Which Flower node is which hospital, as the sites themselves declared it.

The server never sees site data, but it must know roles: only `train` sites receive training
messages, while every site — the held-out `external` health system included — is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SiteEntry:
    node_id: int
    name: str
    role: Literal["train", "external"]


@dataclass(frozen=True)
class SiteRoster:
    """The sites of a run, in consortium order."""

    entries: tuple[SiteEntry, ...]

    def __post_init__(self) -> None:
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"two nodes claim the same site: {sorted(names)}")

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(entry.node_id for entry in self.entries)

    @property
    def training_node_ids(self) -> frozenset[int]:
        return frozenset(e.node_id for e in self.entries if e.role == "train")

    def by_node(self, node_id: int) -> SiteEntry:
        for entry in self.entries:
            if entry.node_id == node_id:
                return entry
        raise KeyError(f"node {node_id} is not in the roster")
