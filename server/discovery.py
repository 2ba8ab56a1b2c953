"""Ask every connected node which site it is, before any tensor is sent.

The answer is a name and a role, nothing about the site's data. The server checks it against the
consortium so that a misconfigured node (a wrong partition count, an unknown site, two nodes
claiming one hospital) stops the run at the start instead of corrupting it. When the consortium
names key fingerprints, a node must also hold the key of the site it claims (server/site_keys.py).
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from server.site_keys import key_mismatch, registered_keys
from sites.config import ConsortiumConfig
from strategies import SiteEntry, SiteRoster

log = logging.getLogger(__name__)


class SiteDiscoveryError(RuntimeError):
    """The nodes that joined do not match the consortium."""


REPORT_EVERY_S = 30.0
"""While sites are missing, who is connected and who is not is logged this often (seconds)."""


def discover_sites(grid: Grid, consortium: ConsortiumConfig, *, timeout: float,
                   report_every: float = REPORT_EVERY_S, poll_s: float = 1.0) -> SiteRoster:
    """Map node ids to the consortium's sites, in consortium order.

    Each node is asked who it is as soon as it connects, not once all have: a simulation with
    the wrong number of nodes (Flower's default of 2, or 10) then stops within seconds on the
    node's own error (it names `num-supernodes`), instead of waiting out `timeout` for sites
    that never come; in a deployment, the coordinator sees every `report_every` seconds which
    hospitals are connected and which are missing."""
    expected = len(consortium.sites)
    started = time.monotonic()
    next_report = started + report_every
    claimed: dict[str, SiteEntry] = {}
    pending: dict[str, int] = {}  # query message id -> node, until the node answers
    asked: set[int] = set()
    while len(claimed) < expected:
        # Each node is asked once, and its answer collected whenever it comes: a SuperNode whose
        # ClientApp takes minutes to start (a loaded machine, a large base) is still identified
        if new := [node for node in grid.get_node_ids() if node not in asked]:
            asked.update(new)
            pending.update((mid, node) for mid, node in zip(
                grid.push_messages([_query(node) for node in new]), new, strict=True) if mid)
        if pending:
            replies = list(grid.pull_messages(list(pending)))
            for reply in replies:
                pending.pop(reply.metadata.reply_to_message_id, None)
            _identify(grid, replies, consortium, claimed)
        if len(claimed) == expected:
            break
        now = time.monotonic()
        if now - started > timeout:
            raise SiteDiscoveryError(f"{len(claimed)} of {expected} sites connected within "
                                     f"{timeout:.0f} s; {_who(consortium, claimed)}")
        if now >= next_report:
            log.info("waiting for sites: %d of %d connected; %s", len(claimed), expected,
                     _who(consortium, claimed))
            next_report = now + report_every
        time.sleep(poll_s)
    log.info("sites: %s", ", ".join(f"{n} ({e.role})" for n, e in claimed.items()))
    return SiteRoster(tuple(claimed[s.name] for s in consortium.sites))


def _query(node: int) -> Message:
    """Who are you? The nonce makes each query's id (its content's hash) unguessable:
    server/site_keys.py."""
    return Message(RecordDict({"config": ConfigRecord({"nonce": secrets.token_hex(16)})}),
                   dst_node_id=node, message_type=MessageType.QUERY)


def _identify(grid: Grid, replies: list[Message], consortium: ConsortiumConfig,
              claimed: dict[str, SiteEntry]) -> None:
    """Check the nodes' answers against the consortium and add them to `claimed`."""
    keys = registered_keys(grid, consortium) if replies else {}
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise SiteDiscoveryError(f"node {node} failed to identify itself: "
                                     f"{_reason(reply.error.reason)}")
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
        if problem := key_mismatch(node, consortium.site(name), keys.get(node),
                                   consortium_file=consortium.source):
            raise SiteDiscoveryError(problem)
        claimed[name] = SiteEntry(node_id=node, name=name, role=role)


def _who(consortium: ConsortiumConfig, claimed: dict[str, SiteEntry]) -> str:
    connected = [s.name for s in consortium.sites if s.name in claimed]
    missing = [s.name for s in consortium.sites if s.name not in claimed]
    return f"connected: {', '.join(connected) or 'none'}; missing: {', '.join(missing)}"


def _reason(reason: str) -> str:
    """The ClientApp's own message out of Flower's wrapping of it
    (`<class '...ClientAppException'>:<'\\nException ... Message: TEXT'>`)."""
    found = re.search(r"Message: (.*)'>\s*$", reason, flags=re.DOTALL)
    return (found.group(1) if found else reason).strip()
