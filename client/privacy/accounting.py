"""Privacy arithmetic for DP-SGD: the noise a planned run needs, and the ε a run has spent.

Pure functions with keyword-only privacy parameters and no state, in the spirit of opacus's
`accountants/analysis/` next to its stateful accountant objects: the site's persisted accountant and
the ledger call these, and so do the forecast and the tests. The mechanism is always the
Poisson-subsampled Gaussian mechanism of DP-SGD, composed once per optimizer step; one "history"
item `(noise_multiplier, sample_rate, steps)` is `steps` such steps with the same parameters, the
shape opacus's accountants keep in `accountant.history`.

opacus is imported lazily, so importing this module costs nothing until ε is actually computed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Literal

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")

# get_noise_multiplier's binary search stops within this fraction of the target ε; its answer is
# always on the safe side (ε ≤ target), so the realised ε lands in [target·(1-x), target].
_SEARCH_RELATIVE_TOLERANCE = 1e-3


def check_accountant(accountant: str) -> None:
    """Raise `ValueError` unless `accountant` is one of `ACCOUNTANTS`."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"`accountant` is {accountant!r}; expected one of {list(ACCOUNTANTS)}")


def check_delta(delta: float) -> None:
    """Raise `ValueError` unless 0 < `delta` < 1."""
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise ValueError(f"`delta` is {delta!r}; expected 0 < delta < 1 (and below 1/n for n examples)")


def check_sample_rate(sample_rate: float) -> None:
    """Raise `ValueError` unless 0 < `sample_rate` ≤ 1 (the Poisson sampling probability)."""
    if not (isinstance(sample_rate, (int, float)) and 0.0 < sample_rate <= 1.0):
        raise ValueError(
            f"`sample_rate` is {sample_rate!r}; expected 0 < sample_rate <= 1 "
            "(expected batch size / training examples)"
        )


def _check_steps(steps: int, *, minimum: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < minimum:
        raise ValueError(f"`steps` is {steps!r}; expected an integer >= {minimum}")


def _check_noise(noise_multiplier: float) -> None:
    if not (isinstance(noise_multiplier, (int, float)) and math.isfinite(noise_multiplier)
            and noise_multiplier > 0):
        raise ValueError(f"`noise_multiplier` is {noise_multiplier!r}; expected a finite number > 0")


def noise_multiplier_for(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: Accountant,
) -> float:
    """The smallest noise multiplier σ whose `steps` DP-SGD steps spend at most `target_epsilon`.

    Computed once, up front, for the whole planned run (rounds × local steps), so that a single
    accountant spanning every round lands on the target. Wraps
    `opacus.accountants.utils.get_noise_multiplier` with a search tolerance relative to the target.
    """
    if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon)
            and target_epsilon > 0):
        raise ValueError(f"`target_epsilon` is {target_epsilon!r}; expected a finite number > 0")
    check_delta(delta)
    check_sample_rate(sample_rate)
    _check_steps(steps, minimum=1)
    check_accountant(accountant)
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        # The binary search probes tiny σ on its way, where opacus warns that its largest RDP order
        # was optimal; that probe is discarded, so the warning says nothing about the answer.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
            epsilon_tolerance=_SEARCH_RELATIVE_TOLERANCE * target_epsilon,
        ))


def cumulative_epsilon(
    *,
    history: Iterable[tuple[float, float, int]],
    delta: float,
    accountant: Accountant,
) -> float:
    """ε at `delta` after composing every `(noise_multiplier, sample_rate, steps)` item of `history`.

    This is what an opacus accountant that saw the whole run reports; an empty history (or only
    zero-step items) has spent nothing and gives 0.0.
    """
    check_delta(delta)
    check_accountant(accountant)
    items = []
    for noise_multiplier, sample_rate, steps in history:
        _check_noise(noise_multiplier)
        check_sample_rate(sample_rate)
        _check_steps(steps, minimum=0)
        if steps:
            items.append((float(noise_multiplier), float(sample_rate), int(steps)))
    if not items:
        return 0.0
    from opacus.accountants import create_accountant

    acct = create_accountant(mechanism=accountant)
    acct.history = items
    return float(acct.get_epsilon(delta=delta))


def epsilon_after(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant,
) -> float:
    """ε at `delta` after `steps` DP-SGD steps of one Poisson-subsampled Gaussian mechanism."""
    return cumulative_epsilon(
        history=[(noise_multiplier, sample_rate, steps)], delta=delta, accountant=accountant
    )
