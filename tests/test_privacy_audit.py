"""The one-run privacy audit's statistic (Steinke, Nasr, Jagielski 2023)."""

from __future__ import annotations

import math

import pytest

from client.privacy_audit_bound import (epsilon_lower_bound, grid_epsilon_lower_bounds,
                                        p_value)

# ---------------------------------------------------------------------------------------------
# The statistic (Steinke, Nasr, Jagielski 2023, Theorem 3.1)

# pitfalls.md's ceilings (every guess right) hold at δ = 1e-5, not at δ = 0, where they are a
# little higher, since the δ term only ever adds to the bound on the tail.
CEILINGS = [  # m, r, δ, ε_lower
    (500, 100, 1e-5, 3.48), (1000, 1000, 1e-5, 5.78),
    (500, 100, 0.0, 3.49), (1000, 1000, 0.0, 5.81),
]


@pytest.mark.parametrize("m, r, delta, ceiling", CEILINGS)
def test_every_guess_right_reaches_the_ceiling(m, r, delta, ceiling):
    assert epsilon_lower_bound(canaries=m, guesses=r, correct=r, delta=delta) == pytest.approx(
        ceiling, abs=0.005)


def test_at_delta_zero_the_bound_is_the_binomial_tail_at_beta():
    epsilon = epsilon_lower_bound(canaries=1000, guesses=200, correct=180, delta=0.0)
    q = math.exp(epsilon) / (1 + math.exp(epsilon))
    from scipy.stats import binom

    assert binom.sf(179, 200, q) == pytest.approx(0.05, rel=1e-6)


def test_more_correct_guesses_never_lower_the_bound():
    bounds = [epsilon_lower_bound(canaries=1000, guesses=200, correct=v, delta=1e-5)
              for v in range(0, 201)]
    assert all(b <= a + 1e-9 for a, b in zip(bounds[1:], bounds)) and bounds[-1] > 4


@pytest.mark.parametrize("r, v", [(200, 100), (200, 110), (1000, 520), (10, 10)])
def test_guesses_near_chance_refute_nothing(r, v):
    # 10 of 10 right happens to a fair coin with probability 1/1024 < β: that does refute ε = 0.
    expected_zero = (r, v) != (10, 10)
    bound = epsilon_lower_bound(canaries=1000, guesses=r, correct=v, delta=1e-5)
    assert (bound == 0.0) == expected_zero


def test_the_delta_term_only_weakens_the_bound():
    common = dict(canaries=1000, guesses=300, correct=280)
    bounds = [epsilon_lower_bound(**common, delta=d) for d in (0.0, 1e-6, 1e-5, 1e-4, 1e-3)]
    assert all(b < a for a, b in zip(bounds, bounds[1:]))
    for epsilon in (0.5, 2.0, 4.0):
        assert p_value(**common, epsilon=epsilon, delta=1e-5) >= p_value(
            **common, epsilon=epsilon, delta=0.0)
    # with 2mδ = 20 the δ term alone exceeds β even at ε = 0: nothing is refuted
    assert epsilon_lower_bound(**common, delta=1e-2) == 0.0


def test_a_grid_pays_for_its_size_with_a_union_bound():
    outcomes = [(100, 95), (200, 180), (1000, 700)]
    grid = grid_epsilon_lower_bounds(canaries=1000, outcomes=outcomes, delta=1e-5)
    alone = [epsilon_lower_bound(canaries=1000, guesses=r, correct=v, delta=1e-5)
             for r, v in outcomes]
    assert all(g < a for g, a in zip(grid, alone))
    assert grid[1] == pytest.approx(epsilon_lower_bound(canaries=1000, guesses=200, correct=180,
                                                        delta=1e-5, beta=0.05 / 3))


@pytest.mark.parametrize("change, message", [
    (dict(guesses=1001), r"`guesses` is 1001; expected at most `canaries` = 1000"),
    (dict(correct=201), r"`correct` is 201; expected at most `guesses` = 200"),
    (dict(canaries=0, guesses=0, correct=0), r"`canaries` is 0; expected at least 1"),
    (dict(correct=-1), r"`correct` is -1; expected an integer >= 0"),
    (dict(delta=1.0), r"`delta` is 1.0; expected 0 <= delta < 1"),
    (dict(beta=0.0), r"`beta` is 0.0; expected 0 < beta < 1"),
])
def test_bad_counts_are_named(change, message):
    arguments = dict(canaries=1000, guesses=200, correct=150, delta=1e-5) | change
    with pytest.raises(ValueError, match=message):
        epsilon_lower_bound(**arguments)
