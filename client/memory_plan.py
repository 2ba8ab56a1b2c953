"""A site's memory plan: what one training step of the run will hold on the site's device, worked
out from the base's config before any weight is loaded, and a refusal when the device cannot.

Five parts, in bytes:

- **weights**: every parameter of the base, the LoRA adapter and the heads (counted on the meta
  device, so a Lang1-7B config costs nothing to count), in the dtype they are loaded in.
- **activations** kept for the backward pass of one physical batch: the sequences one step runs
  (the batch times the note types its tasks read, `max_length` tokens each; under answer-letter
  scoring, the batch times its task prompts packed into one sequence, `tokens_per_example`),
  times the per-token, per-layer estimate of Korthikanti et al. (2022, "Reducing activation
  recomputation in large transformer models"): (34 + 5 · heads · seq / hidden) · hidden bytes
  per token and layer with 16-bit activations, twice that in fp32 (a CPU, and DP-SGD, run in
  fp32; bf16 autocast on a GPU). The second term is the attention scores, which a fused attention
  kernel does not keep, so the estimate errs high where attention is fused (bench/memory_plan.py
  measures it against a real step's peak: bench/results/memory_plan.md).
- **optimizer**: the trainable parameters' gradients and AdamW's two moments (fp32).
- **per-example gradients** under DP-SGD: opacus holds one gradient per example of the physical
  batch for every trainable parameter (fp32) until it clips them.
- **kept frozen-layer outputs**, where `lora-layers` leaves lower layers without LoRA under head
  scoring: the most the process keeps of them per note (client/frozen_layers.py), in host memory,
  so counted when the site trains on its CPU.

Activations are those of the layers that carry LoRA (`lora-layers`, else all): layers below need
no gradient, so autograd keeps nothing of them.

`bench/memory_plan.py` measures the plan against a real step's peak memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from client.base_model import resolve_base_path
from client.frozen_layers import CAPACITY_BYTES
from client.letter_scoring import suffix_ids
from client.model import ModelSettings, base_scoring, load_base_config, load_tokenizer
from sites.tasks import TASKS

ACTIVATION_BYTES_PER_TOKEN_LAYER = 34
ATTENTION_SCORE_BYTES = 5
"""Korthikanti et al.'s activation bytes per token and layer with 16-bit activations: 34 · hidden
for the layer's tensors, 5 · heads · seq for its attention scores."""
HEADROOM = 0.9
"""A plan may use this share of what the device has free; the rest is the runtime's own."""
GIB = 2**30


class MemoryPlanError(RuntimeError):
    """The step would not fit the site's device; the message says by how much and what helps."""


@dataclass(frozen=True)
class MemoryPlan:
    device: str
    weights: int
    activations: int
    optimizer: int
    per_example: int
    available: int | None
    """Bytes free on the device now (None: unknown)."""
    shape: str
    """What the activations were planned for, e.g. `16 × 2 notes × 128 tokens`."""
    kept: int = 0
    """Bound of the frozen layers' outputs kept per note (host memory; 0 = none kept)."""

    @property
    def total(self) -> int:
        return (self.weights + self.activations + self.optimizer + self.per_example
                + self.total_kept)

    @property
    def total_kept(self) -> int:
        """The kept frozen-layer outputs counted in `total` (host memory: on a CPU only)."""
        return self.kept if self.device == "cpu" else 0

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= HEADROOM * self.available

    def render(self, site: str) -> str:
        free = "unknown" if self.available is None else f"{self.available / GIB:.1f} GiB free"
        lines = [f"memory plan of site {site} on {self.device} ({free}):",
                 f"  weights                {self.weights / GIB:8.2f} GiB",
                 f"  activations            {self.activations / GIB:8.2f} GiB  ({self.shape})",
                 f"  gradients + optimizer  {self.optimizer / GIB:8.2f} GiB"]
        if self.per_example:
            lines.append(f"  DP per-example grads   {self.per_example / GIB:8.2f} GiB")
        if self.kept:
            where = "" if self.device == "cpu" else ", host memory, not in the total"
            lines.append(f"  kept frozen layers  <= {self.kept / GIB:8.2f} GiB  (outputs per "
                         f"note{where})")
        lines.append(f"  total                  {self.total / GIB:8.2f} GiB")
        return "\n".join(lines)

    def check(self, site: str) -> None:
        if self.fits:
            return
        raise MemoryPlanError(
            f"site {site}: one training step needs about {self.total / GIB:.1f} GiB on "
            f"{self.device} (weights {self.weights / GIB:.1f}, activations "
            f"{self.activations / GIB:.1f} for {self.shape}, optimizer "
            f"{self.optimizer / GIB:.1f}, DP per-example {self.per_example / GIB:.1f}, kept "
            f"frozen-layer outputs {self.total_kept / GIB:.1f}) but "
            f"{self.available / GIB:.1f} GiB is free; expected at most {HEADROOM:.0%} of it. "
            "A smaller `training.max_physical_batch_size` (the same step in pieces), a smaller "
            "`max-length`, `lora-layers = 0` (nothing kept) or a larger device helps")


def parameter_counts(settings: ModelSettings) -> tuple[int, int]:
    """(frozen, trainable) parameters of the model `settings` build, counted on the meta device."""
    from peft import get_peft_model
    from transformers import AutoModel, AutoModelForCausalLM

    config = load_base_config(settings)
    letters = base_scoring(settings) == "letters"
    with torch.device("meta"):
        base = (AutoModelForCausalLM if letters else AutoModel).from_config(config)
        model = get_peft_model(base, settings.lora.config(base))
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not letters:
        trainable += sum((config.hidden_size + 1) * TASKS[t].num_classes for t in settings.tasks)
    return frozen, trainable


def tokens_per_example(settings: ModelSettings) -> tuple[int, int, str]:
    """Tokens one example puts through the model in a step, its longest sequence (attention's
    scores grow with it), and the shape to print. Under heads, each note type its tasks read, a
    sequence of `max_length` tokens each. Under answer letters, its task
    prompts packed into one sequence (client/prompt_packing.py): per note type, the note up to
    its tasks' tightest budget, then each task's tail — as long as that note's longest question
    when the note fills the budget — so `max_length + (tasks - 1) × longest question`."""
    length = settings.max_length
    if base_scoring(settings) != "letters":
        notes = len({TASKS[t].note for t in settings.tasks})
        return notes * length, length, f"{notes} notes × {length} tokens"
    if len(settings.tasks) == 1:
        return length, length, f"1 prompts × {length} tokens"
    tokenizer = load_tokenizer(settings)
    questions: dict[str, list[int]] = {}
    for task in settings.tasks:
        questions.setdefault(TASKS[task].note, []).append(
            min(len(suffix_ids(tokenizer, task)), length))
    tokens = sum(length + (len(q) - 1) * max(q) for q in questions.values())
    return tokens, tokens, f"{len(settings.tasks)} prompts of {length} tokens packed in {tokens}"


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        import psutil

        return int(psutil.virtual_memory().available)
    return None


def plan_memory(settings: ModelSettings, *, device: torch.device, batch: int, private: bool,
                weight_bytes: int = 4, activation_bytes: int = 4) -> MemoryPlan:
    """The plan of one training step of `batch` examples (the physical batch) on `device`, with
    weights and activations of `weight_bytes` and `activation_bytes` per value."""
    resolve_base_path(settings.base)  # a missing base is named before its config is read
    config = load_base_config(settings)
    frozen, trainable = parameter_counts(settings)
    per_example, sequence, shape = tokens_per_example(settings)
    tokens = batch * per_example
    per_token_layer = (ACTIVATION_BYTES_PER_TOKEN_LAYER * config.hidden_size
                       + ATTENTION_SCORE_BYTES * config.num_attention_heads * sequence)
    # Only layers with LoRA keep activations for the backward pass (nothing below needs a gradient)
    trained = config.num_hidden_layers - settings.lora.frozen_layers(config.num_hidden_layers)
    activations = (tokens * trained * per_token_layer * activation_bytes // 2)
    return MemoryPlan(
        device=str(device),
        weights=frozen * weight_bytes + trainable * 4,
        activations=activations,
        optimizer=3 * trainable * 4,
        per_example=batch * trainable * 4 if private else 0,
        available=available_bytes(device),
        shape=f"{batch} × {shape}",
        kept=(CAPACITY_BYTES if settings.lora.frozen_layers(config.num_hidden_layers)
              and base_scoring(settings) == "head" else 0),
    )
