"""Client side of the LoRA-aware strategies: FedProx's pull (with and without DP), FFA-LoRA's
frozen A, FLoRA's fold into the base, and the fault drill."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from client.adapter_mode import (
    corrupt_update,
    fold_into_base,
    load_global_state,
    lora_layers,
    message_adapter_mode,
    sent_state,
    set_trainable,
    site_model_settings,
)
from client.data import encode_site
from client.model import build_model, load_tokenizer, load_trainable_state, trainable_state
from client.privacy.dp_sgd import train_steps_private
from client.run_config import InvalidRunConfig
from client.train import train_steps
from sites.config import InvalidSiteConfig, load_site
from sites.site_settings import FaultSettings, TrainingSettings
from tests.model_settings import lora_settings, model_settings, optimizer_settings
from tests.tiny_models import keyword_table

CPU = torch.device("cpu")
TASKS = ("mortality", "los")
SAME_RATE = optimizer_settings(learning_rate=0.01, head_learning_rate=0.01)


def _setup(base: Path, *, rank: int = 4):
    settings = model_settings(base=str(base), max_length=24, tasks=TASKS, seed=0, scoring="head",
                             lora=lora_settings(r=rank, alpha=8, dropout=0.0))
    splits = encode_site(keyword_table(48), load_tokenizer(settings), TASKS, max_length=24)
    return settings, build_model(settings, device=CPU), splits["train"]


def _moved(before: dict, model) -> dict[str, float]:
    return {k: float(np.abs(v - before[k]).max()) for k, v in trainable_state(model).items()}


# --- FedProx ---------------------------------------------------------------------------------

@pytest.mark.parametrize("private", [False, True], ids=["plain", "dp"])
def test_a_full_proximal_pull_undoes_every_step_and_none_leaves_them(tiny_encoder, private):
    """With lr·μ = 1 the pull returns each parameter to the round's start after every step, so
    nothing moves — also after DP-SGD's noisy step, which the pull follows rather than joins."""
    _, model, train = _setup(tiny_encoder)
    start = trainable_state(model)

    def run(mu):
        if private:
            return train_steps_private(model, train, steps=3, sample_rate=0.25,
                                       noise_multiplier=1.0, max_grad_norm=1.0,
                                       optimizer=SAME_RATE, seed=0, noise_seed=1, proximal_mu=mu)
        return train_steps(model, train, steps=3, batch_size=8, optimizer=SAME_RATE, seed=0,
                           proximal_mu=mu)

    run(1.0 / SAME_RATE.learning_rate)
    assert max(_moved(start, model).values()) < 1e-6
    run(0.0)
    assert min(_moved(start, model).values()) > 0  # every tensor moves without the pull


def test_a_partial_pull_keeps_the_adapter_nearer_the_start(tiny_encoder):
    _, model, train = _setup(tiny_encoder)
    start = trainable_state(model)
    distances = {}
    for mu in (0.0, 30.0):
        load_trainable_state(model, start)
        train_steps(model, train, steps=4, batch_size=8, optimizer=SAME_RATE, seed=0,
                    proximal_mu=mu)
        distances[mu] = sum(float(np.square(v - start[k]).sum())
                            for k, v in trainable_state(model).items())
    assert distances[30.0] < 0.8 * distances[0.0]


# --- FFA-LoRA --------------------------------------------------------------------------------

def test_ffa_trains_b_and_heads_only_and_sends_no_a(tiny_encoder):
    _, model, train = _setup(tiny_encoder)
    start = trainable_state(model)
    set_trainable(model, "ffa")
    train_steps(model, train, steps=2, batch_size=8, optimizer=SAME_RATE, seed=0)
    moved = _moved(start, model)
    assert all(moved[k] == 0 for k in moved if ".lora_A." in k)
    assert all(moved[k] > 0 for k in moved if ".lora_A." not in k)
    sent = sent_state(model, "ffa")
    assert sent and not any(".lora_A." in k for k in sent)
    a_bytes = sum(v.nbytes for k, v in start.items() if ".lora_A." in k)
    assert sum(v.nbytes for v in sent.values()) == sum(v.nbytes for v in start.values()) - a_bytes
    set_trainable(model, "full")  # the next message of another mode trains A again
    assert all(p.requires_grad for n, p in model.backbone.named_parameters() if "lora_" in n)


def test_an_unknown_adapter_mode_is_refused():
    with pytest.raises(InvalidRunConfig, match=r"`adapter-mode` is 'half'; expected one of full"):
        message_adapter_mode({"adapter-mode": "half"})


# --- FLoRA -----------------------------------------------------------------------------------

def test_a_fold_makes_the_base_compute_base_plus_the_global_update(tiny_encoder):
    """Folding stacked factors into the base and zeroing the site's adapter gives the same outputs
    as a peft model that carries those factors as its adapter; unfolding restores the base."""
    settings, model, train = _setup(tiny_encoder, rank=4)
    layers = lora_layers(model)
    rng = np.random.default_rng(0)
    fold = {}
    for name, layer in layers.items():
        weight = layer.get_base_layer().weight
        fold[f"fold.{name}.lora_A.weight"] = rng.normal(size=(6, weight.shape[1])).astype("f4") * .1
        fold[f"fold.{name}.lora_B.weight"] = rng.normal(size=(weight.shape[0], 6)).astype("f4") * .1
    heads = {k: v for k, v in trainable_state(model).items() if k.startswith("head.")}
    load_global_state(model, {**fold, **heads}, "flora", seed=3)
    index = torch.arange(8)
    model.eval()
    with torch.no_grad():
        folded = model.task_logits(train, index, TASKS)
    # The same update as a rank-6 adapter with scaling 1 on an unfolded base
    reference = build_model(replace(settings, lora=lora_settings(r=6, alpha=6, dropout=0.0)),
                            device=CPU)
    load_trainable_state(reference, {**{"adapter." + k[5:]: v for k, v in fold.items()}, **heads})
    reference.eval()
    with torch.no_grad():
        expected = reference.task_logits(train, index, TASKS)
    for task in TASKS:
        torch.testing.assert_close(folded[task], expected[task], atol=1e-5, rtol=1e-4)
    assert all(float(np.abs(v).max()) == 0 for k, v in trainable_state(model).items()
               if ".lora_B." in k)  # the site's own adapter starts afresh
    original = build_model(settings, device=CPU)
    fold_into_base(model, {})
    for name, layer in lora_layers(original).items():
        torch.testing.assert_close(layers[name].get_base_layer().weight,
                                   layer.get_base_layer().weight, atol=0, rtol=0)


def test_a_site_rank_needs_flora(tiny_encoder):
    settings = model_settings(base=str(tiny_encoder), tasks=TASKS, lora=lora_settings(r=8))

    class Site:
        name = "north"
        training = TrainingSettings(lora_rank=4)

    assert site_model_settings(settings, Site, "flora").lora.r == 4
    with pytest.raises(InvalidRunConfig, match=r"`training.lora_rank` is 4 but the run's "
                                               r"adapters have rank 8; per-site ranks need"):
        site_model_settings(settings, Site, "full")


# --- the fault drill -------------------------------------------------------------------------

@pytest.mark.parametrize("update,factor,expected", [("sign-flip", 1.0, -1.0), ("scale", 10.0, 10.0),
                                                    ("sign-flip", 3.0, -3.0)])
def test_a_faulty_site_sends_a_flipped_or_scaled_update(update, factor, expected):
    received = {"adapter.x.lora_A.weight": np.ones((2, 3), "f4"), "head.t.bias": np.zeros(2, "f4")}
    trained = {"adapter.x.lora_A.weight": np.full((2, 3), 1.5, "f4"),
               "head.t.bias": np.array([1.0, -2.0], "f4"),
               "adapter.y.lora_B.weight": np.full((3, 2), 0.5, "f4")}  # fresh under FLoRA
    sent = corrupt_update(trained, received, FaultSettings(update=update, factor=factor))
    np.testing.assert_allclose(sent["adapter.x.lora_A.weight"], 1 + expected * 0.5)
    np.testing.assert_allclose(sent["head.t.bias"], [expected, -2 * expected])
    np.testing.assert_allclose(sent["adapter.y.lora_B.weight"], expected * 0.5)


@pytest.mark.parametrize("block,message", [
    ("fault: {update: flip}", r"`fault.update` is 'flip'; expected 'sign-flip' or 'scale'"),
    ("fault: {factor: 2}", r"`fault.update` is missing; expected 'sign-flip' or 'scale'"),
    ("fault: {update: scale, factor: 0}", r"`fault.factor` is 0; expected a finite number > 0"),
    ("training: {lora_rank: -2}", r"`training.lora_rank` is -2; expected an integer >= 1, or 0"),
])
def test_bad_fault_and_rank_settings_name_the_key(tmp_path, block, message):
    path = tmp_path / "site.yaml"
    path.write_text("name: north\nrole: train\ndata: {path: t.parquet}\ntasks: [mortality]\n"
                    + block + "\n")
    with pytest.raises(InvalidSiteConfig, match=message):
        load_site(path)


def test_ffa_under_dp_sgd_leaves_a_untouched_and_noises_the_rest(tiny_encoder):
    _, model, train = _setup(tiny_encoder)
    start = trainable_state(model)
    set_trainable(model, "ffa")
    train_steps_private(model, train, steps=2, sample_rate=0.25, noise_multiplier=1.0,
                        max_grad_norm=1.0, optimizer=SAME_RATE, seed=0, noise_seed=1)
    moved = _moved(start, model)
    assert all(moved[k] == 0 for k in moved if ".lora_A." in k)
    assert all(moved[k] > 0 for k in moved if ".lora_A." not in k)
    set_trainable(model, "full")
