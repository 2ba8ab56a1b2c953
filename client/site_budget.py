"""A site's privacy accountant for one run, kept on disk in its ledger, with the budget guard.

The ledger *is* the accountant's state: the history an opacus accountant keeps in memory
(`(noise_multiplier, sample_rate, steps)` per round) is exactly what the ledger records, so
reading the ledger back rebuilds the accountant. Nothing lives only in memory: a client process
that restarts, or a simulation actor that serves another site in between, finds the spend where
the last round left it, and no round is counted twice or forgotten. A restarted server re-sends
the round it was in: if the site had answered it, the stored reply is sent again
(client/round_replies.py) and nothing is charged; if the site had only charged it, that charge
stands for the one answer it now gives.

A round is charged before it trains (commit before spend): the guard computes the ε the site would
have after the round; above the budget the round is declined and nothing is written; otherwise the
entry is appended, then the data is touched. A crash during training therefore over-counts one
round at worst, never under-counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.ledger import append_entry, entry_sha256, file_sha256, read_ledger
from client.ledger_signing import simulated_signer
from client.privacy_math import cumulative_epsilon
from client.privacy_plan import PrivacyPlan
from sites.config import SiteConfig

# The plan's noise lands the planned run at most 0.1 % below the target; a round may take the
# spend up to the target itself, with room only for floating-point noise in the composition.
_BUDGET_SLACK = 1e-9


class BudgetExhausted(RuntimeError):
    """Training this round would take the site past its ε budget; the site declines it."""

    def __init__(self, message: str, *, spent: float, plan: PrivacyPlan) -> None:
        super().__init__(message)
        self.spent, self.plan = spent, plan


@dataclass(frozen=True)
class Charge:
    """What the guard allowed: the round's DP-SGD parameters and the ledger entry it wrote."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    """Cumulative ε at the plan's δ once this round has trained."""
    entry: dict[str, Any]

    @property
    def ledger_head(self) -> str:
        """Hash of the ledger's last entry: the anchor the site reports to the server."""
        return entry_sha256(self.entry)


def ledger_path(site: SiteConfig, run_name: str) -> Path:
    """One ledger per site and run: `<ledger_dir>/<run_name>.jsonl`."""
    assert site.privacy is not None and site.privacy.ledger_dir is not None
    return site.privacy.ledger_dir / f"{run_name}.jsonl"


class SiteBudget:
    """The accountant of one site's run, read from and written to its ledger."""

    def __init__(self, site: SiteConfig, run_name: str) -> None:
        if not site.is_private:
            raise ValueError(f"site {site.name!r} does not train with DP")
        self.site, self.run_name = site, run_name
        self.path = ledger_path(site, run_name)

    def charge(self, *, server_round: int, plan: PrivacyPlan, steps: int) -> Charge:
        """Guard, then record, the round about to train; raise `BudgetExhausted` if it would
        overspend.

        The noise multiplier is the one recorded by the run's first round when there is one, so a
        restarted client keeps the noise the run was planned with.
        """
        entries = read_ledger(self.path)
        if entries and entries[-1]["round"] == server_round:
            # Charged, then never answered (the site's stored replies have no such round): the
            # server died mid-round and re-sends it. The charge stands for the one release to come.
            last = entries[-1]
            return Charge(noise_multiplier=last["noise_multiplier"],
                          sample_rate=last["sample_rate"], steps=last["steps"],
                          epsilon=last["epsilon"], entry=last)
        noise = entries[0]["noise_multiplier"] if entries else plan.noise_multiplier
        history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries]
        spent = cumulative_epsilon(history=history, delta=plan.delta, accountant=plan.accountant)
        after = cumulative_epsilon(history=history + [(noise, plan.sample_rate, steps)],
                                   delta=plan.delta, accountant=plan.accountant)
        if after > plan.target_epsilon * (1 + _BUDGET_SLACK):
            raise BudgetExhausted(
                f"site {self.site.name!r} declines round {server_round}: its {steps} steps would "
                f"bring ε to {after:.3f}, over the budget of {plan.target_epsilon:g} at δ = "
                f"{plan.delta:g} (spent so far: ε = {spent:.3f} over {len(entries)} rounds; "
                f"ledger {self.path})", spent=spent, plan=plan)
        # Ledger format 2 with this module's one-ledger-per-run layout (to be replaced by the
        # lifetime ledger): the run's ε is the ledger's, the data is not fingerprinted yet, and
        # the key is the simulated site's own (`<ledger_dir>/signing-key`).
        entry = append_entry(self.path, {
            "run": self.run_name,
            "round": server_round,
            "site": self.site.name,
            "dataset": "unknown",
            "privacy_unit": "encounter",
            "noise_source": "os-seeded",
            "sample_rate": plan.sample_rate,
            "noise_multiplier": noise,
            "max_grad_norm": plan.max_grad_norm,
            "steps": steps,
            "delta": plan.delta,
            "accountant": plan.accountant,
            "epsilon": after,
            "run_epsilon": after,
            "epsilon_budget": plan.target_epsilon,
            "run_epsilon_cap": None,
            "examples": plan.examples,
            "site_config_sha256": file_sha256(self.site.source) if self.site.source else "",
        }, signer=simulated_signer(self.path.parent))
        return Charge(noise_multiplier=noise, sample_rate=plan.sample_rate, steps=steps,
                      epsilon=after, entry=entry)
