"""Flower 1.42's hard-coded polling waits, shortened by value in one module of Flower's.

Two loops of the Deployment Engine sleep a fixed time that no flag or variable sets: the
SuperNode asks the SuperLink for messages every 3 s when idle (client/supernode.py), and the
ServerApp's grid asks it for replies every 3 s (server/grid_waits.py). Simulation's grid asks
every 0.1 s, so on loopback those two waits were most of what a deployed round cost over a
simulated one (bench/results/deployment.md). Rather than copy either loop, the `time` module seen
by that one Flower module is replaced by one whose `sleep` maps Flower's wait to ours; Flower's
code runs as released. Only on the release the waits were read on (the tests read its source):
any other Flower keeps its own waits and says so in its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from importlib.metadata import version
from logging import WARNING
from types import ModuleType

FLOWER_RELEASE = "1.42."
"""The Flower release whose waits were read (flwr/supernode/start_client_internal.py,
flwr/superlink/grid/http_grid.py)."""


class ShorterWaits:
    """Stands in for the `time` module inside one Flower module: `sleep` of one of Flower's
    waits sleeps ours instead; everything else is the `time` module's own."""

    def __init__(self, waits: Mapping[float, float], sleep: Callable[[float], None] = time.sleep):
        self.waits = dict(waits)
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        self._sleep(self.waits.get(seconds, seconds))

    def __getattr__(self, name: str):
        return getattr(time, name)


def shorten_waits(module: ModuleType, waits: Mapping[float, float]) -> bool:
    """Replace Flower's waits in `module` (Flower's wait in s → ours) for this process; False,
    and a warning in Flower's log, when the installed Flower is not the release they were read
    on: then `module` is left as it is."""
    from flwr.supercore import log

    installed = version("flwr")
    if not installed.startswith(FLOWER_RELEASE):
        log(WARNING, "flwr %s: %s keeps its own waits (lang1-fl shortens those of flwr %sx; "
            "client/flower_waits.py)", installed, module.__name__, FLOWER_RELEASE)
        return False
    module.time = ShorterWaits(waits)
    return True
