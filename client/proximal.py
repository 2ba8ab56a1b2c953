"""FedProx's proximal term, applied as its own step after each optimizer step.

FedProx adds (μ/2)·‖θ − θ_global‖² to the local objective to keep non-IID sites from drifting.
Put into the loss, its gradient μ(θ − θ_global) would pass through DP-SGD's per-example clipping
and noise: it would eat into each example's clipping budget although it depends on no example.
So the pull is a separate step, θ ← θ − lr·μ·(θ − θ_global) with each parameter group's own step
size, taken after the (plain or DP) optimizer step. It reads no data, so under DP it is
post-processing and costs no privacy; without DP and with SGD it equals the gradient of the term.
"""

from __future__ import annotations

import torch


class ProximalPull:
    """Pulls the optimizer's parameters toward where they were when it was made (the global
    adapter the round started from)."""

    def __init__(self, optimizer: torch.optim.Optimizer, mu: float) -> None:
        if not mu >= 0:
            raise ValueError(f"`proximal-mu` is {mu}; expected a number >= 0")
        self.mu = mu
        self.groups = [(group, [p.detach().clone() for p in group["params"]])
                       for group in optimizer.param_groups]

    @torch.no_grad()
    def __call__(self) -> None:
        if self.mu == 0:
            return
        for group, anchors in self.groups:
            rate = group["lr"] * self.mu
            for parameter, anchor in zip(group["params"], anchors):
                parameter.sub_(rate * (parameter - anchor))
