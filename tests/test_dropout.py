"""Sites that drop out: a whole run through Flower's `Strategy.start` against fake sites, where one
site crashes while training, another never answers an evaluation (a hang past the timeout or a
lost connection look the same to the server: no reply), and both come back the round after.

The run must complete with the remaining quorum, keep every round's record, name who was missing,
and take the returning sites back.
"""

from __future__ import annotations

import numpy as np
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

from server.report.markdown import render_markdown
from strategies import SiteEntry, SiteRoster, build_strategy
from tests.flower_fakes import FakeGrid, set_task_identity

ROSTER = SiteRoster((SiteEntry(1, "a", "train"), SiteEntry(2, "b", "train"),
                     SiteEntry(3, "c", "train"), SiteEntry(9, "x", "external")))


class FlakySites:
    """Train: +1 on every tensor. `c` crashes training in round 1; `b` is silent at round 2's
    evaluation (the grid drops its reply, as Flower does past the timeout)."""

    def __init__(self) -> None:
        self.trained: dict[int, list[str]] = {}

    def reply(self, message: Message) -> Message | None:
        site = ROSTER.by_node(message.metadata.dst_node_id).name
        server_round = int(message.content["config"]["server-round"])
        if message.metadata.message_type == MessageType.TRAIN:
            if site == "c" and server_round == 1:
                return Message(Error(code=0, reason="CUDA out of memory"), reply_to=message)
            self.trained.setdefault(server_round, []).append(site)
            arrays = message.content["arrays"]
            bumped = ArrayRecord({k: Array(arrays[k].numpy() + 1.0) for k in arrays.keys()})
            metrics = MetricRecord({"num-examples": 10, "train-loss": 0.5, "steps": 2})
            return Message(RecordDict({"arrays": bumped, "metrics": metrics}), reply_to=message)
        if site == "b" and server_round == 2:
            return None
        metrics = MetricRecord({"num-examples": 10, "mortality.auroc": 0.7})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)


class DroppingGrid(FakeGrid):
    def send_and_receive(self, messages, *, timeout=None):
        return [r for r in super().send_and_receive(messages, timeout=timeout) if r is not None]


def test_a_run_completes_with_the_quorum_names_the_missing_and_takes_them_back():
    set_task_identity()
    sites = FlakySites()
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=2)
    initial = ArrayRecord({"adapter.w": Array(np.zeros(3, dtype=np.float32))})
    result = strategy.start(grid=DroppingGrid(ROSTER.node_ids, sites.reply),
                            initial_arrays=initial, num_rounds=3, timeout=1.0,
                            train_config=ConfigRecord(), evaluate_config=ConfigRecord())
    log = strategy.run_log
    assert {r: sorted(s) for r, s in sites.trained.items()} == {
        1: ["a", "b"], 2: ["a", "b", "c"], 3: ["a", "b", "c"]}  # c is back in round 2
    assert log.skipped_rounds == []  # two of three is the quorum
    np.testing.assert_array_equal(result.arrays["adapter.w"].numpy(), [3.0, 3.0, 3.0])
    assert log.failures == {1: ["c: CUDA out of memory"], 2: ["b: no reply"]}
    assert set(log.evaluation[2]) == {"a", "c", "x"} and set(log.evaluation[3]) == {"a", "b", "c", "x"}


def test_the_report_says_who_was_missing():
    metrics = {
        "run": {"consortium": "c", "strategy": "fedavg", "num_rounds": 1, "base_model": "m",
                "lora": {"r": 8}, "tasks": ["mortality"], "seed": 0, "duration_s": 1.0,
                "outcome": "completed", "bootstrap_resamples": 10},
        "sites": [{"name": "a", "role": "train"}],
        "rounds": [{"round": 0, "evaluation": {}, "training": {}, "failures": [],
                    "skipped": False, "privacy": {}, "declined": {}},
                   {"round": 1, "evaluation": {}, "training": {}, "privacy": {}, "declined": {},
                    "failures": ["c: CUDA out of memory", "b: no reply"], "skipped": False}],
        "upload": {"bytes_per_site_per_round": 0, "base_model_bytes": 1, "ratio_to_base_model": 0},
        "privacy": {"sites": {}, "client_level": None},
    }
    text = render_markdown(metrics, None)
    assert "Round 1: c: CUDA out of memory" in text and "Round 1: b: no reply" in text
