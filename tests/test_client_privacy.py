"""The ClientApp with DP on, driven message by message: a site's lifetime ledger, its guard, its
state folder and what it tells the server — whatever the server sends.

Each test gets a fresh small consortium (its own data and state folders); the tiny encoder is
built once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

import client.site
from client.app import app as client_app
from client.model import build_model, trainable_state
from client.privacy.accounting import cumulative_epsilon
from client.privacy.ledger import entry_sha256, read_ledger
from client.privacy.plan import plan_privacy
from client.privacy.verify import verify_ledger
from client.settings import ClientSettings
from client.state import SiteState
from sites.config import InvalidSiteConfig, load_consortium
from sites.dataset import count_training_units, dataset_fingerprint, read_site_table
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

PRIVACY = {"lifetime_epsilon": 4.0, "delta": 1e-3, "max_grad_norm": 1.0, "accountant": "rdp"}
RUN = "dp-test-run"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("client_privacy") / "tiny-bert")


TWO_HOSPITALS = (("academic", "train"), ("community", "train"),
                 ("external_system", "external"))
THREE_HOSPITALS = (("academic", "train"), ("community", "train"), ("safety_net", "train"))


def _federation(root, base, *, privacy=PRIVACY, rounds=3, shared_folder=False,
                profiles=TWO_HOSPITALS):
    """A small consortium of DP hospitals (by default two and an external system); with
    `shared_folder`, the sites' tables sit side by side in one data folder."""
    consortium = write_small_consortium(root, encounters=120, local_steps=2, privacy=privacy,
                                        profiles=profiles)
    if shared_folder:
        raw = yaml.safe_load(consortium.read_text())
        for site in raw["sites"]:
            site["data"]["path"] = f"hospitals/{site['name']}.parquet"
        consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(root / "data"), base_model=str(base),
        max_length=32, bootstrap_resamples=20, num_server_rounds=rounds,
    )
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


@pytest.fixture
def federation(tmp_path, tiny_bert):
    return _federation(tmp_path, tiny_bert)


def _send(run_config, message_type: str, arrays: ArrayRecord | None, server_round: int,
          partition=0, run=RUN):
    config = ConfigRecord({"server-round": server_round, "run-name": run})
    content = RecordDict({"config": config, **({"arrays": arrays} if arrays else {})})
    context = Context(run_id=1, node_id=100 + partition,
                      node_config={"partition-id": partition, "num-partitions": 3},
                      state=RecordDict(), run_config=run_config)
    return client_app(message_to(100 + partition, content, message_type), context)


def _site(settings: ClientSettings, partition: int = 0):
    return load_consortium(settings.consortium, data_root=settings.data_dir).sites[partition]


def _state(settings: ClientSettings, partition: int = 0) -> SiteState:
    from client.site import ensure_site_data

    consortium = load_consortium(settings.consortium, data_root=settings.data_dir)
    site = consortium.sites[partition]
    ensure_site_data(site, seed=consortium.seed)  # as the site's first message would
    return SiteState.peek(site, dataset_fingerprint(site))


def _verify(state: SiteState, head: str | None = None):
    return verify_ledger(state.ledger, public_key=state.root / "signing-key.pub",
                         head_sha256=head)


def _restart_client() -> None:
    """A new client process: no cached model, data or accountant."""
    client.site._MODELS.clear()
    client.site._SPLITS.clear()


def test_a_private_site_spends_its_run_allocation_over_the_planned_rounds_and_no_more(
        federation):
    run_config, settings, arrays = federation
    site, state = _site(settings), _state(settings)
    epsilons = []
    for server_round in (1, 2, 3):
        if server_round == 3:
            _restart_client()
        reply = _send(run_config, MessageType.TRAIN, arrays, server_round)
        assert not reply.has_error(), reply.error
        privacy = dict(reply.content["privacy"])
        assert privacy["dp"] is True and privacy["declined"] == ""
        entries = read_ledger(state.ledger)
        assert len(entries) == server_round  # one entry per round, none counted twice
        assert privacy["epsilon"] == entries[-1]["epsilon"] == entries[-1]["run_epsilon"]
        assert privacy["ledger_head"] == entry_sha256(entries[-1])
        assert privacy["noise_source"] == entries[-1]["noise_source"] == "csprng"
        assert math.isnan(reply.content["metrics"]["train-loss"])  # withheld: not covered by DP
        epsilons.append(privacy["epsilon"])
        arrays = reply.content["arrays"]
    # Cumulative: the spend grows every round and the whole run lands on its allocation.
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2] <= PRIVACY["lifetime_epsilon"]
    plan = plan_privacy(site, counts=count_training_units(site), rounds=3, steps_per_round=2)
    assert epsilons[2] == pytest.approx(plan.planned_epsilon, rel=1e-9)  # the forecast's ε
    assert epsilons[2] >= 0.99 * PRIVACY["lifetime_epsilon"]
    entries = read_ledger(state.ledger)
    assert {e["noise_multiplier"] for e in entries} == {plan.noise_multiplier}
    assert {e["run"] for e in entries} == {RUN} and {e["site"] for e in entries} == {"academic"}
    report = _verify(state, privacy["ledger_head"])
    assert report.ok, str(report)

    # A fourth round would overspend: the site declines, writes nothing, and sends no tensors.
    reply = _send(run_config, MessageType.TRAIN, arrays, 4)
    assert not reply.has_error()
    assert set(reply.content.keys()) == {"privacy", "egress"}  # egress: digest and totals only
    declined = dict(reply.content["privacy"])
    assert "declines round 4" in declined["declined"]
    assert "over this run's allocation of 4" in declined["declined"]
    assert declined["epsilon"] == pytest.approx(epsilons[2])
    assert len(read_ledger(state.ledger)) == 3

    # Out of budget, it still evaluates.
    reply = _send(run_config, MessageType.EVALUATE, arrays, 4)
    assert not reply.has_error() and 0 <= reply.content["metrics"]["mortality.auroc"] <= 1


def test_a_budget_cannot_be_spent_again_under_new_run_names(tmp_path, tiny_bert):
    """Finding 1: six rounds sent under six run names used to open six fresh budgets (composed
    ε 3.848 for a target of 3). Now every run charges the data's one ledger: the first run plans
    the whole budget over its two rounds, and every new name that would not fit is declined
    before anything trains."""
    run_config, settings, arrays = _federation(
        tmp_path, tiny_bert, privacy={**PRIVACY, "lifetime_epsilon": 3.0}, rounds=2)
    state = _state(settings)
    replies = [_send(run_config, MessageType.TRAIN, arrays, server_round, run=f"name-{k}")
               for k, server_round in enumerate((1, 2, 3, 4, 5, 6))]
    assert "arrays" in replies[0].content
    for reply in replies[1:]:
        assert "arrays" not in reply.content
        assert "the run would spend ε = 3 over 2×2 steps" in reply.content["privacy"]["declined"]
        assert "over its lifetime budget of 3" in reply.content["privacy"]["declined"]
    entries = read_ledger(state.ledger)
    assert [(e["run"], e["round"]) for e in entries] == [("name-0", 1)]
    history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries]
    composed = cumulative_epsilon(history=history, delta=PRIVACY["delta"], accountant="rdp")
    assert composed == pytest.approx(entries[-1]["epsilon"]) and composed <= 3.0
    assert _verify(state).ok


def test_a_run_allocation_lets_several_runs_share_the_lifetime_budget(tmp_path, tiny_bert):
    """`run_epsilon_cap` 2.5 of a lifetime 4: runs fit until the composed spend would pass 4 (more
    than one, since ε composes sub-additively); the ledger holds them all and verifies with
    every run re-derived."""
    privacy = {**PRIVACY, "lifetime_epsilon": 4.0, "run_epsilon_cap": 2.5}
    run_config, settings, arrays = _federation(tmp_path, tiny_bert, privacy=privacy, rounds=1)
    state = _state(settings)
    trained = []
    for k in range(8):
        reply = _send(run_config, MessageType.TRAIN, arrays, 1, run=f"run-{k}")
        if "arrays" not in reply.content:
            assert "over its lifetime budget of 4" in reply.content["privacy"]["declined"]
            break
        trained.append(reply.content["privacy"]["epsilon"])
        assert reply.content["privacy"]["run_epsilon"] <= 2.5
    assert 2 <= len(trained) < 8 and trained == sorted(trained) and trained[-1] <= 4.0
    report = _verify(state)
    assert report.ok, str(report)
    assert set(report.runs) == {f"run-{k}" for k in range(len(trained))}


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
    assert len(read_ledger(_state(settings).ledger)) == 1


def test_a_site_that_crashed_mid_round_rejoins_later_with_its_ledger_intact(federation):
    """It trained round 1 and then dropped out; round 2 went on without it; it is back, in a new
    process, for round 3. Its ledger continues where it was, ε counts both rounds, and the chain
    still verifies."""
    run_config, settings, arrays = federation
    _send(run_config, MessageType.TRAIN, arrays, 1, run="rejoin")
    state = _state(settings)
    lines = state.ledger.read_text().splitlines()
    _restart_client()
    reply = _send(run_config, MessageType.TRAIN, arrays, 3, run="rejoin")
    entries = read_ledger(state.ledger)
    assert state.ledger.read_text().splitlines()[: len(lines)] == lines
    assert [e["round"] for e in entries] == [1, 3]
    assert reply.content["privacy"]["epsilon"] == entries[-1]["epsilon"] > entries[0]["epsilon"]
    assert _verify(state, reply.content["privacy"]["ledger_head"]).ok


def test_the_privacy_query_reports_the_ledger_even_for_a_round_charged_and_never_answered(
        federation, monkeypatch):
    """Finding 4: a site charges round 2 and crashes before its reply leaves. Its last training
    reply said round 1's ε; the closing `query.privacy` answers with what the ledger holds, which
    is what the report shows — and its head is the one `verify --head` accepts."""
    import client.privacy.dp_sgd  # client.app imports it when a DP round trains

    run_config, settings, arrays = federation
    first = _send(run_config, MessageType.TRAIN, arrays, 1)

    def crash(*args, **kwargs):
        raise RuntimeError("the site's process died while training")

    monkeypatch.setattr(client.privacy.dp_sgd, "train_steps_private", crash)
    with pytest.raises(RuntimeError, match="died while training"):  # Flower: an error reply
        _send(run_config, MessageType.TRAIN, first.content["arrays"], 2)
    state = _state(settings)
    entries = read_ledger(state.ledger)
    assert [e["round"] for e in entries] == [1, 2]
    answer = dict(_send(run_config, "query.privacy", None, 0).content["privacy"])
    assert answer["epsilon"] == pytest.approx(entries[-1]["epsilon"])
    assert answer["epsilon"] > first.content["privacy"]["epsilon"]
    assert answer["run_epsilon"] == pytest.approx(entries[-1]["run_epsilon"])
    assert answer["ledger_head"] == entry_sha256(entries[-1]) and answer["run_rounds"] == "1,2"
    assert answer["lifetime_epsilon"] == 4.0 and answer["unit"] == "encounter"
    assert _verify(state, answer["ledger_head"]).ok


@pytest.mark.parametrize("profiles", [TWO_HOSPITALS, THREE_HOSPITALS], ids=["two", "three"])
def test_sites_whose_tables_share_a_folder_keep_separate_state(tmp_path, tiny_bert, profiles):
    """Finding 2: two (three) DP hospitals' tables in one data folder. Each trains each round
    itself (none answers with another's stored reply), and each keeps its own ledger, which
    verifies, names it, and holds every round it trained."""
    run_config, settings, arrays = _federation(tmp_path, tiny_bert, shared_folder=True,
                                               profiles=profiles)
    trainers = [k for k, (_, role) in enumerate(profiles) if role == "train"]
    sites = [_site(settings, k) for k in trainers]
    assert len({site.data.path.parent for site in sites}) == 1
    for server_round in (1, 2):
        replies = [_send(run_config, MessageType.TRAIN, arrays, server_round, partition=k)
                   for k in trainers]
        for reply in replies:
            assert not reply.has_error(), reply.error and "arrays" in reply.content
            assert reply.content["privacy"]["declined"] == ""
        first = replies[0].content["arrays"]
        for other in replies[1:]:
            assert any(first[k].data != other.content["arrays"][k].data for k in first.keys())
    states = [_state(settings, k) for k in trainers]
    assert len({state.root for state in states}) == len(trainers)
    for state, site in zip(states, sites):
        entries = read_ledger(state.ledger)
        assert [(e["site"], e["round"]) for e in entries] == [(site.name, 1), (site.name, 2)]
        assert _verify(state).ok


def test_a_kept_optimizer_state_survives_a_restart_and_never_leaves_the_site(federation):
    """`dp-optimizer-state = "kept"`: round 2, in a new process, starts from round 1's AdamW
    moments, read from the site's state folder; the replies hold the same tensors as with a fresh
    optimizer, and a declined round leaves no state."""
    run_config, settings, arrays = federation
    kept = {**run_config, "dp-optimizer-state": "kept"}
    state = _state(settings)
    directory = state.optimizer_dir("kept-state")
    names = None
    for server_round in (1, 2, 3):
        if server_round == 2:
            _restart_client()
        reply = _send(kept, MessageType.TRAIN, arrays, server_round, run="kept-state")
        assert not reply.has_error(), reply.error
        names = names or set(reply.content["arrays"].keys())
        assert set(reply.content["arrays"].keys()) == names
        stored = torch.load(directory / f"after-round-{server_round}.pt", weights_only=True)
        # local_steps = 2 a round, counted on from the rounds before
        assert {float(s["step"]) for s in stored["state"].values()} == {2.0 * server_round}
        arrays = reply.content["arrays"]
    assert not state.optimizer_dir("fresh-state").exists()
    declined = _send(kept, MessageType.TRAIN, arrays, 4, run="kept-state")
    assert "arrays" not in declined.content
    assert sorted(p.name for p in directory.iterdir()) == [
        f"after-round-{k}.pt" for k in (1, 2, 3)]


def test_a_stored_optimizer_state_that_does_not_fit_stops_the_round_before_any_charge(
        federation):
    """A kept state from another adapter (here: one parameter group of one tensor) is refused
    with its file named, and the round leaves no ledger entry: nothing was trained."""
    from client.privacy.optimizer_memory import OptimizerStateMismatch

    run_config, settings, arrays = federation
    kept = {**run_config, "dp-optimizer-state": "kept"}
    reply = _send(kept, MessageType.TRAIN, arrays, 1, run="misfit-state")
    assert not reply.has_error(), reply.error
    state = _state(settings)
    torch.save({"state": {}, "param_groups": [{"params": [0], "lr": 0.01}]},
               state.optimizer_dir("misfit-state") / "after-round-1.pt")
    before = state.ledger.read_bytes()
    with pytest.raises(OptimizerStateMismatch, match=r"after-round-1\.pt: optimizer state"):
        _send(kept, MessageType.TRAIN, reply.content["arrays"], 2, run="misfit-state")
    assert state.ledger.read_bytes() == before
    assert len(read_ledger(state.ledger)) == 1


def test_privacy_replies_hold_scalars_and_no_local_path(federation, tmp_path):
    """Finding 8: what a site tells the server — trained, declined or queried — carries its
    own budget and its ledger's state, never a local path or a note."""
    run_config, settings, arrays = federation
    trained = dict(_send(run_config, MessageType.TRAIN, arrays, 1, partition=1).content["privacy"])
    assert set(trained) == {"dp", "dataset", "unit", "delta", "lifetime_epsilon",
                            "run_epsilon_allocation", "max_grad_norm", "accountant", "signer",
                            "epsilon", "run_epsilon", "noise_multiplier", "sample_rate", "steps",
                            "noise_source", "ledger_head", "declined"}
    for server_round in (2, 3):
        _send(run_config, MessageType.TRAIN, arrays, server_round, partition=1)
    declined = dict(_send(run_config, MessageType.TRAIN, arrays, 4, partition=1)
                    .content["privacy"])
    queried = dict(_send(run_config, "query.privacy", None, 0, partition=1).content["privacy"])
    assert declined["declined"] and queried["ledger_entries"] == 3
    table = read_site_table(_site(settings, 1))
    for record in (trained, declined, queried):
        assert all(isinstance(v, (bool, int, float, str)) for v in record.values())
        text = repr(record)
        assert str(tmp_path) not in text and str(Path.home()) not in text
        assert not any(note[:30] in text for note in table["admission_note"][:50])


def test_patient_level_dp_samples_patients_and_says_so_in_the_ledger(tmp_path, tiny_bert):
    """Finding 5: with `privacy.unit: patient` the plan counts patients, the ledger names the
    unit, and the round trains."""
    run_config, settings, arrays = _federation(tmp_path, tiny_bert,
                                               privacy={**PRIVACY, "unit": "patient"})
    reply = _send(run_config, MessageType.TRAIN, arrays, 1)
    assert not reply.has_error(), reply.error and "arrays" in reply.content
    assert reply.content["privacy"]["unit"] == "patient"
    site = _site(settings)
    counts = count_training_units(site)
    assert counts.patients < counts.encounters  # synthetic patients have 1.25 encounters
    entry = read_ledger(_state(settings).ledger)[-1]
    assert entry["privacy_unit"] == "patient" and entry["examples"] == counts.patients
    assert entry["sample_rate"] == pytest.approx(16 / counts.encounters)


def test_a_site_yaml_that_changes_its_delta_under_an_existing_ledger_is_refused(federation):
    run_config, settings, arrays = federation
    _send(run_config, MessageType.TRAIN, arrays, 1, run="first")
    consortium = settings.consortium
    raw = yaml.safe_load(consortium.read_text())
    raw["sites"][0]["privacy"]["delta"] = 5e-4
    consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(InvalidSiteConfig, match=r"`privacy.delta` 0.0005, but the ledger of its "
                       r"data .* composes at 0.001"):
        _send(run_config, MessageType.TRAIN, arrays, 1, run="second")


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
    assert not _state(settings).ledger.exists()


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden", ""])
def test_a_server_cannot_point_a_site_file_outside_its_folder(name):
    from client.settings import MessageConfig

    def run_name(config: ConfigRecord, context: Context) -> str:
        return MessageConfig.from_record(config, run_id=context.run_id).run_name

    context = Context(run_id=7, node_id=1, node_config={}, state=RecordDict(), run_config={})
    if name == "":  # no name from the server: Flower's run id names the run's files
        assert run_name(ConfigRecord({"run-name": ""}), context) == "flwr-run-7"
        return
    with pytest.raises(ValueError, match="`run-name` is"):
        run_name(ConfigRecord({"run-name": name}), context)
