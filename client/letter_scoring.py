"""Multiple-choice letter scoring: how Lang1 turns a decoder into a classifier without a head.

The paper poses each task as a question after the note, with lettered options, and reads the class
probabilities from the next-token logits of the answer letters, normalised over those letters only.
We do the same: a task's prompt is the first tokens of its note, then `TaskSpec.multiple_choice()`
and the answer cue `Answer:`, and its class logits are the causal LM's logits of the letter tokens
(`A`, `B`, …) at the prompt's last real position. Finetuning is LoRA on the answer letter: the
cross-entropy of those normalised letter logits against the gold letter. Nothing is added to the
base, so the untrained model (a zero adapter) is a genuine zero-shot baseline, and the federated
state is the adapter alone.

Each task has its own prompt (the question comes after the note, and causal attention lets the note
see nothing after it). Run one by one, a step reads the note once per task; where the base's
attention takes a block mask, the prompts are packed instead into one sequence per encounter, each
note once and each task's tail after it (client/prompt_packing.py): the same logits at about half
the tokens and memory with the default tasks (bench/results/letter_packing.md). Only the last
position's hidden state goes through the output layer, and only its letter rows are kept:
full-vocabulary logits at every position would cost B × L × V floats.

The letter ids come from the tokenizer, never from a hard-coded table: tokenize the cue followed by
` A` and the cue alone and take the one extra token. A tokenizer that cannot say each letter in
one token (or says two letters with the same token) cannot be scored this way, and we say so.

This module is the protocol (the prompt's text, the letters' token ids, the record written next to
the adapter); the model that scores this way, `LetterModel`, sits beside the head model in
client/model.py, and the prompts are tokenized once in client/data.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sites.tasks import TASKS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ANSWER_CUE = "Answer:"
"""Ends every prompt; the answer letter follows it after a space (`Answer: B`)."""
PROMPTS_FILE = "multiple_choice.json"
"""Written next to a letter-scoring adapter: the prompts and letter ids it was scored with."""


class LetterTokenError(ValueError):
    """The base's tokenizer cannot name each answer letter with one distinct token."""


def prompt_suffix(task: str) -> str:
    """What follows the note in `task`'s prompt: the question, its lettered options, the cue.

    The same text for every encounter: it asks, never answers, so it cannot leak the label.
    """
    return f"\n\n{TASKS[task].multiple_choice()}\n{ANSWER_CUE}"



def suffix_ids(tokenizer: PreTrainedTokenizerBase, task: str) -> list[int]:
    """`prompt_suffix(task)` in `tokenizer`'s ids, no special tokens: appended to every note."""
    return tokenizer(prompt_suffix(task), add_special_tokens=False)["input_ids"]


def note_budget(tokenizer: PreTrainedTokenizerBase, task: str, max_length: int) -> int:
    """Tokens left for the note (special tokens included) in `task`'s prompt of `max_length`
    tokens: the note is cut to it, so the question always fits. One function, so the encoder and
    the note-level ceiling (client/note_ceiling.py) cut at the same token."""
    suffix = len(suffix_ids(tokenizer, task))
    budget = max_length - suffix
    if budget < 1:
        # named as the run config spells it: that is where a user sets it
        raise ValueError(f"`max-length` is {max_length} but task `{task}`'s question, options and "
                         f"answer cue take {suffix} tokens with this tokenizer; expected "
                         f"`max-length` > {suffix} with `scoring` 'letters'")
    return budget

def letter_token_ids(tokenizer: PreTrainedTokenizerBase, letters: str, *, base: str
                     ) -> tuple[int, ...]:
    """The token id of each answer letter as it follows the cue (`Answer: A` minus `Answer:`)."""
    cue = tokenizer(ANSWER_CUE, add_special_tokens=False)["input_ids"]
    ids = []
    for letter in letters:
        full = tokenizer(f"{ANSWER_CUE} {letter}", add_special_tokens=False)["input_ids"]
        extra = full[len(cue):]
        if full[: len(cue)] != cue or len(extra) != 1:
            raise LetterTokenError(
                f"`base` {base!r}: its tokenizer ({type(tokenizer).__name__}) writes answer letter "
                f"{letter!r} after {ANSWER_CUE!r} as tokens "
                f"{tokenizer.convert_ids_to_tokens(extra)}; letter scoring needs exactly one "
                "token per letter — expected `scoring` 'head' for this base")
        ids.append(extra[0])
    if len(set(ids)) != len(ids):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        raise LetterTokenError(
            f"`base` {base!r}: its tokenizer ({type(tokenizer).__name__}) gives answer letters "
            f"{list(letters)} the tokens {tokens}, not all distinct (unknown letters?); letter "
            "scoring needs one distinct token per letter — expected `scoring` 'head' for this "
            "base")
    return tuple(ids)


def save_letter_prompts(tasks: Sequence[str], letter_ids: Sequence[int], out_dir: Path) -> None:
    """Record, next to the adapter, how each of `tasks` was posed and which tokens were scored
    (`letter_ids`: the token id of `A`, `B`, … as `letter_token_ids` gave them)."""
    prompts = {
        t: {"prompt_suffix": prompt_suffix(t), "letters": list(TASKS[t].letters),
            "letter_token_ids": list(letter_ids[: TASKS[t].num_classes]),
            "class_names": list(TASKS[t].class_names)}
        for t in tasks
    }
    record = {"scoring": "letters", "answer_cue": ANSWER_CUE, "tasks": prompts}
    (Path(out_dir) / PROMPTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
