"""Client-level DP (`dp-fedavg`): clipping, noise size, uniform weights, skipped rounds, ε."""

from __future__ import annotations

import math

import numpy as np
import pytest
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

from client.privacy.accounting import epsilon_after
from client.run_config import InvalidRunConfig
from server.report.metrics_file import privacy_summary
from server.settings import ServerSettings
from strategies import ClientDP, SiteEntry, SiteRoster, build_strategy
from strategies.dp_fedavg import EQUAL_WEIGHT_KEY
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_run_config

ROSTER = SiteRoster(
    (
        SiteEntry(11, "academic", "train"),
        SiteEntry(12, "community", "train"),
        SiteEntry(13, "safety_net", "train"),
        SiteEntry(14, "surgical", "train"),
        SiteEntry(99, "external_system", "external"),
    )
)
TRAINING = (11, 12, 13, 14)
SIZE = 10_000  # coordinates: enough to measure the noise's std within a few per cent


@pytest.fixture(autouse=True)
def _identity():
    set_task_identity()


def _arrays(value: float, size: int = SIZE) -> ArrayRecord:
    return ArrayRecord({
        "adapter.lora_B": Array(np.full(size, value, dtype=np.float32)),
        "head.mortality.weight": Array(np.full(4, value, dtype=np.float32)),
    })


def _reply(request: Message, value: float, examples: int = 100, size: int = SIZE) -> Message:
    metrics = MetricRecord({"num-examples": examples, "train-loss": 0.5, "steps": 4})
    return Message(RecordDict({"arrays": _arrays(value, size), "metrics": metrics}),
                   reply_to=request)


def _declined(request: Message, reason: str) -> Message:
    privacy = ConfigRecord({"dp": True, "epsilon": 7.9, "delta": 1e-5, "declined": reason})
    return Message(RecordDict({"privacy": privacy}), reply_to=request)


def _strategy(*, z: float = 1.0, clip: float = 1.0, delta: float = 1e-5):
    return build_strategy("dp-fedavg", roster=ROSTER, min_train_sites=1,
                          client_dp=ClientDP(noise_multiplier=z, clipping_norm=clip, delta=delta))


def _round(strategy, server_round: int, global_value: float = 0.0, size: int = SIZE):
    """Configure a round from a global adapter of `global_value`; requests by node id."""
    grid = FakeGrid(ROSTER.node_ids)
    requests = strategy.configure_train(server_round, _arrays(global_value, size),
                                        ConfigRecord(), grid)
    return {r.metadata.dst_node_id: r for r in requests}


def test_every_training_site_is_asked_and_the_external_site_is_not():
    requests = _round(_strategy(), 1)
    assert sorted(requests) == list(TRAINING)


def test_a_large_update_is_clipped_to_the_norm_before_averaging():
    # Noise off in effect (z tiny): what remains is the clipped, unweighted mean.
    strategy = _strategy(z=1e-9, clip=1.0)
    requests = _round(strategy, 1, size=4)
    # Site 11 moves every one of its 8 coordinates by 100: norm 100·√8, clipped to norm 1.
    # The others barely move (an exactly unchanged adapter would divide Flower's clip by zero).
    replies = [_reply(requests[11], 100.0, size=4)]
    replies += [_reply(requests[n], 1e-6, size=4) for n in (12, 13, 14)]
    arrays, _ = strategy.aggregate_train(1, replies)
    mean = np.concatenate([arrays[k].numpy().ravel() for k in arrays.keys()])
    np.testing.assert_allclose(mean, (1 / math.sqrt(8) + 3e-6) / 4, rtol=1e-5)
    assert np.linalg.norm(mean) == pytest.approx(1.0 / 4, rel=1e-4)  # ≈ C / N: bounded


def test_small_updates_are_averaged_uniformly_whatever_the_site_sizes():
    strategy = _strategy(z=1e-12, clip=1e6)  # no clipping, noise std 2.5e-7
    requests = _round(strategy, 1, size=4)
    values = {11: (1.0, 10), 12: (2.0, 1000), 13: (3.0, 50), 14: (6.0, 5000)}
    replies = [_reply(requests[n], v, examples=e, size=4) for n, (v, e) in values.items()]
    arrays, _ = strategy.aggregate_train(1, replies)
    np.testing.assert_allclose(arrays["adapter.lora_B"].numpy(), 3.0, rtol=1e-5)  # not 5.2
    # The report still shows the sites' own metrics, without the equal-weight helper key.
    training = strategy.run_log.training[1]
    assert training["community"]["num-examples"] == 1000
    assert EQUAL_WEIGHT_KEY not in training["community"]


@pytest.mark.parametrize(("z", "clip"), [(1.0, 1.0), (0.5, 2.0), (2.0, 0.1)])
def test_the_average_gets_gaussian_noise_of_std_z_c_over_n(z, clip):
    np.random.seed(2026)  # Flower draws the noise from numpy's global generator
    strategy = _strategy(z=z, clip=clip)
    requests = _round(strategy, 1)
    # Every site moves each coordinate by 1e-4 (norm 0.01, never clipped here). Not 0: Flower's
    # clipping divides by the update's norm, and an exactly unchanged adapter raises.
    replies = [_reply(requests[n], 1e-4) for n in TRAINING]
    arrays, _ = strategy.aggregate_train(1, replies)
    noise = arrays["adapter.lora_B"].numpy() - 1e-4
    expected = z * clip / 4
    assert noise.std() == pytest.approx(expected, rel=0.05)
    assert abs(noise.mean()) < 5 * expected / math.sqrt(SIZE)
    assert strategy.run_log.client_level.noise_std == pytest.approx(expected)


def test_a_round_where_a_site_declines_is_skipped_not_released_under_noised():
    strategy = _strategy()
    requests = _round(strategy, 2)
    reason = "site 'surgical' declines round 2: its 35 steps would bring ε to 9.1"
    replies = [_reply(requests[n], 0.1) for n in (11, 12, 13)] + [_declined(requests[14], reason)]
    assert strategy.aggregate_train(2, replies) == (None, None)
    assert strategy.run_log.skipped_rounds == [2]
    assert strategy.run_log.declined == {2: {"surgical": reason}}
    assert set(strategy.run_log.training[2]) == {"academic", "community", "safety_net"}
    assert strategy.run_log.client_level.released_rounds == []
    assert strategy.run_log.client_level.epsilon_per_round == {2: 0.0}


@pytest.mark.parametrize("missing", ["error", "no reply"])
def test_a_round_where_a_site_fails_is_skipped_and_recorded(missing):
    strategy = _strategy()
    requests = _round(strategy, 3)
    replies = [_reply(requests[n], 0.1) for n in (11, 12, 13)]
    if missing == "error":
        replies.append(Message(Error(code=1, reason="disk full"), reply_to=requests[14]))
    assert strategy.aggregate_train(3, replies) == (None, None)
    assert strategy.run_log.skipped_rounds == [3]
    failure = "surgical: disk full" if missing == "error" else "surgical: no reply"
    assert strategy.run_log.failures[3] == [failure]
    assert strategy.run_log.client_level.released_rounds == []


def test_epsilon_grows_with_released_rounds_only_and_matches_privacy_math():
    strategy = _strategy(z=1.2, delta=1e-5)
    for server_round in (1, 2, 3, 4):
        requests = _round(strategy, server_round, size=8)
        trained = (11, 12, 13) if server_round == 3 else TRAINING  # round 3: surgical fails
        arrays, _ = strategy.aggregate_train(
            server_round, [_reply(requests[n], 0.1, size=8) for n in trained])
        assert (arrays is None) == (server_round == 3)
    record = strategy.run_log.client_level
    assert record.released_rounds == [1, 2, 4]
    expected = {r: epsilon_after(noise_multiplier=1.2, sample_rate=1.0, steps=k, delta=1e-5,
                                 accountant="rdp")
                for r, k in ((1, 1), (2, 2), (3, 2), (4, 3))}
    assert record.epsilon_per_round == pytest.approx(expected, rel=1e-6)
    assert expected[1] < expected[2] == expected[3] < expected[4]
    assert record.epsilon == pytest.approx(expected[4], rel=1e-6)


def test_the_wrapper_keeps_the_run_log_and_per_site_evaluation():
    strategy = _strategy()
    grid = FakeGrid(ROSTER.node_ids)
    requests = list(strategy.configure_evaluate(0, _arrays(0.0, 4), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in requests) == sorted(ROSTER.node_ids)
    replies = [Message(RecordDict({"metrics": MetricRecord(
        {"num-examples": 50, "mortality.auroc": r.metadata.dst_node_id / 100})}), reply_to=r)
        for r in requests]
    strategy.aggregate_evaluate(0, replies)
    external = strategy.run_log.evaluation[0]["external_system"]
    assert external["mortality.auroc"] == pytest.approx(0.99)


def test_a_whole_run_through_flowers_start_skips_the_declined_round():
    """The ServerApp drives the wrapper with `start`: the shape server/app.py relies on."""

    def respond(message: Message) -> Message:
        node = message.metadata.dst_node_id
        if message.metadata.message_type == MessageType.EVALUATE:
            metrics = MetricRecord({"num-examples": 50, "mortality.auroc": 0.7})
            return Message(RecordDict({"metrics": metrics}), reply_to=message)
        server_round = message.content["config"]["server-round"]
        if server_round == 2 and node == 14:
            return _declined(message, "site 'surgical' declines round 2")
        moved = {k: Array(v.numpy() + 0.01) for k, v in message.content["arrays"].items()}
        metrics = MetricRecord({"num-examples": node, "train-loss": 0.5, "steps": 4})
        return Message(RecordDict({"arrays": ArrayRecord(moved), "metrics": metrics}),
                       reply_to=message)

    np.random.seed(7)
    strategy = _strategy(z=1.0, clip=1.0)
    result = strategy.start(grid=FakeGrid(ROSTER.node_ids, respond), initial_arrays=_arrays(0.0, 8),
                            num_rounds=3, timeout=1.0)
    log = strategy.run_log
    assert log.skipped_rounds == [2]
    assert log.client_level.released_rounds == [1, 3]
    assert set(log.evaluation[3]) == {e.name for e in ROSTER.entries}
    assert log.client_level.epsilon_per_round[2] == log.client_level.epsilon_per_round[1]
    assert log.client_level.epsilon == pytest.approx(epsilon_after(
        noise_multiplier=1.0, sample_rate=1.0, steps=2, delta=1e-5, accountant="rdp"))
    assert len(result.arrays) == 2  # released rounds replaced the global adapter


def test_metrics_file_shows_client_level_privacy_only_under_dp_fedavg():
    class Consortium:
        training_sites = ()

    strategy = _strategy(z=1.0, clip=0.5, delta=1e-5)
    requests = _round(strategy, 1, size=8)
    strategy.aggregate_train(1, [_reply(requests[n], 0.1, size=8) for n in TRAINING])
    summary = privacy_summary(Consortium(), strategy.run_log)["client_level"]
    eps = epsilon_after(noise_multiplier=1.0, sample_rate=1.0, steps=1, delta=1e-5,
                        accountant="rdp")
    assert summary == {
        "noise_multiplier": 1.0, "clipping_norm": 0.5, "delta": 1e-5,
        "epsilon": pytest.approx(eps), "epsilon_per_round": {"1": pytest.approx(eps)},
        "released_rounds": [1], "num_sites": 4, "accountant": "rdp", "privacy_unit": "site",
        "noise_std": pytest.approx(0.125),
    }
    plain = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    assert privacy_summary(Consortium(), plain.run_log)["client_level"] is None


def test_default_run_config_parses_client_dp_settings():
    settings = ServerSettings.from_run_config(default_run_config(strategy="dp-fedavg"))
    assert settings.strategy == "dp-fedavg"
    assert settings.client_dp.noise_multiplier > 0 and settings.client_dp.clipping_norm > 0
    assert settings.client_dp.delta <= 1e-5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_dp_noise_multiplier": 0.0},
         r"`client-dp-noise-multiplier` is 0\.0; expected a number > 0"),
        ({"client_dp_noise_multiplier": "1"},
         r"`client-dp-noise-multiplier` is '1'; expected a number"),
        ({"client_dp_noise_multiplier": math.inf},
         r"`client-dp-noise-multiplier` is inf; expected a finite number > 0"),
        ({"client_dp_clipping_norm": -1.0},
         r"`client-dp-clipping-norm` is -1\.0; expected a number > 0"),
        ({"client_dp_clipping_norm": math.nan},
         r"`client-dp-clipping-norm` is nan; expected a finite number > 0"),
        ({"client_dp_delta": 0.0}, r"`client-dp-delta` is 0\.0; expected a number > 0"),
        ({"client_dp_delta": 1.0}, r"`client-dp-delta` is 1\.0; expected 0 < δ < 1"),
    ],
)
def test_bad_client_dp_settings_are_named(overrides, message):
    with pytest.raises(InvalidRunConfig, match=message):
        ServerSettings.from_run_config(default_run_config(**overrides))


def test_dp_fedavg_needs_its_settings():
    with pytest.raises(ValueError, match="needs the `client-dp-\\*` settings"):
        build_strategy("dp-fedavg", roster=ROSTER, min_train_sites=1)
