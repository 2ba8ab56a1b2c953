"""Site-aware FedAvg over adapter tensors: who trains, how replies are averaged, what is recorded."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from strategies import STRATEGIES, SiteEntry, SiteRoster, build_strategy
from strategies.site_aware import arrayrecord_bytes
from tests.flower_fakes import FakeGrid, set_task_identity

ROSTER = SiteRoster(
    (
        SiteEntry(11, "academic", "train"),
        SiteEntry(12, "community", "train"),
        SiteEntry(13, "surgical", "train"),
        SiteEntry(99, "external_system", "external"),
    )
)


@pytest.fixture(autouse=True)
def _identity():
    set_task_identity()


def _arrays(value: float, shape=(2, 3)) -> ArrayRecord:
    return ArrayRecord(
        {
            "adapter.lora_A": Array(np.full(shape, value, dtype=np.float32)),
            "head.mortality.weight": Array(np.full((2, shape[1]), -value, dtype=np.float32)),
        }
    )


def _train_reply(request: Message, value: float, examples: int) -> Message:
    content = RecordDict(
        {
            "arrays": _arrays(value),
            "metrics": MetricRecord({"num-examples": examples, "train-loss": 0.5, "steps": 4}),
        }
    )
    return Message(content, reply_to=request)


def test_external_site_never_receives_a_training_message():
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    grid = FakeGrid(ROSTER.node_ids)
    messages = list(strategy.configure_train(1, _arrays(0.0), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [11, 12, 13]
    evaluate = list(strategy.configure_evaluate(1, _arrays(0.0), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in evaluate) == [11, 12, 13, 99]


def test_fedavg_weights_adapter_tensors_by_examples_and_records_uploads():
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=2)
    grid = FakeGrid(ROSTER.node_ids)
    requests = list(strategy.configure_train(1, _arrays(0.0), ConfigRecord(), grid))
    values = {11: (1.0, 100), 12: (2.0, 300), 13: (4.0, 600)}
    replies = [_train_reply(r, *values[r.metadata.dst_node_id]) for r in requests]
    arrays, _ = strategy.aggregate_train(1, replies)
    expected = (1.0 * 100 + 2.0 * 300 + 4.0 * 600) / 1000
    np.testing.assert_allclose(arrays["adapter.lora_A"].numpy(), np.full((2, 3), expected), rtol=1e-6)
    np.testing.assert_allclose(arrays["head.mortality.weight"].numpy(), -expected, rtol=1e-6)
    log = strategy.run_log.training[1]
    assert set(log) == {"academic", "community", "surgical"}
    assert log["community"]["num-examples"] == 300
    assert log["academic"]["upload-bytes"] == arrayrecord_bytes(_arrays(1.0))
    assert log["academic"]["upload-tensors"] == 2


def test_round_with_too_few_training_sites_is_skipped_not_averaged():
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=2)
    grid = FakeGrid(ROSTER.node_ids)
    requests = list(strategy.configure_train(3, _arrays(0.0), ConfigRecord(), grid))
    replies = [_train_reply(requests[0], 1.0, 10)]
    replies += [Message(Error(code=1, reason="disk full"), reply_to=r) for r in requests[1:2]]
    assert strategy.aggregate_train(3, replies) == (None, None)
    assert strategy.run_log.skipped_rounds == [3]
    failures = strategy.run_log.failures[3]
    assert any("disk full" in f for f in failures)
    assert any(f.endswith("no reply") for f in failures)


def test_a_site_that_declines_for_its_budget_is_recorded_and_left_out_of_the_average():
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=2)
    grid = FakeGrid(ROSTER.node_ids)
    requests = {r.metadata.dst_node_id: r
                for r in strategy.configure_train(2, _arrays(0.0), ConfigRecord(), grid)}
    privacy = {"dp": True, "epsilon": 3.5, "delta": 1e-5, "declined": ""}
    replies = []
    for node, value in ((11, 1.0), (12, 3.0)):
        reply = _train_reply(requests[node], value, 100)
        reply.content["privacy"] = ConfigRecord(privacy)
        replies.append(reply)
    reason = "site 'surgical' declines round 2: its 35 steps would bring ε to 9.1"
    replies.append(Message(RecordDict({"privacy": ConfigRecord(
        {**privacy, "epsilon": 7.9, "declined": reason})}), reply_to=requests[13]))
    arrays, _ = strategy.aggregate_train(2, replies)
    np.testing.assert_allclose(arrays["adapter.lora_A"].numpy(), 2.0)  # surgical not averaged
    assert strategy.run_log.declined == {2: {"surgical": reason}}
    assert set(strategy.run_log.training[2]) == {"academic", "community"}
    assert strategy.run_log.privacy[2]["surgical"]["epsilon"] == 7.9
    assert strategy.run_log.privacy[2]["academic"]["epsilon"] == 3.5
    assert 2 not in strategy.run_log.failures  # declining is an answer, not a failure

    # When declines leave fewer trained sites than the quorum, the round is skipped.
    replies = replies[:1] + replies[2:]
    assert strategy.aggregate_train(3, replies) == (None, None)
    assert strategy.run_log.skipped_rounds == [3]


def test_evaluation_is_kept_per_site_under_its_name():
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    grid = FakeGrid(ROSTER.node_ids)
    requests = list(strategy.configure_evaluate(2, _arrays(0.0), ConfigRecord(), grid))
    replies = []
    for request in requests:
        node = request.metadata.dst_node_id
        metrics = MetricRecord({"num-examples": 50, "mortality.auroc": node / 100})
        replies.append(Message(RecordDict({"metrics": metrics}), reply_to=request))
    aggregate = strategy.aggregate_evaluate(2, replies)
    per_site = strategy.run_log.evaluation[2]
    assert per_site["external_system"]["mortality.auroc"] == pytest.approx(0.99)
    assert per_site["academic"]["mortality.auroc"] == pytest.approx(0.11)
    # Flower's own aggregate is the example-weighted mean over all four sites.
    assert aggregate["mortality.auroc"] == pytest.approx((11 + 12 + 13 + 99) / 400)


@pytest.mark.parametrize(
    ("name", "min_sites", "message"),
    [
        ("fedsgd", 1, r"`strategy` is 'fedsgd'; expected one of fedavg"),
        ("fedavg", 0, r"`min-train-sites` is 0; expected 1\.\.3"),
        ("fedavg", 4, r"`min-train-sites` is 4; expected 1\.\.3"),
    ],
)
def test_bad_strategy_settings_are_named(name, min_sites, message):
    with pytest.raises(ValueError, match=message):
        build_strategy(name, roster=ROSTER, min_train_sites=min_sites)


def test_roster_rejects_two_nodes_claiming_one_site():
    with pytest.raises(ValueError, match="two nodes claim the same site"):
        SiteRoster((SiteEntry(1, "a", "train"), SiteEntry(2, "a", "train")))


def test_registry_lists_fedavg():
    assert "fedavg" in STRATEGIES


@pytest.mark.parametrize("name", ["fedprox", "median", "trimmed-mean", "multi-krum", "fedadam",
                                  "flora"])
def test_a_rule_with_settings_is_never_built_without_them(name):
    with pytest.raises(ValueError, match=rf"`strategy` '{name}' needs its settings from the run"):
        build_strategy(name, roster=ROSTER, min_train_sites=1)
