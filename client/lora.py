"""The LoRA adapter's settings and how peft puts it on a base: on every transformer layer, or on
the top `layers` only (the run config's `lora-layers`), leaving the layers below exactly the
pretrained ones (client/frozen_layers.py keeps their output per note)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from client.frozen_layers import transformer_layers


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters; identical at every site (FedAvg averages matching tensors). No field
    of the run config has a default here: those live once, in pyproject.toml."""

    r: int
    """Rank of the update B·A."""
    alpha: float
    """Scaling numerator: the update is multiplied by alpha / r (the run config's `lora-alpha`)."""
    dropout: float
    """Dropout on the adapter input during training."""
    target_modules: tuple[str, ...] | None = None
    """Module names to adapt; None = peft's default for the architecture (BERT query/value,
    Llama q_proj/v_proj)."""
    layers: int = 0
    """Adapt the top `layers` transformer layers only (the run config's `lora-layers`); 0, or as
    many as the base has or more, = all. The layers below then carry nothing trainable, and a
    model with heads keeps their output per note instead of recomputing it
    (client/frozen_layers.py)."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"`lora.r` is {self.r}; expected an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`lora.dropout` is {self.dropout}; expected 0 <= dropout < 1")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("`lora.target_modules` is empty; expected module names or None")
        if self.layers < 0:
            raise ValueError(f"`lora-layers` is {self.layers}; expected 0 (all) or more")

    def config(self, base: nn.Module):
        """peft's `LoraConfig` for `base` (a transformers model)."""
        from peft import LoraConfig

        count = base.config.num_hidden_layers
        frozen = self.frozen_layers(count)
        top = {"layers_to_transform": list(range(frozen, count)),
               # named, or peft finds no layer index in a bare stack's `layers.0.…`
               "layers_pattern": transformer_layers(base)[1]} if frozen else {}
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules) if self.target_modules else None,
                          **top)

    def frozen_layers(self, num_layers: int) -> int:
        """Lowest layers of a `num_layers` base left without LoRA (0 when all are adapted)."""
        return num_layers - self.layers if 0 < self.layers < num_layers else 0


def add_lora(base: nn.Module, lora: LoraSettings, *, device: torch.device) -> nn.Module:
    """Move `base` to `device`, then wrap it with LoRA; call it inside a `fork_rng` seeded with
    the model's seed, so the same seed gives the same adapter at every site and at the server.

    Device first, then peft: LoRA layers follow their base layer's device (pitfalls: opacus #820).
    peft creates LoRA layers on the CPU generator, so a CUDA client matches a CPU server.
    """
    from peft import get_peft_model

    base.to(device)
    return get_peft_model(base, lora.config(base))
