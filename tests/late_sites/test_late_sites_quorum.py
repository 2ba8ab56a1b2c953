"""Issue 35: the start quorum.

Against FakeGrid: a run starts with `min-train-sites` training sites (and every external site)
once `start-wait` has passed, naming the sites still missing; below the quorum it stops after the
wait, and a quorum larger than the consortium fails before any wait. How many training sites a
strategy needs at the start depends on the strategy.
Real processes on loopback: tests/test_late_sites_e2e.py.
"""

from __future__ import annotations

import logging

import pytest

from client.run_config import InvalidRunConfig
from server.app import _start_quorum
from server.discovery import SiteDiscoveryError, discover_sites
from server.settings import ServerSettings
from strategies import training_sites_needed
from tests.late_sites.late_grid import CLAIMS, LateGrid, Sites
from tests.run_config import default_run_config, default_strategy_options


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
