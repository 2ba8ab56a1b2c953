"""A site's privacy plan for one run: the noise that makes the run's planned steps spend its share.

The plan is fixed before the run's first step: Poisson sampling rate q = batch size ÷ training
encounters, rounds × local steps DP-SGD steps, and the one noise multiplier σ for which all of them
together spend the site's per-run allocation (`privacy.run_epsilon_cap`, else the whole
`lifetime_epsilon`) at `delta`. Whether that run still fits the site's lifetime budget, given what
earlier runs on the same data spent, is the budget guard's question (`client.privacy.budget`). The
ClientApp, the guard and `lang1-fl privacy forecast` all build the same plan from the same inputs,
so what the forecast prints is what the run spends.

With `privacy.unit: patient` the sampled records are patients (each with all their training
encounters, clipped together; `client.privacy.dp_sgd`), so n counts patients and δ must be below
1/patients; q stays batch size ÷ encounters, so a step still holds about `batch_size` encounters.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.privacy.accounting import epsilon_after, noise_multiplier_for
from sites.config import InvalidSiteConfig, SiteConfig, display_path
from sites.encounter_table import TrainingUnits


@dataclass(frozen=True)
class PrivacyPlan:
    """DP-SGD parameters of one site for one run."""

    site: str
    unit: str
    """`encounter` or `patient`: what one sampled, clipped record is."""
    examples: int
    """Training records n at the site in that unit (the population Poisson sampling draws from)."""
    sample_rate: float
    """q: each record's probability to be in a step's batch."""
    rounds: int
    steps_per_round: int
    run_epsilon: float
    """ε this run plans to spend: the site's per-run allocation."""
    lifetime_epsilon: float
    """The site's budget over every run on this dataset."""
    run_epsilon_cap: float | None
    """`privacy.run_epsilon_cap` as the site declared it (None: the whole lifetime budget)."""
    delta: float
    max_grad_norm: float
    accountant: str
    noise_multiplier: float

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def planned_epsilon(self) -> float:
        """ε of this run's planned steps alone: at most `run_epsilon`, within 0.1 % of it."""
        return epsilon_after(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps=self.total_steps, delta=self.delta, accountant=self.accountant)


def unit_count(site: SiteConfig, counts: TrainingUnits) -> int:
    """n in the site's privacy unit."""
    assert site.privacy is not None
    return counts.patients if site.privacy.unit == "patient" else counts.encounters


def check_delta(site: SiteConfig, counts: TrainingUnits) -> None:
    """δ must be below 1/n: a larger δ allows a mechanism that publishes one whole record."""
    assert site.privacy is not None
    unit = site.privacy.unit
    n = unit_count(site, counts)
    if n < 1:
        raise InvalidSiteConfig(
            f"{display_path(site.source)}: site {site.name!r} has no training {unit}s in "
            f"{site.data.path}; expected at least one to train with DP")
    if not site.privacy.delta < 1.0 / n:
        raise InvalidSiteConfig(
            f"{display_path(site.source)}: `privacy.delta` of site {site.name!r} is "
            f"{site.privacy.delta!r}; expected below 1/n = {1.0 / n:.3g} for its n = {n} "
            f"training {unit}s in {site.data.path}")


def plan_privacy(site: SiteConfig, *, counts: TrainingUnits, rounds: int,
                 steps_per_round: int) -> PrivacyPlan:
    """The plan for a private site's run; raises `InvalidSiteConfig` if δ is not below 1/n."""
    if not site.is_private:
        raise ValueError(f"site {site.name!r} does not train with DP (no enabled `privacy` block)")
    privacy = site.privacy
    check_delta(site, counts)
    sample_rate = min(1.0, site.training.batch_size / counts.encounters)
    return PrivacyPlan(
        site=site.name,
        unit=privacy.unit,
        examples=unit_count(site, counts),
        sample_rate=sample_rate,
        rounds=rounds,
        steps_per_round=steps_per_round,
        run_epsilon=privacy.run_allocation,
        lifetime_epsilon=float(privacy.lifetime_epsilon),
        run_epsilon_cap=None if privacy.run_epsilon_cap is None else float(privacy.run_epsilon_cap),
        delta=float(privacy.delta),
        max_grad_norm=float(privacy.max_grad_norm),
        accountant=privacy.accountant,
        noise_multiplier=noise_multiplier_for(
            target_epsilon=privacy.run_allocation, delta=privacy.delta,
            sample_rate=sample_rate, steps=rounds * steps_per_round,
            accountant=privacy.accountant,
        ),
    )
