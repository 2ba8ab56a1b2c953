"""A site's privacy plan for one run: the noise that makes the whole planned run land on its budget.

The plan is fixed before the first step: Poisson sampling rate q = batch size ÷ training encounters,
rounds × local steps DP-SGD steps, and the one noise multiplier σ for which all of them together
spend at most `target_epsilon` at `delta`. The ClientApp, the budget guard and `lang1-fl privacy
forecast` all build the same plan from the same inputs, so what the forecast prints is what the
run spends.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.privacy_math import epsilon_after, noise_multiplier_for
from sites.config import InvalidSiteConfig, SiteConfig, display_path


@dataclass(frozen=True)
class PrivacyPlan:
    """DP-SGD parameters of one site for one run."""

    site: str
    examples: int
    """Training encounters n at the site (the population Poisson sampling draws from)."""
    batch_size: int
    """Expected batch size: the mean of the Poisson batch sizes."""
    rounds: int
    steps_per_round: int
    target_epsilon: float
    delta: float
    max_grad_norm: float
    accountant: str
    noise_multiplier: float

    @property
    def sample_rate(self) -> float:
        return min(1.0, self.batch_size / self.examples)

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def planned_epsilon(self) -> float:
        """ε after every planned step: at most `target_epsilon`, within 0.1 % of it."""
        return epsilon_after(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                             steps=self.total_steps, delta=self.delta, accountant=self.accountant)


def check_delta(site: SiteConfig, examples: int) -> None:
    """δ must be below 1/n: a larger δ allows a mechanism that publishes one whole record."""
    assert site.privacy is not None
    if examples < 1:
        raise InvalidSiteConfig(
            f"{display_path(site.source)}: site {site.name!r} has no training encounters in "
            f"{site.data.path}; expected at least one to train with DP")
    if not site.privacy.delta < 1.0 / examples:
        raise InvalidSiteConfig(
            f"{display_path(site.source)}: `privacy.delta` of site {site.name!r} is "
            f"{site.privacy.delta!r}; expected below 1/n = {1.0 / examples:.3g} for its n = "
            f"{examples} training encounters in {site.data.path}")


def plan_privacy(site: SiteConfig, *, examples: int, rounds: int,
                 steps_per_round: int) -> PrivacyPlan:
    """The plan for a private site; raises `InvalidSiteConfig` if δ is not below 1/n."""
    if not site.is_private:
        raise ValueError(f"site {site.name!r} does not train with DP (no enabled `privacy` block)")
    privacy = site.privacy
    check_delta(site, examples)
    batch_size = min(site.training.batch_size, examples)
    return PrivacyPlan(
        site=site.name,
        examples=examples,
        batch_size=batch_size,
        rounds=rounds,
        steps_per_round=steps_per_round,
        target_epsilon=float(privacy.target_epsilon),
        delta=float(privacy.delta),
        max_grad_norm=float(privacy.max_grad_norm),
        accountant=privacy.accountant,
        noise_multiplier=noise_multiplier_for(
            target_epsilon=privacy.target_epsilon, delta=privacy.delta,
            sample_rate=min(1.0, batch_size / examples), steps=rounds * steps_per_round,
            accountant=privacy.accountant,
        ),
    )
