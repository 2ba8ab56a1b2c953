"""One default-consortium site's real notes, encoded with the run's settings, for the benches
that time a site's step and scoring on one thread as a simulated site runs (frozen_layers.py,
cpu_bf16.py)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.quality import build
from client.data import EncodedSplit, encode_site
from client.model import load_tokenizer
from client.run_config import default_run_config
from client.settings import ClientSettings
from sites.config import SiteConfig


@dataclass(frozen=True)
class OneSite:
    settings: ClientSettings
    site: SiteConfig
    splits: dict[str, EncodedSplit]


def one_site(name: str) -> OneSite:
    """The default run's settings and training site `name`'s generated table, encoded at the
    run's max-length; torch on one thread. Exits with the sites there are for another name."""
    import torch

    torch.set_num_threads(1)
    settings = ClientSettings.from_run_config(default_run_config())
    model_settings = settings.model
    with tempfile.TemporaryDirectory() as root:
        consortium, tables = build(None, None, Path(root))
    site = next((s for s in consortium.training_sites if s.name == name), None)
    if site is None:
        raise SystemExit(f"--site {name}: not a training site of the default consortium; "
                         f"expected one of {[s.name for s in consortium.training_sites]}")
    splits = encode_site(tables[site.name], load_tokenizer(model_settings), model_settings.tasks,
                         max_length=model_settings.max_length)
    return OneSite(settings, site, splits)


def timed(work) -> float:
    """Seconds `work()` took."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
