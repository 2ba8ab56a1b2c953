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
see nothing after it), so a step runs the decoder once per task, not once per note type as the
head path does. Only the last position's hidden state goes through the output layer, and only its
letter rows are kept: full-vocabulary logits at every position would cost B × L × V floats.

The letter ids come from the tokenizer, never from a hard-coded table: tokenize the cue followed by
` A` and the cue alone and take the one extra token. A tokenizer that cannot say each letter in
one token (or says two letters with the same token) cannot be scored this way, and we say so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from client.model import ModelSettings, TaskModel, add_lora, load_tokenizer, pool, resolve_base_path
from sites.tasks import OPTION_LETTERS, TASKS

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

    from client.data import EncodedSplit

log = logging.getLogger(__name__)

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


class LetterModel(TaskModel):
    """peft-wrapped causal LM scored by the answer letters' logits; it has no heads."""

    scoring = "letters"

    def __init__(self, backbone: nn.Module, tasks: tuple[str, ...], letter_ids: tuple[int, ...]
                 ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()  # nothing but the adapter is trained or exchanged
        self._tasks = tuple(tasks)
        self.letter_ids = tuple(letter_ids)
        """Token id of `A`, `B`, … after the cue, as many as the task with most classes needs."""

    @property
    def tasks(self) -> tuple[str, ...]:
        return self._tasks

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Letter logits [B, len(letter_ids)] at the last real token of each right-padded prompt."""
        causal_lm = self.backbone.get_base_model()  # LoRA layers live inside it
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                         use_cache=False).last_hidden_state
        last = pool(hidden, attention_mask, "last")
        letters = torch.tensor(self.letter_ids, device=last.device)
        return causal_lm.get_output_embeddings()(last)[:, letters]

    def task_logits(self, data: EncodedSplit, index: torch.Tensor, tasks: tuple[str, ...]
                    ) -> dict[str, torch.Tensor]:
        """One decoder pass per task over its own prompt; the first K letters' logits."""
        missing = [t for t in tasks if t not in data.prompts]
        if missing:
            raise KeyError(f"encoded split has no prompts for task `{missing[0]}`; expected data "
                           "encoded with `scoring` 'letters' (client.data.encode_site)")
        device = self.device
        return {t: self(*data.prompts[t].batch(index, device))[:, : TASKS[t].num_classes]
                for t in tasks}


def build_letter_model(settings: ModelSettings, config: PretrainedConfig, *,
                       device: torch.device) -> LetterModel:
    """Load the frozen causal LM (`AutoModelForCausalLM`) and add the seeded LoRA adapter."""
    from transformers import AutoModelForCausalLM

    path = resolve_base_path(settings.base)
    most = max(TASKS[t].num_classes for t in settings.tasks)
    letter_ids = letter_token_ids(load_tokenizer(settings), OPTION_LETTERS[:most],
                                  base=settings.base)
    base = AutoModelForCausalLM.from_pretrained(
        path, config=config, local_files_only=True, dtype=torch.float32
    )
    vocab = base.get_output_embeddings().out_features
    if max(letter_ids) >= vocab:
        raise LetterTokenError(f"`base` {settings.base!r}: letter token ids {letter_ids} exceed "
                               f"the output vocabulary ({vocab}); expected a matching tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        backbone = add_lora(base, settings, device=device)
    log.info("built %s (answer-letter scoring) with LoRA r=%d on %s", path.name,
             settings.lora.r, device)
    return LetterModel(backbone, settings.tasks, letter_ids)


def save_letter_prompts(model: LetterModel, out_dir: Path) -> None:
    """Record, next to the adapter, how each task was posed and which tokens were scored."""
    prompts = {
        t: {"prompt_suffix": prompt_suffix(t), "letters": list(TASKS[t].letters),
            "letter_token_ids": list(model.letter_ids[: TASKS[t].num_classes]),
            "class_names": list(TASKS[t].class_names)}
        for t in model.tasks
    }
    record = {"scoring": "letters", "answer_cue": ANSWER_CUE, "tasks": prompts}
    (Path(out_dir) / PROMPTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
