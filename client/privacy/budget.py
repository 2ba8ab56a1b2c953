"""A site's lifetime privacy budget: one ledger per site and dataset, charged by every run.

The budget is a property of the data, not of a run. Whatever run name a server sends, and however
many runs it starts, every DP-SGD round a site trains on one dataset is an entry of the same ledger
(`SiteState.ledger`), and the guard composes all of them:

- **A run plans its share.** A run's first round fixes its noise multiplier σ so that its planned
  rounds × local steps spend the site's per-run allocation (`client.privacy.plan`), and the run is
  declined *before anything trains* unless the whole planned run fits what the dataset has left of
  its lifetime budget. Later rounds of the run reuse the σ its first entry recorded.
- **Every round is guarded.** A round is declined if it would take the run past its allocation or
  the dataset past its lifetime budget — also when a server sends more rounds than it planned, or
  renames every round as a new run (each such "run" must fit the budget on its own terms).
- **Commit before spend.** The entry is appended (and fsynced) before the data is touched: a crash
  during training over-counts one round at worst, never under-counts. A round charged and never
  answered (the server died mid-round and re-sends it) is the last entry; the charge stands for the
  one answer the site now gives. Rounds already answered are replayed from the stored reply
  (client/state.py) before the guard is asked.

The ledger *is* the accountant's state: reading it back rebuilds the composition exactly, so a
restarted process, or a simulation actor that served another site in between, finds the spend
where the last round left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.privacy.accounting import cumulative_epsilon
from client.privacy.ledger import append_entry, entry_sha256, file_sha256, read_ledger
from client.privacy.plan import PrivacyPlan
from client.privacy.signing import LedgerSigner
from client.state import SiteState
from sites.config import InvalidSiteConfig, SiteConfig

# The plan's noise lands a planned run at most 0.1 % below its allocation; a round may take the
# spend up to the allocation itself, with room only for floating-point noise in the composition.
_BUDGET_SLACK = 1e-9
# Fields that one ledger composes at: a change would make its ε meaningless.
_CONSTANT = ("delta", "accountant", "privacy_unit")


class BudgetExhausted(RuntimeError):
    """Training would take the site past its budget; the site declines. The message is what the
    server is told: it names the site, the round and the numbers, never a local path."""

    def __init__(self, message: str, *, spent: Spend, plan: PrivacyPlan) -> None:
        super().__init__(message)
        self.spent, self.plan = spent, plan


@dataclass(frozen=True)
class Spend:
    """What a ledger records so far: ε over every entry, and over one run's entries."""

    epsilon: float
    """Cumulative ε of the dataset (every run) at the ledger's δ."""
    run_epsilon: float
    """Cumulative ε of the asked-about run's own entries."""
    entries: int
    run_rounds: tuple[int, ...]
    head: str | None
    """`entry_sha256` of the last entry: the anchor a reviewer checks the ledger against."""


@dataclass(frozen=True)
class Charge:
    """What the guard allowed: the round's DP-SGD parameters and the ledger entry it wrote."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon: float
    """Cumulative ε of the dataset once this round has trained (every run)."""
    run_epsilon: float
    """Cumulative ε of this run once this round has trained."""
    entry: dict[str, Any]

    @property
    def ledger_head(self) -> str:
        """Hash of the ledger's last entry: the anchor the site reports to the server."""
        return entry_sha256(self.entry)


def _history(entries: list[dict[str, Any]]) -> list[tuple[float, float, int]]:
    return [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries]


def recorded_spend(entries: list[dict[str, Any]], run: str | None, *, delta: float,
                   accountant: str) -> Spend:
    """ε the entries of a ledger compose to, for the dataset and for `run` (at the ledger's δ and
    accountant when it has entries, else at the given ones)."""
    if entries:
        delta, accountant = entries[0]["delta"], entries[0]["accountant"]
    mine = [e for e in entries if e["run"] == run]
    return Spend(
        epsilon=cumulative_epsilon(history=_history(entries), delta=delta, accountant=accountant),
        run_epsilon=cumulative_epsilon(history=_history(mine), delta=delta,
                                       accountant=accountant),
        entries=len(entries), run_rounds=tuple(e["round"] for e in mine),
        head=entry_sha256(entries[-1]) if entries else None)


def epsilon_with_run(entries: list[dict[str, Any]], plan: PrivacyPlan) -> float:
    """The dataset's ε if a new run spent all of `plan` after what the ledger holds."""
    planned = (plan.noise_multiplier, plan.sample_rate, plan.total_steps)
    return cumulative_epsilon(history=_history(entries) + [planned], delta=plan.delta,
                              accountant=plan.accountant)


class SiteBudget:
    """The guard of one site's lifetime ledger for one dataset."""

    def __init__(self, site: SiteConfig, state: SiteState, signer: LedgerSigner | None) -> None:
        """`signer` None: the guard can read and compose, not charge."""
        if not site.is_private:
            raise ValueError(f"site {site.name!r} does not train with DP")
        self.site, self.state, self.signer = site, state, signer
        self.path = state.ledger

    def entries(self) -> list[dict[str, Any]]:
        return read_ledger(self.path)

    def spend(self, run: str | None = None) -> Spend:
        """ε recorded so far for the dataset and for `run`."""
        privacy = self.site.privacy
        return recorded_spend(self.entries(), run, delta=privacy.delta,
                              accountant=privacy.accountant)

    def charge(self, *, run: str, server_round: int, plan: PrivacyPlan, steps: int,
               noise_source: str) -> Charge:
        """Guard, then record, the round about to train; raise `BudgetExhausted` if the site
        must decline it (see the module docstring)."""
        if self.signer is None:
            raise ValueError("a SiteBudget without a signer cannot charge a round")
        entries = self.entries()
        self._check_constant(entries, plan)
        if entries and (entries[-1]["run"], entries[-1]["round"]) == (run, server_round):
            last = entries[-1]  # charged, then never answered: the charge stands
            return Charge(noise_multiplier=last["noise_multiplier"],
                          sample_rate=last["sample_rate"], steps=last["steps"],
                          epsilon=last["epsilon"], run_epsilon=last["run_epsilon"], entry=last)
        mine = [e for e in entries if e["run"] == run]
        spent = recorded_spend(entries, run, delta=plan.delta, accountant=plan.accountant)
        where = f"site {self.site.name!r} declines round {server_round} of run {run!r}"
        if mine and server_round <= mine[-1]["round"]:
            raise BudgetExhausted(
                f"{where}: that run's ledger already holds round {mine[-1]['round']}, and a round "
                "trained again would be a second release of the same round", spent=spent,
                plan=plan)
        if not mine:
            whole = epsilon_with_run(entries, plan)
            if whole > plan.lifetime_epsilon * (1 + _BUDGET_SLACK):
                raise BudgetExhausted(
                    f"{where}: the run would spend ε = {plan.run_epsilon:g} over "
                    f"{plan.rounds}×{plan.steps_per_round} steps, bringing this dataset to ε = "
                    f"{whole:.3f}, over its lifetime budget of {plan.lifetime_epsilon:g} at δ = "
                    f"{plan.delta:g} (spent so far: ε = {spent.epsilon:.3f} over {spent.entries} "
                    "rounds of earlier runs)", spent=spent, plan=plan)
        noise = mine[0]["noise_multiplier"] if mine else plan.noise_multiplier
        step = (noise, plan.sample_rate, steps)
        after = cumulative_epsilon(history=_history(entries) + [step], delta=plan.delta,
                                   accountant=plan.accountant)
        run_after = cumulative_epsilon(history=_history(mine) + [step], delta=plan.delta,
                                       accountant=plan.accountant)
        for value, limit, what in ((run_after, plan.run_epsilon, "this run's allocation"),
                                   (after, plan.lifetime_epsilon, "the dataset's lifetime budget")):
            if value > limit * (1 + _BUDGET_SLACK):
                raise BudgetExhausted(
                    f"{where}: its {steps} steps would bring ε to {value:.3f}, over {what} of "
                    f"{limit:g} at δ = {plan.delta:g} (spent so far: ε = {spent.epsilon:.3f} on "
                    f"this dataset, {spent.run_epsilon:.3f} in this run)", spent=spent, plan=plan)
        entry = append_entry(self.path, {
            "run": run,
            "round": server_round,
            "site": self.site.name,
            "dataset": self.state.dataset,
            "privacy_unit": plan.unit,
            "sample_rate": plan.sample_rate,
            "noise_multiplier": noise,
            "max_grad_norm": plan.max_grad_norm,
            "steps": steps,
            "delta": plan.delta,
            "accountant": plan.accountant,
            "epsilon": after,
            "run_epsilon": run_after,
            "epsilon_budget": plan.lifetime_epsilon,
            "run_epsilon_cap": plan.run_epsilon_cap,
            "examples": plan.examples,
            "noise_source": noise_source,
            "site_config_sha256": file_sha256(self.site.source) if self.site.source else "",
        }, signer=self.signer)
        return Charge(noise_multiplier=noise, sample_rate=plan.sample_rate, steps=steps,
                      epsilon=after, run_epsilon=run_after, entry=entry)

    def _check_constant(self, entries: list[dict[str, Any]], plan: PrivacyPlan) -> None:
        """A ledger composes at one δ, one accountant and one privacy unit; a site YAML that
        changed one of them is an error to fix at the site, not a round to decline."""
        if not entries:
            return
        now = {"delta": plan.delta, "accountant": plan.accountant, "privacy_unit": plan.unit}
        for name in _CONSTANT:
            if entries[0][name] != now[name]:
                raise InvalidSiteConfig(
                    f"site {self.site.name!r} has `privacy.{_YAML_KEY[name]}` {now[name]!r}, but "
                    f"the ledger of its data (dataset {self.state.dataset}, in its state folder) "
                    f"composes at {entries[0][name]!r}; one ledger needs one "
                    f"{name.replace('_', ' ')}: set it back in the site YAML")


_YAML_KEY = {"delta": "delta", "accountant": "accountant", "privacy_unit": "unit"}
