"""On the Deployment Engine the coordinator asks the SuperLink for replies every 0.5 s, not 3 s.

Flower 1.42's ServerApp grid there (HttpGrid) sleeps 3 s between two asks for replies
(flwr/superlink/grid/http_grid.py, not a setting); the simulation's grid asks every 0.1 s. So each
wave of messages — two a round — waited 1.5 s on average after its last reply arrived, deployed
only. 0.5 s keeps the asks cheap (one small local request each; the coordinator shares the machine
with nothing of the sites' in a real consortium, but on loopback it does) while the wait after the
last reply drops to 0.25 s on average. client/flower_waits.py says how the wait is replaced.
"""

from __future__ import annotations

import sys

from flwr.serverapp import Grid

from client.flower_waits import shorten_waits

WAITS = {3: 0.5}
"""HttpGrid's wait between asks for replies (s) → ours."""


def shorten_grid_waits(grid: Grid) -> bool:
    """Shorten the deployment grid's wait in this ServerApp process; False for any other grid
    (simulation's already asks every 0.1 s) or another Flower release. A deployment grid is
    an HttpGrid, whose module Flower has imported by then; any other grid needs none of it, and
    importing it would pull in Flower's web server stack (fastapi), which a process without it
    (bench/in_process.py on a lent machine) lacks."""
    http_grid = sys.modules.get("flwr.superlink.grid.http_grid")
    return (http_grid is not None and isinstance(grid, http_grid.HttpGrid)
            and shorten_waits(http_grid, WAITS))
