"""Turn a site's encounter table into tensors once, so training and evaluation only index them.

Each note type is tokenized once for the whole table (truncated to `max_length`, right-padded to the
longest note of its split) and shared by every task that reads it. Batches are later trimmed to
their own longest note (`EncodedNotes.batch`): on a CPU, attention cost grows with the padded
length, so dynamic padding is the cheapest speed-up there is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS, NoteType

from .model import MAX_LENGTH_LIMIT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class EncodedNotes:
    """Token ids and attention mask [N, L] of one note type, right-padded."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """Real (non-pad) tokens per note, [N]."""
        return self.attention_mask.sum(dim=1)

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `index`, trimmed to their longest note and moved to `device`."""
        mask = self.attention_mask[index]
        width = max(int(mask.sum(dim=1).max()), 1) if len(index) else 1
        return self.input_ids[index, :width].to(device), mask[:, :width].to(device)


@dataclass
class EncodedSplit:
    """One split of a site, ready for the model: notes per type, labels and oracle probabilities."""

    notes: dict[NoteType, EncodedNotes]
    labels: dict[str, torch.Tensor]
    """Class index per task, LongTensor [N]."""
    oracle: dict[str, np.ndarray]
    """True class probabilities [N, K] per task, only for tasks whose oracle columns all exist
    (synthetic data); real data has none."""
    size: int

    def subset(self, index: Sequence[int] | torch.Tensor) -> EncodedSplit:
        """The rows `index` (e.g. the first `max_examples` for a cheaper evaluation)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return EncodedSplit(
            notes={t: EncodedNotes(n.input_ids[index], n.attention_mask[index])
                   for t, n in self.notes.items()},
            labels={t: y[index] for t, y in self.labels.items()},
            oracle={t: p[index.numpy()] for t, p in self.oracle.items()},
            size=len(index),
        )


def _tokenize(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> EncodedNotes:
    if not texts:
        empty = torch.zeros((0, 1), dtype=torch.long)
        return EncodedNotes(empty, empty.clone())
    # Right padding: `EncodedNotes.batch` trims the tail columns.
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="longest",
                        padding_side="right", return_tensors="pt")
    return EncodedNotes(encoded["input_ids"].long(), encoded["attention_mask"].long())


def _oracle(df: pd.DataFrame, task: str) -> np.ndarray | None:
    spec = TASKS[task]
    columns = spec.oracle_columns
    if not set(columns) <= set(df.columns):
        return None
    probs = df[list(columns)].to_numpy(dtype=np.float64)
    if spec.is_binary:
        probs = np.column_stack([1.0 - probs[:, 0], probs[:, 0]])
    return probs


def encode_split(
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], *, max_length: int
) -> EncodedSplit:
    """Encode one split's rows (any order); each note type read by `tasks` is tokenized once."""
    if not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise ValueError(f"`max_length` is {max_length}; expected 1..{MAX_LENGTH_LIMIT} tokens")
    note_types = sorted({TASKS[t].note for t in tasks})
    notes = {n: _tokenize(df[NOTE_COLUMNS[n]].astype(str).tolist(), tokenizer, max_length)
             for n in note_types}
    labels = {t: torch.tensor(df[TASKS[t].label_column].to_numpy(dtype=np.int64))
              for t in tasks}
    oracle = {t: p for t in tasks if (p := _oracle(df, t)) is not None}
    return EncodedSplit(notes=notes, labels=labels, oracle=oracle, size=len(df))


def encode_site(
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], *, max_length: int
) -> dict[str, EncodedSplit]:
    """Every split of a validated encounter table (`sites.dataset.read_site_table`).

    All of `train`, `validation` and `test` are returned, empty (size 0) where the site has no rows,
    so callers never meet a missing key (an external site may hold only a test split).
    """
    missing = [c for c in [SPLIT_COLUMN] + [NOTE_COLUMNS[TASKS[t].note] for t in tasks]
               + [TASKS[t].label_column for t in tasks] if c not in df.columns]
    if missing:
        raise KeyError(f"encounter table lacks column `{missing[0]}`; expected the columns of "
                       "sites.dataset.read_site_table")
    return {split: encode_split(df[df[SPLIT_COLUMN] == split], tokenizer, tasks,
                                max_length=max_length)
            for split in SPLITS}
