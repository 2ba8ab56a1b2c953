"""Two loops of Google's dp-accounting (0.6) PLD code, in numpy: same arithmetic, same results.

dp-accounting walks a dense privacy loss distribution grid point by grid point in Python in two
places: `_get_epsilon_for_delta` (from the largest loss down to ε) and `_truncate_tails` (the
negligible tails after each composition). On the fine grids the ledger's lower bound needs (up to a
few million points) they took 70 % of a verification, seconds each. Here they are cumulative sums:
the same sums in the same order, so the results agree with the library's to floating-point
precision (tests/test_pld_numpy.py pins both against the library). Anything other than a dense PMF
goes to the library itself.

These read the library's private fields (`_probs`, `_lower_loss`, ...); dp-accounting is pinned
to 0.6.* in pyproject.toml, and the tests fail if a new version moves them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

TAIL_MASS_TRUNCATION = 1e-15
"""dp-accounting's default for `PrivacyLossDistribution.compose`."""


def epsilon_for_delta(pld: Any, delta: float) -> float:
    """`pld.get_epsilon_for_delta(delta)`: the smallest ε whose hockey-stick divergence, over both
    adjacency directions, is at most `delta`."""
    pmfs = [pld._pmf_remove] if pld._symmetric else [pld._pmf_remove, pld._pmf_add]
    return max(_pmf_epsilon(pmf, delta) for pmf in pmfs)


def _pmf_epsilon(pmf: Any, delta: float) -> float:
    """`pld_pmf._get_epsilon_for_delta` on one dense PMF. The loop keeps, for the grid points above
    the current one, mass_upper = Σ p and mass_lower = Σ p·e^(−loss), and stops at the first point
    whose loss is at most log((mass_upper − δ) / mass_lower); ε is that log."""
    from dp_accounting.pld import pld_pmf

    if not isinstance(pmf, pld_pmf.DensePLDPmf):
        return float(pmf.get_epsilon_for_delta(delta))
    infinity_mass = pmf._infinity_mass
    if infinity_mass > delta:
        return math.inf
    probs = np.flip(np.asarray(pmf._probs, dtype=np.float64))
    losses = (pmf._lower_loss + len(probs) - 1 - np.arange(len(probs))) * pmf._discretization
    # The loop's state when it reaches each grid point (before adding that point), then the end.
    upper = infinity_mass + np.concatenate(([0.0], np.cumsum(probs)))
    lower = np.concatenate(([0.0], np.cumsum(np.exp(-losses) * probs)))
    with np.errstate(divide="ignore", invalid="ignore"):
        stop = (upper[:-1] > delta) & (lower[:-1] > 0) & (
            np.log((upper[:-1] - delta) / lower[:-1]) >= losses)
    first_stop = int(np.argmax(stop)) if stop.any() else len(probs)
    # The loop's early exit, once exp(-loss) underflows to zero: ε is that loss.
    underflow = (upper[1:first_stop + 1] >= delta) & (lower[1:first_stop + 1] == 0)
    if underflow.any():
        return float(max(0.0, losses[int(np.argmax(underflow))]))
    mass_upper, mass_lower = upper[first_stop], lower[first_stop]
    if mass_upper <= mass_lower + delta:
        return 0.0
    return float(math.log((mass_upper - delta) / mass_lower))


def compose(first: Any, second: Any) -> Any:
    """`first.compose(second)` with the default tail truncation: the FFT convolution by the
    library, the truncation of its tails (`pld_pmf._truncate_tails`) here."""
    from dp_accounting.pld import pld_pmf
    from dp_accounting.pld.privacy_loss_distribution import PrivacyLossDistribution

    composed = first.compose(second, tail_mass_truncation=0)
    pmfs = ([composed._pmf_remove] if composed._symmetric
            else [composed._pmf_remove, composed._pmf_add])
    if not all(isinstance(pmf, pld_pmf.DensePLDPmf) for pmf in pmfs):
        return first.compose(second)
    return PrivacyLossDistribution(*[_truncated(pmf) for pmf in pmfs])


def _truncated(pmf: Any) -> Any:
    """The PMF without the longest prefix and suffix of mass at most half the truncation each;
    pessimistic: the left mass joins the first point and the right mass goes to infinity;
    optimistic: the right mass joins the last point and the left mass is dropped."""
    from dp_accounting.pld import pld_pmf

    probs = np.asarray(pmf._probs, dtype=np.float64)
    threshold = TAIL_MASS_TRUNCATION / 2
    left = _prefix_length(probs, threshold)
    right = len(probs) - _prefix_length(probs[::-1], threshold)
    right = max(right, left + 1)
    left_mass, right_mass = np.sum(probs[:left]), np.sum(probs[right:])
    kept = probs[left:right].copy()
    infinity_mass = pmf._infinity_mass
    if pmf._pessimistic_estimate:
        kept[0] += left_mass
        infinity_mass += right_mass
    else:
        kept[-1] += right_mass
    return pld_pmf.DensePLDPmf(pmf._discretization, pmf._lower_loss + left, kept,
                               infinity_mass, pmf._pessimistic_estimate)


def _prefix_length(probs: np.ndarray, threshold: float) -> int:
    """The length of the longest prefix whose running sums all stay at most `threshold`."""
    over = np.cumsum(probs) > threshold
    return int(np.argmax(over)) if over.any() else len(probs)
