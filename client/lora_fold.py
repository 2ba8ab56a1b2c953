"""FLoRA at a site: the federation's update so far, folded into the frozen base weights.

Under FLoRA the global update is the stack of every site's factors (strategies/flora.py), of a rank
no site trains at and that grows each round, so it cannot be loaded into the site's adapter.
Instead, for every LoRA-adapted layer the site sets `W = W₀ + B_g·A_g` (W₀ = the base as loaded,
kept aside the first time) and trains a fresh adapter of its own rank on top. The model then
computes exactly base + global update, and what it learns this round is again a plain LoRA delta.

W₀ is restored from the kept copy before each fold (never by subtracting the previous delta), so a
fold is exact and a later non-FLoRA message sees the untouched base.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from client.model import TaskModel
from strategies.exchange import fold_pairs

_KEPT_BASE = "_lang1_unfolded_base"
"""Attribute of the model holding W₀ of every adapted layer once a fold has been applied."""


def lora_layers(model: TaskModel) -> dict[str, torch.nn.Module]:
    """peft's LoRA layers of the backbone, by module name (the prefix of their state-dict keys)."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.backbone.named_modules()
            if isinstance(module, LoraLayer)}


def fold_into_base(model: TaskModel, fold: Mapping[str, np.ndarray]) -> None:
    """Set each adapted layer's base weight to W₀ + B·A of its fold pair (W₀ where it has none)."""
    kept = getattr(model, _KEPT_BASE, None)
    if not fold and kept is None:
        return  # never folded: the base is W₀ already
    layers = lora_layers(model)
    pairs = fold_pairs(fold)
    unknown = sorted(set(pairs) - set(layers))
    if unknown:
        raise KeyError(f"fold names module `{unknown[0]}`, which has no LoRA layer in this model "
                       "(expected the same base and target modules at every site)")
    if kept is None:
        kept = {name: layer.get_base_layer().weight.detach().clone()
                for name, layer in layers.items()}
        setattr(model, _KEPT_BASE, kept)
    with torch.no_grad():
        for name, layer in layers.items():
            weight = layer.get_base_layer().weight
            weight.copy_(kept[name])
            if name not in pairs:
                continue
            a, b = (torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in pairs[name])
            delta = b @ a
            if getattr(layer, "fan_in_fan_out", False):  # GPT-2 style Conv1D stores W transposed
                delta = delta.T
            if tuple(delta.shape) != tuple(weight.shape):
                raise ValueError(f"fold of `{name}`: B·A has shape {tuple(delta.shape)}; expected "
                                 f"the base weight's {tuple(weight.shape)}")
            weight.add_(delta.to(device=weight.device, dtype=weight.dtype))


def reset_adapter(model: TaskModel, *, seed: int) -> None:
    """A fresh adapter, as peft initialises one: A drawn from `seed` (Kaiming), B = 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in lora_layers(model).values():
            for adapter in layer.lora_A.keys():
                layer.reset_lora_parameters(adapter, True)
