"""Issue 35: the start quorum, sites that join late, refusals after the start, sites that go away.

Against FakeGrid: a run starts with `min-train-sites` training sites (and every external site)
once `start-wait` has passed; a site that connects later trains from the next round with the
current global adapter; a node that fails the checks after the start is refused and the run goes
on; a site whose node is no longer connected is `offline` for the round instead of stalling it.
Real processes on loopback: tests/test_late_sites_e2e.py.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode

from client.run_config import InvalidRunConfig
from server.app import _start_quorum
from server.discovery import SiteDiscovery, SiteDiscoveryError, discover_sites
from server.late_sites import admit_late_sites
from server.ledger_query import PRIVACY_QUERY, collect_ledgers
from server.report.participation import participation, participation_lines
from server.settings import ServerSettings
from sites.config import load_consortium
from strategies import ClientDP, SiteEntry, SiteRoster, build_strategy, training_sites_needed
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_run_config, default_strategy_options

CLAIMS = {1: ("academic", "train"), 2: ("community", "train"), 3: ("external-system", "external")}


@pytest.fixture()
def consortium(tmp_path):
    set_task_identity()
    return load_consortium(write_small_consortium(tmp_path), data_root=tmp_path)


class Sites:
    """Answers as the sites would: who they are (from `claims`), training (+1 on every tensor),
    evaluation (a fixed AUROC)."""

    def __init__(self, claims: dict[int, tuple[str, str]]) -> None:
        self.claims = claims
        self.trained: dict[int, list[int]] = {}
        self.started_from: dict[tuple[int, int], float] = {}

    def __call__(self, message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        if message.metadata.message_type == MessageType.QUERY:
            name, role = self.claims[node]
            return Message(RecordDict({"site": ConfigRecord({"name": name, "role": role})}),
                           reply_to=message)
        if message.metadata.message_type == PRIVACY_QUERY:
            return Message(RecordDict({"privacy": ConfigRecord({"dp": False})}),
                           reply_to=message)
        server_round = int(message.content["config"]["server-round"])
        if message.metadata.message_type == MessageType.TRAIN:
            arrays = message.content["arrays"]
            self.trained.setdefault(server_round, []).append(node)
            self.started_from[(server_round, node)] = float(arrays["adapter.w"].numpy()[0])
            bumped = ArrayRecord({k: Array(arrays[k].numpy() + 1.0) for k in arrays.keys()})
            metrics = MetricRecord({"num-examples": 10, "train-loss": 0.5, "steps": 2})
            return Message(RecordDict({"arrays": bumped, "metrics": metrics}), reply_to=message)
        metrics = MetricRecord({"num-examples": 10, "mortality.auroc": 0.7})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)


class LateGrid(FakeGrid):
    """Nodes in `late` connect only once `connect(node)` is called; nodes in `gone` are no longer
    connected."""

    def __init__(self, sites: Sites, late: set[int] = frozenset()) -> None:
        super().__init__(sites.claims, sites)
        self.late, self.gone = set(late), set()

    def get_node_ids(self) -> list[int]:
        return [n for n in self.nodes if n not in self.late and n not in self.gone]

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.sent += messages
        return [self.respond(m) for m in messages if m.metadata.dst_node_id not in self.gone]


# --- the start quorum ---------------------------------------------------------------------


def test_all_sites_present_start_at_once_whatever_the_wait(consortium):
    grid = LateGrid(Sites(CLAIMS))
    roster = discover_sites(grid, consortium, timeout=3600, training_quorum=1, poll_s=0.01)
    assert [e.name for e in roster.entries] == ["academic", "community", "external-system"]


def test_after_the_wait_the_run_starts_with_the_quorum_and_names_the_missing(consortium, caplog):
    grid = LateGrid(Sites(CLAIMS), late={2})
    with caplog.at_level(logging.WARNING, logger="server.discovery"):
        roster = discover_sites(grid, consortium, timeout=0.05, training_quorum=1, poll_s=0.01)
    assert [e.name for e in roster.entries] == ["academic", "external-system"]
    assert ("starting with 2 of 3 sites after 0 s; connected: academic, external-system; "
            "missing: community. A missing site takes part from the round after it connects"
            ) in caplog.messages


@pytest.mark.parametrize(("late", "quorum", "message"), [
    ({2}, 2, r"2 of 3 sites connected within 0 s; connected: academic, external-system; missing: "
             r"community; to start, the run needs 2 training sites \(`min-train-sites`"),
    # the external site is awaited: the report compares every round on it, round 0 included
    ({3}, 1, r"missing: external-system; to start, the run needs 1 training site \(.* and every "
             r"external site$"),
    ({1, 2}, 1, r"1 of 3 sites connected .*missing: academic, community"),
])
def test_below_the_quorum_the_run_stops_after_the_wait(consortium, late, quorum, message):
    grid = LateGrid(Sites(CLAIMS), late=late)
    with pytest.raises(SiteDiscoveryError, match=message):
        discover_sites(grid, consortium, timeout=0.05, training_quorum=quorum, poll_s=0.01)


@pytest.mark.parametrize(("strategy", "min_train_sites", "options", "needed"), [
    ("fedavg", 2, {}, 2),
    ("flora", 1, {}, 1),
    ("dp-fedavg", 1, {}, 4),  # noise sized for every training site: no late joiners
    ("median", 1, {"tolerated_bad_sites": 1}, 3),
    ("trimmed-mean", 1, {"tolerated_bad_sites": 1}, 4),
    ("multi-krum", 4, {"tolerated_bad_sites": 0}, 4),
])
def test_training_sites_needed_at_the_start(strategy, min_train_sites, options, needed):
    assert training_sites_needed(strategy, min_train_sites=min_train_sites,
                                 options=default_strategy_options(**options),
                                 num_training_sites=4) == needed


def test_a_quorum_larger_than_the_consortium_fails_before_any_wait(consortium, tmp_path):
    settings = ServerSettings.from_run_config(default_run_config(
        consortium=str(consortium.source), data_dir=str(tmp_path), min_train_sites=3))
    with pytest.raises(InvalidRunConfig, match=r"`min-train-sites` is 3 and strategy 'fedavg' "
                       r"needs 3 training sites, but .*consortium.yaml has 2; lower"):
        _start_quorum(settings, consortium)


# --- a late joiner, through Flower's own round loop ----------------------------------------


def _run(grid, consortium, strategy_name="fedavg", *, rounds=3, during=None, **strategy_kwargs):
    """Discovery (quorum 1, no wait), then `rounds` rounds of `Strategy.start` with late sites
    admitted between rounds as server/app.py does; `during(round, grid)` runs before a round."""
    discovery = SiteDiscovery(grid, consortium)
    roster = discover_sites(grid, consortium, timeout=0.02, training_quorum=1, poll_s=0.01,
                            discovery=discovery)
    strategy = build_strategy(strategy_name, roster=roster, min_train_sites=1, **strategy_kwargs)

    def between_rounds(done: int, arrays) -> None:
        if during:
            during(done + 1, grid)
        admit_late_sites(discovery, strategy, next_round=done + 1)

    initial = ArrayRecord({"adapter.w": Array(np.zeros(3, dtype=np.float32))})
    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=1.0,
                            train_config=ConfigRecord(), evaluate_config=ConfigRecord(),
                            evaluate_fn=lambda r, a: between_rounds(r, a))
    return strategy, result


def _connect_at(node: int, server_round: int):
    def during(next_round: int, grid: LateGrid) -> None:
        if next_round == server_round:
            grid.late.discard(node)
    return during


def test_a_site_that_connects_after_round_1_trains_from_round_2_on_the_current_adapter(
        consortium, caplog):
    sites = Sites(CLAIMS)
    grid = LateGrid(sites, late={2})
    with caplog.at_level(logging.INFO, logger="server.late_sites"):
        strategy, result = _run(grid, consortium, during=_connect_at(2, 2))
    assert {r: sorted(n) for r, n in sites.trained.items()} == {1: [1], 2: [1, 2], 3: [1, 2]}
    assert sites.started_from[(2, 2)] == 1.0  # round 1's global adapter, not the initial one
    np.testing.assert_array_equal(result.arrays["adapter.w"].numpy(), [3.0, 3.0, 3.0])
    assert "site community (train) joined: it takes part from round 2" in caplog.messages
    log = strategy.run_log
    assert set(log.evaluation[1]) == {"academic", "external-system"}
    assert set(log.evaluation[2]) == {"academic", "community", "external-system"}
    assert log.participation[1] == {"academic": {"train": "trained", "evaluate": "evaluated"},
                                    "external-system": {"evaluate": "evaluated"}}
    assert log.participation[2]["community"] == {"train": "trained", "evaluate": "evaluated"}
    assert log.failures == {} and log.skipped_rounds == []


def test_flora_takes_a_late_joiner(consortium):
    """FLoRA keeps no per-site state: a late site's factors are stacked like any other's."""
    from strategies.flora import FLoRA

    strategy = FLoRA(roster=SiteRoster((SiteEntry(1, "academic", "train"),)), lora_alpha=16.0)
    strategy.admit(SiteEntry(2, "community", "train"))
    assert strategy.roster.training_node_ids == {1, 2}


def test_dp_fedavg_refuses_to_take_a_site_after_the_start():
    roster = SiteRoster((SiteEntry(1, "academic", "train"),))
    strategy = build_strategy("dp-fedavg", roster=roster, min_train_sites=1,
                              client_dp=ClientDP(noise_multiplier=1.0, clipping_norm=1.0,
                                                 delta=1e-5))
    with pytest.raises(RuntimeError, match=r"dp-fedavg cannot take site 'community' after the "
                       r"start: its noise is sized"):
        strategy.admit(SiteEntry(2, "community", "train"))


@pytest.mark.parametrize(("claim", "refusal"), [
    (("academic", "train"), r"refused: nodes 1 and 4 both claim 'academic'"),
    (("mystery", "train"), r"refused: node 4 claims site 'mystery', not in .*consortium.yaml"),
    (("community", "external"), r"refused: node 4 says site 'community' has role 'external'"),
])
def test_a_node_refused_after_the_start_is_logged_and_the_run_goes_on(consortium, claim,
                                                                       refusal, caplog):
    sites = Sites({**CLAIMS, 4: claim})
    grid = LateGrid(sites, late={2, 4})
    with caplog.at_level(logging.WARNING, logger="server.late_sites"):
        strategy, _ = _run(grid, consortium, rounds=2, during=_connect_at(4, 2))
    assert {r: sorted(n) for r, n in sites.trained.items()} == {1: [1], 2: [1]}
    assert [e.node_id for e in strategy.roster.entries] == [1, 3]
    (line,) = strategy.run_log.failures[2]
    assert re.match(refusal, line), line
    assert any(m.startswith("before round 2: refused: ") for m in caplog.messages)
    assert [m.metadata.dst_node_id for m in grid.sent
            if m.metadata.message_type == MessageType.QUERY].count(4) == 1  # asked once


# --- a site that goes away -----------------------------------------------------------------


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

    strategy, _ = _run(grid, consortium, during=leave_at_round_2)
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

    strategy, _ = _run(SilentGrid(sites), consortium, rounds=1)
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


# --- the report ------------------------------------------------------------------------------


def test_metrics_and_report_show_who_took_part_in_which_round(consortium):
    sites = Sites(CLAIMS)
    strategy, _ = _run(LateGrid(sites, late={2}), consortium, rounds=2,
                       during=_connect_at(2, 2))
    log = strategy.run_log
    log.participation[0] = {"academic": {"evaluate": "evaluated"},
                            "external-system": {"evaluate": "evaluated"}}
    rounds = [{"round": r, "participation": participation(consortium, log, r)} for r in (0, 1, 2)]
    assert rounds[1]["participation"]["community"] == {"train": "not joined",
                                                       "evaluate": "not joined"}
    assert rounds[0]["participation"]["academic"] == {"train": None, "evaluate": "evaluated"}
    metrics = {"sites": [{"name": s.name, "role": s.role} for s in consortium.sites],
               "rounds": rounds}
    table = participation_lines(metrics)
    assert "| academic | train | evaluated | trained | trained |" in table
    assert "| community | train | not joined | not joined | trained |" in table
    assert "| external-system | external | evaluated | evaluated | evaluated |" in table


def test_the_report_table_names_a_timeout_and_an_offline_evaluation():
    metrics = {"sites": [{"name": "a", "role": "train"}],
               "rounds": [{"round": 1, "participation": {
                   "a": {"train": "timed out", "evaluate": "offline"}}}]}
    assert "| a | train | timed out; evaluation offline |" in participation_lines(metrics)


def test_a_report_of_a_run_before_participation_has_no_table():
    assert participation_lines({"sites": [], "rounds": [{"round": 0}]}) == []


def test_a_node_that_just_connected_is_waited_for_briefly_and_joins_the_next_round(consortium):
    """Its ClientApp may take a while to start: the round waits up to `answer_wait` for its
    answer instead of leaving it for the round after."""
    sites = Sites(CLAIMS)
    pulls = []

    def slow_community(message):
        if message.metadata.dst_node_id == 2:
            pulls.append(message)
            if len(pulls) < 5:
                return None
        return sites(message)

    grid = LateGrid(sites, late={2})
    grid.respond = slow_community
    discovery = SiteDiscovery(grid, consortium)
    roster = discover_sites(grid, consortium, timeout=0.02, training_quorum=1, poll_s=0.01,
                            discovery=discovery)
    strategy = build_strategy("fedavg", roster=roster, min_train_sites=1)
    grid.late.clear()
    joined = admit_late_sites(discovery, strategy, next_round=2, answer_wait=5, poll_s=0.01)
    assert [e.name for e in joined] == ["community"] and len(pulls) == 5
    assert strategy.roster.training_node_ids == {1, 2}


def test_a_node_that_never_answers_is_waited_for_once_only(consortium):
    sites = Sites(CLAIMS)
    grid = LateGrid(sites)
    grid.respond = lambda m: None if m.metadata.dst_node_id == 2 else sites(m)
    discovery = SiteDiscovery(grid, consortium)
    strategy = build_strategy("fedavg", roster=SiteRoster((SiteEntry(9, "x", "train"),)),
                              min_train_sites=1)
    started = time.monotonic()
    admit_late_sites(discovery, strategy, next_round=2, answer_wait=0.3, poll_s=0.01)
    assert 0.3 <= time.monotonic() - started < 2
    started = time.monotonic()
    admit_late_sites(discovery, strategy, next_round=3, answer_wait=0.3, poll_s=0.01)
    assert time.monotonic() - started < 0.2  # not waited for again
    assert "community" not in discovery.claimed


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
    strategy, _ = _run(SuperLinkGrid(Sites(FAR_NODES), hung={12}), consortium, rounds=2)
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
