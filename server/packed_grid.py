"""The coordinator's grid on the Deployment Engine: messages leave packed, replies arrive unpacked.

Wraps Flower's grid so that every message the server sends (discovery, rounds, intervals, ledger
queries) carries each ArrayRecord as one array, and every reply is unpacked before a strategy sees
it (strategies/wire_pack.py says why and how). Used only where each object of a message is a
request over the network, i.e. around Flower's HttpGrid; simulation's grid moves objects in
memory and keeps messages as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from flwr.app import Error, Message
from flwr.serverapp import Grid

from strategies.wire_pack import PackedContentError, pack, unpack

UNPACKABLE_REPLY = 4601
"""The error code a reply gets whose packed records do not add up (Flower's own codes are < 100)."""


class PackedGrid(Grid):
    """`grid`, with what it sends packed and what it receives unpacked."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def get_nodes(self):
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(_packed(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return _unpacked(self.grid.pull_messages(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return _unpacked(self.grid.send_and_receive(_packed(messages), timeout=timeout))

    def __getattr__(self, name: str):
        return getattr(self.grid, name)


def _packed(messages: Iterable[Message]) -> list[Message]:
    out = list(messages)
    for message in out:
        if message.has_content():
            message.content = pack(message.content)
    return out


def _unpacked(replies: Iterable[Message]) -> list[Message]:
    """Each reply unpacked; one whose packing does not add up becomes that site's failed reply
    (its reason named in the run's failures), never the whole run's crash."""
    out = list(replies)
    for reply in out:
        if not reply.has_content():
            continue
        try:
            reply.content = unpack(reply.content)
        except PackedContentError as bad:
            reply.__dict__["_content"] = None  # Flower lets a message carry content or an error
            reply.error = Error(code=UNPACKABLE_REPLY, reason=f"reply could not be unpacked: {bad}")
    return out


def deployment_grid(grid: Grid) -> Grid:
    """`grid` packed when it is the Deployment Engine's (HttpGrid); otherwise `grid` itself.
    HttpGrid's module is imported only where Flower has imported it (server/grid_waits.py says
    why)."""
    http_grid = sys.modules.get("flwr.superlink.grid.http_grid")
    return PackedGrid(grid) if http_grid and isinstance(grid, http_grid.HttpGrid) else grid
