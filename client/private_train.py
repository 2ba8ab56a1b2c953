"""One round of DP-SGD at a site: opacus per-encounter clipping and noise, Poisson batches.

The same joint loss and optimizer as `client.train`, with opacus's pieces put around them: a
`GradSampleModule` computes per-encounter gradients of the LoRA and head parameters (frozen base
weights get none), `DPOptimizer` clips each to `max_grad_norm`, sums them, adds Gaussian noise of
std σ·C and divides by the expected batch size, and `UniformWithReplacementSampler` draws each batch
by Poisson sampling, which is what the accountant assumes. The privacy unit is the encounter: one
row of the table, its notes and its labels, clipped together.

Both ways of scoring train here (`TaskModel.task_logits`): with heads, the LoRA and head parameters
get per-encounter gradients; with answer letters (client/letter_scoring.py), the LoRA parameters
only — the output layer and the embeddings that read the letters are frozen, so opacus puts no
hooks on them.

Sampling and noise come from generators seeded from the operating system, never from the run's
public seed: whoever knows the noise can subtract it, and whoever knows the batches loses the
amplification by subsampling. Only dropout, which protects nothing, follows the run seed.

The base model is cached across rounds, so opacus's hooks are taken off again when the round ends
(`to_standard_module`): a module wrapped twice fails, and evaluation must run without hooks.
"""

from __future__ import annotations

import logging
import secrets
from typing import Literal

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer, DPPerLayerOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler

from .clip_split import FLAT, per_parameter_norms
from .data import EncodedSplit
from .model import TaskModel
from .proximal import ProximalPull
from .train import (OptimizerSettings, TrainResult, check_training_inputs, joint_loss,
                    make_optimizer, physical_pieces)

log = logging.getLogger(__name__)

GradSampleMode = Literal["hooks", "functorch"]
GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch")
"""opacus per-sample gradient modes this loop supports; `hooks` is the default (fastest measured
with LoRA on CPU, see bench/privacy.py). opacus's `ghost` clipping is not among them: it refuses a
module that runs twice in one step ("Parameter tying is not supported"), and joint training runs
the encoder once per note type (a letter-scoring decoder once per task)."""


def secret_generator(seed: int | None = None, device: torch.device | str = "cpu"
                     ) -> torch.Generator:
    """A generator on `device`: OS entropy unless a test passes `seed` explicitly."""
    seed = secrets.randbits(63) if seed is None else seed
    return torch.Generator(device=device).manual_seed(seed)


def noise_generators(seed: int | None, device: torch.device
                     ) -> tuple[torch.Generator, torch.Generator]:
    """(sampling, noise) generators. The sampler draws its Poisson batches on the CPU, while opacus
    draws the noise on the parameters' device with the generator it is given, and torch refuses a
    CPU generator for a CUDA draw. On a CPU site one generator serves both."""
    sampling = secret_generator(seed)
    if device.type == "cpu":
        return sampling, sampling
    return sampling, secret_generator(None if seed is None else seed + 1, device)


def train_steps_private(
    model: TaskModel,
    data: EncodedSplit,
    *,
    steps: int,
    sample_rate: float,
    noise_multiplier: float,
    max_grad_norm: float,
    optimizer: OptimizerSettings | torch.optim.Optimizer,
    seed: int,
    grad_sample_mode: GradSampleMode = "hooks",
    noise_seed: int | None = None,
    proximal_mu: float = 0.0,
    max_physical_batch_size: int = 0,
    adapter_clip_share: float = FLAT,
) -> TrainResult:
    """Run `steps` DP-SGD steps of the joint loss; the model is left without opacus hooks.

    `seed` drives dropout only. `noise_seed` fixes noise and sampling and exists for tests and
    benchmarks: a real site leaves it None. `proximal_mu` > 0 takes FedProx's pull after each
    noisy step, outside clipping and noise (client/proximal.py). `max_physical_batch_size` > 0
    runs each Poisson batch in pieces of at most that many encounters, as opacus's
    `BatchMemoryManager` does: every piece but the last is a skipped step (`signal_skip_step`),
    in which opacus only clips and sums the per-encounter gradients; the last adds the noise and
    steps. Same update, same privacy cost, less memory. `optimizer` is settings for a fresh one,
    or one already made over the model's trainable parameters that carries its state from earlier
    rounds (client/optimizer_memory.py); opacus wraps it for the round, and its state is left in it.
    `adapter_clip_share` in (0, 1) splits C between adapter and heads (client/clip_split.py).
    """
    tasks = model.tasks
    check_training_inputs(model, data, steps)
    if not 0 < sample_rate <= 1:
        raise ValueError(f"`sample_rate` is {sample_rate}; expected 0 < sample_rate <= 1")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"`grad_sample_mode` is {grad_sample_mode!r}; expected one of "
                         f"{list(GRAD_SAMPLE_MODES)}")
    device = model.device
    sampling, noise = noise_generators(noise_seed, device)
    # Train mode before wrapping: opacus records no activations in eval mode.
    model.train()
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean",
                               force_functorch=grad_sample_mode == "functorch")
    trainable = [p for p in model.parameters() if p.requires_grad]
    total, examples = 0.0, 0
    try:
        inner = (optimizer if isinstance(optimizer, torch.optim.Optimizer)
                 else make_optimizer(model, optimizer))
        flat = adapter_clip_share == FLAT
        dp_optimizer = (DPOptimizer if flat else DPPerLayerOptimizer)(
            inner,
            noise_multiplier=noise_multiplier,
            max_grad_norm=(max_grad_norm if flat
                           else per_parameter_norms(inner, max_grad_norm, adapter_clip_share)),
            expected_batch_size=max(1, round(sample_rate * data.size)),
            loss_reduction="mean",
            generator=noise,
        )
        pull = ProximalPull(dp_optimizer, proximal_mu)
        sampler = UniformWithReplacementSampler(
            num_samples=data.size, sample_rate=sample_rate, generator=sampling, steps=steps
        )
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout masks only
            for batch in sampler:
                dp_optimizer.zero_grad(set_to_none=True)
                index = torch.as_tensor(batch, dtype=torch.long)
                if len(index) == 0:
                    # An empty Poisson batch still takes a step (the accountant counts it): the
                    # update is pure noise. opacus clips an empty stack of per-sample gradients.
                    for p in trainable:
                        p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
                else:
                    pieces = physical_pieces(index, max_physical_batch_size)
                    for piece in pieces[:-1]:
                        loss = joint_loss(model, data, piece, tasks)
                        loss.backward()
                        total += float(loss.detach()) * len(piece) / len(index)
                        dp_optimizer.signal_skip_step(do_skip=True)
                        dp_optimizer.step()  # clips and sums this piece; no noise, no update
                        dp_optimizer.zero_grad(set_to_none=True)  # keeps the running sum
                    loss = joint_loss(model, data, pieces[-1], tasks)
                    loss.backward()
                    total += float(loss.detach()) * len(pieces[-1]) / len(index)
                dp_optimizer.step()
                pull()
                examples += len(index)
    finally:
        wrapped.to_standard_module()
        for p in trainable:
            p.grad = None
    log.debug("DP-SGD: %d steps, σ=%.4f, C=%.3g, q=%.4g", steps, noise_multiplier, max_grad_norm,
              sample_rate)
    return TrainResult(loss=total / steps, steps=steps, examples=examples)
