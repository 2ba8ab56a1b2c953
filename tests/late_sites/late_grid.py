"""Sites that answer as real ones would, on a FakeGrid where nodes connect late or go away.

Shared by the late-site tests in this folder (issue 35): `Sites` answers the identity query, the
privacy query, training (+1 on every tensor) and evaluation; `LateGrid` holds back the nodes in
`late` until they connect and drops the nodes in `gone`; `run_rounds` drives discovery and Flower's own
round loop, admitting late sites between rounds as server/app.py does.
"""

from __future__ import annotations

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from server.discovery import SiteDiscovery, discover_sites
from server.late_sites import admit_late_sites
from server.ledger_query import PRIVACY_QUERY
from strategies import build_strategy
from tests.flower_fakes import FakeGrid

CLAIMS = {1: ("academic", "train"), 2: ("community", "train"), 3: ("external-system", "external")}


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


def run_rounds(grid, consortium, strategy_name="fedavg", *, rounds=3, during=None, **strategy_kwargs):
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


def connect_at(node: int, server_round: int):
    def during(next_round: int, grid: LateGrid) -> None:
        if next_round == server_round:
            grid.late.discard(node)
    return during
