"""A faulty site for robustness drills: every update it sends is flipped or scaled.

Robust aggregation (strategies/robust.py) is only believable if it is shown to hold against a site
that misbehaves. A site whose YAML has a `fault` block (sites.site_settings.FaultSettings) sends
received + f(trained − received) instead of what it trained: −factor·update for `sign-flip`,
factor·update for `scale`. Under FLoRA, where the site's adapter is fresh each round, the update is
its product B·A, so B alone is flipped or scaled. It runs after training and before the egress
check, exactly where a compromised site would tamper with its reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from sites.site_settings import FaultSettings

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
