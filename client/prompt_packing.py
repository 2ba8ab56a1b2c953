"""One decoder pass for all of an encounter's task prompts: each note once, then each task's own
tail.

Under answer-letter scoring a task's prompt is its note (admission or discharge), cut to the task's
budget, then the task's question (client/letter_scoring.py). Run one prompt per task, as the
paper's protocol reads, and a step re-reads a note once per task that reads it: at 512 tokens and
the five default tasks, 2,560 tokens an encounter in five passes, each of which pays a GPU's fixed
per-layer cost (about 5 ms a layer on an H200, bench/results/lang1_shapes.md).

Causal attention means a prompt's first tokens never see what follows them, so the hidden states of
the note part that the prompts of one note share are the same in each. Packed, a row reads, for
each note its tasks read, `[shared prefix | tail of task 1 | … | tail of task k]`, where a task's
tail is the rest of its own prompt (the note tokens its larger budget keeps, then its question). A
block mask lets every token of a tail attend to its note's prefix and to the earlier tokens of its
own tail only (never to another note's tokens), and positions in a tail continue from the prefix
as they do in the task's own prompt, so the last token of each tail has the hidden state of its
task's prompt (the same arithmetic, up to float rounding). With the default tasks (four read the
admission note, readmission the discharge note) a 512-token step reads 2 × 512 + 3 × (longest
question) tokens an encounter, in one pass.

The shared prefix is found by comparing the prompts' token ids, never assumed from the budgets, so
a tokenizer that ends a truncated note with a special token still packs exactly. Pad positions
attend to themselves only: a row that attends to nothing gives NaN in the attention, and a NaN
activation at a pad position would turn into NaN gradients (0 × NaN) in the backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

PAD = -1
"""Group and tail of a pad position."""
BLOCK_MASK_ATTENTION = ("sdpa", "eager")
"""transformers attention implementations that take a custom 4D mask; others (flash attention)
leave a letter model to run one pass per task."""


@dataclass(frozen=True)
class PackedPrompts:
    """Rows of packed prompts, right-padded to the longest row."""

    input_ids: torch.Tensor
    """[B, W] token ids; a pad position holds some valid id (nothing attends to a pad and its
    own state is never read)."""
    position_ids: torch.Tensor
    """[B, W] each token's position in its own task's prompt."""
    allowed: torch.Tensor
    """[B, 1, W, W] bool: query i may attend to key j."""
    last: torch.Tensor
    """[T, B] packed index of the last token of each task's prompt."""

    def to(self, device: torch.device) -> PackedPrompts:
        return PackedPrompts(*(t.to(device) for t in (self.input_ids, self.position_ids,
                                                      self.allowed, self.last)))

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as attention-score offsets (0 or the dtype's lowest value), for attention
        implementations that add the mask to the scores (transformers' `eager`)."""
        mask = torch.zeros(self.allowed.shape, dtype=dtype, device=self.allowed.device)
        return mask.masked_fill(~self.allowed, torch.finfo(dtype).min)


def pack_prompts(prompts: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 groups: Sequence[str] | None = None) -> PackedPrompts:
    """Pack each row's task prompts (input ids and attention mask [B, L_t] per task, right-padded,
    the same rows in each) into one sequence per row (see the module docstring). `groups` names
    the note each task's prompt starts with: tasks of one group share their prefix; a group's
    tokens never attend to another's. None: one group."""
    if not prompts:
        raise ValueError("no prompts to pack; expected one (input_ids, attention_mask) per task")
    groups = ["" for _ in prompts] if groups is None else list(groups)
    rows = prompts[0][0].shape[0]
    if len(groups) != len(prompts) or any(
            ids.shape[0] != rows or mask.shape != ids.shape for ids, mask in prompts):
        raise ValueError("prompts to pack must have the same rows, masks the shape of their ids, "
                         f"and one group each; got {[tuple(ids.shape) for ids, _ in prompts]} "
                         f"and groups {groups}")
    lengths = torch.stack([mask.sum(dim=1) for _, mask in prompts])  # [T, B]
    if rows and int(lengths.min()) < 1:
        raise ValueError("a prompt to pack is empty; expected at least one token in every prompt")
    members = {g: [t for t, name in enumerate(groups) if name == g] for g in dict.fromkeys(groups)}
    prefixes = {g: _shared_prefix([prompts[t] for t in tasks], lengths[tasks])
                for g, tasks in members.items()}
    pad_id = int(prompts[0][0][0, 0]) if rows else 0
    sequences = []
    last = torch.empty_like(lengths)
    for row in range(rows):
        ids, pos, group_of, tail_of, start = [], [], [], [], 0
        for number, (g, tasks) in enumerate(members.items()):
            p = int(prefixes[g][row])
            ids.append(prompts[tasks[0]][0][row, :p])
            pos.append(torch.arange(p))
            group_of.append(torch.full((p,), number))
            tail_of.append(torch.zeros(p, dtype=torch.long))
            start += p
            for task in tasks:
                end = int(lengths[task, row])
                ids.append(prompts[task][0][row, p:end])
                pos.append(torch.arange(p, end))
                group_of.append(torch.full((end - p,), number))
                tail_of.append(torch.full((end - p,), task + 1))
                start += end - p
                last[task, row] = start - 1
        sequences.append([torch.cat(part) for part in (ids, pos, group_of, tail_of)])
    width = max((len(seq[0]) for seq in sequences), default=1)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((rows, width), dtype=torch.long)
    group = torch.full((rows, width), PAD, dtype=torch.long)
    tail = torch.full((rows, width), PAD, dtype=torch.long)
    for row, (ids, pos, group_of, tail_of) in enumerate(sequences):
        n = len(ids)
        input_ids[row, :n], position_ids[row, :n] = ids, pos
        group[row, :n], tail[row, :n] = group_of, tail_of
    return PackedPrompts(input_ids, position_ids, _block_mask(group, tail), last)


def _shared_prefix(prompts: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   lengths: torch.Tensor) -> torch.Tensor:
    """[B] tokens every one of `prompts` starts with in the row (`lengths` [T, B] their real
    lengths), capped so that each tail keeps at least its last token, whose hidden state is the
    task's score."""
    shortest = min(ids.shape[1] for ids, _ in prompts)
    first = prompts[0][0][:, :shortest]
    same = torch.ones_like(first, dtype=torch.bool)
    for ids, _ in prompts[1:]:
        same &= ids[:, :shortest] == first
    same &= torch.arange(shortest) < lengths.min(dim=0).values[:, None]
    prefix = same.long().cumprod(dim=1).sum(dim=1)
    return torch.minimum(prefix, lengths.min(dim=0).values - 1)


def _block_mask(group: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """[B, 1, W, W]: causal within a group; a tail sees its group's prefix (tail 0) and itself;
    a pad only itself."""
    width = group.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    real = (group != PAD)[:, :, None] & (group != PAD)[:, None, :]
    same_group = group[:, :, None] == group[:, None, :]
    key_tail, query_tail = tail[:, None, :], tail[:, :, None]
    allowed = causal & real & same_group & ((key_tail == 0) | (key_tail == query_tail))
    allowed |= torch.eye(width, dtype=torch.bool) & (group == PAD)[:, :, None]
    return allowed[:, None]


def takes_block_mask(causal_lm) -> bool:
    """True where `causal_lm`'s attention implementation takes a custom 4D mask."""
    return getattr(causal_lm.config, "_attn_implementation", None) in BLOCK_MASK_ATTENTION


def last_token_logits(causal_lm, packed: PackedPrompts, token_ids: Sequence[int]
                      ) -> list[torch.Tensor]:
    """One pass of `causal_lm`'s decoder over `packed` (on its device); per task, the logits of
    `token_ids` [B, len(token_ids)] at the last token of its prompt. Only those positions go
    through the output layer: full-vocabulary logits everywhere would cost B × W × V floats."""
    head = causal_lm.get_output_embeddings()
    mask = (packed.additive_mask(head.weight.dtype)
            if causal_lm.config._attn_implementation == "eager" else packed.allowed)
    hidden = causal_lm.get_decoder()(input_ids=packed.input_ids, attention_mask=mask,
                                     position_ids=packed.position_ids,
                                     use_cache=False).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device).repeat(packed.last.shape[0])
    tokens = torch.tensor(list(token_ids), device=hidden.device)
    logits = head(hidden[rows, packed.last.flatten()])[:, tokens]
    return list(logits.split(hidden.shape[0]))
