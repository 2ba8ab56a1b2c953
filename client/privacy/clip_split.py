"""How DP-SGD's clipping norm C is shared between the adapter and the task heads.

With one norm over all trainable parameters (flat, opacus's default), the heads take almost all
of it: measured on one synthetic hospital, an encounter's gradient has norm about 118, of which
the heads carry about 117 and LoRA about 16, so clipping to C leaves LoRA about C/8 while the
noise, σC on every coordinate, is the same for both. `dp-adapter-clip-share = s` in (0, 1)
instead clips each parameter tensor on its own (opacus's `DPPerLayerOptimizer`): the adapter's
tensors together get s of C² and the heads' the rest, each tensor of a group an equal part. The
norms add up to C in the 2-norm, which is what opacus scales the noise by, so each encounter's
clipped gradient still has norm at most C, σ and ε are those of flat clipping, and the ledger's
`max_grad_norm` stays C. Measured at ε = 8, giving LoRA more did worse (README, Privacy); the
option stays so that the measurement can be repeated.
"""

from __future__ import annotations

import math

import torch

FLAT = 0.0
"""`dp-adapter-clip-share = 0`: one norm over every trainable parameter."""


def per_parameter_norms(optimizer: torch.optim.Optimizer, max_grad_norm: float,
                        adapter_share: float) -> list[float]:
    """One clipping norm per trainable parameter, in the order opacus reads them (its param
    groups, skipping frozen ones): group 0 is the adapter, group 1 (if any) the heads, as
    `client.train.make_optimizer` builds them. Without heads the adapter gets all of C."""
    if not 0 < adapter_share < 1:
        raise ValueError(f"adapter clip share is {adapter_share}; expected 0 < share < 1")
    groups = [[p for p in group["params"] if p.requires_grad]
              for group in optimizer.param_groups]
    if len(groups) > 2 or not groups[0]:
        raise ValueError(f"expected the optimizer's groups to be [adapter, heads]; got "
                         f"{len(groups)} group(s) of sizes {[len(g) for g in groups]}")
    shares = [adapter_share, 1 - adapter_share] if len(groups) == 2 and groups[1] else [1.0]
    norms = []
    for group, share in zip(groups, shares):
        norms += [max_grad_norm * math.sqrt(share / len(group))] * len(group)
    return norms
