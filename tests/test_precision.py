"""bf16 autocast on a GPU site, fp32 everywhere else and always fp32 on the wire."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.data import encode_site
from client.evaluate import evaluate_split
from client.model import build_model, load_tokenizer, trainable_state
from client.precision import autocast, uses_bf16
from client.train import train_steps
from tests.model_settings import model_settings, optimizer_settings
from tests.tiny_models import keyword_table


def test_a_cpu_site_runs_in_fp32():
    cpu = torch.device("cpu")
    assert not uses_bf16(cpu)
    with autocast(cpu):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                    reason="needs a CUDA device with bf16")
def test_a_gpu_site_trains_under_bf16_and_sends_fp32(tiny_encoder):
    cuda = torch.device("cuda")
    settings = model_settings(base=str(tiny_encoder), max_length=32, tasks=("mortality",),
                             scoring="head")
    model = build_model(settings, device=cuda)
    data = encode_site(keyword_table(64), load_tokenizer(settings), settings.tasks,
                       max_length=32)["train"]
    with autocast(cuda):
        logits = model.task_logits(data, torch.arange(4), settings.tasks)["mortality"]
    assert logits.dtype == torch.bfloat16
    before = trainable_state(model)
    train_steps(model, data, steps=3, batch_size=8, optimizer=optimizer_settings(), seed=0)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    after = trainable_state(model)
    assert all(v.dtype == np.float32 for v in after.values())
    assert any(not np.array_equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("private", [False, True])
def test_a_bf16_site_loads_its_base_in_bf16_unless_it_trains_with_dp(tiny_base, monkeypatch,
                                                                    private):
    """The GPU path, run on the CPU: `uses_bf16` is what a CUDA device with bf16 answers, and
    autocast then runs on the CPU in bf16 exactly as it would on the GPU."""
    from client import precision

    monkeypatch.setattr(precision, "uses_bf16", lambda device: True)
    cpu = torch.device("cpu")
    dtype = precision.base_weights_dtype(cpu, private=private)
    assert dtype == (torch.float32 if private else torch.bfloat16)
    settings = model_settings(base=str(tiny_base), max_length=32, tasks=("mortality", "los"),
                              scoring="head")
    model = build_model(settings, device=cpu, base_dtype=dtype)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert frozen and all(p.dtype == dtype for p in frozen)
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # adapter and heads
    data = encode_site(keyword_table(64), load_tokenizer(settings), settings.tasks,
                       max_length=32)["train"]
    before = trainable_state(model)
    result = train_steps(model, data, steps=3, batch_size=8, optimizer=optimizer_settings(),
                         seed=0)
    after = trainable_state(model)
    assert np.isfinite(result.loss)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in after.values())
    assert all(not np.array_equal(after[k], before[k]) for k in before if ".lora_B." in k)
    scores = evaluate_split(model, data, settings.tasks, batch_size=16, seed=0, n_resamples=10)
    assert 0.0 <= scores["mortality.auroc"] <= 1.0
