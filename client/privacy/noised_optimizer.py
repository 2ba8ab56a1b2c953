"""opacus's DP optimizers with their noise drawn from a `NoiseSource` (client/privacy/noise.py).

opacus draws its noise in `DPOptimizer.add_noise` from a `torch.Generator`, and a torch generator
cannot be backed by a cryptographic source. So `add_noise` is the one hook overridden here: the
same loop (sum of clipped gradients plus N(0, (σC)²) noise per parameter, into `p.grad`, with
opacus's processed-flag bookkeeping), the step's draws asked of the source at once. Clipping,
accumulation over skipped steps, scaling by the expected batch size and the step itself stay
opacus's. The mixin serves `DPOptimizer` and `DPPerLayerOptimizer` alike: per-layer clipping
keeps C as the 2-norm of the per-layer norms, which is what the noise is scaled by.
"""

from __future__ import annotations

from typing import Any

from opacus.optimizers import DPOptimizer, DPPerLayerOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

from client.privacy.noise import NoiseSource


class SourcedNoise:
    """Mixin over an opacus DP optimizer: `noise_source` draws the noise."""

    def __init__(self, *args: Any, noise_source: NoiseSource, **kwargs: Any) -> None:
        if kwargs.get("generator") is not None or kwargs.get("secure_mode"):
            raise ValueError("`generator`/`secure_mode` are opacus's own noise settings; expected "
                             "them unset, the `noise_source` decides")
        super().__init__(*args, **kwargs)
        self.noise_source = noise_source

    def add_noise(self) -> None:
        params = self.params
        for p in params:
            _check_processed_flag(p.summed_grad)
        noises = self.noise_source.gaussians(self.noise_multiplier * self.max_grad_norm,
                                             [p.summed_grad for p in params])
        for p, noise in zip(params, noises):
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)


class SourcedDPOptimizer(SourcedNoise, DPOptimizer):
    """`DPOptimizer` (one clipping norm over all parameters) with sourced noise."""


class SourcedDPPerLayerOptimizer(SourcedNoise, DPPerLayerOptimizer):
    """`DPPerLayerOptimizer` (a norm per parameter tensor) with sourced noise."""
