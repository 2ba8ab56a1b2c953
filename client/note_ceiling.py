"""Which stated facts a model actually reads, and the note-level ceiling they allow.

The note-level ceiling (sites/synthetic/note_ceiling.py) is the Bayes AUROC given the facts a note
states within what the model reads. What it reads is decided by the tokenizer: a head reads each
note cut to `max_length` tokens, a letter-scoring model reads a prompt whose note part is cut to
what the question leaves (`client.letter_scoring.note_budget`). The cut is found here with the very
call that encodes the note (client/data.py), plus the tokens' character offsets, so a fact counts
as read exactly when all of its characters lie in tokens the model is fed. That needs the run's
tokenizer, which is why this lives in client/.

Only synthetic tables carry the facts (`admission_facts`, `discharge_facts`) and the oracle the
ceiling is fitted to; a table without them (real data) gets no ceiling, and its metric is NaN like
the oracle's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from client.letter_scoring import note_budget
from sites.synthetic.note_ceiling import cross_fitted_probs, note_ceiling_probs
from sites.synthetic.stated_facts import FACTS_COLUMNS, StatedFact, decode_facts, features_within
from sites.tasks import ID_COLUMNS, NOTE_COLUMNS, SPLIT_COLUMN, TASKS, NoteType

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

FIT_SPLITS = ("train", "validation")
"""Rows the ceiling is fitted on; the test split is then scored out of sample."""


@dataclass(frozen=True)
class ReadWindow:
    """The characters `start`:`end` of a note a model reads (`end` None: through the last)."""

    start: int = 0
    end: int | None = None

    def features(self, facts: Sequence[StatedFact]) -> frozenset[str]:
        """The features of `facts` (`StatedFact`s) whose characters all lie in the window."""
        if self.start == 0:
            return features_within(facts, self.end)
        return features_within([f for f in facts if f.start >= self.start], self.end)


def read_windows(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase,
                 max_length: int) -> list[ReadWindow]:
    """Per text, what `tokenizer(texts, truncation=True, max_length=max_length)` — the call that
    encodes notes for the model — keeps of it, in characters. Needs a fast tokenizer (offsets)."""
    texts = list(texts)
    if not texts:
        return []
    cut = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    whole = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    left = getattr(tokenizer, "truncation_side", "right") == "left"
    windows = []
    for offsets, special, full in zip(cut["offset_mapping"], cut["special_tokens_mask"], whole):
        kept = [span for span, is_special in zip(offsets, special) if not is_special]
        if len(kept) >= len(full):
            windows.append(ReadWindow())
        elif not kept:
            windows.append(ReadWindow(0, 0))
        elif left:
            windows.append(ReadWindow(min(s for s, _ in kept), None))
        else:
            windows.append(ReadWindow(0, max(e for _, e in kept)))
    return windows


def token_limit(tokenizer: PreTrainedTokenizerBase, task: str, *, max_length: int,
                scoring: Literal["head", "letters"]) -> int:
    """Tokens (special ones included) of `task`'s note the model reads: `max_length` for a head,
    what the question leaves of it for letter scoring, as client/data.py encodes them."""
    return note_budget(tokenizer, task, max_length) if scoring == "letters" else max_length


def facts_read(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, note: NoteType, *,
               limit: int) -> list[frozenset[str]] | None:
    """Per row of `df`, the features its `note` states within its first `limit` tokens (see
    `token_limit`); None when `df` has no facts column for that note."""
    column = FACTS_COLUMNS[note]
    if column not in df.columns:
        return None
    windows = read_windows(df[NOTE_COLUMNS[note]].astype(str).tolist(), tokenizer, limit)
    encounters = df[ID_COLUMNS[0]].astype(str).tolist()
    return [window.features(decode_facts(text, where=f"column `{column}` of encounter `{e}`"))
            for window, text, e in zip(windows, df[column].tolist(), encounters)]


def note_ceilings(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str],
                  oracle: Mapping[str, np.ndarray], *, max_length: int,
                  scoring: Literal["head", "letters"]) -> dict[str, np.ndarray]:
    """Per task, P(label | facts read) [len(df), K] for every row of `df` (a whole site, all
    splits): fitted on the `FIT_SPLITS` rows, or cross-fitted by patient where the site has none
    (an external site holds only a test split). Only tasks with an oracle [len(df), K] in
    `oracle` and a facts column for their note; none with a slow tokenizer (no offsets)."""
    wanted = [t for t in tasks if t in oracle and FACTS_COLUMNS[TASKS[t].note] in df.columns]
    if not wanted:
        return {}
    if not getattr(tokenizer, "is_fast", False):
        log.warning("no note-level ceiling: tokenizer %s gives no character offsets (not a fast "
                    "tokenizer), so the facts a model reads cannot be told", type(tokenizer).__name__)
        return {}
    fit = np.flatnonzero(df[SPLIT_COLUMN].isin(FIT_SPLITS).to_numpy())
    patients = df[ID_COLUMNS[1]].astype(str).to_numpy()
    read: dict[tuple[str, int], list[frozenset[str]]] = {}  # tasks reading the same cut share it
    ceilings = {}
    for task in wanted:
        note = TASKS[task].note
        key = (note, token_limit(tokenizer, task, max_length=max_length, scoring=scoring))
        if key not in read:
            read[key] = facts_read(df, tokenizer, note, limit=key[1])
        features, probs = read[key], np.asarray(oracle[task], dtype=np.float64)
        ceilings[task] = (note_ceiling_probs([features[i] for i in fit], probs[fit], features)
                          if len(fit) else cross_fitted_probs(features, probs, patients))
    return ceilings
