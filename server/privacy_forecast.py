"""`lang1-fl privacy forecast`: what each site's planned run will spend, before it starts.

Built from exactly what the ClientApp builds its plan from — the site YAML's budget, the number of
training encounters (read from the table's split column alone, no note is opened), the batch
size, and rounds × local steps from the run configuration — so the realised ε at the end of the
run is the forecast's (the ledger's last entry equals it; tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

from client.privacy_plan import PrivacyPlan, plan_privacy
from sites.config import ConsortiumConfig
from sites.dataset import count_training_encounters


@dataclass(frozen=True)
class SiteForecast:
    site: str
    examples: int
    rounds: int
    steps_per_round: int
    plan: PrivacyPlan | None
    """None for a training site without DP."""


def forecast(consortium: ConsortiumConfig, *, rounds: int, local_steps: int) -> list[SiteForecast]:
    """One forecast per training site; `local_steps` 0 means each site's own `local_steps`.

    Raises `InvalidSiteConfig` for a δ that is not below 1/n, as the site itself would.
    """
    rows = []
    for site in consortium.training_sites:
        steps = local_steps or site.training.local_steps
        examples = count_training_encounters(site)
        plan = (plan_privacy(site, examples=examples, rounds=rounds, steps_per_round=steps)
                if site.is_private else None)
        rows.append(SiteForecast(site.name, examples, rounds, steps, plan))
    return rows


def render(rows: list[SiteForecast]) -> str:
    """A fixed-width table a coordinator or reviewer reads before launching."""
    header = (f"{'site':<16} {'DP':<5} {'n train':>8} {'q':>8} {'steps':>11} {'σ':>8} "
              f"{'ε planned':>10} {'ε budget':>9} {'δ':>8} accountant")
    lines = [header, "-" * len(header)]
    for row in rows:
        steps = f"{row.rounds}×{row.steps_per_round}"
        if row.plan is None:
            lines.append(f"{row.site:<16} {'NO':<5} {row.examples:>8} {'–':>8} {steps:>11} "
                         f"{'–':>8} {'∞ (no DP)':>10} {'–':>9} {'–':>8} –")
            continue
        plan = row.plan
        lines.append(
            f"{row.site:<16} {'yes':<5} {row.examples:>8} {plan.sample_rate:>8.4f} {steps:>11} "
            f"{plan.noise_multiplier:>8.4f} {plan.planned_epsilon:>10.3f} "
            f"{plan.target_epsilon:>9g} {plan.delta:>8.0e} {plan.accountant}")
    return "\n".join(lines)
