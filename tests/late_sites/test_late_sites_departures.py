"""Issue 35: sites that go away during a run.

Against FakeGrid: a site whose node is no longer connected is `offline` for the round instead of
stalling it; a connected site that does not answer has `timed out`; a node that stops reporting
(answered for by the SuperLink) is `lost`, and the closing ledger query names it; dp-fedavg skips
a round with a site offline; nodes coming and going while Flower samples neither stall the round
nor drop a site.
Real processes on loopback: tests/test_late_sites_e2e.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode

from server.ledger_query import collect_ledgers
from strategies import ClientDP, SiteEntry, SiteRoster, build_strategy
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.late_sites.late_grid import CLAIMS, LateGrid, Sites, run_rounds


@pytest.fixture()
def flower_never_waits(monkeypatch):
    """Flower's node sampling sleeps in a loop until enough nodes are connected; a run with a
    departed site must never get there (it would wait forever)."""
    def stalled(_seconds):
        raise AssertionError("Flower is waiting for nodes that are gone")

    monkeypatch.setattr("flwr.serverapp.strategy.strategy_utils.sleep", stalled)


@pytest.mark.usefixtures("flower_never_waits")
def test_a_site_that_disconnects_is_offline_for_the_round_and_the_run_goes_on(consortium):
    sites = Sites(CLAIMS)
    grid = LateGrid(sites)

    def leave_at_round_2(next_round, grid):
        if next_round == 2:
            grid.gone.add(2)
        if next_round == 3:
            grid.gone.discard(2)

    strategy, _ = run_rounds(grid, consortium, during=leave_at_round_2)
    assert {r: sorted(n) for r, n in sites.trained.items()} == {1: [1, 2], 2: [1], 3: [1, 2]}
    log = strategy.run_log
    assert log.participation[2]["community"] == {"train": "offline", "evaluate": "offline"}
    assert log.failures == {2: ["community: not connected", "community: not connected"]}


@pytest.mark.usefixtures("flower_never_waits")
def test_a_connected_site_that_does_not_answer_timed_out(consortium):
    sites = Sites(CLAIMS)

    class SilentGrid(LateGrid):
        def send_and_receive(self, messages, *, timeout=None):
            return [r for r in super().send_and_receive(messages, timeout=timeout)
                    if not (r.metadata.src_node_id == 2 and r.metadata.message_type ==
                            MessageType.TRAIN)]

    strategy, _ = run_rounds(SilentGrid(sites), consortium, rounds=1)
    assert strategy.run_log.participation[1]["community"] == {"train": "timed out",
                                                              "evaluate": "evaluated"}
    assert strategy.run_log.failures == {1: ["community: no reply"]}


@pytest.mark.usefixtures("flower_never_waits")
def test_dp_fedavg_skips_a_round_with_a_site_offline_instead_of_stopping(caplog):
    roster = SiteRoster((SiteEntry(1, "academic", "train"), SiteEntry(2, "community", "train")))
    strategy = build_strategy("dp-fedavg", roster=roster, min_train_sites=1,
                              client_dp=ClientDP(noise_multiplier=1.0, clipping_norm=1.0,
                                                 delta=1e-5))
    grid = LateGrid(Sites({1: ("academic", "train"), 2: ("community", "train")}))
    grid.gone.add(2)
    arrays = ArrayRecord({"adapter.w": Array(np.zeros(3, dtype=np.float32))})
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert [m.metadata.dst_node_id for m in messages] == [1]
    assert strategy.aggregate_train(1, grid.send_and_receive(messages)) == (None, None)
    assert strategy.run_log.skipped_rounds == [1]
    assert strategy.run_log.participation[1]["community"] == {"train": "offline"}


class SuperLinkGrid(LateGrid):
    """Gives every message its id as Flower's push does, and answers for `hung` nodes as Flower's
    SuperLink does for a node that stopped reporting: an error reply of its own
    (`NODE_UNAVAILABLE`, sender SUPERLINK_NODE_ID) to the node's message."""

    def __init__(self, sites: Sites, hung: set[int]) -> None:
        super().__init__(sites)
        self.hung = hung

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
        replies = []
        for message in messages:
            if message.metadata.dst_node_id not in self.hung:
                replies += super().send_and_receive([message], timeout=timeout)
                continue
            reply = Message(Error(code=ErrorCode.NODE_UNAVAILABLE, reason="Error: Node "
                                  "Unavailable — The destination node failed to report a "
                                  "heartbeat"), reply_to=message)
            reply.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
            replies.append(reply)
        return replies


FAR_NODES = {11: ("academic", "train"), 12: ("community", "train"),
             13: ("external-system", "external")}
"""Node ids away from SUPERLINK_NODE_ID (1), as real ones (random 64-bit) are."""


def test_a_node_that_stops_reporting_mid_round_is_lost_and_the_run_goes_on(consortium):
    """Seen on loopback: the SuperLink's reply for a SIGSTOPped SuperNode comes from node 1, and
    looking that up in the roster stopped the ServerApp with a KeyError."""
    strategy, _ = run_rounds(SuperLinkGrid(Sites(FAR_NODES), hung={12}), consortium, rounds=2)
    log = strategy.run_log
    assert log.participation[1]["community"] == {"train": "lost", "evaluate": "lost"}
    assert log.participation[2]["academic"] == {"train": "trained", "evaluate": "evaluated"}
    assert log.failures[1][0].startswith("community: Error: Node Unavailable")


def test_the_closing_ledger_query_names_a_site_the_superlink_answered_for(consortium, caplog):
    roster = SiteRoster(tuple(SiteEntry(n, *claim) for n, claim in FAR_NODES.items()))
    with caplog.at_level(logging.WARNING, logger="server.ledger_query"):
        ledgers = collect_ledgers(SuperLinkGrid(Sites(FAR_NODES), hung={12}), roster,
                                  run_name="r", timeout=1)
    assert set(ledgers) == {"academic"}  # the external site keeps no ledger
    assert any(m.startswith("community did not report its privacy ledger: Error: Node "
                            "Unavailable") for m in caplog.messages)


@pytest.mark.usefixtures("flower_never_waits")
@pytest.mark.parametrize("between", ["a node leaves", "a node connects"])
def test_nodes_coming_and_going_while_flower_samples_neither_stall_nor_drop_a_site(between):
    """Flower counts the connected nodes, then lists them again: a node leaving in between made it
    wait for ever; one arriving made it sample a random subset, leaving a site out."""
    set_task_identity()
    roster = SiteRoster((SiteEntry(1, "academic", "train"), SiteEntry(2, "community", "train")))
    calls = []

    class Flickering(FakeGrid):
        def get_node_ids(self):
            calls.append(1)
            if between == "a node leaves":
                return [1, 2] if len(calls) == 1 else [1]
            return [1, 2] if len(calls) == 1 else [1, 2, 7]

    strategy = build_strategy("fedavg", roster=roster, min_train_sites=1)
    arrays = ArrayRecord({"adapter.w": Array(np.zeros(3, dtype=np.float32))})
    for _ in range(20):  # a random subset would leave one out sooner or later
        calls.clear()
        messages = strategy.configure_train(1, arrays, ConfigRecord(), Flickering([1, 2]))
        assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2]
