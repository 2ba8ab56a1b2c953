"""What a DP site signs its ledger with, and where its noise comes from: both the site's own choice.

The signing key is the one the site's YAML names (`privacy.signing_key`: the SuperNode key from
`lang1-fl deploy site-key`, whose public half the coordinator registered), else a key generated
once in the site's state folder (a simulated site). The noise is a cryptographically secure
generator unless the YAML names a `privacy.noise_seed` — tests and benchmarks only, and the
ledger says so in every entry (`noise_source`).
"""

from __future__ import annotations

import zlib

from client.privacy.noise import CsprngNoise, NoiseSource, TorchNoise
from client.privacy.signing import LedgerSigner, simulated_signer
from client.state import SiteState
from sites.config import SiteConfig


def site_signer(site: SiteConfig, state: SiteState) -> LedgerSigner:
    """The key that signs `site`'s ledger entries."""
    assert site.privacy is not None
    if site.privacy.signing_key is not None:
        return LedgerSigner.from_openssh_file(site.privacy.signing_key)
    return simulated_signer(state.root)


def site_noise_source(site: SiteConfig, *, run: str, server_round: int) -> NoiseSource:
    """A fresh noise source for one DP round at `site` (a seeded one draws other noise in every
    round and run, so that no two rounds share their noise)."""
    assert site.privacy is not None
    if site.privacy.noise_seed is not None:
        round_key = zlib.crc32(f"{run}/{server_round}".encode())
        return TorchNoise(seed=site.privacy.noise_seed * 2**32 + round_key)
    return CsprngNoise()
