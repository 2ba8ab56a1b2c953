"""The model every site trains: a frozen base, a LoRA adapter (peft) and a way to score each task.

Two ways to score, one interface (`TaskModel.task_logits`): encoders get one linear head per task
on a pooled note vector (`MultiTaskModel`); decoders (Lang1/Llama) are asked each task as a
multiple-choice question after the note and scored by the logits of the answer letters, as the
Lang1 paper does (`LetterModel`; the prompt and the letters' tokens in client/letter_scoring.py):
no head, so the untrained model already gives a zero-shot baseline. `ModelSettings.scoring` picks
one; `auto` follows the architecture.

Only the adapter and the heads (if any) ever leave a site (`trainable_state`), so they are the whole
federated state; the base stays frozen and is loaded from a local folder (sites have no network).
The server builds the initial state with the same code and the same seed as every client
(`build_model`), so round 1 starts from identical weights everywhere.

Pooling follows the architecture: encoders (a masked-LM family such as BERT/MiniLM) average the
token states over the attention mask; decoders (Llama/Lang1) read the state of the last non-pad
token, the only one that has seen the whole note under causal attention.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from client.base_model import resolve_base_path
from client.data import MAX_LENGTH_LIMIT, EncodedSplit, ResolvedScoring
from client.frozen_layers import FrozenLayers
from client.letter_scoring import LetterTokenError, letter_token_ids, note_budget
from client.lora import LoraSettings, add_lora
from client.prompt_packing import last_token_logits, pack_prompts, takes_block_mask
from client.run_config import InvalidRunConfig
from sites.tasks import OPTION_LETTERS, TASKS, resolve_tasks
from strategies.exchange import ADAPTER_PREFIX, HEAD_PREFIX

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BASE_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "hidden_dropout_prob",
                       "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")
"""Config fields (BERT, Llama, GPT-2 families) zeroed at load time; see `load_base_config`."""

Pooling = Literal["mean", "last"]
Scoring = Literal["auto", "head", "letters"]
SCORINGS: tuple[str, ...] = ("auto", "head", "letters")

MAX_LENGTH_BY_SCORING: dict[ResolvedScoring, int] = {"head": 128, "letters": 512}
"""The run config's `max-length = 0`, by the scoring the base resolves to (`default_max_length`).
An encoder with heads reads the first 128 tokens: what the shipped default run has always read,
and a cost that fits a run on two CPU cores. A decoder reads 512, the paper's protocol: its prompt
is the note and the task's question after it, so the note keeps what the question takes, and the
paper's Lang1 numbers were measured on the first 512 tokens."""


@dataclass(frozen=True)
class ModelSettings:
    """What to build: the base, the note length, the adapter, the tasks and the init seed (all from
    the run config, `client.settings`; their defaults live once, in pyproject.toml)."""

    base: str
    """`all-MiniLM-L6-v2` (bundled) or the path of a local Hugging Face model folder."""
    max_length: int
    """Tokens kept from the start of each note (truncation), 1..512: the run config's
    `max-length`, its 0 resolved by `default_max_length`."""
    lora: LoraSettings
    tasks: tuple[str, ...]
    """One head per task, in this order."""
    seed: int
    """Seeds the adapter and head initialisation: same seed, same initial weights everywhere."""
    scoring: Scoring
    """`head`: a linear head per task on the pooled note (any base). `letters`: the task as a
    multiple-choice question after the note, scored by the answer letters' logits (causal LMs only;
    `max_length` then covers note and question together). `auto`: `head` for encoders (masked-LM
    families), `letters` for decoders."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_length <= MAX_LENGTH_LIMIT:
            raise ValueError(
                f"`max_length` is {self.max_length}; expected 1..{MAX_LENGTH_LIMIT} tokens"
            )
        resolve_tasks(self.tasks, where="model settings `tasks`")
        if self.scoring not in SCORINGS:
            raise ValueError(f"`scoring` is {self.scoring!r}; expected one of "
                             + ", ".join(repr(s) for s in SCORINGS))


def select_device(preference: str) -> torch.device:
    """`auto` = CUDA when available, else CPU; `cpu`, `cuda` and `cuda:N` are taken literally."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference.startswith("cuda:") and preference[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"`device` is {preference!r} but CUDA is not available here; "
                               "expected 'auto' or 'cpu' on this machine")
        device = torch.device(preference)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"`device` is {preference!r} but only "
                               f"{torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise ValueError(f"`device` is {preference!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def load_tokenizer(settings: ModelSettings) -> PreTrainedTokenizerBase:
    """The base's tokenizer, right-padding, with a pad token (decoders often ship without one)."""
    from transformers import AutoTokenizer

    path = resolve_base_path(settings.base)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"`base` {settings.base!r}: the tokenizer has no pad, eos or unk "
                             "token; expected at least one of them")
        tokenizer.pad_token = fallback
    # Right padding keeps Llama's position ids aligned with the text; pooling reads the mask anyway.
    tokenizer.padding_side = "right"
    return tokenizer


def pooling_for(model_type: str) -> Pooling:
    """Mean pooling for bidirectional encoders (those with a masked-LM head), else last token."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "mean" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


def resolve_scoring(settings: ModelSettings, model_type: str) -> ResolvedScoring:
    """`auto` -> `head` for encoders, `letters` for decoders; `letters` needs a decoder."""
    encoder = pooling_for(model_type) == "mean"
    if settings.scoring == "auto":
        return "head" if encoder else "letters"
    if settings.scoring == "letters" and encoder:
        raise ValueError(
            f"`scoring` is 'letters' but `base` {settings.base!r} is an encoder (model type "
            f"{model_type!r}) that cannot score answer letters; expected 'head' or 'auto' for it"
        )
    return settings.scoring


def base_model_type(base: str) -> str:
    """The `model_type` of `base`'s config.json (nothing else of the base is read)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_base_path(base), local_files_only=True).model_type


def base_scoring(settings: ModelSettings) -> ResolvedScoring:
    """The scoring `settings` resolve to for their base (reads only the base's config.json)."""
    return resolve_scoring(settings, base_model_type(settings.base))


def default_max_length(base: str, scoring: Scoring) -> int:
    """`max-length = 0` (pyproject's default): `MAX_LENGTH_BY_SCORING` of the scoring `base`
    resolves to, as `resolve_scoring` resolves `auto` (the base's config.json is read only then).

    `client.settings.ClientSettings.from_run_config` calls it, and both the server and every
    site read the run config through that one function: from one run config and one base they
    get one number. A `letters` scoring on an encoder is refused later, by `check_base` and
    `build_model`, with the reason."""
    if scoring == "auto":
        scoring = "head" if pooling_for(base_model_type(base)) == "mean" else "letters"
    return MAX_LENGTH_BY_SCORING[scoring]


def check_base(settings: ModelSettings) -> ResolvedScoring:
    """What can be known about the base before anything is built: it is found (a GGUF file is
    converted once), its scoring applies to its architecture, and under answer-letter scoring its
    tokenizer writes each letter as one token and every task's question leaves room for the note
    within `max_length`. Raises with the reason; returns the scoring."""
    try:
        scoring = base_scoring(settings)
    except ValueError as error:  # `scoring = "letters"` on an encoder
        raise InvalidRunConfig(f"run config: {error}") from error
    if scoring == "letters":
        tokenizer = load_tokenizer(settings)
        most = max(TASKS[t].num_classes for t in settings.tasks)
        letter_token_ids(tokenizer, OPTION_LETTERS[:most], base=settings.base)
        for task in settings.tasks:
            try:
                note_budget(tokenizer, task, settings.max_length)
            except ValueError as error:  # the question alone fills `max-length`
                raise InvalidRunConfig(f"run config: {error}") from error
    return scoring


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """[B, L, H] token states -> [B, H] note vectors (works for left or right padding)."""
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (attention_mask.long() * positions).argmax(dim=1)  # index of the last 1 in each row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class TaskModel(nn.Module):
    """What training, DP training and evaluation see of a model, whichever way it scores.

    `backbone` is the peft-wrapped base (its LoRA weights are the adapter); `heads` holds the task
    heads, empty for a model without any; `task_logits` gives unnormalised class scores per task,
    so log-probabilities are their `log_softmax` and the training loss their cross-entropy.
    """

    backbone: nn.Module
    heads: nn.ModuleDict
    scoring: ResolvedScoring
    frozen: FrozenLayers | None = None
    """The lower layers' output kept per note (`MultiTaskModel` with `lora-layers`), else None."""

    @property
    def tasks(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (the adapter sits next to its base layers)."""
        return next(self.backbone.parameters()).device

    @property
    def base_dtype(self) -> torch.dtype:
        """The frozen base's weights' dtype: bf16 where the site computes in bf16
        (`client.precision`), whose autocast reads it; the adapter and heads are fp32 whatever
        it is."""
        return next(p.dtype for name, p in self.backbone.named_parameters() if "lora_" not in name)

    def task_logits(self, data: EncodedSplit, index: torch.Tensor, tasks: tuple[str, ...]
                    ) -> dict[str, torch.Tensor]:
        """Class logits [B, K] per task for rows `index` of `data`, on `self.device`."""
        raise NotImplementedError


class MultiTaskModel(TaskModel):
    """peft-wrapped backbone + one linear head per task; forward returns logits per task."""

    scoring: ResolvedScoring = "head"

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, pooling: Pooling,
                 frozen: FrozenLayers | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.pooling: Pooling = pooling
        self.frozen = frozen

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    def task_logits(self, data: EncodedSplit, index: torch.Tensor, tasks: tuple[str, ...]
                    ) -> dict[str, torch.Tensor]:
        """Each note type read by `tasks` is encoded once and shared by the heads that read it."""
        notes = sorted({TASKS[t].note for t in tasks})
        missing = [n for n in notes if n not in data.notes]
        if missing:
            raise KeyError(f"encoded split has no `{missing[0]}` notes; expected data encoded "
                           "with `scoring` 'head' (client.data.encode_site)")
        device = self.device
        pooled = {note: self.encode(*data.notes[note].batch(index, device)) for note in notes}
        return {t: self.heads[t](pooled[TASKS[t].note]) for t in tasks}

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled note vectors [B, H]; call once per note type and share it across tasks."""
        kwargs = {"use_cache": False} if self.pooling == "last" else {}
        with (self.frozen.replaying(input_ids, attention_mask) if self.frozen is not None
              else nullcontext()):
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return pool(out.last_hidden_state, attention_mask, self.pooling)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tasks: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        pooled = self.encode(input_ids, attention_mask)
        return {task: self.heads[task](pooled) for task in tasks}


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
        """The first K letters' logits of each task's prompt: one decoder pass over all of them,
        the shared note once (client/prompt_packing.py), where the base's attention takes a
        block mask; else one pass per task over its own prompt."""
        missing = [t for t in tasks if t not in data.prompts]
        if missing:
            raise KeyError(f"encoded split has no prompts for task `{missing[0]}`; expected data "
                           "encoded with `scoring` 'letters' (client.data.encode_site)")
        if self.packs_prompts and len(tasks) > 1:
            return self._packed_logits(data, index, tasks)
        device = self.device
        return {t: self(*data.prompts[t].batch(index, device))[:, : TASKS[t].num_classes]
                for t in tasks}

    @property
    def packs_prompts(self) -> bool:
        """True where the base's attention takes a block mask (client/prompt_packing.py)."""
        return takes_block_mask(self.backbone.get_base_model())

    def _packed_logits(self, data: EncodedSplit, index: torch.Tensor, tasks: tuple[str, ...]
                       ) -> dict[str, torch.Tensor]:
        cpu = torch.device("cpu")
        packed = pack_prompts([data.prompts[t].batch(index, cpu) for t in tasks],
                              [TASKS[t].note for t in tasks]).to(self.device)
        logits = last_token_logits(self.backbone.get_base_model(), packed, self.letter_ids)
        return {t: task_logits[:, : TASKS[t].num_classes] for t, task_logits in zip(tasks, logits)}


def load_base_config(settings: ModelSettings) -> PretrainedConfig:
    """The base's config, with the frozen base's own dropout off (attention and hidden states).

    The base is frozen and a site takes a few dozen steps a round: its dropout regularises
    nothing it trains and only adds noise to them (LoRA's own dropout, `lora-dropout`, stays).
    It also costs time: attention dropout makes PyTorch's fused CPU attention fall back to the
    unfused path (a MiniLM step at 256 tokens took 2.3x as long), and drawing the hidden-state
    masks was a fifth of a MiniLM step on the CPU (profiled at 128 tokens).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_base_path(settings.base), local_files_only=True)
    for name in BASE_DROPOUT_FIELDS:
        if hasattr(config, name):
            setattr(config, name, 0.0)
    return config


def build_model(settings: ModelSettings, *, device: torch.device, base_weights: bool = True,
                base_dtype: torch.dtype = torch.float32) -> TaskModel:
    """The model for `settings`' resolved scoring: heads on an encoder (`MultiTaskModel`) or
    answer letters on a causal LM (`LetterModel`); the same seed gives the same initial weights.

    `base_weights=False` is the coordinator's model: it only ever reads and writes the adapter
    and the heads, so the base's weight files are not read and its tensors are allocated but
    never touched (untouched pages cost no memory). The adapter and heads are drawn from the
    same seed in the same order, so they equal every site's to the bit, and a Lang1-7B base
    costs the coordinator neither 28 GB of reading nor of memory.

    `base_dtype` is the frozen base's (`client.precision.base_weights_dtype`: bf16 on a device
    that computes it natively, for a site without DP); the adapter and heads are fp32 whatever
    it is."""
    config = load_base_config(settings)
    build = (build_letter_model if resolve_scoring(settings, config.model_type) == "letters"
             else build_head_model)
    return build(settings, config, device=device, base_weights=base_weights,
                 base_dtype=base_dtype)


def _load_base(auto_class, settings: ModelSettings, config: PretrainedConfig, *,
               base_weights: bool, base_dtype: torch.dtype = torch.float32) -> nn.Module:
    if base_weights:
        return auto_class.from_pretrained(resolve_base_path(settings.base), config=config,
                                          local_files_only=True, dtype=base_dtype)
    with torch.device("meta"):
        base = auto_class.from_config(config, dtype=torch.float32)
    return base.to_empty(device="cpu")


def build_head_model(settings: ModelSettings, config: PretrainedConfig, *, device: torch.device,
                     base_weights: bool = True, base_dtype: torch.dtype = torch.float32
                     ) -> MultiTaskModel:
    """Load the frozen base (`AutoModel`), add LoRA and one seeded linear head per task."""
    from transformers import AutoModel

    base = _load_base(AutoModel, settings, config, base_weights=base_weights,
                      base_dtype=base_dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        backbone = add_lora(base, settings.lora, device=device)
        hidden = base.config.hidden_size
        heads = nn.ModuleDict({t: nn.Linear(hidden, TASKS[t].num_classes) for t in settings.tasks})
    frozen = settings.lora.frozen_layers(base.config.num_hidden_layers)
    model = MultiTaskModel(backbone, heads.to(device), pooling_for(base.config.model_type),
                           FrozenLayers(base, frozen) if frozen else None)
    log.info("built %s (%s pooling) with LoRA r=%d on %s%s", settings.base, model.pooling,
             settings.lora.r, device,
             f", layers 0-{frozen - 1} frozen and kept per note" if frozen else "")
    return model


def build_letter_model(settings: ModelSettings, config: PretrainedConfig, *,
                       device: torch.device, base_weights: bool = True,
                       base_dtype: torch.dtype = torch.float32) -> LetterModel:
    """Load the frozen causal LM (`AutoModelForCausalLM`) and add the seeded LoRA adapter."""
    from transformers import AutoModelForCausalLM

    most = max(TASKS[t].num_classes for t in settings.tasks)
    letter_ids = letter_token_ids(load_tokenizer(settings), OPTION_LETTERS[:most],
                                  base=settings.base)
    base = _load_base(AutoModelForCausalLM, settings, config, base_weights=base_weights,
                      base_dtype=base_dtype)
    vocab = base.get_output_embeddings().out_features
    if max(letter_ids) >= vocab:
        raise LetterTokenError(f"`base` {settings.base!r}: letter token ids {letter_ids} exceed "
                               f"the output vocabulary ({vocab}); expected a matching tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        backbone = add_lora(base, settings.lora, device=device)
    log.info("built %s (answer-letter scoring) with LoRA r=%d on %s", settings.base,
             settings.lora.r, device)
    return LetterModel(backbone, settings.tasks, letter_ids)


def trainable_state(model: TaskModel) -> dict[str, np.ndarray]:
    """The federated state: `adapter.<peft key>` and `head.<task>.weight|bias` (none for a model
    without heads), float32 numpy."""
    from peft import get_peft_model_state_dict

    state = {ADAPTER_PREFIX + k: v for k, v in get_peft_model_state_dict(model.backbone).items()}
    state.update({HEAD_PREFIX + k: v for k, v in model.heads.state_dict().items()})
    return {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in state.items()}


def load_trainable_state(model: TaskModel, state: Mapping[str, np.ndarray]) -> None:
    """Load adapter and heads; names and shapes must match exactly (the first mismatch is named)."""
    from peft import set_peft_model_state_dict

    expected = {k: v.shape for k, v in trainable_state(model).items()}
    for key in sorted(set(expected) | set(state)):
        if key not in state:
            raise KeyError(f"trainable state lacks `{key}`; expected all {len(expected)} keys "
                           f"of this model (same tasks, LoRA rank and target modules)")
        if key not in expected:
            raise KeyError(f"trainable state has unexpected key `{key}`; expected only "
                           f"`{ADAPTER_PREFIX}*` and `{HEAD_PREFIX}*` keys of this model")
        if tuple(np.shape(state[key])) != tuple(expected[key]):
            raise ValueError(f"trainable state `{key}` has shape {tuple(np.shape(state[key]))}; "
                             f"expected {tuple(expected[key])}")
    device = model.device
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32), device=device)
               for k, v in state.items()}
    n = len(ADAPTER_PREFIX)
    adapter = {k[n:]: v for k, v in tensors.items() if k.startswith(ADAPTER_PREFIX)}
    set_peft_model_state_dict(model.backbone, adapter)
    n = len(HEAD_PREFIX)
    model.heads.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)})
