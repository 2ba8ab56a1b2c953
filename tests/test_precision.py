"""bf16 autocast on a GPU site, fp32 everywhere else and always fp32 on the wire."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.data import encode_site
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
