"""Mixed precision where the device computes bf16 natively: bf16 weights and autocast there, fp32
elsewhere.

A hospital should use its hardware at full speed and hold a large base: on a CUDA device with
bf16 support, or a CPU whose cores compute bf16 natively (AVX512-BF16 or AMX: recent Xeons and
EPYCs; matmuls about 1.8 times as fast as fp32 on one core), the frozen base's weights are
*loaded* in bf16 (half the memory: Lang1-7B in 14 GB, not 28) and the forward pass runs under
`torch.autocast(dtype=bfloat16)` (matmuls and attention in bf16, reductions and the loss in
fp32). The LoRA and head *parameters* stay fp32 (peft keeps an adapter fp32 on a bf16 base), so
the optimizer steps in fp32. A CPU without native bf16 would emulate it, slower than fp32, so it
stays fp32, as does a site whose YAML says `precision: fp32`. What leaves the site is always fp32
(`trainable_state` casts), so a bf16 site and an fp32 site average the same tensors.

Whether a model computes in bf16 is read off its base's weights (`autocast`), so training,
evaluation and the kept frozen layers agree by construction.

DP-SGD stays in fp32: opacus computes each example's gradient from the layer's activations and
backprops, and per-example norms in bf16 would make the clipping — the privacy guarantee — depend
on rounding.
"""

from __future__ import annotations

import contextlib

import torch


def cpu_computes_bf16() -> bool:
    """True on a CPU with AVX512-BF16 (AMX CPUs have it too). torch answers this only through a
    private function; a torch without it answers False, and the site stays fp32."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """True where a site without DP computes in bf16: its `precision` is `auto` and the device
    computes bf16 natively."""
    if precision == "fp32":
        return False
    if precision != "auto":
        raise ValueError(f"`precision` is {precision!r}; expected 'auto' or 'fp32'")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_computes_bf16()


def base_weights_dtype(device: torch.device, *, private: bool, precision: str = "auto"
                       ) -> torch.dtype:
    """bf16 for the frozen base where the device runs bf16 and the site trains without DP;
    fp32 otherwise (DP-SGD runs in fp32 throughout, see above)."""
    return torch.bfloat16 if uses_bf16(device, precision) and not private else torch.float32


def autocast(device: torch.device, weights: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast for a model whose base `weights` are bf16 (`base_weights_dtype` chose it); a
    no-op context for an fp32 model."""
    if weights == torch.bfloat16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
