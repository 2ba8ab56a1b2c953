"""A site's tokenized notes, kept on disk in its own state folder so a fresh process skips the
tokenizer.

On Flower's Deployment Engine a SuperNode starts a new ClientApp process for every message, so the
per-process cache of client/site.py is empty each time, and tokenizing a 1,500-encounter table
took 2–3 s of every train and evaluate message (bench/results/clientapp_cold_start.md). The
encoded splits are therefore also written, once, to `<state folder>/<dataset>/token-cache/`.

An entry is named by a digest of everything that decides its content, all of it the site's own:
the table as read and validated (every row and column, so an edited note, label or split rule
gives a new entry), the tokenizer (its full serialised definition and pad token), `max_length`,
the tasks, the scoring (and, for answer-letter scoring, the prompt text) and this file's format
version. Nothing a server message says is in the key beyond the model settings the site checks
anyway. An entry that cannot be read, or whose recorded key differs from its name, is rebuilt.
Files are safetensors (no pickle: reading one runs no code). The folder keeps the
`KEEP` most recently used entries.

The entries hold token ids of the site's notes, so they are patient data: they stay in the state
folder (mode 0700), which never leaves the site.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from client.data import EncodedNotes, EncodedSplit, ResolvedScoring, encode_site
from client.letter_scoring import prompt_suffix
from sites.files import write_atomic
from sites.tasks import SPLITS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Bump when `encode_site` changes what it produces: every older entry is then ignored
(2: the note-level ceiling's probabilities)."""
KEEP = 4
"""Entries kept per dataset folder (another max-length or task set in one run needs its own)."""
SUFFIX = ".safetensors"


def cached_encode_site(table: pd.DataFrame, tokenizer: PreTrainedTokenizerBase,
                       tasks: tuple[str, ...], *, max_length: int, scoring: ResolvedScoring,
                       cache_dir: Path) -> dict[str, EncodedSplit]:
    """`client.data.encode_site`, read from `cache_dir` when an entry for exactly these inputs
    exists there, else computed and stored."""
    key = cache_key(table, tokenizer, tasks, max_length=max_length, scoring=scoring)
    path = cache_dir / f"{key[:32]}{SUFFIX}"
    if path.is_file():
        splits = _read(path, key)
        if splits is not None:
            os.utime(path)  # most recently used: kept by `_prune`
            log.info("tokenized notes read from %s", path)
            return splits
    splits = encode_site(table, tokenizer, tasks, max_length=max_length, scoring=scoring)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write(path, key, splits)
    _prune(cache_dir)
    return splits


def cache_key(table: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, tasks: tuple[str, ...],
              *, max_length: int, scoring: ResolvedScoring) -> str:
    """sha256 hex of what decides the encoding (see the module docstring)."""
    digest = hashlib.sha256()
    parts = {"version": FORMAT_VERSION, "max_length": max_length, "tasks": list(tasks),
             "scoring": scoring, "columns": [str(c) for c in table.columns],
             "dtypes": [str(t) for t in table.dtypes], "tokenizer": tokenizer_digest(tokenizer),
             "prompts": [prompt_suffix(t) for t in tasks] if scoring == "letters" else []}
    digest.update(json.dumps(parts, sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 hex of the tokenizer's definition: a fast tokenizer's full serialisation (vocabulary,
    normaliser, pre-tokeniser, special tokens), else its vocabulary; with its pad token and side."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = (backend.to_str() if backend is not None
                  else json.dumps(tokenizer.get_vocab(), sort_keys=True))
    extra = json.dumps([type(tokenizer).__name__, tokenizer.pad_token_id, tokenizer.padding_side])
    return hashlib.sha256((definition + extra).encode()).hexdigest()


def _write(path: Path, key: str, splits: dict[str, EncodedSplit]) -> None:
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name, split in splits.items():
        for note, encoded in split.notes.items():
            tensors[f"{name}/notes/{note}/input_ids"] = encoded.input_ids
            tensors[f"{name}/notes/{note}/attention_mask"] = encoded.attention_mask
        for task, encoded in split.prompts.items():
            tensors[f"{name}/prompts/{task}/input_ids"] = encoded.input_ids
            tensors[f"{name}/prompts/{task}/attention_mask"] = encoded.attention_mask
        for task, labels in split.labels.items():
            tensors[f"{name}/labels/{task}"] = labels
        for task, oracle in split.oracle.items():
            tensors[f"{name}/oracle/{task}"] = torch.tensor(oracle)  # copies: read-only arrays
        for task, ceiling in split.note_ceiling.items():
            tensors[f"{name}/note_ceiling/{task}"] = torch.tensor(ceiling)
        if split.patients is not None:
            tensors[f"{name}/patients"] = split.patients
    sizes = {name: split.size for name, split in splits.items()}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {"key": key, "sizes": json.dumps(sizes)}
    write_atomic(path, save(tensors, metadata=metadata))


def _read(path: Path, key: str) -> dict[str, EncodedSplit] | None:
    """The splits stored at `path`, or None (with a warning naming the file) when it is not a
    complete entry for `key`: the caller then encodes again and overwrites it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            if metadata.get("key") != key:
                raise ValueError(f"it records key {metadata.get('key')!r}, expected {key!r}")
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        sizes = json.loads(metadata["sizes"])
        return {name: _split(tensors, name, int(sizes[name])) for name in SPLITS}
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        log.warning("token cache %s cannot be used (%s); tokenizing again and replacing it",
                    path, error)
        return None


def _split(tensors: dict[str, torch.Tensor], name: str, size: int) -> EncodedSplit:
    def group(kind: str) -> dict[str, torch.Tensor]:
        prefix = f"{name}/{kind}/"
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    def notes(kind: str) -> dict[str, EncodedNotes]:
        found = group(kind)
        owners = sorted({k.rsplit("/", 1)[0] for k in found})
        return {o: EncodedNotes(found[f"{o}/input_ids"], found[f"{o}/attention_mask"])
                for o in owners}

    for values in (group("labels"), group("oracle"), group("note_ceiling")):
        if any(len(v) != size for v in values.values()):
            raise ValueError(f"split {name!r} holds tensors of another length than {size}")
    return EncodedSplit(notes=notes("notes"), labels=group("labels"),
                        oracle={t: v.numpy() for t, v in group("oracle").items()}, size=size,
                        prompts=notes("prompts"), patients=tensors.get(f"{name}/patients"),
                        note_ceiling={t: v.numpy() for t, v in group("note_ceiling").items()})


def _prune(cache_dir: Path) -> None:
    entries = sorted(cache_dir.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[KEEP:]:
        stale.unlink(missing_ok=True)
