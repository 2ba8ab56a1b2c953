"""Turn a site's encounter table into tensors once, so training and evaluation only index them.

Each note type is tokenized once for the whole table (truncated to `max_length`, right-padded to the
longest note of its split) and shared by every task that reads it. Batches are later trimmed to
their own longest note (`EncodedNotes.batch`): on a CPU, attention cost grows with the padded
length, so dynamic padding is the cheapest speed-up there is.

A model that scores answer letters (`scoring` 'letters', client/letter_scoring.py) reads no bare
note: it reads one prompt per task, the note's first tokens followed by the task's question, options
and answer cue. Those prompts are encoded here once too (`EncodedSplit.prompts`), the note cut so
that note and question together fit `max_length`; the notes themselves are then not kept.

On synthetic data each split also carries two ceilings per task: the generator's true
probabilities (`oracle`) and the note-level ceiling (`note_ceiling`, client/note_ceiling.py), the
Bayes posterior given the facts the note states within the tokens encoded here.

Each row also keeps its patient (`EncodedSplit.patients`, dense ids per split from the table's
`patient_id`), so that DP-SGD can take the patient as its privacy unit (client/privacy/units.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch

from client.letter_scoring import note_budget, suffix_ids
from client.note_ceiling import note_ceilings
from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, SPLIT_COLUMN, SPLITS, TASKS, NoteType

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PATIENT_COLUMN = ID_COLUMNS[1]
MAX_LENGTH_LIMIT = 512
"""Longest note prefix (tokens) we encode: BERT-family position tables stop at 512."""
ResolvedScoring = Literal["head", "letters"]
"""How a model reads a note, `auto` resolved (`client.model.resolve_scoring`): `head` reads each
bare note type, `letters` one prompt per task; so it says what is encoded."""


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
    """One split of a site, ready for the model: notes per type, labels and the two ceilings'
    probabilities (oracle and note-level)."""

    notes: dict[NoteType, EncodedNotes]
    labels: dict[str, torch.Tensor]
    """Class index per task, LongTensor [N]; empty for a table encoded only to be scored."""
    oracle: dict[str, np.ndarray]
    """True class probabilities [N, K] per task, only for tasks whose oracle columns all exist
    (synthetic data); real data has none."""
    size: int
    prompts: dict[str, EncodedNotes] = field(default_factory=dict)
    """Per task, note prefix + question + options + answer cue, right-padded: only for a model
    that scores answer letters (then `notes` is empty)."""
    patients: torch.Tensor | None = None
    """Patient of each row, LongTensor [N] of dense ids 0..patient_count-1 (numbered in order of
    first appearance in the split); `encode_site` always fills it, None only in a hand-built
    split."""
    note_ceiling: dict[str, np.ndarray] = field(default_factory=dict)
    """P(label | the facts the note states within what the model reads) [N, K] per task
    (client/note_ceiling.py), only for tasks with an oracle and a facts column (synthetic data):
    set by `encode_site`, which sees every split of the site."""

    @property
    def patient_count(self) -> int:
        """Distinct patients in the split (0 if unknown or empty)."""
        if self.patients is None or len(self.patients) == 0:
            return 0
        return int(self.patients.max()) + 1

    def subset(self, index: Sequence[int] | torch.Tensor) -> EncodedSplit:
        """The rows `index` (e.g. the first `max_examples` for a cheaper evaluation)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return EncodedSplit(
            notes={t: EncodedNotes(n.input_ids[index], n.attention_mask[index])
                   for t, n in self.notes.items()},
            labels={t: y[index] for t, y in self.labels.items()},
            oracle={t: p[index.numpy()] for t, p in self.oracle.items()},
            size=len(index),
            prompts={t: EncodedNotes(n.input_ids[index], n.attention_mask[index])
                     for t, n in self.prompts.items()},
            patients=None if self.patients is None else dense_ids(self.patients[index]),
            note_ceiling={t: p[index.numpy()] for t, p in self.note_ceiling.items()},
        )

    def lengths(self, tasks: Sequence[str]) -> torch.Tensor:
        """Tokens a model reads per row for `tasks`, [N]: their prompts if encoded, else each note
        type once (sorting by it keeps batches evenly padded)."""
        if self.prompts:
            sequences = [self.prompts[t] for t in tasks]
        else:
            sequences = [self.notes[n] for n in sorted({TASKS[t].note for t in tasks})]
        return sum((s.lengths for s in sequences), torch.zeros(self.size, dtype=torch.long))


def dense_ids(ids: Sequence | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Ids renumbered 0..k-1 in order of first appearance, LongTensor."""
    codes, _ = pd.factorize(pd.Series(np.asarray(ids)), sort=False)
    return torch.as_tensor(codes, dtype=torch.long)


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


def _prompts(texts: list[str], tokenizer: PreTrainedTokenizerBase, task: str, max_length: int
             ) -> EncodedNotes:
    """`task`'s prompts: each note cut to leave room for the question, then the question."""
    budget = note_budget(tokenizer, task, max_length)
    suffix = suffix_ids(tokenizer, task)
    if not texts:
        empty = torch.zeros((0, 1), dtype=torch.long)
        return EncodedNotes(empty, empty.clone())
    notes = tokenizer(texts, truncation=True, max_length=budget)["input_ids"]
    width = max(len(ids) for ids in notes) + len(suffix)
    input_ids = torch.full((len(notes), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(notes), width), dtype=torch.long)
    for row, ids in enumerate(notes):  # right padding, like `_tokenize`
        input_ids[row, : len(ids) + len(suffix)] = torch.tensor(ids + suffix, dtype=torch.long)
        attention_mask[row, : len(ids) + len(suffix)] = 1
    return EncodedNotes(input_ids, attention_mask)


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
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], *, max_length: int,
    scoring: ResolvedScoring = "head", labelled: bool = True,
) -> EncodedSplit:
    """Encode one split's rows (any order): for `head` each note type read by `tasks` once, for
    `letters` one prompt per task. `labelled=False` (a table to score, client/score.py) reads no
    label column and leaves `labels` empty."""
    if not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise ValueError(f"`max_length` is {max_length}; expected 1..{MAX_LENGTH_LIMIT} tokens")
    notes, prompts = {}, {}
    if scoring == "letters":
        prompts = {t: _prompts(df[NOTE_COLUMNS[TASKS[t].note]].astype(str).tolist(), tokenizer,
                               t, max_length) for t in tasks}
    else:
        notes = {n: _tokenize(df[NOTE_COLUMNS[n]].astype(str).tolist(), tokenizer, max_length)
                 for n in sorted({TASKS[t].note for t in tasks})}
    labels = {t: torch.tensor(df[TASKS[t].label_column].to_numpy(dtype=np.int64))
              for t in tasks} if labelled else {}
    oracle = {t: p for t in tasks if (p := _oracle(df, t)) is not None}
    return EncodedSplit(notes=notes, labels=labels, oracle=oracle, size=len(df), prompts=prompts,
                        patients=dense_ids(df[PATIENT_COLUMN].astype(str)))


def encode_site(
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], *, max_length: int,
    scoring: ResolvedScoring = "head",
) -> dict[str, EncodedSplit]:
    """Every split of a validated encounter table (`sites.dataset.read_site_table`).

    All of `train`, `validation` and `test` are returned, empty (size 0) where the site has no rows,
    so callers never meet a missing key (an external site may hold only a test split). `scoring`
    is the model's resolved scoring (`client.model.base_scoring`): `letters` encodes prompts.
    The note-level ceiling is fitted here, where the training rows and the rows it scores are
    all at hand.
    """
    if scoring not in ("head", "letters"):
        raise ValueError(f"`scoring` is {scoring!r}; expected 'head' or 'letters' (resolve 'auto' "
                         "with client.model.base_scoring first)")
    needed = [SPLIT_COLUMN, PATIENT_COLUMN] + [NOTE_COLUMNS[TASKS[t].note] for t in tasks]
    missing = [c for c in needed + [TASKS[t].label_column for t in tasks] if c not in df.columns]
    if missing:
        raise KeyError(f"encounter table lacks column `{missing[0]}`; expected the columns of "
                       "sites.dataset.read_site_table")
    splits = {split: encode_split(df[df[SPLIT_COLUMN] == split], tokenizer, tasks,
                                  max_length=max_length, scoring=scoring)
              for split in SPLITS}
    oracle = {t: p for t in tasks if (p := _oracle(df, t)) is not None}
    ceilings = note_ceilings(df, tokenizer, tasks, oracle, max_length=max_length, scoring=scoring)
    for split in SPLITS:
        rows = (df[SPLIT_COLUMN] == split).to_numpy()
        splits[split].note_ceiling = {t: p[rows] for t, p in ceilings.items()}
    return splits
