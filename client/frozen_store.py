"""A site's frozen-layer outputs on disk, in its own state folder, so that every process serving it
starts with all of them.

`client.frozen_layers.FrozenLayers` keeps them in the memory of one process. Flower's simulation
runs a site's messages in whichever of its actor processes is free, and a deployed SuperNode
without a site worker starts a process per message: each would otherwise compute them again,
note by note, as it meets them. So when a process first loads a site (client/site.py), it reads
the site's file, or computes the output for every note of every split at once (one pass of the
frozen layers, no gradient) and writes it.

A file is named by a digest of everything that decides its content: the notes' token ids and
masks (a changed table gives a new file), the base (its folder, and the name, size and
modification time of every file in it), how many layers are frozen, their dtype and the device
type (CPU and CUDA kernels differ in the last bits). A file whose recorded key differs from its
name, or that cannot be read, is computed again and replaced; two processes writing the same file
each write their own temporary file and rename it, so a reader never sees half of one. The
folder keeps the `KEEP` most recently used files.

The file holds what the base's lower layers make of the site's notes: patient data, kept in the
state folder (mode 0700) beside the token cache, never sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from client.base_model import resolve_base_path
from client.data import EncodedNotes
from client.frozen_layers import FrozenLayers
from client.precision import autocast

log = logging.getLogger(__name__)

KEEP = 2
"""Files kept per dataset folder (another base or `lora-layers` in one run needs its own)."""
SUFFIX = ".safetensors"
FORMAT_VERSION = 1


def load_or_compute(frozen: FrozenLayers, notes: Sequence[EncodedNotes], *, base: str,
                    folder: Path, batch_size: int = 32) -> None:
    """Give `frozen` the output of its layers for every row of `notes`: read from `folder` when a
    file for exactly these notes, this base and these layers exists there, else computed and
    written."""
    key = store_key(frozen, notes, base=base)
    path = folder / f"{key[:32]}{SUFFIX}"
    started = time.perf_counter()
    if path.is_file() and _read(frozen, path, key):
        os.utime(path)  # most recently used: kept by `_prune`
        log.info("frozen layers' output of %d notes read from %s (%.1f s)",
                 sum(len(n.input_ids) for n in notes), path, time.perf_counter() - started)
        return
    keys = set()
    for encoded in notes:
        order = torch.argsort(encoded.lengths, stable=True)  # evenly padded batches
        for index in order.split(batch_size):
            ids, mask = encoded.batch(index, frozen.device)
            with autocast(frozen.device, frozen.dtype):  # as in a training step or an evaluation
                keys.update(frozen.keep(ids, mask))
    folder.mkdir(parents=True, exist_ok=True)
    _write(path, key, frozen.entries(keys))
    _prune(folder)
    log.info("frozen layers' output of %d notes computed and stored in %s (%.1f s)", len(keys),
             path, time.perf_counter() - started)


def store_key(frozen: FrozenLayers, notes: Sequence[EncodedNotes], *, base: str) -> str:
    """sha256 hex of what decides the stored output (see the module docstring)."""
    digest = hashlib.sha256()
    folder = Path(resolve_base_path(base))
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    digest.update(json.dumps({
        "version": FORMAT_VERSION, "frozen": frozen.frozen, "dtype": str(frozen.dtype),
        "device": frozen.device.type, "base": str(folder.resolve()),
        "files": [(str(p.relative_to(folder) if folder.is_dir() else p.name),
                   p.stat().st_size, p.stat().st_mtime_ns) for p in files],
    }, sort_keys=True).encode())
    for encoded in notes:
        digest.update(encoded.input_ids.to(torch.int64).numpy().tobytes())
        digest.update(encoded.attention_mask.to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


def _write(path: Path, key: str, entries: dict[bytes, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k.hex(): v.contiguous() for k, v in entries.items()}, str(tmp),
                  metadata={"key": key})
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(frozen: FrozenLayers, path: Path, key: str) -> bool:
    """Put the entries stored at `path` into `frozen`; False (with a warning naming the file) when
    it is not a complete file for `key`, which the caller then computes again and replaces."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            if (file.metadata() or {}).get("key") != key:
                raise ValueError(f"it records key {(file.metadata() or {}).get('key')!r}, "
                                 f"expected {key!r}")
            entries = {bytes.fromhex(name): file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        log.warning("frozen-layer store %s cannot be used (%s); computing it again and replacing "
                    "it", path, error)
        return False
    frozen.put(entries)
    return True


def _prune(folder: Path) -> None:
    stored = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in stored[KEEP:]:
        stale.unlink(missing_ok=True)
