"""client.privacy.dp_sgd: DP-SGD's clipping norm shared between adapter and heads, same total C."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from client.model import trainable_state
from client.privacy.dp_sgd import per_parameter_norms
from client.train import make_optimizer
from tests.model_settings import optimizer_settings
from tests.test_private_train import _dp_round, setup
from tests.tiny_models import without_dropout

PLAIN_SGD = optimizer_settings(learning_rate=1.0, head_learning_rate=1.0, name="sgd", momentum=0.0)


def test_the_norms_add_up_to_c_with_the_adapter_holding_its_share(tiny_encoder: Path) -> None:
    model, _ = setup(tiny_encoder)
    optimizer = make_optimizer(model, PLAIN_SGD)
    adapter, heads = (len(g["params"]) for g in optimizer.param_groups)
    norms = per_parameter_norms(optimizer, 2.0, 0.9)
    assert len(norms) == adapter + heads
    assert math.isclose(math.hypot(*norms), 2.0)  # opacus scales the noise by this: σ·C as flat
    assert math.isclose(math.hypot(*norms[:adapter]), 2.0 * math.sqrt(0.9))
    assert math.isclose(math.hypot(*norms[adapter:]), 2.0 * math.sqrt(0.1))
    for share in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"adapter clip share is {share}"):
            per_parameter_norms(optimizer, 2.0, share)


def _update(tiny_encoder: Path, share: float) -> tuple[float, float]:
    """Norms of the adapter's and the heads' change after one noiseless step of plain SGD at rate
    1 over every encounter (q = 1): the mean clipped gradient itself."""
    model, splits = setup(tiny_encoder)
    without_dropout(model)
    before = trainable_state(model)
    _dp_round(model, splits["train"], steps=1, sample_rate=1.0, noise_multiplier=0.0,
              max_grad_norm=0.01, optimizer=PLAIN_SGD, adapter_clip_share=share)
    after = trainable_state(model)
    moved = {k: torch.as_tensor(after[k] - before[k]).norm() for k in before}
    adapter = math.hypot(*(float(v) for k, v in moved.items() if k.startswith("adapter.")))
    heads = math.hypot(*(float(v) for k, v in moved.items() if not k.startswith("adapter.")))
    return adapter, heads


def test_a_share_moves_clipping_budget_from_the_heads_to_the_adapter(tiny_encoder: Path) -> None:
    """C = 0.01 clips every encounter. Flat, the heads' large gradients take most of C; with 0.9
    of C² for the adapter its step grows, the heads' shrinks, and neither passes its own norm."""
    flat_adapter, flat_heads = _update(tiny_encoder, 0.0)
    adapter, heads = _update(tiny_encoder, 0.9)
    assert math.hypot(flat_adapter, flat_heads) <= 0.01 * (1 + 1e-4)
    assert flat_heads > flat_adapter
    assert adapter > 2 * flat_adapter
    assert adapter <= 0.01 * math.sqrt(0.9) * (1 + 1e-4)
    assert heads <= 0.01 * math.sqrt(0.1) * (1 + 1e-4) and heads < flat_heads
