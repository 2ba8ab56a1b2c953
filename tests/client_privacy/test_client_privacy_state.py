"""The ClientApp with DP on, driven message by message: a site's state folder.

A site's lifetime ledger outlives its process (a site that crashed rejoins with its ledger
intact); sites whose tables share a data folder keep separate state; a kept optimizer state
survives a restart, never leaves the site, and is refused, before any charge, when it does not
fit.

Each test gets a fresh small consortium (its own data and state folders); the tiny encoder is
built once.
"""

from __future__ import annotations

import pytest
import torch
from flwr.app import MessageType

from client.privacy.ledger import read_ledger
from tests.client_privacy.dp_sites import (
    THREE_HOSPITALS,
    TWO_HOSPITALS,
    make_federation,
    restart_client,
    send_message,
    site_of,
    state_of,
    verify_site_ledger,
)


def test_a_site_that_crashed_mid_round_rejoins_later_with_its_ledger_intact(federation):
    """It trained round 1 and then dropped out; round 2 went on without it; it is back, in a new
    process, for round 3. Its ledger continues where it was, ε counts both rounds, and the chain
    still verifies."""
    run_config, settings, arrays = federation
    send_message(run_config, MessageType.TRAIN, arrays, 1, run="rejoin")
    state = state_of(settings)
    lines = state.ledger.read_text().splitlines()
    restart_client()
    reply = send_message(run_config, MessageType.TRAIN, arrays, 3, run="rejoin")
    entries = read_ledger(state.ledger)
    assert state.ledger.read_text().splitlines()[: len(lines)] == lines
    assert [e["round"] for e in entries] == [1, 3]
    assert reply.content["privacy"]["epsilon"] == entries[-1]["epsilon"] > entries[0]["epsilon"]
    assert verify_site_ledger(state, reply.content["privacy"]["ledger_head"]).ok


@pytest.mark.parametrize("profiles", [TWO_HOSPITALS, THREE_HOSPITALS], ids=["two", "three"])
def test_sites_whose_tables_share_a_folder_keep_separate_state(tmp_path, tiny_bert, profiles):
    """Finding 2: two (three) DP hospitals' tables in one data folder. Each trains each round
    itself (none answers with another's stored reply), and each keeps its own ledger, which
    verifies, names it, and holds every round it trained."""
    run_config, settings, arrays = make_federation(tmp_path, tiny_bert, shared_folder=True,
                                               profiles=profiles)
    trainers = [k for k, (_, role) in enumerate(profiles) if role == "train"]
    sites = [site_of(settings, k) for k in trainers]
    assert len({site.data.path.parent for site in sites}) == 1
    for server_round in (1, 2):
        replies = [send_message(run_config, MessageType.TRAIN, arrays, server_round, partition=k)
                   for k in trainers]
        for reply in replies:
            assert not reply.has_error(), reply.error and "arrays" in reply.content
            assert reply.content["privacy"]["declined"] == ""
        first = replies[0].content["arrays"]
        for other in replies[1:]:
            assert any(first[k].data != other.content["arrays"][k].data for k in first.keys())
    states = [state_of(settings, k) for k in trainers]
    assert len({state.root for state in states}) == len(trainers)
    for state, site in zip(states, sites):
        entries = read_ledger(state.ledger)
        assert [(e["site"], e["round"]) for e in entries] == [(site.name, 1), (site.name, 2)]
        assert verify_site_ledger(state).ok


def test_a_kept_optimizer_state_survives_a_restart_and_never_leaves_the_site(federation):
    """`dp-optimizer-state = "kept"`: round 2, in a new process, starts from round 1's AdamW
    moments, read from the site's state folder; the replies hold the same tensors as with a fresh
    optimizer, and a declined round leaves no state."""
    run_config, settings, arrays = federation
    kept = {**run_config, "dp-optimizer-state": "kept"}
    state = state_of(settings)
    directory = state.optimizer_dir("kept-state")
    names = None
    for server_round in (1, 2, 3):
        if server_round == 2:
            restart_client()
        reply = send_message(kept, MessageType.TRAIN, arrays, server_round, run="kept-state")
        assert not reply.has_error(), reply.error
        names = names or set(reply.content["arrays"].keys())
        assert set(reply.content["arrays"].keys()) == names
        stored = torch.load(directory / f"after-round-{server_round}.pt", weights_only=True)
        # local_steps = 2 a round, counted on from the rounds before
        assert {float(s["step"]) for s in stored["state"].values()} == {2.0 * server_round}
        arrays = reply.content["arrays"]
    assert not state.optimizer_dir("fresh-state").exists()
    declined = send_message(kept, MessageType.TRAIN, arrays, 4, run="kept-state")
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
    reply = send_message(kept, MessageType.TRAIN, arrays, 1, run="misfit-state")
    assert not reply.has_error(), reply.error
    state = state_of(settings)
    torch.save({"state": {}, "param_groups": [{"params": [0], "lr": 0.01}]},
               state.optimizer_dir("misfit-state") / "after-round-1.pt")
    before = state.ledger.read_bytes()
    with pytest.raises(OptimizerStateMismatch, match=r"after-round-1\.pt: optimizer state"):
        send_message(kept, MessageType.TRAIN, reply.content["arrays"], 2, run="misfit-state")
    assert state.ledger.read_bytes() == before
    assert len(read_ledger(state.ledger)) == 1
