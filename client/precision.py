"""Mixed precision on a site's GPU: bf16 weights and autocast where the device supports it, fp32
elsewhere.

A hospital with a GPU should use it at full speed and hold a large base: on CUDA devices with bf16
support the frozen base's weights are *loaded* in bf16 (half the memory: Lang1-7B in 14 GB, not
28) and the forward pass runs under `torch.autocast(dtype=bfloat16)` (matmuls and attention in
bf16, reductions and the loss in fp32). The LoRA and head *parameters* stay fp32 (peft keeps an
adapter fp32 on a bf16 base), so the optimizer steps in fp32. On a CPU, or a GPU without bf16,
nothing changes. What leaves the site is always fp32 (`trainable_state` casts), so a bf16 site and
a CPU site average the same tensors.

DP-SGD stays in fp32: opacus computes each example's gradient from the layer's activations and
backprops, and per-example norms in bf16 would make the clipping — the privacy guarantee — depend
on rounding.
"""

from __future__ import annotations

import contextlib

import torch


def uses_bf16(device: torch.device) -> bool:
    """True where this site's forward passes run under bf16 autocast."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def base_weights_dtype(device: torch.device, *, private: bool) -> torch.dtype:
    """bf16 for the frozen base where the device runs bf16 and the site trains without DP;
    fp32 otherwise (DP-SGD runs in fp32 throughout, see above)."""
    return torch.bfloat16 if uses_bf16(device) and not private else torch.float32


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a device that runs bf16 (`uses_bf16`); a no-op context anywhere else."""
    if uses_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
