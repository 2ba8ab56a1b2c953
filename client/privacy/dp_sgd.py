"""One round of DP-SGD at a site: opacus clipping and noise, Poisson batches of a privacy unit.

The same joint loss and optimizer as `client.train`, with opacus's pieces put around them: a
`GradSampleModule` computes per-encounter gradients of the LoRA and head parameters (frozen base
weights get none), `DPOptimizer` clips each to `max_grad_norm`, sums them, adds Gaussian noise of
std σ·C and divides by the expected batch size, and each batch is drawn by Poisson sampling, which
is what the accountant assumes.

The privacy unit (`privacy_unit`, client/privacy/units.py) is the encounter (one row of the table,
its notes and labels, clipped together) or the patient. For the patient, Poisson sampling picks
patients (each with probability q = `sample_rate`), the batch is all their training encounters,
and between `loss.backward()` and the optimizer step the per-encounter gradients of each patient
are summed (every trainable tensor), so that opacus clips one gradient per patient to C; the
expected batch size is q × patients. GradSampleModule (loss_reduction 'mean') has already
multiplied each row's gradient by the rows in its forward pass, so a patient's sum is the
gradient of the sum of its encounters' losses. Each patient then moves a step by at most C before
noise σC, and the accountant run with q over patients gives patient-level (ε, δ). A site's plan
that wants the same expected encounters per step as with the encounter unit takes
q = batch_size ÷ training encounters (`EncodedSplit.size`); a step then holds q × patients
patients on average (`EncodedSplit.patient_count`).

Both ways of scoring train here (`TaskModel.task_logits`): with heads, the LoRA and head parameters
get per-encounter gradients; with answer letters (client/letter_scoring.py), the LoRA parameters
only — the output layer and the embeddings that read the letters are frozen, so opacus puts no
hooks on them.

Sampling and noise come from a `NoiseSource` (client/privacy/noise.py): by default a ChaCha20
CSPRNG keyed from the operating system, drawn through opacus's one noise hook `add_noise`
(client/privacy/dp_sgd.py); never from the run's public seed: whoever knows the noise can subtract
it, and whoever knows the batches loses the amplification by subsampling. Only dropout, which
protects nothing, follows the run seed.

The base model is cached across rounds, so opacus's hooks are taken off again when the round ends
(`to_standard_module`): a module wrapped twice fails, and evaluation must run without hooks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer, DPPerLayerOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

from client.data import EncodedSplit
from client.model import TaskModel
from client.privacy.noise import NoiseSource, resolve_noise
from client.privacy.units import PrivacyUnit, UnitIndex, poisson_units, sum_per_unit
from client.train import (
    OptimizerSettings,
    ProximalPull,
    TrainResult,
    check_training_inputs,
    joint_loss,
    make_optimizer,
)

log = logging.getLogger(__name__)

FLAT = 0.0
"""`dp-adapter-clip-share = 0`: one norm over every trainable parameter (see the clipping split
below)."""

GradSampleMode = Literal["hooks", "functorch"]
GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch")
"""opacus per-sample gradient modes this loop supports; `hooks` is the default (fastest measured
with LoRA on CPU, see bench/privacy.py). opacus's `ghost` clipping is not among them: it refuses a
module that runs twice in one step ("Parameter tying is not supported"), and joint training runs
the encoder once per note type (a letter-scoring decoder once per task where its prompts cannot be
packed into one pass, client/prompt_packing.py)."""


@dataclass(frozen=True)
class PrivateTrainResult(TrainResult):
    """A DP round's result, with what the privacy ledger must say about it."""

    noise_source: str
    """`NoiseSource.name` of the noise and sampling: `csprng` at a real site."""
    privacy_unit: str
    """`encounter` or `patient`: what one clipped gradient and the sample rate q count."""
    units: int
    """Units sampled over the round, counting repeats (`examples` counts encounters)."""


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
    privacy_unit: PrivacyUnit = "encounter",
    noise: NoiseSource | None = None,
    noise_seed: int | None = None,
    proximal_mu: float = 0.0,
    max_physical_batch_size: int = 0,
    adapter_clip_share: float = FLAT,
) -> PrivateTrainResult:
    """Run `steps` DP-SGD steps of the joint loss; the model is left without opacus hooks.

    `sample_rate` is q per unit of `privacy_unit`: per encounter, or per patient (see the module
    docstring). `seed` drives dropout only. `noise` is where noise and sampling come from: None
    (a real site) draws from a fresh `CsprngNoise`; `TorchNoise()` is the faster, non-cryptographic
    path; `noise_seed` is short for `TorchNoise(seed=noise_seed)` and replays a round exactly
    (tests and benchmarks). `proximal_mu` > 0 takes FedProx's pull after each noisy step, outside
    clipping and noise (client/train.py). `max_physical_batch_size` > 0 runs each Poisson batch
    in pieces of at most that many encounters, as opacus's `BatchMemoryManager` does: every piece
    but the last is a skipped step (`signal_skip_step`), in which opacus only clips and sums the
    per-unit gradients; the last adds the noise and steps. Same update, same privacy cost, less
    memory. A piece never cuts a patient: one with more encounters than that is a piece of its
    own. `optimizer` is settings for a fresh one, or one already made over the model's trainable
    parameters that carries its state from earlier rounds (client/privacy/optimizer_memory.py); opacus
    wraps it for the round, and its state is left in it. `adapter_clip_share` in (0, 1) splits C
    between adapter and heads (client/privacy/dp_sgd.py).
    """
    check_training_inputs(model, data, steps)
    if not 0 < sample_rate <= 1:
        raise ValueError(f"`sample_rate` is {sample_rate}; expected 0 < sample_rate <= 1")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"`grad_sample_mode` is {grad_sample_mode!r}; expected one of "
                         f"{list(GRAD_SAMPLE_MODES)}")
    if max_physical_batch_size < 0:
        raise ValueError(f"`max_physical_batch_size` is {max_physical_batch_size}; expected >= 1, "
                         "or 0 for the whole batch at once")
    units = UnitIndex.of(data, privacy_unit)
    source = resolve_noise(noise, noise_seed)
    device = model.device
    # Train mode before wrapping: opacus records no activations in eval mode.
    model.train()
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean",
                               force_functorch=grad_sample_mode == "functorch")
    trainable = [p for p in model.parameters() if p.requires_grad]
    total, examples, sampled = 0.0, 0, 0
    try:
        dp_optimizer = _dp_optimizer(
            model, optimizer, source, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, adapter_clip_share=adapter_clip_share,
            expected_batch_size=max(1, round(sample_rate * units.count)))
        pull = ProximalPull(dp_optimizer, proximal_mu)
        patients = units if privacy_unit == "patient" else None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout masks only
            for batch in poisson_units(source, units.count, sample_rate, steps):
                pieces = units.pieces(batch, max_physical_batch_size)
                total += _noisy_step(model, data, pieces, patients, dp_optimizer)
                pull()
                examples += sum(len(piece) for piece in pieces)
                sampled += len(batch)
    finally:
        wrapped.to_standard_module()
        for p in trainable:
            p.grad = None
    log.debug("DP-SGD: %d steps, σ=%.4f, C=%.3g, q=%.4g per %s, noise %s", steps,
              noise_multiplier, max_grad_norm, sample_rate, privacy_unit, source.name)
    return PrivateTrainResult(loss=total / steps, steps=steps, examples=examples,
                              noise_source=source.name, privacy_unit=privacy_unit, units=sampled)


def _noisy_step(model: TaskModel, data: EncodedSplit, pieces: tuple[torch.Tensor, ...],
                patients: UnitIndex | None, dp_optimizer: SourcedDPOptimizer) -> float:
    """One DP-SGD step over a Poisson batch given as physical pieces of rows; returns the batch's
    mean loss. Every piece but the last is a skipped step (opacus clips and sums it); the last
    adds the noise and steps. With `patients`, each piece's per-encounter gradients are summed
    per patient before opacus clips them."""
    dp_optimizer.zero_grad(set_to_none=True)
    rows = sum(len(piece) for piece in pieces)
    if rows == 0:
        # An empty Poisson batch still takes a step (the accountant counts it): the update is
        # pure noise. opacus clips an empty stack of per-sample gradients.
        for p in dp_optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        dp_optimizer.step()
        return 0.0
    total = 0.0
    for number, piece in enumerate(pieces):
        loss = joint_loss(model, data, piece, model.tasks)
        loss.backward()
        total += float(loss.detach()) * len(piece) / rows
        if patients is not None:  # one per-sample gradient per patient, before opacus clips
            sum_per_unit(dp_optimizer.params, patients.unit_of_row[piece])
        if number < len(pieces) - 1:
            dp_optimizer.signal_skip_step(do_skip=True)
            dp_optimizer.step()  # clips and sums this piece; no noise, no update
            dp_optimizer.zero_grad(set_to_none=True)  # keeps the running sum
    dp_optimizer.step()
    return total


def _dp_optimizer(model: TaskModel, optimizer: OptimizerSettings | torch.optim.Optimizer,
                  source: NoiseSource, *, noise_multiplier: float, max_grad_norm: float,
                  adapter_clip_share: float, expected_batch_size: int) -> SourcedDPOptimizer:
    """opacus's DP optimizer (per-layer when C is split) over `optimizer`, noise from `source`."""
    inner = (optimizer if isinstance(optimizer, torch.optim.Optimizer)
             else make_optimizer(model, optimizer))
    flat = adapter_clip_share == FLAT
    return (SourcedDPOptimizer if flat else SourcedDPPerLayerOptimizer)(
        inner,
        noise_source=source,
        noise_multiplier=noise_multiplier,
        max_grad_norm=(max_grad_norm if flat
                       else per_parameter_norms(inner, max_grad_norm, adapter_clip_share)),
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
    )


# -----------------------------------------------------------------------------------------------
# How DP-SGD's clipping norm C is shared between the adapter and the task heads.
#
# With one norm over all trainable parameters (flat, opacus's default), the heads take almost all
# of it: measured on one synthetic hospital, an encounter's gradient has norm about 118, of which
# the heads carry about 117 and LoRA about 16, so clipping to C leaves LoRA about C/8 while the
# noise, σC on every coordinate, is the same for both. `dp-adapter-clip-share = s` in (0, 1)
# instead clips each parameter tensor on its own (opacus's `DPPerLayerOptimizer`): the adapter's
# tensors together get s of C² and the heads' the rest, each tensor of a group an equal part. The
# norms add up to C in the 2-norm, which is what opacus scales the noise by, so each encounter's
# clipped gradient still has norm at most C, σ and ε are those of flat clipping, and the ledger's
# `max_grad_norm` stays C. The option is off by default (0); it stays so that the split can be
# measured again (bench/dp_shapes.py).
# -----------------------------------------------------------------------------------------------


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


# -----------------------------------------------------------------------------------------------
# opacus's DP optimizers with their noise drawn from a `NoiseSource` (client/privacy/noise.py).
#
# opacus draws its noise in `DPOptimizer.add_noise` from a `torch.Generator`, and a torch generator
# cannot be backed by a cryptographic source. So `add_noise` is the one hook overridden here: the
# same loop (sum of clipped gradients plus N(0, (σC)²) noise per parameter, into `p.grad`, with
# opacus's processed-flag bookkeeping), the step's draws asked of the source at once. Clipping,
# accumulation over skipped steps, scaling by the expected batch size and the step itself stay
# opacus's. The mixin serves `DPOptimizer` and `DPPerLayerOptimizer` alike: per-layer clipping
# keeps C as the 2-norm of the per-layer norms, which is what the noise is scaled by.
# -----------------------------------------------------------------------------------------------


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

    def scale_grad(self) -> None:
        """opacus's `scale_grad`, with the divisor worked out once per step. opacus re-derives
        `accumulated_iterations` (a pass over every parameter) inside its loop over the
        parameters: quadratic in the adapter's tensors. For a 30-layer decoder's 120 LoRA tensors
        that was 10-15 ms of a step's 60-90 ms of DP overhead on a CPU, where the arithmetic was
        cheap (on an H200 DP doubled the step of the 100M shape for the same reason)."""
        if self.loss_reduction == "mean":
            divisor = self.expected_batch_size * self.accumulated_iterations
            for p in self.params:
                p.grad /= divisor


class SourcedDPOptimizer(SourcedNoise, DPOptimizer):
    """`DPOptimizer` (one clipping norm over all parameters) with sourced noise."""


class SourcedDPPerLayerOptimizer(SourcedNoise, DPPerLayerOptimizer):
    """`DPPerLayerOptimizer` (a norm per parameter tensor) with sourced noise."""
