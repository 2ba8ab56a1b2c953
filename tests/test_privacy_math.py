"""Privacy arithmetic: golden noise multipliers, ε round trips, and the errors for bad parameters."""

from __future__ import annotations

import warnings

import pytest

from client.privacy.accounting import cumulative_epsilon, epsilon_after, noise_multiplier_for

GOLDEN = dict(target_epsilon=8.0, delta=1e-5, sample_rate=0.01, steps=1000)
# opacus 1.6.0's get_noise_multiplier(ε=8, δ=1e-5, q=0.01, 1000 steps, "rdp"); the search returns
# the upper end of a bisection interval, so the value is exact to the bit.
GOLDEN_RDP_SIGMA = 0.6158447265625


def test_golden_noise_multiplier_matches_opacus():
    from opacus.accountants.utils import get_noise_multiplier

    sigma = noise_multiplier_for(**GOLDEN, accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opacus_sigma = get_noise_multiplier(target_epsilon=8.0, target_delta=1e-5, sample_rate=0.01,
                                            steps=1000, accountant="rdp")
    assert sigma == pytest.approx(opacus_sigma, rel=1e-3)
    assert sigma == pytest.approx(GOLDEN_RDP_SIGMA, rel=1e-3)


@pytest.mark.parametrize(
    "target_epsilon, sample_rate, steps, accountant",
    [(8.0, 0.01, 1000, "rdp"), (1.0, 0.01, 500, "rdp"), (3.0, 0.03, 300, "rdp"),
     (2.0, 0.05, 100, "prv")],
)
def test_epsilon_after_round_trips_the_target(target_epsilon, sample_rate, steps, accountant):
    plan = dict(sample_rate=sample_rate, steps=steps, delta=1e-5, accountant=accountant)
    sigma = noise_multiplier_for(target_epsilon=target_epsilon, **plan)
    spent = epsilon_after(noise_multiplier=sigma, **plan)
    assert spent <= target_epsilon  # the search errs on the safe side
    assert spent == pytest.approx(target_epsilon, rel=0.01)


def test_cumulative_epsilon_composes_rounds():
    round_ = (1.0, 0.01, 100)
    whole = epsilon_after(noise_multiplier=1.0, sample_rate=0.01, steps=300, delta=1e-5,
                          accountant="rdp")
    three_rounds = cumulative_epsilon(history=[round_] * 3, delta=1e-5, accountant="rdp")
    assert three_rounds == pytest.approx(whole, rel=1e-9)
    assert cumulative_epsilon(history=[], delta=1e-5, accountant="rdp") == 0.0


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(target_epsilon=0.0), "`target_epsilon` is 0.0; expected a finite number > 0"),
        (dict(target_epsilon=-1.0), "`target_epsilon`"),
        (dict(delta=0.0), r"`delta` is 0.0; expected 0 < delta < 1"),
        (dict(delta=1.0), "`delta`"),
        (dict(sample_rate=0.0), r"`sample_rate` is 0.0; expected 0 < sample_rate <= 1"),
        (dict(sample_rate=1.5), "`sample_rate`"),
        (dict(steps=0), "`steps` is 0; expected an integer >= 1"),
        (dict(accountant="gdp"), r"`accountant` is 'gdp'; expected one of \['rdp', 'prv'\]"),
    ],
)
def test_invalid_parameters_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        noise_multiplier_for(**{**GOLDEN, "accountant": "rdp", **change})


def test_privacy_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        noise_multiplier_for(8.0, 1e-5, 0.01, 1000, "rdp")  # type: ignore[misc]
    with pytest.raises(ValueError, match="`noise_multiplier`"):
        epsilon_after(noise_multiplier=0.0, sample_rate=0.01, steps=10, delta=1e-5,
                      accountant="rdp")
