"""client/flower_waits.py, client/supernode.py, server/grid_waits.py: Flower 1.42's hard-coded
polling waits of the SuperNode and the deployment grid, shortened by value.

The waits are replaced by the number Flower's source passes to `time.sleep`, so these tests read
that source: a Flower release that waits differently must fail here, not silently keep 3 s."""

from __future__ import annotations

import inspect
import re
import sys

import pytest
from flwr.superlink.grid import http_grid
from flwr.superlink.grid.inmemory_grid import InMemoryGrid
from flwr.supernode import start_client_internal as node_loop

from client import flower_waits, supernode
from client.flower_waits import ShorterWaits, shorten_waits
from server import grid_waits
from server.grid_waits import shorten_grid_waits


def _sleeps(source: str) -> list[float]:
    return sorted(float(s) for s in re.findall(r"time\.sleep\(([0-9.]+)\)", source))


@pytest.fixture(autouse=True)
def _restored_flower_modules(monkeypatch):
    """Whatever a test shortens is Flower's own again after it."""
    monkeypatch.setattr(node_loop, "time", node_loop.time)
    monkeypatch.setattr(http_grid, "time", http_grid.time)


def test_the_supernode_waits_replaced_are_the_ones_its_loop_sleeps():
    assert _sleeps(inspect.getsource(node_loop)) == [0.5, 0.5, 3.0]  # reply, object, idle
    idle = inspect.getsource(node_loop.start_client_internal)
    assert re.search(r"if run_id is None:.*?time\.sleep\(3\)", idle, re.S)
    assert set(supernode.WAITS) == {0.5, 3.0}
    assert all(ours < flowers for flowers, ours in supernode.WAITS.items())


def test_the_grid_wait_replaced_is_the_one_between_its_asks_for_replies():
    assert _sleeps(inspect.getsource(http_grid)) == [3.0]
    between_asks = inspect.getsource(http_grid.HttpGrid.send_and_receive)
    assert re.search(r"pull_messages.*?time\.sleep\(3\)", between_asks, re.S)
    assert grid_waits.WAITS == {3: 0.5}


def test_only_flowers_waits_are_shortened_and_the_rest_of_time_is_untouched():
    slept: list[float] = []
    waits = ShorterWaits(supernode.WAITS, sleep=slept.append)
    for seconds in (3, 0.5, 2, 0.25):
        waits.sleep(seconds)
    assert slept == [0.5, 0.1, 2, 0.25]
    assert waits.monotonic() <= waits.monotonic() and waits.time() > 1.7e9


def test_a_shortened_module_sleeps_ours_on_the_release_the_waits_were_read_on():
    assert shorten_waits(node_loop, supernode.WAITS) is True
    assert isinstance(node_loop.time, ShorterWaits) and node_loop.time.waits == supernode.WAITS


def test_another_flower_release_keeps_its_own_waits(monkeypatch):
    original = node_loop.time
    monkeypatch.setattr(flower_waits, "version", lambda _: "1.43.0")
    assert shorten_waits(node_loop, supernode.WAITS) is False
    assert node_loop.time is original


def test_the_supernode_module_runs_flowers_entry_point_with_its_arguments(monkeypatch):
    called: list[list[str]] = []
    monkeypatch.setattr(sys, "argv", ["client.supernode", "--superlink", "l:8000"])
    monkeypatch.setattr("flwr.supernode.cli.flower_supernode", lambda: called.append(sys.argv))
    supernode.main()
    assert called == [["client.supernode", "--superlink", "l:8000"]]
    assert isinstance(node_loop.time, ShorterWaits)


def test_only_the_deployment_grid_is_shortened():
    original = http_grid.time
    simulation = InMemoryGrid.__new__(InMemoryGrid)  # asks for replies every 0.1 s already
    assert inspect.signature(InMemoryGrid).parameters["pull_interval"].default == 0.1
    assert shorten_grid_waits(simulation) is False
    assert http_grid.time is original
    deployed = http_grid.HttpGrid.__new__(http_grid.HttpGrid)  # no SuperLink to connect to
    assert shorten_grid_waits(deployed) is True
    assert http_grid.time.waits == {3: 0.5}
