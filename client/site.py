"""Which hospital this node is, and making sure its data is on disk.

In simulation every node runs the same code, so the node's partition id picks the consortium's
N-th site; in deployment the hospital names its own site YAML in the SuperNode's `--node-config`
(`site-config="/etc/lang1-fl/site.yaml"`), and the consortium file is not needed at the site.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from client.data import EncodedSplit
from client.frozen_store import load_or_compute
from client.memory_plan import MemoryPlan, plan_memory
from client.model import (
    ModelSettings,
    TaskModel,
    base_scoring,
    build_model,
    load_tokenizer,
    select_device,
)
from client.precision import base_weights_dtype
from client.settings import ClientSettings
from client.state import SiteState
from client.token_cache import cached_encode_site
from sites.config import InvalidSiteConfig, SiteConfig, load_consortium, load_site
from sites.dataset import read_site_table, table_fingerprint, write_site_table
from sites.encounter_table import InvalidSiteData
from sites.importers.tables import read_columns
from sites.pooling import with_pooled_site
from sites.synthetic import generate_site

log = logging.getLogger(__name__)


def resolve_site(node_config: Mapping[str, object], settings: ClientSettings) -> SiteConfig:
    """The site this node serves, from `site-config` (deployment) or `partition-id` (simulation)."""
    if "site-config" in node_config:
        return load_site(str(node_config["site-config"]), data_root=settings.data_dir)
    if "partition-id" not in node_config:
        raise InvalidSiteConfig(
            "node config: neither `site-config` (path to the site YAML) nor `partition-id` "
            "(simulation) is set; start the SuperNode with --node-config 'site-config=\"...\"'"
        )
    consortium = load_consortium(settings.consortium, data_root=settings.data_dir)
    if settings.experiment == "transfer":  # the CLI wrote the pooled table before the run
        consortium = with_pooled_site(consortium, data_dir=settings.data_dir)
    partition = int(node_config["partition-id"])
    partitions = int(node_config.get("num-partitions", len(consortium.sites)))
    if partitions != len(consortium.sites):
        raise InvalidSiteConfig(
            f"{consortium.source}: the simulation has {partitions} nodes but the consortium lists "
            f"{len(consortium.sites)} sites; set --federation-config "
            f"'num-supernodes={len(consortium.sites)}' (`lang1-fl run` sets it for you)"
        )
    site = consortium.sites[partition]
    ensure_site_data(site, seed=consortium.seed)
    return site


def ensure_site_data(site: SiteConfig, *, seed: int) -> None:
    """Generate a simulated site's synthetic table if it is missing, with the consortium's seed so
    that it equals what `lang1-fl sites generate` writes; a real site's missing file is an error
    (raised by the reader, naming the file)."""
    if site.synthetic is None:
        return
    if site.data.path.exists():
        _check_generated_size(site)
        return
    log.info("site %s: generating %d synthetic encounters into %s", site.name,
             site.synthetic.encounters, site.data.path)
    site.data.path.parent.mkdir(parents=True, exist_ok=True)
    write_site_table(generate_site(site.synthetic, site_name=site.name, seed=seed), site.data)


def _check_generated_size(site: SiteConfig) -> None:
    """A table already at a synthetic site's path must have the encounters its `synthetic` block
    declares: two consortia that size one hospital differently at one path would otherwise
    share whichever table was generated first, and a run would silently train on the wrong one."""
    if not site.data.is_table:
        return
    column = site.data.columns.get("encounter_id", "encounter_id")
    rows = len(read_columns(site.data, [column], site_name=site.name))
    if rows != site.synthetic.encounters:
        raise InvalidSiteData(
            f"{site.data.path}: site {site.name!r} declares `synthetic.encounters: "
            f"{site.synthetic.encounters}` but the table there has {rows} encounters (generated "
            "for another consortium?); give the site its own `data.path`, or delete the file to "
            "generate it again"
        )


# -----------------------------------------------------------------------------------------------
# The per-process cache that makes rounds cheap: base model, tokenizer and tokenized site data.
#
# Flower rebuilds the ClientApp for every message, but a simulation actor (or a SuperNode's app
# process) lives for the whole run. Loading the base model and tokenizing a hospital's notes once per
# process instead of once per message is what keeps a round's cost at the training itself. One model
# object serves every site an actor hosts: each message overwrites its adapter and heads first.
# -----------------------------------------------------------------------------------------------


log = logging.getLogger(__name__)


@dataclass
class SiteRuntime:
    """A site's model (shared with other sites of this process) and its encoded splits."""

    model: TaskModel
    splits: dict[str, EncodedSplit]
    device: torch.device
    fingerprint: str
    """The site's dataset fingerprint (`sites.dataset.table_fingerprint`): keys its state."""


_MODELS: dict[tuple[ModelSettings, str, torch.dtype], TaskModel] = {}
_SPLITS: dict[tuple[str, str, tuple, tuple], tuple[dict[str, EncodedSplit], str]] = {}
"""Keyed by the model's key, the whole `ModelSettings` in it: base, `max_length`, tasks and
`scoring` all change what is encoded (a letter-scoring model reads per-task prompts, not bare
notes)."""


def _data_stamp(path: Path) -> tuple:
    """Size and modification time of the site's table (every file of a table folder)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


def site_memory_plan(site: SiteConfig, settings: ModelSettings, device: torch.device
                     ) -> MemoryPlan:
    """The memory plan of one of `site`'s training steps: its physical batch (the whole batch,
    or pieces of `training.max_physical_batch_size`) on its own device."""
    training = site.training
    batch = training.max_physical_batch_size or training.batch_size
    half = base_weights_dtype(device, private=site.is_private,
                              precision=site.precision) == torch.bfloat16  # and activations
    return plan_memory(settings, device=device, batch=batch, private=site.is_private,
                       weight_bytes=2 if half else 4, activation_bytes=2 if half else 4)


def site_runtime(site: SiteConfig, settings: ModelSettings) -> SiteRuntime:
    """Model and data for `site`, built on first use in this process and reused afterwards."""
    device = select_device(site.device)
    dtype = base_weights_dtype(device, private=site.is_private, precision=site.precision)
    model_key = (settings, str(device), dtype)
    if model_key not in _MODELS:
        if not site.is_external:  # it trains: the step must fit the device, checked before loading
            plan = site_memory_plan(site, settings, device)
            log.info("%s", plan.render(site.name))
            plan.check(site.name)
        log.info("loading base model %s on %s (%s)", settings.base, device, dtype)
        _MODELS[model_key] = build_model(settings, device=device, base_dtype=dtype)
    # A site worker outlives runs: a table rewritten in place between them is read afresh
    # (and a model of another device or precision has its own frozen layers to fill)
    data_key = (site.name, str(site.data.path), _data_stamp(site.data.path), model_key)
    if data_key not in _SPLITS:
        table = read_site_table(site)
        fingerprint = table_fingerprint(table)
        if site.is_external:
            # An external system never trains, so its whole table is held out: evaluating all
            # of it (as the paper does with MIMIC) makes its AUROC far less noisy.
            table = table.assign(split="test")
        # A fresh process (each message on the Deployment Engine) reads the notes' token ids
        # from the site's state folder instead of tokenizing them again
        state = SiteState.open(site, fingerprint)
        splits = cached_encode_site(table, load_tokenizer(settings), settings.tasks,
                                    max_length=settings.max_length,
                                    scoring=base_scoring(settings),
                                    cache_dir=state.token_cache_dir)
        log.info("site %s: tokenized %d encounters", site.name, len(table))
        frozen = _MODELS[model_key].frozen
        if frozen is not None:  # every process serving the site starts with all of it
            load_or_compute(frozen, [n for s in splits.values() for n in s.notes.values()],
                            base=settings.base, folder=state.frozen_layers_dir)
        _SPLITS[data_key] = splits, fingerprint
    splits, fingerprint = _SPLITS[data_key]
    return SiteRuntime(model=_MODELS[model_key], splits=splits, device=device,
                       fingerprint=fingerprint)
