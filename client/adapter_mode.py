"""How a site holds, trains and sends the adapter, as the server's strategy asks in each message.

Most strategies exchange the whole adapter (`full`: LoRA A and B and the heads). Two exchange less
or something else, and the site must know which, because it changes what it loads, what it trains
and what it may send:

- `ffa` (FFA-LoRA): every site's A is the one the server sent at the start — built from the seed
  all sites share — and stays frozen; only B and the heads train and leave the site. The server's
  average of the B's, times the shared A, is then exactly the average of the sites' updates B·A,
  and the upload is about half.
- `flora` (FLoRA): the server sends the global update so far as stacked factors (`fold.*` keys,
  any rank); the site folds it into its frozen base weights (below), trains a fresh
  LoRA of its *own* rank (`training.lora_rank` in its YAML) and sends that with the heads.

The mode travels in the message config (`adapter-mode`), set by the strategy; a message without it
is `full`. The mode names, that key and the tensor keys are the wire's (strategies/exchange.py).
Under any mode a site sends only tensors its own model declares (client/egress.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import get_args

import numpy as np
import torch
from flwr.app import ConfigRecord

from client.model import ModelSettings, TaskModel, load_trainable_state, trainable_state
from client.run_config import InvalidRunConfig
from sites.config import SiteConfig
from sites.site_settings import FaultSettings
from strategies.exchange import (
    FOLD_PREFIX,
    HEAD_PREFIX,
    LORA_A,
    MODE_KEY,
    AdapterMode,
    fold_pairs,
    is_lora_a,
)


def message_adapter_mode(config: ConfigRecord) -> AdapterMode:
    """The message's `adapter-mode`; `full` when it has none."""
    mode = str(config.get(MODE_KEY, "full"))
    if mode not in get_args(AdapterMode):
        raise InvalidRunConfig(f"message: `{MODE_KEY}` is {mode!r}; expected one of "
                               + ", ".join(get_args(AdapterMode)))
    return mode  # type: ignore[return-value]


def site_model_settings(settings: ModelSettings, site: SiteConfig,
                        mode: AdapterMode) -> ModelSettings:
    """The model this site builds: the run's, at the site's own LoRA rank under `flora`.

    A site that sets its own rank under any other mode is refused here, before anything is loaded:
    averaging tensors of different shapes has no meaning, and only FLoRA's stacking combines them.
    """
    rank = site.training.lora_rank
    if rank == 0 or rank == settings.lora.r:
        return settings
    if mode != "flora":
        raise InvalidRunConfig(
            f"site {site.name!r}: `training.lora_rank` is {rank} but the run's adapters have "
            f"rank {settings.lora.r}; per-site ranks need `strategy = \"flora\"` (or remove "
            "`lora_rank` from the site YAML)")
    return replace(settings, lora=replace(settings.lora, r=rank))


def set_trainable(model: TaskModel, mode: AdapterMode) -> None:
    """Freeze LoRA A under `ffa`; every adapter tensor trains otherwise. The model object is shared
    by the sites of a process and reused across messages, so this is set on every message."""
    for name, parameter in model.backbone.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(not (mode == "ffa" and LORA_A in name))


def sent_state(model: TaskModel, mode: AdapterMode) -> dict[str, np.ndarray]:
    """What a training reply carries: the model's federated state, without A under `ffa`."""
    state = trainable_state(model)
    if mode == "ffa":
        state = {k: v for k, v in state.items() if not is_lora_a(k)}
    return state


def load_global_state(model: TaskModel, arrays: Mapping[str, np.ndarray], mode: AdapterMode,
                      *, seed: int) -> None:
    """Put the server's global state into `model`.

    `full` and `ffa` messages carry the whole adapter (the shared frozen A included) and load as
    they are. A `flora` message carries heads and the stacked global update: that is folded into
    the base and the site's own adapter starts afresh (B = 0, A drawn from `seed`), so the model
    computes exactly base + global update until it trains.
    """
    if mode != "flora":
        fold_into_base(model, {})  # a model folded for an earlier FLoRA message gets its base back
        load_trainable_state(model, arrays)
        return
    unexpected = sorted(k for k in arrays if not (k.startswith(HEAD_PREFIX)
                                                  or k.startswith(FOLD_PREFIX)))
    if unexpected:
        raise KeyError(f"a `flora` message carries `{unexpected[0]}`; expected only "
                       f"`{HEAD_PREFIX}*` and `{FOLD_PREFIX}*` tensors")
    fold_into_base(model, {k: v for k, v in arrays.items() if k.startswith(FOLD_PREFIX)})
    reset_adapter(model, seed=seed)
    state = trainable_state(model)  # the fresh adapter, and the heads to overwrite
    heads = {k: v for k, v in arrays.items() if k.startswith(HEAD_PREFIX)}
    load_trainable_state(model, {**state, **heads})


# -----------------------------------------------------------------------------------------------
# A faulty site for robustness drills: every update it sends is flipped or scaled.
#
# Robust aggregation (strategies/robust.py) is only believable if it is shown to hold against a site
# that misbehaves. A site whose YAML has a `fault` block (sites.site_settings.FaultSettings) sends
# received + f(trained − received) instead of what it trained: −factor·update for `sign-flip`,
# factor·update for `scale`. Under FLoRA, where the site's adapter is fresh each round, the update is
# its product B·A, so B alone is flipped or scaled. It runs after training and before the egress
# check, exactly where a compromised site would tamper with its reply.
# -----------------------------------------------------------------------------------------------


log = logging.getLogger(__name__)


def corrupt_update(sent: Mapping[str, np.ndarray], received: Mapping[str, np.ndarray],
                   fault: FaultSettings) -> dict[str, np.ndarray]:
    """`sent` with every tensor's update (against `received`, or zero for a fresh LoRA B)
    flipped or scaled; a fresh LoRA A, which carries no update by itself, is left alone."""
    sign = -1.0 if fault.update == "sign-flip" else 1.0
    out = {}
    for key, value in sent.items():
        if key in received:
            base = np.asarray(received[key], dtype=np.float32)
        elif ".lora_B." in key:
            base = np.zeros_like(value)
        else:
            out[key] = value
            continue
        out[key] = (base + sign * fault.factor * (value - base)).astype(np.float32)
    log.warning("fault drill: the update sent is %s × %g", fault.update, fault.factor)
    return out


# -----------------------------------------------------------------------------------------------
# FLoRA at a site: the federation's update so far, folded into the frozen base weights.
#
# Under FLoRA the global update is the stack of every site's factors (strategies/flora.py), of a rank
# no site trains at and that grows each round, so it cannot be loaded into the site's adapter.
# Instead, for every LoRA-adapted layer the site sets `W = W₀ + B_g·A_g` (W₀ = the base as loaded,
# kept aside the first time) and trains a fresh adapter of its own rank on top. The model then
# computes exactly base + global update, and what it learns this round is again a plain LoRA delta.
#
# W₀ is restored from the kept copy before each fold (never by subtracting the previous delta), so a
# fold is exact and a later non-FLoRA message sees the untouched base.
# -----------------------------------------------------------------------------------------------

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
