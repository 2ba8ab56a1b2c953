"""Issue 35: sites that join late, and nodes refused after the start.

Against FakeGrid, through Flower's own round loop: a site that connects later trains from the next
round with the current global adapter (FLoRA takes it; dp-fedavg, its noise sized for every
training site, cannot); a node that just connected is waited for briefly, once; a node that fails
the checks after the start is refused and the run goes on.
Real processes on loopback: tests/test_late_sites_e2e.py.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
from flwr.app import MessageType

from server.discovery import SiteDiscovery, discover_sites
from server.late_sites import admit_late_sites
from strategies import ClientDP, SiteEntry, SiteRoster, build_strategy
from tests.late_sites.late_grid import CLAIMS, LateGrid, Sites, connect_at, run_rounds


def test_a_site_that_connects_after_round_1_trains_from_round_2_on_the_current_adapter(
        consortium, caplog):
    sites = Sites(CLAIMS)
    grid = LateGrid(sites, late={2})
    with caplog.at_level(logging.INFO, logger="server.late_sites"):
        strategy, result = run_rounds(grid, consortium, during=connect_at(2, 2))
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
        strategy, _ = run_rounds(grid, consortium, rounds=2, during=connect_at(4, 2))
    assert {r: sorted(n) for r, n in sites.trained.items()} == {1: [1], 2: [1]}
    assert [e.node_id for e in strategy.roster.entries] == [1, 3]
    (line,) = strategy.run_log.failures[2]
    assert re.match(refusal, line), line
    assert any(m.startswith("before round 2: refused: ") for m in caplog.messages)
    assert [m.metadata.dst_node_id for m in grid.sent
            if m.metadata.message_type == MessageType.QUERY].count(4) == 1  # asked once


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
