"""Site discovery: nodes say which site they are; anything that does not match the consortium stops
the run before a tensor is sent."""

from __future__ import annotations

import logging
import time

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from server.discovery import SiteDiscoveryError, discover_sites
from sites.config import load_consortium
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity


@pytest.fixture()
def consortium(tmp_path):
    set_task_identity()
    return load_consortium(write_small_consortium(tmp_path), data_root=tmp_path)


def _answering(claims: dict[int, tuple[str, str]]):
    def respond(message: Message) -> Message:
        name, role = claims[message.metadata.dst_node_id]
        return Message(RecordDict({"site": ConfigRecord({"name": name, "role": role})}), reply_to=message)

    return respond


def test_nodes_are_mapped_to_sites_in_consortium_order(consortium):
    claims = {7: ("external-system", "external"), 3: ("community", "train"), 5: ("academic", "train")}
    roster = discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=5)
    assert [(e.name, e.node_id, e.role) for e in roster.entries] == [
        ("academic", 5, "train"), ("community", 3, "train"), ("external-system", 7, "external"),
    ]
    assert roster.training_node_ids == {3, 5}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({1: ("academic", "train"), 2: ("community", "train"), 3: ("mystery", "train")},
         r"node 3 claims site 'mystery'"),
        ({1: ("academic", "train"), 2: ("academic", "train"), 3: ("external-system", "external")},
         r"nodes 1 and 2 both claim 'academic'"),
        ({1: ("academic", "train"), 2: ("community", "train"), 3: ("external-system", "train")},
         r"role 'train'; the consortium says 'external'"),
    ],
)
def test_mismatched_nodes_stop_the_run(consortium, claims, message):
    with pytest.raises(SiteDiscoveryError, match=message):
        discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=5)


def test_too_few_nodes_time_out_with_a_count(consortium):
    claims = {1: ("academic", "train")}
    with pytest.raises(SiteDiscoveryError, match=r"1 of 3 sites connected within 1 s"):
        discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=1)


def test_a_simulation_with_the_wrong_node_count_stops_within_seconds(tmp_path, consortium):
    """Issue 34 #11: `flwr run . --stream` with Flower's default of 2 SuperNodes for a 3-site
    consortium waited `round-timeout` (30 minutes) in silence. Each connected node is asked at
    once; its ClientApp's error (raised by the real `resolve_site`, wrapped as Flower wraps it)
    names the setting."""
    from flwr.app import Error

    from client.settings import ClientSettings
    from client.site import resolve_site
    from tests.run_config import default_run_config

    settings = ClientSettings.from_run_config(default_run_config(
        consortium=str(consortium.source), data_dir=str(tmp_path)))

    def simulated_node(message: Message) -> Message:
        partition = message.metadata.dst_node_id
        try:
            resolve_site({"partition-id": partition, "num-partitions": 2}, settings)
        except Exception as error:  # what Flower's simulation engine does with it
            reason = f"{type(error)}:<'\nException ClientAppException occurred. Message: {error}'>"
            return Message(Error(code=0, reason=reason), reply_to=message)
        raise AssertionError("a 2-node simulation of a 3-site consortium was accepted")

    started = time.monotonic()
    with pytest.raises(SiteDiscoveryError, match=(
            r"failed to identify itself: .*consortium.yaml: the simulation has 2 nodes but the "
            r"consortium lists 3 sites; set --federation-config 'num-supernodes=3' "
            r"\(`lang1-fl run` sets it for you\)$")):
        discover_sites(FakeGrid([0, 1], simulated_node), consortium, timeout=20)
    assert time.monotonic() - started < 5


class ArrivingGrid(FakeGrid):
    """Nodes connect one by one: one more every `every` calls of `get_node_ids`."""

    def __init__(self, claims, every: int) -> None:
        super().__init__(claims, _answering(claims))
        self.calls, self.every = 0, every

    def get_node_ids(self) -> list[int]:
        self.calls += 1
        return self.nodes[:1 + self.calls // self.every]


def test_waiting_for_sites_logs_who_is_connected_and_who_is_missing(consortium, caplog):
    """Issue 34 #11, deployment: the coordinator sees which hospitals are still missing."""
    claims = {1: ("academic", "train"), 2: ("community", "train"),
              3: ("external-system", "external")}
    with caplog.at_level(logging.INFO, logger="server.discovery"):
        roster = discover_sites(ArrivingGrid(claims, every=5), consortium, timeout=30,
                                report_every=0.05, poll_s=0.02)
    assert [e.node_id for e in roster.entries] == [1, 2, 3]
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert ("waiting for sites: 1 of 3 connected; connected: academic; missing: community, "
            "external-system") in waiting
    assert ("waiting for sites: 2 of 3 connected; connected: academic, community; missing: "
            "external-system") in waiting


def test_missing_sites_are_named_when_discovery_times_out(consortium):
    claims = {1: ("academic", "train"), 2: ("community", "train")}
    with pytest.raises(SiteDiscoveryError, match=r"2 of 3 sites connected within 1 s; connected: "
                       r"academic, community; missing: external-system"):
        discover_sites(FakeGrid(claims, _answering(claims)), consortium, timeout=1, poll_s=0.1)


def test_a_node_that_answers_late_is_asked_once_and_still_identified(consortium):
    """A SuperNode whose ClientApp takes longer to start than the report interval (a loaded
    machine, a large base) is not given up on: its one query's answer is collected whenever it
    comes, and it is never asked twice."""
    claims = {1: ("academic", "train"), 2: ("community", "train"),
              3: ("external-system", "external")}
    answer = _answering(claims)
    pulls = {node: 0 for node in claims}

    def slow_third(message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        pulls[node] += 1
        return None if node == 3 and pulls[node] < 20 else answer(message)

    grid = FakeGrid(claims, slow_third)
    roster = discover_sites(grid, consortium, timeout=30, report_every=0.01, poll_s=0.01)
    assert [e.node_id for e in roster.entries] == [1, 2, 3]
    assert sorted(m.metadata.dst_node_id for m in grid.sent) == [1, 2, 3]
    assert pulls[3] == 20
