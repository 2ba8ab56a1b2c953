"""One console line per round, for the person watching a run.

Flower's own round output (`[ROUND 3/10]`, "Sampled 5 nodes") says neither how long the run has
taken and has left nor how the model is doing, and `lang1-fl run` hides it (console_filter.py).
After each round the ServerApp logs instead (one line; wrapped here):

    round 3 of 10: 12.4 min elapsed, about 29 min left; validation loss 0.631, AUROC 0.712
    (training sites), external AUROC 0.655

Round 0 is named for what it is, the untrained model evaluated everywhere. The estimate of what is
left is the mean duration of the training rounds so far times the rounds to go (round 0, which
only evaluates, does not count). The validation loss and AUROC are the two round-selection
scores (`server.round_selection`: training sites; for the AUROC, thin cells left out); the external
AUROC is the mean test AUROC of the external sites over the tasks. When the run selects on AUROC,
the first line is preceded by a warning naming the site × task cells too thin to help choose the
round, while the run can still be stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from server.round_selection import MIN_LABELS, thin_cells, validation_loss, validation_score

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """`45 s`, `2.7 min`, `1.3 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_left(training_rounds_s: Sequence[float], rounds_left: int) -> float | None:
    """Mean duration of the training rounds so far times `rounds_left`; None before any."""
    if rounds_left <= 0:
        return 0.0
    if not training_rounds_s:
        return None
    return sum(training_rounds_s) / len(training_rounds_s) * rounds_left


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def progress_line(*, server_round: int, num_rounds: int, elapsed_s: float, left_s: float | None,
                  validation: float | None, external: float | None,
                  validation_loss: float | None = None, skipped: bool = False,
                  failures: int = 0) -> str:
    """The line for one round (see the module docstring)."""
    what = " (the untrained model, evaluated only)" if server_round == 0 else ""
    if left_s is None:
        left = "time left known after round 1"
    elif left_s == 0:
        left = "done"
    else:
        left = f"about {duration(left_s)} left"
    line = (f"round {server_round} of {num_rounds}{what}: {duration(elapsed_s)} elapsed, {left}; "
            f"validation loss {_score(validation_loss)}, AUROC {_score(validation)} (training sites)")
    if external is not None:
        line += f", external AUROC {_score(external)}"
    if skipped:
        line += "; skipped: too few training sites replied"
    if failures:
        line += f"; {failures} site{'s' if failures != 1 else ''} failed (see the report)"
    return line


def external_auroc(per_site: dict[str, dict], sites: Sequence[str],
                   tasks: Sequence[str]) -> float | None:
    """Mean test AUROC of `sites` over `tasks`, ignoring undefined values; None when none is."""
    values = [per_site.get(s, {}).get(f"{t}.auroc", math.nan) for s in sites for t in tasks]
    defined = [float(v) for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


@dataclass
class RoundProgress:
    """Call after each round with the run log; logs and returns that round's line. Round
    durations are measured between calls, starting when this object is made."""

    num_rounds: int
    training_sites: tuple[str, ...]
    external_sites: tuple[str, ...]
    tasks: tuple[str, ...]
    started: float
    """`clock()` when the run started (elapsed time counts from it)."""
    criterion: str = "loss"
    """`round-selection`: under `auroc` the thin cells it leaves out are named once."""
    clock: Callable[[], float] = time.monotonic
    _last: float = field(init=False)
    _durations: list[float] = field(init=False, default_factory=list)
    _warned: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._last = self.clock()

    def __call__(self, server_round: int, run_log) -> str:
        now = self.clock()
        if server_round > 0:
            self._durations.append(now - self._last)
        self._last = now
        scores = run_log.evaluation.get(server_round, {})
        if not self._warned and self.criterion == "auroc":
            self._warn_thin(scores)
        line = progress_line(
            server_round=server_round, num_rounds=self.num_rounds, elapsed_s=now - self.started,
            left_s=time_left(self._durations, self.num_rounds - server_round),
            validation=validation_score(scores, self.training_sites, self.tasks),
            validation_loss=validation_loss(scores, self.training_sites, self.tasks),
            external=(external_auroc(scores, self.external_sites, self.tasks)
                      if self.external_sites else None),
            skipped=server_round in run_log.skipped_rounds,
            failures=len(run_log.failures.get(server_round, [])))
        log.info("%s", line)
        return line

    def _warn_thin(self, scores: dict[str, dict]) -> None:
        self._warned = True
        thin = thin_cells(scores, self.training_sites, self.tasks)
        if thin:
            log.warning("fewer than %d positives or negatives in the validation split, left out "
                        "of round selection: %s", MIN_LABELS, "; ".join(c.describe() for c in thin))
