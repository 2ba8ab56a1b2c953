"""The answer-letter model computes the same thing on a GPU as on the CPU, stage by stage.

On an H200 (2026-12-04) DP-SGD on the tiny letter Llama learned nothing on CUDA (test AUROC 0.46)
where the same test on that machine's CPU reached 0.90, and the decoder's transfer experiment
scored every task near 0.50 after a federated round. Which stage diverges was not found in the
time the machine was lent. Each test here compares one stage, the same weights and rows on both
devices, so a GPU run names it: the forward pass (fp32, no autocast), the gradients of one step,
one DP-SGD step without noise (opacus's per-sample gradients, clipping, the optimizer),
evaluation under the bf16 autocast a GPU site scores with, and five task prompts packed into one
pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.data import encode_site
from client.evaluate import evaluate_split
from client.model import build_model, load_tokenizer, load_trainable_state, trainable_state
from client.privacy.dp_sgd import train_steps_private
from client.train import joint_loss
from tests.model_settings import lora_settings, model_settings, optimizer_settings
from tests.tiny_models import keyword_table

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CPU = torch.device("cpu")
GPU = torch.device("cuda")
TASKS = ("mortality",)


def _settings(base: Path):
    # no LoRA dropout: both devices must compute the same function, not draw the same masks
    return model_settings(base=str(base), max_length=128, tasks=TASKS,
                          lora=lora_settings(dropout=0.0))


def _pair(base: Path, rows: int = 64):
    """The same model on both devices, its adapter set to seeded non-zero values (a fresh
    adapter's B is zero, which would hide A's path), and the encoded keyword rows."""
    settings = _settings(base)
    splits = encode_site(keyword_table(rows), load_tokenizer(settings), TASKS, max_length=128,
                         scoring="letters")
    on_cpu = build_model(settings, device=CPU)
    generator = np.random.default_rng(0)
    state = {k: (0.05 * generator.standard_normal(v.shape)).astype(np.float32)
             for k, v in trainable_state(on_cpu).items()}
    load_trainable_state(on_cpu, state)
    on_gpu = build_model(settings, device=GPU)
    load_trainable_state(on_gpu, state)
    return on_cpu, on_gpu, splits


def test_the_forward_pass_matches(letter_llama: Path) -> None:
    on_cpu, on_gpu, splits = _pair(letter_llama)
    index = torch.arange(splits["train"].size)
    with torch.no_grad():
        expected = on_cpu.eval().task_logits(splits["train"], index, TASKS)["mortality"]
        got = on_gpu.eval().task_logits(splits["train"], index, TASKS)["mortality"].cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_the_gradients_of_one_step_match(letter_llama: Path) -> None:
    on_cpu, on_gpu, splits = _pair(letter_llama)
    index = torch.arange(16)
    grads = []
    for model in (on_cpu, on_gpu):
        model.train()
        joint_loss(model, splits["train"], index, TASKS).backward()
        grads.append({n: p.grad.detach().cpu() for n, p in model.named_parameters()
                      if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, expected in grads[0].items():
        assert expected.abs().max() > 0, name
        torch.testing.assert_close(grads[1][name], expected, atol=1e-5, rtol=1e-3, msg=name)


def test_one_dp_step_without_noise_matches(letter_llama: Path) -> None:
    """σ = 0 and every row sampled (q = 1): what is left is opacus's per-sample gradients, their
    clipping and sum, and the optimizer, which must agree across devices."""
    on_cpu, on_gpu, splits = _pair(letter_llama, rows=32)
    states = []
    for model in (on_cpu, on_gpu):
        train_steps_private(model, splits["train"], steps=1, sample_rate=1.0,
                            noise_multiplier=0.0, max_grad_norm=1.0,
                            optimizer=optimizer_settings(learning_rate=1e-2), seed=0,
                            noise_seed=1)
        states.append(trainable_state(model))
    for key, expected in states[0].items():
        np.testing.assert_allclose(states[1][key], expected, atol=1e-5, rtol=1e-3, err_msg=key)


def test_evaluation_under_bf16_autocast_keeps_the_ranking(letter_llama: Path) -> None:
    """A GPU site scores under bf16 autocast; the AUROC of the same adapter must stay within
    0.02 of the CPU's fp32 one on rows the adapter separates."""
    on_cpu, on_gpu, splits = _pair(letter_llama, rows=256)
    train_steps_private(on_cpu, splits["train"], steps=60, sample_rate=16 / 192,
                        noise_multiplier=0.1, max_grad_norm=1.0,
                        optimizer=optimizer_settings(learning_rate=1e-2), seed=0, noise_seed=1)
    load_trainable_state(on_gpu, trainable_state(on_cpu))
    scores = [evaluate_split(model, splits["test"], TASKS, batch_size=64, seed=0,
                             n_resamples=10)["mortality.auroc"] for model in (on_cpu, on_gpu)]
    assert scores[0] >= 0.8  # the adapter learned the keyword (as on the CPU in test_letter_scoring)
    assert scores[1] == pytest.approx(scores[0], abs=0.02)


def test_packed_prompts_match_the_cpu_and_one_pass_per_task(letter_llama: Path) -> None:
    """Five tasks in one pass (client/prompt_packing.py): on CUDA the block mask goes to another
    attention kernel than on the CPU; the logits must still be the CPU's and those of one pass
    per task on the GPU."""
    tasks = ("readmission", "mortality", "los", "comorbidity", "denial")
    settings = model_settings(base=str(letter_llama), max_length=110, tasks=tasks,
                              lora=lora_settings(dropout=0.0))
    table = keyword_table(32)
    for column in ("admission_note", "discharge_note"):  # cut at a different token per task
        table[column] = (table[column] + " ") * 6
    data = encode_site(table, load_tokenizer(settings), tasks, max_length=110,
                       scoring="letters")["train"]
    models = [build_model(settings, device=device) for device in (CPU, GPU)]
    generator = np.random.default_rng(0)
    state = {k: (0.05 * generator.standard_normal(v.shape)).astype(np.float32)
             for k, v in trainable_state(models[0]).items()}
    index = torch.arange(16)
    with torch.no_grad():
        for model in models:
            load_trainable_state(model, state)
            assert model.eval().packs_prompts
        expected = models[0].task_logits(data, index, tasks)
        packed = models[1].task_logits(data, index, tasks)
        single = {t: models[1].task_logits(data, index, (t,))[t] for t in tasks}
    for task in tasks:
        torch.testing.assert_close(packed[task].cpu(), expected[task], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(packed[task], single[task], atol=1e-4, rtol=1e-4)
