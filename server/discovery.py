"""Ask every connected node which site it is, before any tensor is sent to it.

The answer is a name and a role, nothing about the site's data. The server checks it against the
consortium so that a misconfigured node (a wrong partition count, an unknown site, two nodes
claiming one hospital) stops the run at the start instead of corrupting it. When the consortium
names key fingerprints, a node must also hold the key of the site it claims (server/site_keys.py).

The run waits up to `start-wait` seconds for every site, and starts at once when all have
identified themselves. When the wait ends with some missing, it starts with whoever is there if
that is the start quorum — `min-train-sites` training sites (more where the strategy needs more:
`strategies.training_sites_needed`) and every external site, which is awaited because the report
compares every round, the untrained round 0 included, on it — and fails otherwise. A site that
connects later is asked the same question between rounds (server/late_sites.py): once the run
has started, a node that fails the checks is refused and logged, and the run goes on.
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


class SiteDiscovery:
    """Who is who among the connected nodes: each node is asked once, as soon as it connects,
    and its answer collected whenever it comes (a SuperNode whose ClientApp takes minutes to
    start, on a loaded machine or with a large base, is still identified)."""

    def __init__(self, grid: Grid, consortium: ConsortiumConfig) -> None:
        self.grid = grid
        self.consortium = consortium
        self.claimed: dict[str, SiteEntry] = {}
        self._pending: dict[str, float] = {}  # query message id -> when it was asked
        self._asked: set[int] = set()

    def poll(self) -> list[str]:
        """Ask the nodes that connected since the last call, collect the answers that came, and
        add the nodes that pass the checks to `claimed`; why each other answering node was
        refused (one line each)."""
        if new := [node for node in self.grid.get_node_ids() if node not in self._asked]:
            self._asked.update(new)
            asked_at = time.monotonic()
            self._pending.update((mid, asked_at) for mid in self.grid.push_messages(
                [_query(node) for node in new]) if mid)
        if not self._pending:
            return []
        replies = list(self.grid.pull_messages(list(self._pending)))
        for reply in replies:
            self._pending.pop(reply.metadata.reply_to_message_id, None)
        keys = registered_keys(self.grid, self.consortium) if replies else {}
        refused = []
        for reply in replies:
            if problem := self._check(reply, keys):
                refused.append(problem)
        return refused

    def asked_within(self, seconds: float) -> bool:
        """Whether a node asked less than `seconds` ago has not answered yet."""
        now = time.monotonic()
        return any(now - asked_at < seconds for asked_at in self._pending.values())

    def roster(self) -> SiteRoster:
        """The identified sites, in consortium order."""
        return SiteRoster(tuple(self.claimed[s.name] for s in self.consortium.sites
                                if s.name in self.claimed))

    def who(self) -> str:
        connected = [s.name for s in self.consortium.sites if s.name in self.claimed]
        missing = [s.name for s in self.consortium.sites if s.name not in self.claimed]
        return f"connected: {', '.join(connected) or 'none'}; missing: {', '.join(missing)}"

    def quorum_met(self, training_sites: int) -> bool:
        """At least `training_sites` training sites and every external site have identified."""
        trainers = sum(1 for s in self.consortium.training_sites if s.name in self.claimed)
        return trainers >= training_sites and all(
            s.name in self.claimed for s in self.consortium.external_sites)

    def _check(self, reply: Message, keys: dict[int, bytes]) -> str | None:
        """Why the node that sent `reply` may not be the site it claims, or None after adding it
        to `claimed`."""
        node, consortium = reply.metadata.src_node_id, self.consortium
        if reply.has_error():
            return f"node {node} failed to identify itself: {_reason(reply.error.reason)}"
        site = reply.content["site"]
        name, role = str(site["name"]), str(site["role"])
        if name not in {s.name for s in consortium.sites}:
            return f"node {node} claims site {name!r}, not in {consortium.source}"
        if name in self.claimed:
            return f"nodes {self.claimed[name].node_id} and {node} both claim {name!r}"
        if role != consortium.site(name).role:
            return (f"node {node} says site {name!r} has role {role!r}; the consortium says "
                    f"{consortium.site(name).role!r}")
        if problem := key_mismatch(node, consortium.site(name), keys.get(node),
                                   consortium_file=consortium.source):
            return problem
        self.claimed[name] = SiteEntry(node_id=node, name=name, role=role)
        return None


def discover_sites(grid: Grid, consortium: ConsortiumConfig, *, timeout: float,
                   training_quorum: int | None = None, report_every: float = REPORT_EVERY_S,
                   poll_s: float = 1.0, discovery: SiteDiscovery | None = None) -> SiteRoster:
    """Map node ids to the consortium's sites, in consortium order, waiting up to `timeout`
    seconds for every site; then, with `training_quorum`, start with whoever has identified if
    that is `training_quorum` training sites and every external site (None: every site).

    Before the start any node that fails the checks stops the run: a simulation with the wrong
    number of nodes (Flower's default of 2, or 10) stops within seconds on the node's own error
    (it names `num-supernodes`), instead of waiting out `timeout`; in a deployment, the
    coordinator sees every `report_every` seconds which hospitals are connected and which are
    missing. Pass `discovery` to keep asking its way after the start (server/late_sites.py)."""
    found = discovery or SiteDiscovery(grid, consortium)
    expected = len(consortium.sites)
    started = time.monotonic()
    next_report = started + report_every
    while True:
        if refused := found.poll():
            raise SiteDiscoveryError(refused[0])
        if len(found.claimed) == expected:
            break
        now = time.monotonic()
        if now - started > timeout:
            if training_quorum is not None and found.quorum_met(training_quorum):
                log.warning("starting with %d of %d sites after %.0f s; %s. A missing site "
                            "takes part from the round after it connects", len(found.claimed),
                            expected, timeout, found.who())
                break
            need = ("" if training_quorum is None else
                    f"; to start, the run needs {training_quorum} training site"
                    f"{'s' if training_quorum != 1 else ''} (`min-train-sites`, or what the "
                    "strategy needs) and every external site")
            raise SiteDiscoveryError(f"{len(found.claimed)} of {expected} sites connected within "
                                     f"{timeout:.0f} s; {found.who()}{need}")
        if now >= next_report:
            log.info("waiting for sites: %d of %d connected; %s", len(found.claimed), expected,
                     found.who())
            next_report = now + report_every
        time.sleep(poll_s)
    log.info("sites: %s", ", ".join(f"{n} ({e.role})" for n, e in found.claimed.items()))
    return found.roster()


def _query(node: int) -> Message:
    """Who are you? The nonce makes each query's id (its content's hash) unguessable:
    server/site_keys.py."""
    return Message(RecordDict({"config": ConfigRecord({"nonce": secrets.token_hex(16)})}),
                   dst_node_id=node, message_type=MessageType.QUERY)


def _reason(reason: str) -> str:
    """The ClientApp's own message out of Flower's wrapping of it
    (`<class '...ClientAppException'>:<'\\nException ... Message: TEXT'>`)."""
    found = re.search(r"Message: (.*)'>\s*$", reason, flags=re.DOTALL)
    return (found.group(1) if found else reason).strip()
