"""What a site tells the server about its privacy: aggregate parameters and its ledger's state.

A `privacy` ConfigRecord rides along with every training reply (Flower checks only the array and
metric records for consistency, so its keys may differ between DP and non-DP sites), and the site
answers a `query.privacy` message at the end of a run with the same record read from its ledger.
Both carry the site's OWN budget (from its own YAML: at a hospital, the hospital's file governs
DP, not the coordinator's consortium file), what its ledger records (ε of the dataset over every
run, ε of this run), the parameters a reviewer needs to re-derive them, the hash of the ledger's
last entry — the anchor that makes a ledger cut short detectable — and the fingerprint of the
key that signs it. Never a local path, a count of anything but the site's own training records,
or a value of any single record.

Its keys are spelled as the same values are in the site's ledger, the site's YAML and the run's
metrics.json (`lifetime_epsilon`, `max_grad_norm`, `noise_multiplier`, ...), so the coordinator
copies them by name.
"""

from __future__ import annotations

from flwr.app import ConfigRecord

from client.privacy.budget import BudgetExhausted, Charge, Spend
from client.privacy.plan import PrivacyPlan
from client.privacy.signing import LedgerSigner
from sites.config import SiteConfig


def _site_fields(site: SiteConfig, dataset: str, signer: LedgerSigner) -> dict[str, object]:
    """The site's own declaration: its budget as its YAML says, and who signs its ledger."""
    privacy = site.privacy
    assert privacy is not None
    return {
        "dp": True,
        "dataset": dataset,
        "unit": privacy.unit,
        "delta": float(privacy.delta),
        "lifetime_epsilon": float(privacy.lifetime_epsilon),
        "run_epsilon_allocation": privacy.run_allocation,
        "max_grad_norm": float(privacy.max_grad_norm),
        "accountant": privacy.accountant,
        "signer": signer.fingerprint,
    }


def _spend_fields(spend: Spend) -> dict[str, object]:
    return {"epsilon": spend.epsilon, "run_epsilon": spend.run_epsilon,
            "ledger_entries": spend.entries, "ledger_head": spend.head or ""}


def plain_record(dataset: str) -> ConfigRecord:
    """A site without DP: says so, and which dataset it trained on."""
    return ConfigRecord({"dp": False, "dataset": dataset, "declined": ""})


def privacy_record(site: SiteConfig, charge: Charge, plan: PrivacyPlan, *, dataset: str,
                   signer: LedgerSigner, noise_source: str) -> ConfigRecord:
    """A trained round: the site's budget, its ledger after the round, the round's parameters."""
    return ConfigRecord({
        **_site_fields(site, dataset, signer),
        "epsilon": charge.epsilon,
        "run_epsilon": charge.run_epsilon,
        "noise_multiplier": charge.noise_multiplier,
        "sample_rate": charge.sample_rate,
        "steps": charge.steps,
        "noise_source": noise_source,
        "ledger_head": charge.ledger_head,
        "declined": "",
    })


def declined_record(site: SiteConfig, declined: BudgetExhausted, *, dataset: str,
                    signer: LedgerSigner) -> ConfigRecord:
    """A round the site declined: its spend so far and the reason, in place of a trained adapter."""
    return ConfigRecord({**_site_fields(site, dataset, signer), **_spend_fields(declined.spent),
                         "declined": str(declined)})


def ledger_record(site: SiteConfig, spend: Spend, *, dataset: str,
                  signer: LedgerSigner) -> ConfigRecord:
    """The answer to `query.privacy`: the ledger as it stands at the end of a run."""
    return ConfigRecord({**_site_fields(site, dataset, signer), **_spend_fields(spend),
                         "run_rounds": ",".join(str(r) for r in spend.run_rounds)})
