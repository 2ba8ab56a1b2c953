"""The numpy versions of dp-accounting's two PLD loops give the library's results."""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution

from client.privacy.verify_arithmetic import compose, epsilon_for_delta


def _pld(sigma: float, q: float, steps: int, *, pessimistic: bool, grid: float = 1e-3):
    single = privacy_loss_distribution.from_gaussian_mechanism(
        sigma, sampling_prob=q, pessimistic_estimate=pessimistic,
        value_discretization_interval=grid, use_connect_dots=pessimistic)
    return single.self_compose(steps) if steps > 1 else single


CASES = [(0.8, 0.01, 300), (1.5, 0.05, 100), (0.57, 0.05, 300), (3.0, 1.0, 10), (0.6, 0.2, 20),
         (5.0, 0.001, 5), (2.0, 0.5, 1)]


@pytest.mark.parametrize("pessimistic", [False, True])
@pytest.mark.parametrize("sigma, q, steps", CASES)
def test_epsilon_for_delta_is_the_librarys(sigma, q, steps, pessimistic):
    pld = _pld(sigma, q, steps, pessimistic=pessimistic)
    for delta in (1e-8, 1e-5, 1e-3, 0.5):
        ours, theirs = epsilon_for_delta(pld, delta), pld.get_epsilon_for_delta(delta)
        # The library steps its losses down by repeated subtraction; ours multiplies: ~1e-11 apart.
        assert ours == pytest.approx(theirs, abs=1e-9), (delta, ours, theirs)


def test_epsilon_for_delta_is_infinite_when_the_infinity_mass_exceeds_delta():
    pld = _pld(0.3, 1.0, 1, pessimistic=True)
    assert epsilon_for_delta(pld, 1e-300) == pld.get_epsilon_for_delta(1e-300)


@pytest.mark.parametrize("pessimistic", [False, True])
def test_compose_is_the_librarys_to_the_bit(pessimistic):
    first = _pld(0.8, 0.02, 50, pessimistic=pessimistic)
    second = _pld(1.2, 0.05, 30, pessimistic=pessimistic)
    theirs, ours = first.compose(second), compose(first, second)
    for name in ("_pmf_remove", "_pmf_add"):
        a, b = getattr(theirs, name), getattr(ours, name)
        assert (a._lower_loss, a._infinity_mass) == (b._lower_loss, b._infinity_mass)
        assert np.array_equal(a._probs, b._probs)
    assert epsilon_for_delta(ours, 1e-5) == pytest.approx(theirs.get_epsilon_for_delta(1e-5),
                                                          abs=1e-9)
