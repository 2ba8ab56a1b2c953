"""Checkpoint and resume, piece by piece: the run log as JSON, the per-round files, the round
offset of a resumed strategy, and a DP site's charge for a round the server re-sends."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from client.privacy.budget import SiteBudget
from client.privacy.plan import plan_privacy
from client.privacy.signing import simulated_signer
from client.state import SiteState
from server.checkpoint import NoCheckpoint, RoundCheckpointer, load_checkpoint, load_run_config
from sites.config import load_consortium
from sites.encounter_table import TrainingUnits
from strategies import ClientDP, RunLog, SiteEntry, SiteRoster, build_strategy
from strategies.continued_rounds import ContinuedRounds
from strategies.run_log import ClientLevelPrivacy
from strategies.run_log_state import run_log_from_dict, run_log_to_dict
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity

ROSTER = SiteRoster((SiteEntry(1, "a", "train"), SiteEntry(2, "b", "train"),
                     SiteEntry(9, "x", "external")))


def _run_log() -> RunLog:
    log = RunLog()
    log.evaluation[0] = {"a": {"mortality.auroc": math.nan, "mortality.reliability_count": [1.0]}}
    log.training[1] = {"a": {"train-loss": 0.5, "steps": 3.0}}
    log.privacy[1] = {"a": {"dp": True, "epsilon": 1.5}}
    log.declined[2] = {"b": "over budget"}
    log.failures[2] = ["b: no reply"]
    log.skipped_rounds.append(2)
    log.timing[1] = {"train_s": 1.5, "aggregate_s": 0.01, "server_peak_rss_bytes": 2.0e8}
    log.participation[2] = {"a": {"train": "trained"}, "b": {"train": "timed out"}}
    log.client_level = ClientLevelPrivacy(noise_multiplier=1.0, clipping_norm=10.0, delta=1e-5,
                                          num_sites=2, released_rounds=[1],
                                          epsilon_per_round={1: 3.2})
    return log


def test_the_run_log_round_trips_through_json_with_int_rounds_and_nan():
    restored = run_log_from_dict(json.loads(json.dumps(run_log_to_dict(_run_log()))))
    assert math.isnan(restored.evaluation[0]["a"]["mortality.auroc"])
    restored.evaluation[0]["a"]["mortality.auroc"] = 0.0
    expected = _run_log()
    expected.evaluation[0]["a"]["mortality.auroc"] = 0.0
    assert restored == expected


def test_a_checkpoint_from_before_the_timing_record_resumes_without_it():
    """Older run logs lack `timing` and `egress_intervals`; a missing record of results is still
    refused."""
    older = run_log_to_dict(_run_log())
    del older["timing"], older["egress_intervals"]
    restored = run_log_from_dict(json.loads(json.dumps(older)))
    assert restored.timing == {} and restored.egress_intervals == {}
    del older["evaluation"]
    with pytest.raises(KeyError, match="checkpointed run log lacks `evaluation`"):
        run_log_from_dict(older)


def test_a_run_checkpointed_before_participation_was_recorded_resumes_without_it():
    data = json.loads(json.dumps(run_log_to_dict(_run_log())))
    del data["participation"]
    assert run_log_from_dict(data).participation == {}
    del data["failures"]  # a field that was always there is still required
    with pytest.raises(KeyError, match="lacks `failures`"):
        run_log_from_dict(data)


def _arrays(value: float) -> ArrayRecord:
    return ArrayRecord({"adapter.b": Array(np.full((2, 3), value, dtype=np.float32)),
                        "adapter.a": Array(np.arange(3, dtype=np.float32) + value)})


class _Holder:
    def __init__(self) -> None:
        self.run_log = _run_log()


def test_every_round_is_checkpointed_and_read_back_bitwise(tmp_path):
    keeper = RoundCheckpointer(run_dir=tmp_path, strategy=_Holder())
    for r in range(3):
        keeper(r, _arrays(float(r)))
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.round == 2 and sorted(checkpoint.arrays) == [0, 1, 2]
    for r in range(3):
        restored = checkpoint.arrays[r]
        assert list(restored.keys()) == ["adapter.b", "adapter.a"]  # order kept
        for name in restored.keys():
            assert restored[name].numpy().tobytes() == _arrays(float(r))[name].numpy().tobytes()
    assert checkpoint.run_log.skipped_rounds == [2]


def test_a_resumed_keeper_counts_on_from_the_checkpoint(tmp_path):
    keeper = RoundCheckpointer(run_dir=tmp_path, strategy=_Holder(), offset=2)
    keeper(1, _arrays(7.0))  # Flower's round 1 of the resumed start is the run's round 3
    assert sorted(keeper.arrays) == [3]
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["round"] == 3


def test_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(NoCheckpoint, match="checkpointed no round yet"):
        load_checkpoint(tmp_path)
    with pytest.raises(NoCheckpoint, match="not a lang1-fl run directory"):
        load_run_config(tmp_path)
    keeper = RoundCheckpointer(run_dir=tmp_path, strategy=_Holder())
    keeper(0, _arrays(0.0))
    keeper(1, _arrays(1.0))
    (tmp_path / "checkpoints" / "round-0.safetensors").unlink()
    with pytest.raises(NoCheckpoint, match="round-0.safetensors not found"):
        load_checkpoint(tmp_path)


def test_continued_rounds_send_and_record_the_run_s_round_numbers():
    set_task_identity()
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    continued = ContinuedRounds(strategy, offset=2)
    grid = FakeGrid(ROSTER.node_ids)
    messages = list(continued.configure_train(1, _arrays(0.0), ConfigRecord(), grid))
    assert {int(m.content["config"]["server-round"]) for m in messages} == {3}
    evaluate = list(continued.configure_evaluate(1, _arrays(0.0), ConfigRecord(), grid))
    assert {int(m.content["config"]["server-round"]) for m in evaluate} == {3}
    continued.aggregate_evaluate(1, [])
    assert 3 in continued.run_log.evaluation and 1 not in continued.run_log.evaluation


def test_a_resumed_dp_fedavg_continues_its_epsilon():
    dp = ClientDP(noise_multiplier=1.0, clipping_norm=10.0, delta=1e-5)
    fresh = build_strategy("dp-fedavg", roster=ROSTER, min_train_sites=2, client_dp=dp)
    for _ in range(2):
        fresh._account_release(1)
    resumed = build_strategy("dp-fedavg", roster=ROSTER, min_train_sites=2, client_dp=dp)
    log = RunLog(client_level=ClientLevelPrivacy(noise_multiplier=1.0, clipping_norm=10.0,
                                                 delta=1e-5, num_sites=2, released_rounds=[1, 2]))
    resumed.resume_from(log)
    assert resumed.run_log is log
    assert (resumed.rdp_accountant.get_privacy_spent().epsilon
            == pytest.approx(fresh.rdp_accountant.get_privacy_spent().epsilon))


def test_a_dp_site_charges_a_re_sent_round_once(tmp_path):
    path = write_small_consortium(tmp_path, privacy={"lifetime_epsilon": 8.0, "delta": 1e-5,
                                                     "max_grad_norm": 1.0})
    site = load_consortium(path, data_root=tmp_path / "data").sites[0]
    plan = plan_privacy(site, counts=TrainingUnits(encounters=300, patients=240), rounds=3,
                        steps_per_round=10)
    state = SiteState.open(site, "sha256:" + "0" * 64)
    budget = SiteBudget(site, state, simulated_signer(state.root))
    charge = dict(run="run", plan=plan, steps=10, noise_source="csprng")
    first = budget.charge(server_round=1, **charge)
    again = budget.charge(server_round=1, **charge)  # the server died mid-round 1
    assert again.epsilon == first.epsilon and again.entry == first.entry
    second = budget.charge(server_round=2, **charge)
    assert second.epsilon > first.epsilon
    assert len(budget.path.read_text().splitlines()) == 2
