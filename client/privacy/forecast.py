"""`lang1-fl privacy forecast`: what each site's planned run will spend, and what its data has left.

Built from exactly what the ClientApp builds its plan from — the site YAML's budget, the number of
training encounters and patients (read from the table's id and split columns alone, no note is
opened), the batch size, and rounds × local steps from the run configuration — so the realised ε
at the end of the run is the forecast's (the ledger's last entry equals it; tests check it). Next
to it: what the site's lifetime ledger for the same data already holds (read from the site's state
folder, never written), and whether the planned run still fits; a run that does not fit would be
declined by the site before it trains, so `lang1-fl run` refuses it before Flower starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.privacy.budget import Spend, epsilon_with_run, recorded_spend
from client.privacy.ledger import read_ledger
from client.privacy.plan import PrivacyPlan, plan_privacy
from client.state import SiteState
from sites.config import ConsortiumConfig
from sites.dataset import count_training_units, dataset_fingerprint


@dataclass(frozen=True)
class SiteForecast:
    site: str
    examples: int
    """Training records in the site's privacy unit (encounters without DP)."""
    rounds: int
    steps_per_round: int
    plan: PrivacyPlan | None
    """None for a training site without DP."""
    spent: Spend | None = None
    """What the site's ledger for this data holds already (DP sites)."""
    after: float | None = None
    """The data's ε once the planned run has spent all of its allocation (DP sites)."""

    @property
    def fits(self) -> bool:
        """False when the site would decline the run before training it."""
        return (self.plan is None or self.after is None
                or self.after <= self.plan.lifetime_epsilon * (1 + 1e-9))


class RunDoesNotFit(RuntimeError):
    """A DP site's data has too little budget left for the planned run."""


def forecast(consortium: ConsortiumConfig, *, rounds: int, local_steps: int) -> list[SiteForecast]:
    """One forecast per training site; `local_steps` 0 means each site's own `local_steps`.

    Raises `InvalidSiteConfig` for a δ that is not below 1/n, as the site itself would.
    """
    rows = []
    for site in consortium.training_sites:
        steps = local_steps or site.training.local_steps
        counts = count_training_units(site)
        if not site.is_private:
            rows.append(SiteForecast(site.name, counts.encounters, rounds, steps, None))
            continue
        plan = plan_privacy(site, counts=counts, rounds=rounds, steps_per_round=steps)
        entries = read_ledger(SiteState.peek(site, dataset_fingerprint(site)).ledger)
        spent = recorded_spend(entries, None, delta=plan.delta, accountant=plan.accountant)
        rows.append(SiteForecast(site.name, plan.examples, rounds, steps, plan, spent,
                                 epsilon_with_run(entries, plan)))
    return rows


def check_fits(rows: list[SiteForecast]) -> None:
    """Raise `RunDoesNotFit` naming every DP site whose data cannot afford the planned run."""
    short = [row for row in rows if not row.fits]
    if short:
        raise RunDoesNotFit("; ".join(
            f"site {row.site!r} would decline this run: its data has spent ε = "
            f"{row.spent.epsilon:.3f} over {row.spent.entries} earlier rounds, and a run of ε = "
            f"{row.plan.run_epsilon:g} would bring it to {row.after:.3f}, over its lifetime "
            f"budget of {row.plan.lifetime_epsilon:g}" for row in short)
            + " (a budget belongs to the data, not to a run: give the site new data, or a "
            "smaller `privacy.run_epsilon_cap` that fits what is left)")


def render(rows: list[SiteForecast]) -> str:
    """A fixed-width table a coordinator or reviewer reads before launching."""
    header = (f"{'site':<16} {'DP':<5} {'unit':<9} {'n train':>8} {'q':>8} {'steps':>9} "
              f"{'σ':>8} {'ε run':>7} {'ε spent':>8} {'ε after':>8} {'lifetime':>8} {'δ':>8} "
              "fits")
    lines = [header, "-" * len(header)]
    for row in rows:
        steps = f"{row.rounds}×{row.steps_per_round}"
        if row.plan is None:
            lines.append(f"{row.site:<16} {'NO':<5} {'–':<9} {row.examples:>8} {'–':>8} "
                         f"{steps:>9} {'–':>8} {'∞':>7} {'–':>8} {'–':>8} {'–':>8} {'–':>8} "
                         "(no DP)")
            continue
        plan = row.plan
        lines.append(
            f"{row.site:<16} {'yes':<5} {plan.unit:<9} {row.examples:>8} "
            f"{plan.sample_rate:>8.4f} {steps:>9} {plan.noise_multiplier:>8.4f} "
            f"{plan.planned_epsilon:>7.3f} {row.spent.epsilon:>8.3f} {row.after:>8.3f} "
            f"{plan.lifetime_epsilon:>8g} {plan.delta:>8.0e} "
            f"{'yes' if row.fits else 'NO: declined'}")
    return "\n".join(lines)
