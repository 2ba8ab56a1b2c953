"""client.private_train: DP-SGD with opacus on LoRA, encoder and Llama bases, joint tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client.data import encode_site
from client.evaluate import evaluate_split
from client.model import ModelSettings, build_model, load_tokenizer, trainable_state
from client.private_train import noise_generators, train_steps_private
from client.train import OptimizerSettings
from tests.tiny_models import count_forwards, keyword_table, without_dropout

CPU = torch.device("cpu")
TASKS = ("mortality", "los", "readmission")
FAST = OptimizerSettings(learning_rate=3e-3, head_learning_rate=3e-2)


def setup(base: Path, *, rows: int = 64, max_length: int = 24, device: torch.device = CPU):
    # The head path on either base; DP with answer-letter scoring is in test_letter_scoring.py.
    settings = ModelSettings(base=str(base), max_length=max_length, tasks=TASKS, seed=0,
                             scoring="head")
    splits = encode_site(keyword_table(rows), load_tokenizer(settings), TASKS,
                         max_length=max_length)
    return build_model(settings, device=device), splits


def _dp_round(model, train, **overrides):
    kwargs = dict(steps=2, sample_rate=0.25, noise_multiplier=1.0, max_grad_norm=1.0,
                  optimizer=FAST, seed=0, noise_seed=1)
    return train_steps_private(model, train, **{**kwargs, **overrides})


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
               for m in model.modules())


def test_one_dp_step_moves_every_adapter_and_head_tensor(tiny_base: Path) -> None:
    """The opacus #820 / peft #3409 failure: LoRA weights that never move under DP."""
    model, splits = setup(tiny_base)
    before = trainable_state(model)
    hooks = _hooks(model)
    _dp_round(model, splits["train"], steps=1)
    after = trainable_state(model)
    adapter = [k for k in before if k.startswith("adapter.")]
    assert adapter and len(before) == len(after)
    assert all(not torch.equal(torch.as_tensor(before[k]), torch.as_tensor(after[k]))
               for k in before)
    assert _hooks(model) == hooks  # opacus's hooks are gone: the cached model is clean again
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())


def test_noise_is_what_changes_the_update(tiny_encoder: Path) -> None:
    """Same data, batches (q = 1) and dropout: without noise two noise seeds agree exactly; with
    noise they differ."""

    def spread(noise_multiplier: float) -> float:
        states = []
        for noise_seed in (1, 2):
            model, splits = setup(tiny_encoder)
            _dp_round(model, splits["train"], steps=1, sample_rate=1.0,
                      noise_multiplier=noise_multiplier, noise_seed=noise_seed)
            states.append(trainable_state(model))
        return sum(float(torch.as_tensor(states[0][k] - states[1][k]).abs().sum())
                   for k in states[0])

    assert spread(0.0) == 0.0
    assert spread(1.0) > 0.0


def test_a_cpu_site_draws_batches_and_noise_from_one_generator() -> None:
    sampling, noise = noise_generators(7, CPU)
    assert sampling is noise and sampling.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_site_trains_under_dp_with_noise_drawn_on_the_gpu(tiny_base: Path) -> None:
    """torch refuses a CPU generator for a CUDA draw, so the noise gets its own generator there;
    the Poisson batches stay on the CPU. Noise must still be what separates two noise seeds."""
    cuda = torch.device("cuda")
    sampling, noise = noise_generators(7, cuda)
    assert (sampling.device.type, noise.device.type) == ("cpu", "cuda")
    states = {}
    for noise_multiplier, noise_seed in ((1.0, 1), (1.0, 2), (0.0, 1), (0.0, 2)):
        model, splits = setup(tiny_base, device=cuda)
        before = trainable_state(model)
        _dp_round(model, splits["train"], steps=2, sample_rate=1.0,
                  noise_multiplier=noise_multiplier, noise_seed=noise_seed)
        assert all(p.device.type == "cuda" for p in model.parameters())
        after = states[noise_multiplier, noise_seed] = trainable_state(model)
        assert all(not (before[k] == after[k]).all() for k in before)
    differs = [not (states[1.0, 1][k] == states[1.0, 2][k]).all() for k in before]
    assert all(differs)
    quiet = [torch.allclose(torch.as_tensor(states[0.0, 1][k]), torch.as_tensor(states[0.0, 2][k]),
                            atol=1e-6) for k in before]
    assert all(quiet)


def test_the_same_noise_seed_replays_a_round_exactly(tiny_encoder: Path) -> None:
    states = []
    for _ in range(2):
        model, splits = setup(tiny_encoder)
        _dp_round(model, splits["train"], steps=3)
        states.append(trainable_state(model))
    assert all((states[0][k] == states[1][k]).all() for k in states[0])


def test_an_empty_poisson_batch_still_takes_a_noisy_step(tiny_encoder: Path) -> None:
    model, splits = setup(tiny_encoder)
    before = trainable_state(model)
    result = _dp_round(model, splits["train"], steps=3, sample_rate=1e-9)  # every batch empty
    assert result.examples == 0 and result.steps == 3
    after = trainable_state(model)
    assert all(not (before[k] == after[k]).all() for k in before)  # pure noise moved them


def test_the_functorch_mode_gives_the_same_update_as_hooks(tiny_encoder: Path) -> None:
    states = []
    for mode in ("hooks", "functorch"):
        model, splits = setup(tiny_encoder)
        _dp_round(model, splits["train"], steps=2, grad_sample_mode=mode)
        states.append(trainable_state(model))
    for k in states[0]:
        assert torch.allclose(torch.as_tensor(states[0][k]), torch.as_tensor(states[1][k]),
                              atol=1e-5), k


def test_bad_arguments_are_refused(tiny_encoder: Path) -> None:
    model, splits = setup(tiny_encoder)
    with pytest.raises(ValueError, match="`grad_sample_mode` is 'ghost'"):
        _dp_round(model, splits["train"], grad_sample_mode="ghost")
    with pytest.raises(ValueError, match="`sample_rate` is 0"):
        _dp_round(model, splits["train"], sample_rate=0)


@pytest.mark.slow
def test_dp_training_with_little_noise_still_learns(tiny_base: Path) -> None:
    """The non-DP learning test's budget (120 steps of 16 from 192 encounters), with DP."""
    model, splits = setup(tiny_base, rows=256, max_length=32)
    before = evaluate_split(model, splits["test"], TASKS, batch_size=32, seed=0, n_resamples=10)
    _dp_round(model, splits["train"], steps=120, sample_rate=16 / 192, noise_multiplier=0.1,
              max_grad_norm=1.0)
    after = evaluate_split(model, splits["test"], TASKS, batch_size=32, seed=0, n_resamples=10)
    # Measured 0.83 for both bases (1.0 and 0.93 without noise, 0.82 and 0.74 at σ = 0.3).
    assert after["mortality.auroc"] > 0.75
    assert after["mortality.auroc"] > before["mortality.auroc"] + 0.1


def test_a_poisson_batch_taken_in_pieces_is_the_same_dp_step(tiny_encoder: Path,
                                                            monkeypatch) -> None:
    """opacus's skipped steps: pieces of at most 5 encounters, clipped one by one and summed,
    then one noise draw and one update, equal to the batch at once (same noise seed)."""
    states, forwards = [], []
    for pieces in (0, 5):
        model, splits = setup(tiny_encoder)
        without_dropout(model)
        forwards.append(count_forwards(model, monkeypatch))
        _dp_round(model, splits["train"], steps=2, sample_rate=0.5, max_physical_batch_size=pieces)
        states.append(trainable_state(model))
    whole, cut = forwards
    assert len(whole) == 2 and all(size > 5 for size in whole)
    assert sum(cut) == sum(whole) and max(cut) <= 5 and len(cut) > len(whole)
    for key, value in states[0].items():
        torch.testing.assert_close(torch.as_tensor(states[1][key]), torch.as_tensor(value),
                                   rtol=1e-5, atol=1e-6)
