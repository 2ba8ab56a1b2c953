"""The aggregation rules on random tensors: exactness of FFA-LoRA and FLoRA, what the robust rules
tolerate, FedAdam's server step, and the quorum every rule shares."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from strategies import SiteEntry, SiteRoster, build_strategy
from strategies.flora import refactor, site_factors, stack
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_strategy_options

RNG = np.random.default_rng(7)
A_KEY, B_KEY, HEAD = "adapter.m.lora_A.weight", "adapter.m.lora_B.weight", "head.t.weight"


def _roster(n: int) -> SiteRoster:
    return SiteRoster(tuple(SiteEntry(i + 1, f"s{i}", "train") for i in range(n))
                      + (SiteEntry(99, "ext", "external"),))


def _reply(node: int, arrays: dict, examples: int = 10) -> Message:
    set_task_identity()
    request = Message(RecordDict({"config": ConfigRecord()}), dst_node_id=node,
                      message_type=MessageType.TRAIN)
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.asarray(v, "f4"))
                                                 for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": examples, "train-loss": 0.1,
                                                   "steps": 1})})
    return Message(content, reply_to=request)


def _configure(strategy, arrays: dict) -> list[Message]:
    set_task_identity()
    record = ArrayRecord({k: Array(np.asarray(v, "f4")) for k, v in arrays.items()})
    grid = FakeGrid(strategy.roster.node_ids)
    return list(strategy.configure_train(1, record, ConfigRecord(), grid))


def _tensors(record: ArrayRecord) -> dict:
    return {k: record[k].numpy() for k in record.keys()}


# --- FFA-LoRA: the average of B times the shared A is the average of the B·A ------------------

def test_ffa_average_of_b_times_a_is_the_average_of_the_products():
    a = RNG.normal(size=(4, 12))
    strategy = build_strategy("ffa-lora", roster=_roster(3), min_train_sites=1)
    messages = _configure(strategy, {A_KEY: a, B_KEY: np.zeros((10, 4)), HEAD: np.zeros((2, 3))})
    assert {m.content["config"]["adapter-mode"] for m in messages} == {"ffa"}
    bs, sizes = [RNG.normal(size=(10, 4)) for _ in range(3)], [10, 30, 60]
    replies = [_reply(i + 1, {B_KEY: b, HEAD: np.full((2, 3), i)}, n)
               for i, (b, n) in enumerate(zip(bs, sizes))]
    merged, _ = strategy.aggregate_train(1, replies)
    out = _tensors(merged)
    np.testing.assert_array_equal(out[A_KEY], a.astype("f4"))  # A never moves
    weights = np.array(sizes) / sum(sizes)
    expected = sum(w * (b @ a) for w, b in zip(weights, bs))
    np.testing.assert_allclose(out[B_KEY] @ out[A_KEY], expected, rtol=1e-5, atol=1e-5)
    assert strategy.run_log.training[1]["s0"]["upload-tensors"] == 2  # B and head only


def test_ffa_refuses_a_site_that_sends_a():
    strategy = build_strategy("ffa-lora", roster=_roster(2), min_train_sites=1)
    _configure(strategy, {A_KEY: np.ones((2, 3)), B_KEY: np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"sent `adapter.m.lora_A.weight` under FFA-LoRA"):
        strategy.aggregate_train(1, [_reply(1, {A_KEY: np.ones((2, 3)), B_KEY: np.ones((3, 2))})])


# --- FLoRA: the stacked product is the weighted sum of the products, ranks mixed --------------

def test_flora_stack_equals_the_weighted_sum_of_products_with_mixed_ranks():
    ranks, alpha = (2, 4, 8), 16.0
    sites = [(w, {"m": (RNG.normal(size=(r, 12)), RNG.normal(size=(10, r)))})
             for w, r in zip((0.2, 0.3, 0.5), ranks)]
    previous = {"m": (RNG.normal(size=(3, 12)), RNG.normal(size=(10, 3)))}
    stacked = stack(previous, sites, alpha=alpha)
    a, b = stacked["m"]
    assert a.shape == (10, 12) and b.shape == (10, 10)  # 3+2+4+8 = 17 > 10: re-factored to 10
    expected = previous["m"][1] @ previous["m"][0] + sum(
        w * (alpha / f["m"][0].shape[0]) * f["m"][1] @ f["m"][0] for w, f in sites)
    np.testing.assert_allclose(b @ a, expected, rtol=1e-4, atol=1e-4)


def test_refactor_keeps_a_narrow_stack_as_it_is():
    a, b = RNG.normal(size=(3, 12)).astype("f4"), RNG.normal(size=(10, 3)).astype("f4")
    out_a, out_b = refactor(a, b)
    assert out_a is a and out_b is b


def test_flora_round_through_the_strategy(tmp_path):
    strategy = build_strategy("flora", roster=_roster(2), min_train_sites=1,
                              options=default_strategy_options(lora_alpha=8.0))
    initial = ArrayRecord({A_KEY: Array(np.ones((8, 12), "f4")), HEAD: Array(np.zeros((2, 3), "f4"))})
    start = strategy.initial_arrays(initial)
    assert list(start.keys()) == [HEAD]  # no update yet; sites start their own adapters
    messages = _configure(strategy, _tensors(start))
    assert {m.content["config"]["adapter-mode"] for m in messages} == {"flora"}
    f1 = {A_KEY: RNG.normal(size=(2, 12)), B_KEY: RNG.normal(size=(10, 2)), HEAD: np.ones((2, 3))}
    f2 = {A_KEY: RNG.normal(size=(4, 12)), B_KEY: RNG.normal(size=(10, 4)), HEAD: np.zeros((2, 3))}
    merged, _ = strategy.aggregate_train(1, [_reply(1, f1, 10), _reply(2, f2, 30)])
    out = _tensors(merged)
    expected = 0.25 * 4.0 * f1[B_KEY] @ f1[A_KEY] + 0.75 * 2.0 * f2[B_KEY] @ f2[A_KEY]
    np.testing.assert_allclose(out["fold.m.lora_B.weight"] @ out["fold.m.lora_A.weight"], expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[HEAD], 0.25)
    assert site_factors({A_KEY: f1[A_KEY], B_KEY: f1[B_KEY]})["m"][0].shape == (2, 12)


# --- Robust rules -----------------------------------------------------------------------------

HONEST = [0.9, 1.0, 1.1, 1.05]


@pytest.mark.parametrize("name", ["median", "trimmed-mean", "multi-krum"])
@pytest.mark.parametrize("attack", [-100.0, 1e6])
def test_a_robust_rule_stays_within_the_honest_sites(name, attack):
    strategy = build_strategy(name, roster=_roster(5), min_train_sites=1,
                              options=default_strategy_options(tolerated_bad_sites=1))
    values = HONEST + [attack]
    merged, _ = strategy.aggregate_train(1, [_reply(i + 1, {HEAD: np.full(3, v)})
                                             for i, v in enumerate(values)])
    out = _tensors(merged)[HEAD]
    assert np.all((min(HONEST) <= out) & (out <= max(HONEST)))
    fedavg = build_strategy("fedavg", roster=_roster(5), min_train_sites=1)
    mean, _ = fedavg.aggregate_train(1, [_reply(i + 1, {HEAD: np.full(3, v)})
                                         for i, v in enumerate(values)])
    assert np.all(np.abs(_tensors(mean)[HEAD] - 1.0) > 10)  # plain FedAvg is dragged away


def test_the_trimmed_mean_cuts_exactly_f_from_each_end_whatever_the_replies():
    strategy = build_strategy("trimmed-mean", roster=_roster(6), min_train_sites=1,
                              options=default_strategy_options(tolerated_bad_sites=1))
    for values, expected in (([1, 2, 3, 4, 5, 100], 3.5), ([1, 2, 3, 4, 100], 3.0),
                             ([0, 1, 2, 30], 1.5)):
        merged, _ = strategy.aggregate_train(1, [_reply(i + 1, {HEAD: np.full(2, v)})
                                                 for i, v in enumerate(values)])
        np.testing.assert_allclose(_tensors(merged)[HEAD], expected)


def test_multi_krum_leaves_out_the_far_update_whole_and_averages_the_rest_by_examples():
    strategy = build_strategy("multi-krum", roster=_roster(5), min_train_sites=1,
                              options=default_strategy_options(tolerated_bad_sites=1))
    honest = [np.array([1.0, 2.0]), np.array([1.1, 2.1]), np.array([0.9, 1.8]),
              np.array([1.0, 2.2])]
    sizes = [10, 30, 20, 40]
    # The bad site's update is sign-flipped and scaled: its coordinates are not extreme one by one
    # everywhere, but the vector is far from every honest one.
    replies = [_reply(i + 1, {HEAD: v}, examples=n) for i, (v, n) in enumerate(zip(honest, sizes))]
    replies.append(_reply(5, {HEAD: np.array([-3.0, 2.0])}, examples=1000))
    merged, _ = strategy.aggregate_train(1, replies)
    expected = sum(n * v for v, n in zip(honest, sizes)) / sum(sizes)
    np.testing.assert_allclose(_tensors(merged)[HEAD], expected, rtol=1e-6)
    assert strategy.run_log.left_out == {1: ["s4"]}


def test_multi_krum_keeps_all_but_f_of_the_replies_that_came():
    strategy = build_strategy("multi-krum", roster=_roster(6), min_train_sites=1,
                              options=default_strategy_options(tolerated_bad_sites=1))
    values = [1.0, 2.0, 3.0, 4.0, 50.0]  # one site dropped out: five of six replied
    merged, _ = strategy.aggregate_train(1, [_reply(i + 1, {HEAD: np.full(2, v)})
                                             for i, v in enumerate(values)])
    np.testing.assert_allclose(_tensors(merged)[HEAD], 2.5)  # the four nearest, not three


def test_too_few_replies_for_the_tolerance_skip_the_round():
    strategy = build_strategy("trimmed-mean", roster=_roster(5), min_train_sites=1,
                              options=default_strategy_options(tolerated_bad_sites=1))
    assert strategy.min_train_sites == 4  # 2f + 2
    merged, _ = strategy.aggregate_train(1, [_reply(i + 1, {HEAD: np.full(2, 1.0)})
                                             for i in range(3)])
    assert merged is None and strategy.run_log.skipped_rounds == [1]


@pytest.mark.parametrize("name,sites,f,needed", [("median", 4, 2, 5), ("trimmed-mean", 3, 1, 4),
                                                 ("multi-krum", 4, 1, 5)])
def test_a_tolerance_the_consortium_cannot_afford_is_refused(name, sites, f, needed):
    with pytest.raises(ValueError, match=rf"`tolerated-bad-sites` is {f}; .* needs .* = {needed} "
                                         rf"training sites .* the run has {sites}"):
        build_strategy(name, roster=_roster(sites), min_train_sites=1,
                       options=default_strategy_options(tolerated_bad_sites=f))


# --- FedAdam and FedProx ----------------------------------------------------------------------

def test_fedadam_moves_the_global_adapter_by_the_server_step():
    strategy = build_strategy("fedadam", roster=_roster(2), min_train_sites=1,
                              options=default_strategy_options(server_learning_rate=0.05))
    _configure(strategy, {HEAD: np.zeros(3)})
    merged, _ = strategy.aggregate_train(1, [_reply(1, {HEAD: np.full(3, 2.0)}),
                                             _reply(2, {HEAD: np.full(3, 4.0)})])
    step = _tensors(merged)[HEAD]
    # Adam's first step is about η·sign(update), whatever the update's size
    assert np.all(step > 0) and np.all(step < 0.1)


def test_fedprox_sends_its_mu_to_every_training_site():
    strategy = build_strategy("fedprox", roster=_roster(3), min_train_sites=1,
                              options=default_strategy_options(proximal_mu=0.3))
    messages = _configure(strategy, {HEAD: np.zeros(3)})
    assert len(messages) == 3
    assert {m.content["config"]["proximal-mu"] for m in messages} == {0.3}


# --- The quorum, for every rule ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["fedavg", "ffa-lora", "fedprox", "flora", "fedadam", "median",
                                  "multi-krum"])
def test_a_round_short_of_the_quorum_is_skipped_and_nothing_changes(name):
    strategy = build_strategy(name, roster=_roster(5), min_train_sites=3,
                              options=default_strategy_options(tolerated_bad_sites=1))
    _configure(strategy, {B_KEY: np.zeros((10, 4)), HEAD: np.zeros(3)})
    replies = [_reply(1, {A_KEY: np.ones((4, 12)), B_KEY: np.ones((10, 4)), HEAD: np.ones(3)}),
               _reply(2, {A_KEY: np.ones((4, 12)), B_KEY: np.ones((10, 4)), HEAD: np.ones(3)})]
    merged, metrics = strategy.aggregate_train(1, replies)
    assert merged is None and metrics is None
    assert strategy.run_log.skipped_rounds == [1]


def test_fedadam_resumed_from_its_checkpoint_state_steps_as_if_never_stopped():
    def rounds(strategy, values, start):
        arrays = {HEAD: start}
        for server_round, value in values:
            _configure(strategy, arrays)
            merged, _ = strategy.aggregate_train(server_round, [_reply(1, {HEAD: arrays[HEAD] + value}),
                                                                _reply(2, {HEAD: arrays[HEAD] - value / 3})])
            arrays = _tensors(merged)
        return arrays

    options = default_strategy_options(server_learning_rate=0.05)
    plan = [(1, 1.0), (2, -0.5), (3, 0.25)]
    whole = rounds(build_strategy("fedadam", roster=_roster(2), min_train_sites=1, options=options),
                   plan, np.zeros(3, "f4"))
    first = build_strategy("fedadam", roster=_roster(2), min_train_sites=1, options=options)
    halfway = rounds(first, plan[:2], np.zeros(3, "f4"))
    resumed = build_strategy("fedadam", roster=_roster(2), min_train_sites=1, options=options)
    resumed.restore_state(first.strategy_state())
    np.testing.assert_array_equal(rounds(resumed, plan[2:], halfway[HEAD])[HEAD], whole[HEAD])
    fresh = build_strategy("fedadam", roster=_roster(2), min_train_sites=1, options=options)
    assert not np.array_equal(rounds(fresh, plan[2:], halfway[HEAD])[HEAD], whole[HEAD])


def test_flora_before_any_update_saves_the_untrained_adapter():
    strategy = build_strategy("flora", roster=_roster(2), min_train_sites=1,
                              options=default_strategy_options())
    initial = ArrayRecord({A_KEY: Array(np.ones((8, 12), "f4")), B_KEY: Array(np.zeros((10, 8), "f4")),
                           HEAD: Array(np.zeros((2, 3), "f4"))})
    start = strategy.initial_arrays(initial)
    lora, state = strategy.peft_state(_tensors(start))
    assert lora is None and sorted(state) == sorted(_tensors(initial))  # the run's own settings
