"""Canaries for the privacy audit: fake encounters a model can only know by having trained on them.

A canary is one legitimate training record — one encounter of its own fake patient, with an
admission and a discharge note and a label for every task the site trains — so DP-SGD treats it
exactly like a hospital's encounter (the privacy unit). What makes it a canary:

- its notes are a few words drawn from the tokenizer's vocabulary, each a single token, each used
  by no other canary: nothing in the hospital's notes or the other canaries says anything about
  its labels, so its note is a fresh point the model has to memorise;
- its labels are drawn uniformly at random for every task, independently of the note: a model
  that did not train on the canary cannot predict them better than chance, and one that did can
  only by memorising that record.

The membership score is then how well the trained model predicts the canary's own labels: the sum
over tasks of log p(label | note), each taken relative to the mean log-probability the model gives
that class over all canaries (members and non-members alike, so the score uses nothing the coins
decide). The relative form removes the model's class priors — a task whose positives are rare at
the site would otherwise make every canary drawn positive look like a non-member — and leaves the
part that only memorisation explains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, TASKS

from client.data import EncodedSplit
from client.evaluate import log_probs
from client.model import TaskModel

CANARY_PREFIX = "audit-canary-"
"""Encounter and patient ids of canaries start with this; no hospital id does (validated ids are
the hospital's own, and `make_canaries` refuses a table that already uses the prefix)."""
MIN_WORD_LENGTH = 4
SPACE_MARKS = ("Ġ", "▁")
"""How byte-level BPE (GPT-2, Llama 3) and SentencePiece (Llama 2) vocabularies mark a word's
leading space."""


def canary_words(tokenizer) -> list[str]:
    """Words of the tokenizer's vocabulary that it reads back as exactly one token after a space:
    lowercase ASCII letters, at least `MIN_WORD_LENGTH` long, in vocabulary order. A byte-level
    BPE's `Ġword` and a SentencePiece `▁word` are read without their space mark; the round trip
    through the tokenizer then keeps only what really is one token."""
    candidates = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        word = token[1:] if token[:1] in SPACE_MARKS else token
        if word.isascii() and word.isalpha() and word.islower() and len(word) >= MIN_WORD_LENGTH:
            candidates.append(word)
    words = list(dict.fromkeys(candidates))
    if not words:
        return []
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    return [w for w, ids in zip(words, encoded) if len(ids) == 1]


def make_canaries(*, count: int, tasks: tuple[str, ...], words: list[str], words_per_note: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """`count` canary encounters (split `train`), each with notes of `words_per_note` words and a
    uniformly random label per task. Words are not shared between canaries while the vocabulary
    lasts; beyond that they are reused, each canary still a distinct combination."""
    if count < 1:
        raise ValueError(f"`count` is {count}; expected at least 1 canary")
    if words_per_note < 1:
        raise ValueError(f"`words_per_note` is {words_per_note}; expected at least 1")
    if len(words) < words_per_note:
        raise ValueError(f"the tokenizer offers {len(words)} single-token words; expected at "
                         f"least `words_per_note` = {words_per_note} to write canary notes")
    pool = np.asarray(words)
    unique = count * words_per_note <= len(pool)
    order = rng.permutation(len(pool))
    rows = []
    for i in range(count):
        picked = (order[i * words_per_note:(i + 1) * words_per_note] if unique
                  else rng.choice(len(pool), size=words_per_note, replace=False))
        note = " ".join(pool[picked])
        row = {"encounter_id": f"{CANARY_PREFIX}{i:05d}", "patient_id": f"{CANARY_PREFIX}{i:05d}",
               SPLIT_COLUMN: "train"}
        for note_type in sorted({TASKS[t].note for t in tasks}):
            row[NOTE_COLUMNS[note_type]] = note
        for task in tasks:
            row[TASKS[task].label_column] = int(rng.integers(TASKS[task].num_classes))
        rows.append(row)
    return pd.DataFrame(rows)


def with_canaries(table: pd.DataFrame, canaries: pd.DataFrame) -> pd.DataFrame:
    """The site's table (only the columns canaries have) followed by `canaries`."""
    clash = table["encounter_id"].astype(str).str.startswith(CANARY_PREFIX)
    if clash.any():
        raise ValueError(f"the site's table already has encounter id "
                         f"{table['encounter_id'][clash].iat[0]!r}; expected no id starting "
                         f"with {CANARY_PREFIX!r}, which marks audit canaries")
    return pd.concat([table[list(canaries.columns)], canaries], ignore_index=True)


def membership_scores(model: TaskModel, canaries: EncodedSplit, *, batch_size: int
                      ) -> np.ndarray:
    """Per canary, Σ over tasks of log p(its label | its note) minus the mean of log p(that
    class) over all canaries: high for a canary the model memorised. Eval mode, no dropout."""
    table = log_probs(model, canaries, model.tasks, batch_size=batch_size)
    rows = np.arange(canaries.size)
    score = np.zeros(canaries.size)
    for task, logp in table.items():
        labels = canaries.labels[task].numpy()
        score += logp[rows, labels] - logp.mean(axis=0)[labels]
    return score
