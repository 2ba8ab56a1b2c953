"""What a ledger's DP-SGD rounds spend, re-derived two ways with Google's dp-accounting: a provable
lower bound, and an independent accountant.

Every entry records (σ, q, steps) of one round; the spend of a history of rounds (the whole ledger,
or one run) is the composition of `steps` Poisson-subsampled Gaussian mechanisms per round, under
add-or-remove-one adjacency, at the ledger's δ:

- Lower bound: dp-accounting's privacy loss distribution (PLD) built with
  `pessimistic_estimate=False` (privacy buckets rounding every loss *down* to the grid, tails
  dropped or moved down), composed by FFT. Its ε is at most the mechanism's true ε, so an entry
  below it understates the spend, whatever accountant the site used.
- Independent accountant: dp-accounting's RDP accountant for entries the site computed with opacus
  "rdp", its pessimistic PLD (connect-the-dots, rounding up) for "prv". Both bound the true ε from
  above; a recorded ε below them is shown as information, not a failure: opacus's RDP and
  dp-accounting's RDP use different order grids and fractional-order bounds, and above ε ≈ 10 opacus
  is often the lower of the two (23.985 against 24.270 at q = 0.05, σ = 0.570, 300 steps, δ =
  1e-5; the privacy review saw 24.04 against 25.17), while both are valid upper bounds.

Rounds are composed incrementally: one PLD per distinct (σ, q, steps), cached, composed into the
history it extends; a run whose history is the ledger's so far shares the ledger's result.

Resolution. Rounding down moves each step's loss by Δ/2 on average, so the lower bound sits about
T·Δ/2 below the true ε after T steps (measured with `bench/ledger_verify.py`: exactly T·Δ/2 below
the closed-form ε of the Gaussian mechanism at q = 1, and about T·Δ/2 below the pessimistic
connect-the-dots PLD, which moves by less than 2e-4 between Δ = 1e-3 and 1e-5). `discretization`
picks Δ so that T·Δ/2 is 0.4 % of the ledger's ε (at least 0.004; ε by dp-accounting's RDP, from
the recorded σ, q and steps, never from the ε the ledger claims), Δ in [1e-5, 1e-3]: an ε
understated by about 0.5 % or more below the true spend is caught. The cost grows as 1/Δ, almost all
of it in dp-accounting building the one-step PLD of each distinct (σ, q) (cached). Measured
(`bench/ledger_verify.py timing`, one process on a shared 2-core machine, load about 3): a 3-run ×
3-round ledger of 100 steps a round at q = 0.01/0.03/0.06 took 11.3 s ("rdp") and 13.6 s ("prv")
cold, 2.5 s and 3.3 s with its round PLDs cached; a 1,000-step entry at q = 0.02, 3.3 s and 5.0 s.

Slack, for floating point only (measured with dp-accounting 0.6.0 and opacus 1.6.0 at δ = 1e-5,
`bench/ledger_verify.py slack` and `margins`): the same discrete distribution composed by two FFT
routes (round by round, or one `self_compose`) gave ε differing by at most 3.5e-9 over σ in
0.55..5, q in 0.01..0.2, 30..1,000 steps, Δ in 1e-4..1e-3. Honest opacus ledgers sit far above the
bound at the verifier's grid: "rdp" by 8 %–77 % (at least 0.24 in ε), "prv" by 0.51 %–12 % (at
least 0.014: its `eps_error` is on the safe side), over q in 0.001..1, 20..1,000 steps, ε in
0.1..24. The slack, 1e-6 absolute plus 1e-6 relative, is 300 times the round-off seen and 10,000
times smaller than the nearest honest margin.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LOWER_BOUND_SLACK_ABSOLUTE = 1e-6
LOWER_BOUND_SLACK_RELATIVE = 1e-6
TARGET_GAP_RELATIVE = 0.004
TARGET_GAP_ABSOLUTE = 0.004
DISCRETIZATION_RANGE = (1e-5, 1e-3)
INDEPENDENT_GRID = 1e-4
"""Grid of the pessimistic PLD: dp-accounting's `PLDAccountant` default (connect-the-dots is
within 2e-4 of the truth already at 1e-3)."""

Round = tuple[float, float, int]
"""(noise_multiplier σ, sample_rate q, steps) of one ledger entry."""


def discretization(*, total_steps: int, epsilon: float) -> float:
    """The PLD grid Δ for `total_steps` steps that spend about `epsilon`: the lower bound then sits
    about `total_steps`·Δ/2 ≈ 0.4 % below the true ε (module doc)."""
    gap = max(TARGET_GAP_RELATIVE * epsilon, TARGET_GAP_ABSOLUTE)
    low, high = DISCRETIZATION_RANGE
    return min(max(2 * gap / max(total_steps, 1), low), high)


def grid_for(rounds: list[Round], *, delta: float) -> float:
    """The grid for a ledger of `rounds`, scaled by their RDP ε: it depends on the recorded
    mechanism only, never on the ε the ledger claims, so a claim cannot coarsen its own check."""
    from dp_accounting.rdp import rdp_privacy_accountant

    orders, rdp = _step_rdp(*rounds[0][:2])[0], 0.0
    for sigma, q, steps in rounds:
        rdp = rdp + steps * _step_rdp(sigma, q)[1]
    epsilon = rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)[0]
    return discretization(total_steps=sum(item[2] for item in rounds), epsilon=float(epsilon))


def independent_name(accountant: str) -> str:
    """The independent accountant for a ledger written with opacus's `accountant`."""
    return "RDP" if accountant == "rdp" else "pessimistic PLD"


def below_lower_bound(recorded: float, lower_bound: float) -> bool:
    """Whether `recorded` understates a spend of at least `lower_bound`, beyond round-off."""
    slack = LOWER_BOUND_SLACK_ABSOLUTE + LOWER_BOUND_SLACK_RELATIVE * lower_bound
    return recorded < lower_bound - slack


@functools.lru_cache(maxsize=16)
def _round_pld(sigma: float, q: float, steps: int, grid: float, pessimistic: bool):
    """The PLD of one round: `steps` subsampled Gaussian steps, rounded down (optimistic) or up."""
    from dp_accounting.pld import privacy_loss_distribution

    single = privacy_loss_distribution.from_gaussian_mechanism(
        sigma, sampling_prob=q, pessimistic_estimate=pessimistic,
        value_discretization_interval=grid,
        use_connect_dots=pessimistic,  # dp-accounting's connect-the-dots is pessimistic only
    )
    return single.self_compose(steps) if steps > 1 else single


@functools.lru_cache(maxsize=64)
def _step_rdp(sigma: float, q: float) -> tuple[Any, Any]:
    """(orders, RDP of one step) by dp-accounting's RDP accountant; a round of n steps has n
    times this RDP (that is how the accountant composes)."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant()
    accountant.compose(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), 1)
    return accountant.orders, accountant.rdp


@dataclass(frozen=True)
class Spend:
    """ε of one history at the ledger's δ."""

    lower_bound: float
    """What the mechanism provably spends at least (optimistic PLD)."""
    independent: float
    """dp-accounting's RDP (ledgers written with "rdp") or pessimistic PLD ("prv")."""


class History:
    """The composition of a growing list of rounds (the ledger's, or one run's)."""

    def __init__(self, *, accountant: str, grid: float, delta: float) -> None:
        self.accountant, self.grid, self.delta = accountant, grid, delta
        self.rounds: tuple[Round, ...] = ()
        self._lower: Any = None  # optimistic PLD
        self._independent: Any = None  # RDP vector ("rdp") or pessimistic PLD ("prv")
        self._spend: Spend | None = None

    def extend(self, item: Round) -> None:
        """Compose one more round."""
        sigma, q, steps = item
        self.rounds += (item,)
        self._spend = None
        self._lower = _compose(self._lower, _round_pld(sigma, q, steps, self.grid, False))
        if self.accountant == "prv":
            self._independent = _compose(self._independent,
                                         _round_pld(sigma, q, steps, INDEPENDENT_GRID, True))
        else:
            step = steps * _step_rdp(sigma, q)[1]
            self._independent = step if self._independent is None else self._independent + step

    def follow(self, other: History) -> None:
        """Become `other`, whose rounds are this history's plus the latest one (a run that is the
        whole ledger so far). Shares its immutable state."""
        self.rounds, self._lower, self._spend = other.rounds, other._lower, other._spend
        self._independent = other._independent

    def spend(self) -> Spend:
        """ε of every round so far, both ways (computed once per state)."""
        if self._spend is None:
            if self.accountant == "rdp":
                from dp_accounting.rdp import rdp_privacy_accountant

                orders = _step_rdp(*self.rounds[0][:2])[0]
                independent = rdp_privacy_accountant.compute_epsilon(
                    orders, self._independent, self.delta)[0]
            else:
                independent = epsilon_for_delta(self._independent, self.delta)
            self._spend = Spend(lower_bound=epsilon_for_delta(self._lower, self.delta),
                                independent=float(independent))
        return self._spend

    @property
    def steps(self) -> int:
        return sum(item[2] for item in self.rounds)


def _compose(history_pld: Any, round_pld: Any) -> Any:
    return round_pld if history_pld is None else compose(history_pld, round_pld)


# -----------------------------------------------------------------------------------------------
# Two loops of Google's dp-accounting (0.6) PLD code, in numpy: same arithmetic, same results.
#
# dp-accounting walks a dense privacy loss distribution grid point by grid point in Python in two
# places: `_get_epsilon_for_delta` (from the largest loss down to ε) and `_truncate_tails` (the
# negligible tails after each composition). On the fine grids the ledger's lower bound needs (up to a
# few million points) they took 70 % of a verification, seconds each. Here they are cumulative sums:
# the same sums in the same order, so the results agree with the library's to floating-point
# precision (tests/test_pld_numpy.py pins both against the library). Anything other than a dense PMF
# goes to the library itself.
#
# These read the library's private fields (`_probs`, `_lower_loss`, ...); dp-accounting is pinned
# to 0.6.* in pyproject.toml, and the tests fail if a new version moves them.
# -----------------------------------------------------------------------------------------------


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
