"""Where a site's ledger and public key are, as a reviewer given the site's state folder finds them."""

from __future__ import annotations

from pathlib import Path

from client.state import SiteState
from sites.config import SiteConfig
from sites.dataset import dataset_fingerprint


def site_ledger(site: SiteConfig) -> tuple[Path, Path]:
    """(the site's lifetime ledger for its current data, the simulated site's public key)."""
    state = SiteState.peek(site, dataset_fingerprint(site))
    return state.ledger, state.root / "signing-key.pub"
