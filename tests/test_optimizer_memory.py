"""client.privacy.optimizer_memory: a DP site's optimizer state carried from round to round on its disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client.model import load_trainable_state, trainable_state
from client.privacy.optimizer_memory import OptimizerMemory, OptimizerStateMismatch
from client.train import make_optimizer
from tests.model_settings import optimizer_settings
from tests.test_private_train import FAST, _dp_round, setup


def _memory(tmp_path: Path) -> OptimizerMemory:
    return OptimizerMemory(tmp_path / "state" / "dataset" / "runs" / "run-1" / "optimizer-state")


def _adapter_move(before: dict, after: dict) -> float:
    """Mean |Δ| over the adapter's coordinates."""
    moves = [torch.as_tensor(after[k] - before[k]).abs().flatten()
             for k in before if k.startswith("adapter.")]
    return float(torch.cat(moves).mean())


def test_a_round_starts_from_the_state_after_the_latest_earlier_round(tmp_path, tiny_encoder):
    model, splits = setup(tiny_encoder)
    memory = _memory(tmp_path)
    first = make_optimizer(model, FAST)
    assert memory.restore(first, 1) is None  # the site's first round: a fresh optimizer
    _dp_round(model, splits["train"], steps=3, optimizer=first)
    saved = memory.save(first, 1)
    assert saved.name == "after-round-1.pt"

    # Round 3 (the site missed round 2) resumes round 1's moments, at this run's own rates.
    later = make_optimizer(model, optimizer_settings(learning_rate=1e-4, head_learning_rate=1e-3))
    assert memory.restore(later, 3) == saved
    assert [g["lr"] for g in later.param_groups] == [1e-4, 1e-3]
    for old, new in zip(first.state.values(), later.state.values()):
        assert float(new["step"]) == 3
        assert torch.equal(old["exp_avg"], new["exp_avg"])
        assert torch.equal(old["exp_avg_sq"], new["exp_avg_sq"])
    # Round 1 trained again after a crash starts as it did the first time: fresh.
    assert memory.restore(make_optimizer(model, FAST), 1) is None


def test_kept_moments_do_not_restart_each_round_with_full_steps_in_the_noise(tmp_path,
                                                                             tiny_encoder):
    """Why the state is kept: a fresh AdamW's first step moves every coordinate by its full rate,
    whatever the noise; with the moments of earlier noisy steps it moves them less."""
    model, splits = setup(tiny_encoder)
    memory = _memory(tmp_path)
    noisy = dict(sample_rate=1.0, noise_multiplier=5.0, max_grad_norm=1.0)
    warmed = make_optimizer(model, FAST)
    _dp_round(model, splits["train"], steps=8, optimizer=warmed, **noisy)
    memory.save(warmed, 1)

    moves = {}
    for arm in ("fresh", "kept"):
        optimizer = make_optimizer(model, FAST)
        if arm == "kept":
            memory.restore(optimizer, 2)
        start = trainable_state(model)
        _dp_round(model, splits["train"], steps=1, optimizer=optimizer, noise_seed=9, **noisy)
        moves[arm] = _adapter_move(start, trainable_state(model)) / FAST.learning_rate
        load_trainable_state(model, start)
    assert moves["fresh"] == pytest.approx(1.0, abs=0.02)  # a sign step on every coordinate
    assert moves["kept"] < 0.6


def test_a_state_for_other_parameters_is_refused_with_its_file(tmp_path, tiny_encoder):
    model, splits = setup(tiny_encoder)
    memory = _memory(tmp_path)
    trained = make_optimizer(model, FAST)
    _dp_round(model, splits["train"], steps=1, optimizer=trained)
    memory.save(trained, 1)
    groups = [len(g["params"]) for g in trained.param_groups]
    for p in model.heads.parameters():
        p.requires_grad_(False)
    adapter_only = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    expected = (r"after-round-1\.pt: optimizer state for parameter groups of sizes \[\d+, \d+\]; "
                r"this round's optimizer has \[\d+\]")
    with pytest.raises(OptimizerStateMismatch, match=expected):
        memory.restore(adapter_only, 2)
    # Same parameter count, other shapes (e.g. another LoRA rank): refused too, not a crash later.
    reshaped = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(3))
                                              for _ in range(n)]} for n in groups])
    expected = (r"after-round-1\.pt: optimizer state of parameter 0 has shape \[\(\d+, \d+\)\]; "
                r"this round's parameter has \(3,\)")
    with pytest.raises(OptimizerStateMismatch, match=expected):
        memory.restore(reshaped, 2)
