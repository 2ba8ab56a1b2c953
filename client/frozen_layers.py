"""The frozen lower layers of a base whose LoRA adapter sits on its top layers only (`lora-layers`),
computed once per note and replayed from memory afterwards.

With the adapter on the top `k` of `n` transformer layers, layers `0 … n-k-1` see no trainable
weight: the base is frozen, its own dropout is off (`client.model.load_base_config`) and they carry
no LoRA, so the hidden state they hand to layer `n-k` is a fixed function of the note's tokens.
A site visits the same notes every round (its training split at each step, its validation and test
splits at each evaluation), so `FrozenLayers` keeps that state per note and runs only the top
layers afterwards: the forward pass shrinks by the share of layers frozen, and the backward pass
never reaches them anyway. Gradients, per-encounter gradients under DP-SGD (opacus's hooks sit on
the top layers' LoRA modules and the heads, which still run) and the loss are those of the full
model; only what is recomputed changes.

A note's entry is keyed by a digest of its real (unpadded) token ids, the only thing the frozen
layers read under right padding (pad positions are masked as keys, so their states never reach a
real token): equal notes share an entry whichever split, subset or site they come from, and the
entry lives on the model, which is built for one base, device and dtype (client/site.py). It is
computed in eval mode under `no_grad`, so it does not depend on when it was first needed. Entries
stay in host memory (a GPU keeps its memory for the step) up to `capacity` bytes, least recently
used first out. A process that loads a site fills them for all its notes at once, from the site's
state folder where an earlier process stored them (client/frozen_store.py).

The entries are the site's notes as the base reads them: patient data that stays at the site, as
the token ids do.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

log = logging.getLogger(__name__)

CAPACITY_BYTES = 4 * 2**30
"""Default bound of one model's entries. The default consortium's five sites (6,500 encounters,
two notes of 128 tokens, MiniLM's 384 floats a token) need about 2.6 GiB in a process that
serves them all."""


def transformer_layers(base: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the base's stack of transformer layers and that stack's attribute name
    (BERT `encoder.layer`, Llama `model.layers`): the `ModuleList` as long as the config says the
    base has layers."""
    count = base.config.num_hidden_layers
    for _, module in base.named_modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == count:
                return module, name
    raise ValueError(f"found no list of {count} transformer layers in {type(base).__name__}; "
                     "expected one `nn.ModuleList` as long as `num_hidden_layers`")


class _Replay(nn.Module):
    """Stands in for the frozen layers: hands the top layers the states it was given."""

    def __init__(self, states: torch.Tensor, as_tuple: bool) -> None:
        super().__init__()
        self.states = states
        self.as_tuple = as_tuple

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor | tuple[torch.Tensor]:
        return (self.states,) if self.as_tuple else self.states


class FrozenLayers:
    """Keeps, per note, the output of a base's lower `frozen` layers and runs the base from there.

    `base` is the transformers model whose forward is called (inside peft's wrapper, which calls
    it); `frozen` counts its lowest layers that carry no trainable weight."""

    def __init__(self, base: nn.Module, frozen: int, *, capacity: int = CAPACITY_BYTES) -> None:
        self.owner, self.name = transformer_layers(base)
        layers = getattr(self.owner, self.name)
        if not 0 < frozen < len(layers):
            raise ValueError(f"frozen layers {frozen}; expected 1..{len(layers) - 1} of the "
                             f"base's {len(layers)}")
        if any(p.requires_grad for layer in layers[:frozen] for p in layer.parameters()):
            raise ValueError(f"the lowest {frozen} layers hold trainable weights; only layers "
                             "without any can be kept")
        self.base = base
        self.frozen = frozen
        self.capacity = capacity
        self._layers = layers
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._as_tuple: bool | None = None
        """Whether a layer returns a tuple (older transformers) or the hidden states."""
        self.hits = 0
        self.misses = 0

    @contextmanager
    def replaying(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Iterator[None]:
        """Within it, a forward pass of the base on exactly these rows runs only the top layers,
        fed the frozen layers' output for each row (computed first for rows not kept yet)."""
        states = self.states(input_ids, attention_mask)
        if self._as_tuple is None:  # every row was read from a store: ask one layer its form
            self._compute(input_ids[:1], attention_mask[:1])
        top = nn.ModuleList([_Replay(states, self._as_tuple), *self._layers[self.frozen:]])
        with self._stack(top):
            yield

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen layers' output [B, L, H] for right-padded rows, zeros at pad positions."""
        _, rows = self._rows(input_ids, attention_mask)
        out = torch.zeros(len(rows), input_ids.shape[1], rows[0].shape[-1], dtype=rows[0].dtype)
        for i, entry in enumerate(rows):
            out[i, : len(entry)] = entry
        return out.to(input_ids.device)

    def keep(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[bytes]:
        """Each row's key, after computing and keeping the output of rows not kept yet."""
        return self._rows(input_ids, attention_mask)[0]

    def _rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
              ) -> tuple[list[bytes], list[torch.Tensor]]:
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [_key(row[:n]) for row, n in zip(input_ids.cpu(), lengths)]
        first = {key: i for i, key in reversed(list(enumerate(keys)))}  # a note twice: once
        found = {key: self._entries[key] for key in first if key in self._entries}
        missing = [i for key, i in first.items() if key not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = self._compute(input_ids[missing], attention_mask[missing])
            for j, i in enumerate(missing):
                found[keys[i]] = fresh[j, : lengths[i]].to("cpu", copy=True)
                self._store(keys[i], found[keys[i]])
        for key in first:
            if key in self._entries:
                self._entries.move_to_end(key)
        return keys, [found[key] for key in keys]

    def entries(self, keys: set[bytes]) -> dict[bytes, torch.Tensor]:
        """The kept output of the notes `keys` (those still kept)."""
        return {k: self._entries[k] for k in keys if k in self._entries}

    def put(self, entries: dict[bytes, torch.Tensor]) -> None:
        """Keep `entries` (read from a site's store, client/frozen_store.py)."""
        for key, entry in entries.items():
            if key not in self._entries:
                self._store(key, entry)

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.base.parameters()).dtype

    @torch.no_grad()
    def _compute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The lower layers' output for these rows: the base run with its stack cut after them
        (what follows the stack, a final norm or a pooler, runs on it and is discarded)."""
        captured: list[torch.Tensor] = []

        def capture(_module: nn.Module, _inputs: object, output: object) -> None:
            self._as_tuple = isinstance(output, tuple)
            captured.append(output[0] if isinstance(output, tuple) else output)

        was_training = self.base.training
        self.base.eval()  # so an entry does not depend on when it was first needed
        handle = self._layers[self.frozen - 1].register_forward_hook(capture)
        try:
            with self._stack(nn.ModuleList(self._layers[: self.frozen])):
                self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        finally:
            handle.remove()
            self.base.train(was_training)
        return captured[0]

    @contextmanager
    def _stack(self, layers: nn.ModuleList) -> Iterator[None]:
        setattr(self.owner, self.name, layers)
        try:
            yield
        finally:
            setattr(self.owner, self.name, self._layers)

    def _store(self, key: bytes, entry: torch.Tensor) -> None:
        self._entries[key] = entry
        self._bytes += entry.numel() * entry.element_size()
        while self._bytes > self.capacity and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.numel() * dropped.element_size()

    @property
    def stored_bytes(self) -> int:
        return self._bytes


def _key(ids: torch.Tensor) -> bytes:
    return hashlib.blake2b(ids.to(torch.int64).numpy().tobytes(), digest_size=16).digest()
