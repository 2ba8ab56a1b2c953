"""Ask every connected node which site it is, before any tensor is sent.

The answer is a name and a role, nothing about the site's data. The server checks it against the
consortium so that a misconfigured node (a wrong partition count, an unknown site, two nodes
claiming one hospital) stops the run at the start instead of corrupting it.
"""

from __future__ import annotations

import logging
import time

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from sites.config import ConsortiumConfig
from strategies import SiteEntry, SiteRoster

log = logging.getLogger(__name__)


class SiteDiscoveryError(RuntimeError):
    """The nodes that joined do not match the consortium."""


def _wait_for_nodes(grid: Grid, expected: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise SiteDiscoveryError(
                f"{len(nodes)} of {expected} sites connected within {timeout:.0f} s"
            )
        time.sleep(1.0)
    return nodes


def discover_sites(grid: Grid, consortium: ConsortiumConfig, *, timeout: float) -> SiteRoster:
    """Map node ids to the consortium's sites, in consortium order."""
    nodes = _wait_for_nodes(grid, len(consortium.sites), timeout)
    queries = [
        Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type=MessageType.QUERY)
        for node in nodes
    ]
    claimed: dict[str, SiteEntry] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise SiteDiscoveryError(f"node {node} failed to identify itself: {reply.error.reason}")
        site = reply.content["site"]
        name, role = str(site["name"]), str(site["role"])
        if name not in {s.name for s in consortium.sites}:
            raise SiteDiscoveryError(f"node {node} claims site {name!r}, not in {consortium.source}")
        if name in claimed:
            raise SiteDiscoveryError(f"nodes {claimed[name].node_id} and {node} both claim {name!r}")
        if role != consortium.site(name).role:
            raise SiteDiscoveryError(
                f"node {node} says site {name!r} has role {role!r}; the consortium says "
                f"{consortium.site(name).role!r}"
            )
        claimed[name] = SiteEntry(node_id=node, name=name, role=role)
    missing = [s.name for s in consortium.sites if s.name not in claimed]
    if missing:
        raise SiteDiscoveryError(f"no reply from sites {missing}")
    log.info("sites: %s", ", ".join(f"{n} ({e.role})" for n, e in claimed.items()))
    return SiteRoster(tuple(claimed[s.name] for s in consortium.sites))
