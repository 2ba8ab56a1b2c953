"""Local training at a site: a fixed number of joint multi-task steps on the adapter and the heads.

The pieces are separate on purpose so that DP-SGD (a later issue) can swap them one at a time:
`minibatches` (here shuffled without replacement from a seeded generator; opacus wants Poisson
sampling), `make_optimizer` (AdamW with two learning rates: the heads start from random and need a
larger step than the adapter, whose B starts at zero) and `joint_loss` (the sum of the per-task
cross-entropies of `TaskModel.task_logits`: for a head model one forward pass per note type, shared
by every task that reads it; for a letter-scoring model one over all task prompts packed, the loss
then being LoRA's loss on the answer letter).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from client.data import EncodedSplit
from client.model import TaskModel
from client.precision import autocast

log = logging.getLogger(__name__)


OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "cosine")
WARMUP_SHARE = 0.1
"""`cosine`: the share of a round's steps over which the rates climb linearly to their peak."""


@dataclass(frozen=True)
class OptimizerSettings:
    """Optimizer and step sizes (the rates from the run config, `client.settings`; their defaults
    live once, in pyproject.toml).

    `sgd` (with momentum) is there for DP-SGD: AdamW divides each coordinate by its own running
    RMS, so under DP a coordinate whose gradient is all noise (most of the adapter, early on) still
    moves a full step each time, while SGD moves it in proportion to the noise.
    """

    learning_rate: float
    """Step size for the LoRA parameters."""
    head_learning_rate: float
    """Step size for the task heads (randomly initialised, so they move faster)."""
    weight_decay: float = 0.0
    name: str = "adamw"
    """`adamw`, or `sgd` with `momentum`."""
    momentum: float = 0.9
    schedule: str = "constant"
    """The rates over one round's local steps: `constant`, or `cosine` (a linear warm-up over the
    first tenth, then a cosine down to zero at the round's last step)."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "head_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` is {getattr(self, name)}; expected a number > 0")
        if self.weight_decay < 0:
            raise ValueError(f"`weight_decay` is {self.weight_decay}; expected a number >= 0")
        if self.name not in OPTIMIZERS:
            raise ValueError(f"`optimizer` is {self.name!r}; expected one of {list(OPTIMIZERS)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` is {self.momentum}; expected 0 <= momentum < 1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` is {self.schedule!r}; expected one of {list(SCHEDULES)}")


@dataclass(frozen=True)
class TrainResult:
    loss: float
    """Mean over the steps of the joint loss (sum of the per-task cross-entropies)."""
    steps: int
    examples: int
    """Examples seen, counting repeats (steps × batch size when the split is large enough)."""


def make_optimizer(model: TaskModel, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters: one group for the adapter, one for the heads
    (left out for a model without heads)."""
    adapter = [p for p in model.backbone.parameters() if p.requires_grad]
    heads = list(model.heads.parameters())
    groups = [{"params": adapter, "lr": settings.learning_rate}]
    if heads:
        groups.append({"params": heads, "lr": settings.head_learning_rate})
    if settings.name == "sgd":
        return torch.optim.SGD(groups, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=settings.weight_decay)


def round_schedule(optimizer: torch.optim.Optimizer, schedule: str, steps: int
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """torch's scheduler for one round of `steps` optimizer steps, each group from its own rate.

    Why offer `cosine`: every round starts a fresh AdamW from the adapter the server just
    averaged, whose first steps move every coordinate about a full step whatever the gradient's
    size; a warm-up keeps that kick small, and a round that ends near rate zero returns the adapter
    its last steps settled on. Whether that beats a constant rate depends on how far a round is
    from converging: on the default consortium (80 steps a round) it learned less per round and
    ended lower, so the default is `constant`.
    """
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    warmup = max(1, round(WARMUP_SHARE * steps))
    if steps <= warmup:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1),
                                          total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - warmup),
    ], milestones=[warmup])


def minibatches(size: int, batch_size: int, steps: int, generator: torch.Generator
                ) -> Iterator[torch.Tensor]:
    """`steps` index batches: reshuffled passes over `size` rows, without replacement in a pass."""
    batch_size = min(batch_size, size)
    order = torch.randperm(size, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch_size > size:
            order, cursor = torch.randperm(size, generator=generator), 0
        yield order[cursor: cursor + batch_size]
        cursor += batch_size


def physical_pieces(index: torch.Tensor, max_physical_batch_size: int
                    ) -> tuple[torch.Tensor, ...]:
    """One step's batch cut into pieces of at most `max_physical_batch_size` rows (0 = one piece),
    each run forward and backward on its own so that a large batch fits in memory."""
    if max_physical_batch_size < 0:
        raise ValueError(f"`max_physical_batch_size` is {max_physical_batch_size}; expected >= 1, "
                         "or 0 for the whole batch at once")
    if max_physical_batch_size == 0 or len(index) <= max_physical_batch_size:
        return (index,)
    return index.split(max_physical_batch_size)


def joint_loss(model: TaskModel, data: EncodedSplit, index: torch.Tensor,
               tasks: tuple[str, ...]) -> torch.Tensor:
    """Sum over tasks of the mean cross-entropy of the class logits on rows `index`."""
    device = model.device
    logits = model.task_logits(data, index, tasks)
    losses = [nn.functional.cross_entropy(logits[t], data.labels[t][index].to(device))
              for t in tasks]
    return torch.stack(losses).sum()


def check_training_inputs(model: TaskModel, data: EncodedSplit, steps: int) -> None:
    """What every training loop (plain or DP) needs: labels for each head, steps, examples."""
    missing = [t for t in model.tasks if t not in data.labels]
    if missing:
        raise KeyError(f"training data has no labels for task `{missing[0]}`; expected "
                       f"{model.tasks}")
    if steps < 1:
        raise ValueError(f"`steps` is {steps}; expected >= 1")
    if data.size == 0:
        raise ValueError("the training split is empty; expected at least one example")


def train_steps(model: TaskModel, data: EncodedSplit, *, steps: int, batch_size: int,
                optimizer: OptimizerSettings, seed: int, proximal_mu: float = 0.0,
                max_physical_batch_size: int = 0) -> TrainResult:
    """Run `steps` joint optimizer steps on every head of `model`; deterministic for a `seed`.

    `proximal_mu` > 0 pulls the parameters toward the round's start after each step (FedProx,
    client/train.py). `max_physical_batch_size` > 0 accumulates each step's gradient over
    pieces of at most that many rows: the same step, in less memory.

    A fresh AdamW is made per call (one call per federated round: moments from an adapter that the
    server has since replaced would be stale).
    """
    tasks = model.tasks
    check_training_inputs(model, data, steps)
    if batch_size < 1:
        raise ValueError(f"`batch_size` is {batch_size}; expected >= 1")
    device, base_dtype = model.device, model.base_dtype
    opt = make_optimizer(model, optimizer)
    rates = round_schedule(opt, optimizer.schedule, steps)
    pull = ProximalPull(opt, proximal_mu)
    generator = torch.Generator().manual_seed(seed)
    total, examples = 0.0, 0
    model.train()  # dropout on, and opacus (later) needs train mode for its hooks
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout masks, so a seed replays a round exactly
        for index in minibatches(data.size, batch_size, steps, generator):
            opt.zero_grad(set_to_none=True)
            for piece in physical_pieces(index, max_physical_batch_size):
                with autocast(device, base_dtype):  # bf16 on a bf16 base; the loss comes out fp32
                    # Weighted by its share of the batch: the pieces' gradients sum to the
                    # gradient of the whole batch's mean loss.
                    loss = joint_loss(model, data, piece, tasks) * (len(piece) / len(index))
                loss.backward()
                total += float(loss.detach())
            opt.step()
            pull()
            rates.step()
            examples += len(index)
    log.debug("trained %d steps, mean loss %.4f", steps, total / steps)
    return TrainResult(loss=total / steps, steps=steps, examples=examples)


# -----------------------------------------------------------------------------------------------
# FedProx's proximal term, applied as its own step after each optimizer step.
#
# FedProx adds (μ/2)·‖θ − θ_global‖² to the local objective to keep non-IID sites from drifting.
# Put into the loss, its gradient μ(θ − θ_global) would pass through DP-SGD's per-example clipping
# and noise: it would eat into each example's clipping budget although it depends on no example.
# So the pull is a separate step, θ ← θ − lr·μ·(θ − θ_global) with each parameter group's own step
# size, taken after the (plain or DP) optimizer step. It reads no data, so under DP it is
# post-processing and costs no privacy; without DP and with SGD it equals the gradient of the term.
# -----------------------------------------------------------------------------------------------


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
