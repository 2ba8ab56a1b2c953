"""The ClientApp with DP on, driven message by message: a site's lifetime budget and its guard.

A private site spends its run allocation over the planned rounds and declines a round that would
overspend it (it still evaluates); new run names do not open new budgets, a run allocation lets
several runs share the lifetime budget, and a re-sent round costs nothing more — whatever the
server sends.

Each test gets a fresh small consortium (its own data and state folders); the tiny encoder is
built once.
"""

from __future__ import annotations

import math

import pytest
from flwr.app import Array, ArrayRecord, MessageType

from client.privacy.accounting import cumulative_epsilon
from client.privacy.ledger import entry_sha256, read_ledger
from client.privacy.plan import plan_privacy
from sites.dataset import count_training_units
from tests.client_privacy.dp_sites import (
    PRIVACY,
    RUN,
    make_federation,
    restart_client,
    send_message,
    site_of,
    state_of,
    verify_site_ledger,
)


def test_a_private_site_spends_its_run_allocation_over_the_planned_rounds_and_no_more(
        federation):
    run_config, settings, arrays = federation
    site, state = site_of(settings), state_of(settings)
    epsilons = []
    for server_round in (1, 2, 3):
        if server_round == 3:
            restart_client()
        reply = send_message(run_config, MessageType.TRAIN, arrays, server_round)
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
    report = verify_site_ledger(state, privacy["ledger_head"])
    assert report.ok, str(report)

    # A fourth round would overspend: the site declines, writes nothing, and sends no tensors.
    reply = send_message(run_config, MessageType.TRAIN, arrays, 4)
    assert not reply.has_error()
    assert set(reply.content.keys()) == {"privacy", "egress"}  # egress: digest and totals only
    declined = dict(reply.content["privacy"])
    assert "declines round 4" in declined["declined"]
    assert "over this run's allocation of 4" in declined["declined"]
    assert declined["epsilon"] == pytest.approx(epsilons[2])
    assert len(read_ledger(state.ledger)) == 3

    # Out of budget, it still evaluates.
    reply = send_message(run_config, MessageType.EVALUATE, arrays, 4)
    assert not reply.has_error() and 0 <= reply.content["metrics"]["mortality.auroc"] <= 1


def test_a_budget_cannot_be_spent_again_under_new_run_names(tmp_path, tiny_bert):
    """Finding 1: six rounds sent under six run names used to open six fresh budgets (composed
    ε 3.848 for a target of 3). Now every run charges the data's one ledger: the first run plans
    the whole budget over its two rounds, and every new name that would not fit is declined
    before anything trains."""
    run_config, settings, arrays = make_federation(
        tmp_path, tiny_bert, privacy={**PRIVACY, "lifetime_epsilon": 3.0}, rounds=2)
    state = state_of(settings)
    replies = [send_message(run_config, MessageType.TRAIN, arrays, server_round, run=f"name-{k}")
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
    assert verify_site_ledger(state).ok


def test_a_run_allocation_lets_several_runs_share_the_lifetime_budget(tmp_path, tiny_bert):
    """`run_epsilon_cap` 2.5 of a lifetime 4: runs fit until the composed spend would pass 4 (more
    than one, since ε composes sub-additively); the ledger holds them all and verifies with
    every run re-derived."""
    privacy = {**PRIVACY, "lifetime_epsilon": 4.0, "run_epsilon_cap": 2.5}
    run_config, settings, arrays = make_federation(tmp_path, tiny_bert, privacy=privacy, rounds=1)
    state = state_of(settings)
    trained = []
    for k in range(8):
        reply = send_message(run_config, MessageType.TRAIN, arrays, 1, run=f"run-{k}")
        if "arrays" not in reply.content:
            assert "over its lifetime budget of 4" in reply.content["privacy"]["declined"]
            break
        trained.append(reply.content["privacy"]["epsilon"])
        assert reply.content["privacy"]["run_epsilon"] <= 2.5
    assert 2 <= len(trained) < 8 and trained == sorted(trained) and trained[-1] <= 4.0
    report = verify_site_ledger(state)
    assert report.ok, str(report)
    assert set(report.runs) == {f"run-{k}" for k in range(len(trained))}


def test_a_re_sent_round_costs_nothing_more_and_another_adapter_is_declined(federation):
    """A restarted server re-sends round 1: the site replays its released answer (post-
    processing, no new charge); the same round from a different adapter would be a second
    release, so the site declines it."""
    run_config, settings, arrays = federation
    first = send_message(run_config, MessageType.TRAIN, arrays, 1, run="resent")
    again = send_message(run_config, MessageType.TRAIN, arrays, 1, run="resent")
    assert again.content["privacy"]["epsilon"] == first.content["privacy"]["epsilon"]
    for name in first.content["arrays"].keys():
        assert again.content["arrays"][name].data == first.content["arrays"][name].data
    other = ArrayRecord({k: Array(v.numpy() + 1.0) for k, v in arrays.items()})
    declined = send_message(run_config, MessageType.TRAIN, other, 1, run="resent")
    assert "arrays" not in declined.content
    assert "spend its budget twice" in declined.content["privacy"]["declined"]
    assert len(read_ledger(state_of(settings).ledger)) == 1
