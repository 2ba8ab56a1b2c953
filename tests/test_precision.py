"""bf16 where the device computes it natively (a GPU with bf16, a CPU with AVX512-BF16), fp32
everywhere else and always fp32 on the wire."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from client import precision
from client.data import encode_site
from client.evaluate import evaluate_split
from client.model import build_model, load_tokenizer, trainable_state
from client.precision import autocast, base_weights_dtype, uses_bf16
from client.train import train_steps
from tests.model_settings import lora_settings, model_settings, optimizer_settings
from tests.tiny_models import keyword_table

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "setting", "private", "expected"), [
    (False, "auto", False, torch.float32),  # bf16 emulated would be slower than fp32
    (True, "auto", False, torch.bfloat16),
    (True, "fp32", False, torch.float32),  # the site's YAML says so
    (True, "auto", True, torch.float32),  # DP-SGD clips in fp32
])
def test_a_cpu_site_computes_in_bf16_only_where_its_cores_do_and_it_allows(
        monkeypatch, native, setting, private, expected):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: native)
    assert uses_bf16(CPU, setting) == (native and setting == "auto")
    assert base_weights_dtype(CPU, private=private, precision=setting) == expected


def test_autocast_follows_the_base_weights():
    with autocast(CPU, torch.float32):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="`precision` is 'fp16'; expected 'auto' or 'fp32'"):
        uses_bf16(CPU, "fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                    reason="needs a CUDA device with bf16")
def test_a_gpu_site_trains_under_bf16_and_sends_fp32(tiny_encoder):
    cuda = torch.device("cuda")
    settings = model_settings(base=str(tiny_encoder), max_length=32, tasks=("mortality",),
                             scoring="head")
    model = build_model(settings, device=cuda, base_dtype=base_weights_dtype(cuda, private=False))
    assert model.base_dtype == torch.bfloat16
    data = encode_site(keyword_table(64), load_tokenizer(settings), settings.tasks,
                       max_length=32)["train"]
    with autocast(cuda, model.base_dtype):
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
    """A CPU with native bf16 (as if: this machine may lack it), the same path as a GPU's."""
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    cpu = CPU
    dtype = base_weights_dtype(cpu, private=private)
    assert dtype == (torch.float32 if private else torch.bfloat16)
    settings = model_settings(base=str(tiny_base), max_length=32, tasks=("mortality", "los"),
                              scoring="head")
    model = build_model(settings, device=cpu, base_dtype=dtype)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert frozen and all(p.dtype == dtype for p in frozen)
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # adapter and heads
    assert model.base_dtype == dtype
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


def test_a_site_runtime_computes_as_its_yaml_allows_and_keeps_each_precisions_layers_apart(
        tiny_encoder, tmp_path, monkeypatch):
    """On a CPU with native bf16 a site loads its base in bf16 unless its YAML says `precision:
    fp32`; the frozen layers' outputs computed either way are kept in two files, never mixed."""
    from client import site as site_module
    from client.state import SiteState
    from sites.config import load_consortium
    from tests.consortium_fixtures import write_table_consortium

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(site_module, "_MODELS", {})
    monkeypatch.setattr(site_module, "_SPLITS", {})
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(30))},
                                        tasks=("mortality",))
    site = load_consortium(consortium, data_root=tmp_path).sites[0]
    assert site.precision == "auto"
    settings = model_settings(base=str(tiny_encoder), max_length=24, tasks=("mortality",),
                              seed=0, scoring="head", lora=lora_settings(layers=1))
    half = site_module.site_runtime(site, settings)
    full = site_module.site_runtime(dataclasses.replace(site, precision="fp32"), settings)
    assert half.model.base_dtype == torch.bfloat16 and full.model.base_dtype == torch.float32
    assert half.model.frozen.dtype == torch.bfloat16
    folder = SiteState.open(site, half.fingerprint).frozen_layers_dir
    assert len(list(folder.iterdir())) == 2
    data = half.splits["train"]
    with autocast(half.model.device, half.model.base_dtype):
        assert half.model.task_logits(data, torch.arange(4), ("mortality",))["mortality"].dtype \
            == torch.bfloat16


def test_lang1_fl_score_loads_the_exported_model_in_the_precision_a_site_would(
        tiny_encoder, tmp_path, monkeypatch):
    """`lang1-fl score` builds the model as a site without DP on this device does, so a
    hospital's scores are the ones its evaluation computed; `--precision fp32` keeps fp32."""
    from client.adapter_export import save_adapter
    from client.score import load_exported_model

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    settings = model_settings(base=str(tiny_encoder), max_length=24, tasks=("mortality",),
                              seed=0, scoring="head")
    save_adapter(build_model(settings, device=CPU), tmp_path, settings=settings)
    loaded = {p: load_exported_model(tmp_path, device=CPU, precision=p)[0]
              for p in ("auto", "fp32")}
    assert loaded["auto"].base_dtype == torch.bfloat16
    assert loaded["fp32"].base_dtype == torch.float32
