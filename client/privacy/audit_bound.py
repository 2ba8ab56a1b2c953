"""The statistic of a one-run privacy audit: from correct membership guesses to a lower bound on ε.

ε is what the accountant *claims*; nothing in it would notice a DP-SGD that silently stopped adding
noise or clipping. An audit measures instead: plant m canaries, each included in training with
probability ½ by a coin only the auditor sees, train, then guess from the trained model which were
included. A mechanism that is (ε, δ)-DP cannot let anyone guess much better than a coin biased by
e^ε/(1 + e^ε), so many correct guesses refute every ε below some value: that value is ε_lower, a
lower bound on the privacy loss that holds with probability 1 − β whatever the model, the data or
the attack. If it exceeds the ε the accountant reports, the accounting is wrong.

The bound is Theorem 3.1 ("main theorem") of Steinke, Nasr and Jagielski, *Privacy Auditing with
One (1) Training Run*, NeurIPS 2023 (arXiv 2305.08846): for an (ε, δ)-DP mechanism with m
canaries included independently with probability ½, and guesses T ∈ {−1, 0, +1}^m with ‖T‖₁ ≤ r
made from the mechanism's output (never from the coins), the number W of correct guesses
satisfies, for all v,

    P[W ≥ v] ≤ P[X ≥ v] + 2·m·δ · max_{i = 1..v} P[v − i ≤ X < v] / i,
    X ~ Binomial(r, e^ε / (1 + e^ε)).

At δ = 0 the second term vanishes (W is dominated by the binomial). With v correct guesses out of
r, every ε whose right-hand side is at most β is refuted at confidence 1 − β.

Pure functions, keyword-only parameters, scipy only (no torch): the audit run
(client/privacy/audit.py) produces the counts, this module turns them into ε_lower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special, stats

BETA = 0.05
"""Default significance: ε_lower is wrong (above the true ε) with probability at most β."""
_EPSILON_STEP = 0.05
"""Scan step (in ε) before the root is refined; finer than any ε anyone reads."""
_EPSILON_CEILING = 50.0
"""No count of guesses below ~10^21 refutes an ε this large; the scan stops here."""


def _check_counts(canaries: int, guesses: int, correct: int) -> None:
    for name, value in (("canaries", canaries), ("guesses", guesses), ("correct", correct)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` is {value!r}; expected an integer >= 0")
    if canaries < 1:
        raise ValueError(f"`canaries` is {canaries}; expected at least 1 canary")
    if guesses > canaries:
        raise ValueError(f"`guesses` is {guesses}; expected at most `canaries` = {canaries} "
                         "(one guess per canary at most)")
    if correct > guesses:
        raise ValueError(f"`correct` is {correct}; expected at most `guesses` = {guesses}")


def _check_probability(name: str, value: float, *, low_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (0 < value < 1) if low_open else (0 <= value < 1))
    if not ok:
        bound = "0 < {} < 1" if low_open else "0 <= {} < 1"
        raise ValueError(f"`{name}` is {value!r}; expected {bound.format(name)}")


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """The theorem's bound on P[≥ `correct` right of `guesses`] for an (`epsilon`, `delta`)-DP
    mechanism audited with `canaries` canaries: small values refute (ε, δ)-DP."""
    _check_counts(canaries, guesses, correct)
    _check_probability("delta", delta, low_open=False)
    if not (isinstance(epsilon, (int, float)) and epsilon >= 0 and math.isfinite(epsilon)):
        raise ValueError(f"`epsilon` is {epsilon!r}; expected a finite number >= 0")
    if correct == 0:
        return 1.0
    q = float(special.expit(epsilon))  # e^ε / (1 + e^ε): the accuracy of ε-DP randomized response
    tail = float(stats.binom.sf(correct - 1, guesses, q))  # P[X ≥ v]
    if delta == 0:
        return tail
    i = np.arange(1, correct + 1)
    window = stats.binom.sf(correct - i - 1, guesses, q) - tail  # P[v - i ≤ X < v]
    return min(1.0, tail + 2 * canaries * delta * float(np.max(window / i)))


def epsilon_lower_bound(*, canaries: int, guesses: int, correct: int, delta: float,
                        beta: float = BETA) -> float:
    """ε_lower: the largest ε such that every ε' ≤ ε is refuted at significance `beta`, i.e. the
    theorem's bound on P[≥ `correct` right of `guesses`] is at most `beta` all the way up to it.

    0 when even ε = 0 is not refuted (guesses no better than chance). Scanning from 0 rather than
    bisecting keeps the answer valid should the δ term make the bound non-monotone in ε: it stops
    at the first ε that is not refuted.
    """
    _check_probability("beta", beta, low_open=True)

    def margin(epsilon: float) -> float:  # > 0: refuted
        return beta - p_value(canaries=canaries, guesses=guesses, correct=correct,
                              epsilon=epsilon, delta=delta)

    if margin(0.0) <= 0:
        return 0.0
    low = 0.0
    while low < _EPSILON_CEILING:
        high = low + _EPSILON_STEP
        if margin(high) <= 0:
            return float(optimize.brentq(margin, low, high, xtol=1e-9))
        low = high
    return _EPSILON_CEILING


def grid_epsilon_lower_bounds(*, canaries: int, outcomes: Sequence[tuple[int, int]],
                              delta: float, beta: float = BETA) -> tuple[float, ...]:
    """ε_lower of each point of a grid of guess counts fixed before training, each at `beta` / G;
    their maximum is a valid ε_lower at `beta`.

    `outcomes` holds (guesses, correct) for each of the G guess counts. The theorem covers one
    guess count chosen without looking at the coins; taking the best of G after the fact is
    covered by a union bound: each is above the true ε with probability at most β/G, so the best
    is with probability at most β.
    """
    if not outcomes:
        raise ValueError("`outcomes` is empty; expected one (guesses, correct) pair per guess "
                         "count of the grid")
    share = beta / len(outcomes)
    return tuple(epsilon_lower_bound(canaries=canaries, guesses=r, correct=v, delta=delta,
                                     beta=share) for r, v in outcomes)
