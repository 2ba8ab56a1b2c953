"""The ClientApp with DP on: ledger per round, cumulative ε across rounds and restarts, the guard.

One run of a small consortium, driven message by message: three planned rounds at a site whose
budget is ε = 4, a simulated restart of the client process between rounds, then a fourth round
that the planned noise cannot pay for.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

import client.runtime
from client.app import app as client_app
from client.ledger import entry_sha256, read_ledger
from client.ledger_verify import verify_ledger
from client.model import build_model, trainable_state
from client.privacy_plan import plan_privacy
from client.run_settings import ClientSettings
from client.site_budget import ledger_path
from sites.config import InvalidSiteConfig, load_consortium
from sites.dataset import read_site_table
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

PRIVACY = {"target_epsilon": 4.0, "delta": 1e-3, "max_grad_norm": 1.0, "accountant": "rdp"}
RUN = "dp-test-run"


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("client_privacy")
    consortium = write_small_consortium(root, encounters=120, local_steps=2, privacy=PRIVACY)
    base = make_tiny_encoder(root / "tiny-bert")
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(root / "data"), base_model=str(base),
        max_length=32, bootstrap_resamples=20, num_server_rounds=3,
    )
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


def _send(run_config, message_type: str, arrays: ArrayRecord, server_round: int, partition=0,
          run=RUN):
    config = ConfigRecord({"server-round": server_round, "run-name": run})
    content = RecordDict({"arrays": arrays, "config": config})
    context = Context(run_id=1, node_id=100 + partition,
                      node_config={"partition-id": partition, "num-partitions": 3},
                      state=RecordDict(), run_config=run_config)
    return client_app(message_to(100 + partition, content, message_type), context)


def _site(settings: ClientSettings, partition: int = 0):
    return load_consortium(settings.consortium, data_root=settings.data_dir).sites[partition]


def test_a_private_site_spends_its_budget_over_the_planned_rounds_and_no_more(federation):
    run_config, settings, arrays = federation
    site = _site(settings)
    ledger = ledger_path(site, RUN)
    epsilons = []
    for server_round in (1, 2, 3):
        if server_round == 3:  # a restarted client process: no cached model, data or accountant
            client.runtime._MODELS.clear()
            client.runtime._SPLITS.clear()
        reply = _send(run_config, MessageType.TRAIN, arrays, server_round)
        assert not reply.has_error(), reply.error
        privacy = dict(reply.content["privacy"])
        assert privacy["dp"] is True and privacy["declined"] == ""
        entries = read_ledger(ledger)
        assert len(entries) == server_round  # one entry per round, none counted twice
        assert privacy["epsilon"] == entries[-1]["epsilon"]
        assert privacy["ledger-head"] == entry_sha256(entries[-1])
        assert math.isnan(reply.content["metrics"]["train-loss"])  # withheld: not covered by DP
        epsilons.append(privacy["epsilon"])
        arrays = reply.content["arrays"]
    # Cumulative: the spend grows every round and the whole run lands on the budget.
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2] <= PRIVACY["target_epsilon"]
    n_train = int((read_site_table(site)["split"] == "train").sum())
    plan = plan_privacy(site, examples=n_train, rounds=3, steps_per_round=2)
    assert epsilons[2] == pytest.approx(plan.planned_epsilon, rel=1e-9)  # the forecast's ε
    assert epsilons[2] >= 0.99 * PRIVACY["target_epsilon"]
    assert {e["noise_multiplier"] for e in read_ledger(ledger)} == {plan.noise_multiplier}
    report = verify_ledger(ledger, public_key=ledger.parent / "signing-key.pub",
                           head_sha256=privacy["ledger-head"])
    assert report.ok, str(report)

    # A fourth round would overspend: the site declines, writes nothing, and sends no tensors.
    reply = _send(run_config, MessageType.TRAIN, arrays, 4)
    assert not reply.has_error()
    assert set(reply.content.keys()) == {"privacy", "egress"}  # egress: digest and totals only
    declined = dict(reply.content["privacy"])
    assert "declines round 4" in declined["declined"] and "over the budget of 4" in declined["declined"]
    assert declined["epsilon"] == pytest.approx(epsilons[2])
    assert len(read_ledger(ledger)) == 3

    # Out of budget, it still evaluates.
    reply = _send(run_config, MessageType.EVALUATE, arrays, 4)
    assert not reply.has_error() and 0 <= reply.content["metrics"]["mortality.auroc"] <= 1


def test_a_re_sent_round_costs_nothing_more_and_another_adapter_is_declined(federation):
    """A restarted server re-sends round 1: the site replays its released answer (post-
    processing, no new charge); the same round from a different adapter would be a second
    release, so the site declines it."""
    run_config, settings, arrays = federation
    first = _send(run_config, MessageType.TRAIN, arrays, 1, run="resent")
    again = _send(run_config, MessageType.TRAIN, arrays, 1, run="resent")
    assert again.content["privacy"]["epsilon"] == first.content["privacy"]["epsilon"]
    for name in first.content["arrays"].keys():
        assert again.content["arrays"][name].data == first.content["arrays"][name].data
    other = ArrayRecord({k: Array(v.numpy() + 1.0) for k, v in arrays.items()})
    declined = _send(run_config, MessageType.TRAIN, other, 1, run="resent")
    assert "arrays" not in declined.content
    assert "spend its budget twice" in declined.content["privacy"]["declined"]
    assert len(read_ledger(ledger_path(_site(settings), "resent"))) == 1


def test_a_site_that_crashed_mid_round_rejoins_later_with_its_ledger_intact(federation):
    """It trained round 1 and then dropped out; round 2 went on without it; it is back, in a new
    process, for round 3. Its ledger continues where it was, ε counts both rounds, and the chain
    still verifies."""
    run_config, settings, arrays = federation
    _send(run_config, MessageType.TRAIN, arrays, 1, run="rejoin")
    ledger = ledger_path(_site(settings), "rejoin")
    lines = ledger.read_text().splitlines()
    client.runtime._MODELS.clear()  # a new process
    client.runtime._SPLITS.clear()
    reply = _send(run_config, MessageType.TRAIN, arrays, 3, run="rejoin")
    entries = read_ledger(ledger)
    assert ledger.read_text().splitlines()[: len(lines)] == lines
    assert [e["round"] for e in entries] == [1, 3]
    assert reply.content["privacy"]["epsilon"] == entries[-1]["epsilon"] > entries[0]["epsilon"]
    assert verify_ledger(ledger, public_key=ledger.parent / "signing-key.pub",
                         head_sha256=reply.content["privacy"]["ledger-head"]).ok


def test_a_kept_optimizer_state_survives_a_restart_and_never_leaves_the_site(federation):
    """`dp-optimizer-state = "kept"`: round 2, in a new process, starts from round 1's AdamW
    moments, read from the site's disk; the replies hold the same tensors as with a fresh
    optimizer, and a declined round leaves no state."""
    run_config, settings, arrays = federation
    kept = {**run_config, "dp-optimizer-state": "kept"}
    directory = _site(settings).data.path.parent / "optimizer-state" / "kept-state"
    names = None
    for server_round in (1, 2, 3):
        if server_round == 2:  # a restarted client process
            client.runtime._MODELS.clear()
            client.runtime._SPLITS.clear()
        reply = _send(kept, MessageType.TRAIN, arrays, server_round, run="kept-state")
        assert not reply.has_error(), reply.error
        names = names or set(_send(run_config, MessageType.TRAIN, arrays, 1,
                                   run="fresh-state").content["arrays"].keys())
        assert set(reply.content["arrays"].keys()) == names
        state = torch.load(directory / f"after-round-{server_round}.pt", weights_only=True)
        # local_steps = 2 a round, counted on from the rounds before
        assert {float(s["step"]) for s in state["state"].values()} == {2.0 * server_round}
        arrays = reply.content["arrays"]
    assert not (directory.parent / "fresh-state").exists()
    declined = _send(kept, MessageType.TRAIN, arrays, 4, run="kept-state")
    assert "arrays" not in declined.content
    assert sorted(p.name for p in directory.iterdir()) == [
        f"after-round-{k}.pt" for k in (1, 2, 3)]


def test_a_stored_optimizer_state_that_does_not_fit_stops_the_round_before_any_charge(
        federation):
    """A kept state from another adapter (here: one parameter group of one tensor) is refused
    with its file named, and the round leaves no ledger entry: nothing was trained."""
    from client.optimizer_memory import OptimizerStateMismatch

    run_config, settings, arrays = federation
    kept = {**run_config, "dp-optimizer-state": "kept"}
    reply = _send(kept, MessageType.TRAIN, arrays, 1, run="misfit-state")
    assert not reply.has_error(), reply.error
    stored = _site(settings).data.path.parent / "optimizer-state" / "misfit-state"
    torch.save({"state": {}, "param_groups": [{"params": [0], "lr": 0.01}]},
               stored / "after-round-1.pt")
    ledger = ledger_path(_site(settings), "misfit-state")
    before = ledger.read_bytes()
    with pytest.raises(OptimizerStateMismatch, match=r"after-round-1\.pt: optimizer state"):
        _send(kept, MessageType.TRAIN, reply.content["arrays"], 2, run="misfit-state")
    assert ledger.read_bytes() == before
    assert len(read_ledger(ledger)) == 1


def test_privacy_reply_holds_scalars_only(federation):
    run_config, settings, arrays = federation
    reply = _send(run_config, MessageType.TRAIN, arrays, 1, partition=1)
    assert not reply.has_error(), reply.error
    privacy = dict(reply.content["privacy"])
    assert set(privacy) == {"dp", "declined", "epsilon", "delta", "target-epsilon",
                            "max-grad-norm", "accountant", "noise-multiplier", "sample-rate",
                            "steps", "ledger-head"}
    assert all(isinstance(v, (bool, int, float, str)) for v in privacy.values())
    table = read_site_table(_site(settings, 1))
    text = repr(privacy)
    assert not any(note[:30] in text for note in table["admission_note"][:50])


def test_delta_not_below_one_over_n_is_refused_before_training(tmp_path, tiny_encoder):
    consortium = write_small_consortium(tmp_path, encounters=120, local_steps=2,
                                        privacy={**PRIVACY, "delta": 0.05})
    run_config = default_run_config(consortium=str(consortium), data_dir=str(tmp_path / "data"),
                                    base_model=str(tiny_encoder), max_length=32)
    arrays = ArrayRecord({"x": Array(np.zeros(1, dtype=np.float32))})
    with pytest.raises(InvalidSiteConfig, match=r"`privacy.delta` of site 'academic' is 0.05; "
                                                r"expected below 1/n = "):
        _send(run_config, MessageType.TRAIN, arrays, 1)
    settings = ClientSettings.from_run_config(run_config)
    assert not ledger_path(_site(settings), RUN).exists()


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden", ""])
def test_a_server_cannot_point_a_site_ledger_outside_its_folder(name):
    from client.privacy_reply import run_name

    context = Context(run_id=7, node_id=1, node_config={}, state=RecordDict(), run_config={})
    if name == "":  # no name from the server: Flower's run id names the ledger
        assert run_name(ConfigRecord({"run-name": ""}), context) == "flwr-run-7"
        return
    with pytest.raises(ValueError, match="`run-name` is"):
        run_name(ConfigRecord({"run-name": name}), context)
