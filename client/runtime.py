"""The per-process cache that makes rounds cheap: base model, tokenizer and tokenized site data.

Flower rebuilds the ClientApp for every message, but a simulation actor (or a SuperNode's app
process) lives for the whole run. Loading the base model and tokenizing a hospital's notes once per
process instead of once per message is what keeps a round's cost at the training itself. One model
object serves every site an actor hosts: each message overwrites its adapter and heads first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from client.data import EncodedSplit, encode_site
from client.model import (ModelSettings, TaskModel, base_scoring, build_model, load_tokenizer,
                          select_device)
from sites.config import SiteConfig
from sites.dataset import read_site_table, table_fingerprint

log = logging.getLogger(__name__)


@dataclass
class SiteRuntime:
    """A site's model (shared with other sites of this process) and its encoded splits."""

    model: TaskModel
    splits: dict[str, EncodedSplit]
    device: torch.device
    fingerprint: str
    """The site's dataset fingerprint (`sites.dataset.table_fingerprint`): keys its state."""


_MODELS: dict[tuple[ModelSettings, str], TaskModel] = {}
_SPLITS: dict[tuple[str, str, ModelSettings], tuple[dict[str, EncodedSplit], str]] = {}
"""Keyed by the whole `ModelSettings`: base, `max_length`, tasks and `scoring` all change what is
encoded (a letter-scoring model reads per-task prompts, not bare notes)."""


def site_runtime(site: SiteConfig, settings: ModelSettings) -> SiteRuntime:
    """Model and data for `site`, built on first use in this process and reused afterwards."""
    device = select_device(site.device)
    model_key = (settings, str(device))
    if model_key not in _MODELS:
        log.info("loading base model %s on %s", settings.base, device)
        _MODELS[model_key] = build_model(settings, device=device)
    data_key = (site.name, str(site.data.path), settings)
    if data_key not in _SPLITS:
        table = read_site_table(site)
        fingerprint = table_fingerprint(table)
        if site.is_external:
            # An external system never trains, so its whole table is held out: evaluating all
            # of it (as the paper does with MIMIC) makes its AUROC far less noisy.
            table = table.assign(split="test")
        tokenizer = load_tokenizer(settings)
        splits = encode_site(table, tokenizer, settings.tasks, max_length=settings.max_length,
                             scoring=base_scoring(settings))
        _SPLITS[data_key] = splits, fingerprint
        log.info("site %s: tokenized %d encounters", site.name, len(table))
    splits, fingerprint = _SPLITS[data_key]
    return SiteRuntime(model=_MODELS[model_key], splits=splits, device=device,
                       fingerprint=fingerprint)
