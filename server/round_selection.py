"""Best-round selection on validation AUROC, never on test (early stopping, as ReMedE does it).

Every round the sites score the new global adapter on their validation split too; the run keeps
each round's adapter, and the one it saves and reports is the round whose mean validation AUROC
over the training sites and tasks is highest. Test numbers of every round are still shown, but they
never choose anything, so the reported test AUROC is not optimistically biased by the selection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, MetricRecord

from strategies.exchange import VALIDATION_PREFIX

CRITERION = ("highest mean validation AUROC over the training sites and tasks, among rounds "
             "1..R (test data never selects)")


@dataclass(frozen=True)
class Selection:
    """The chosen round and the score of every candidate (None where no site had validation)."""

    round: int
    score_per_round: dict[int, float | None]
    criterion: str = CRITERION


def validation_score(per_site: dict[str, dict[str, float]], sites: Iterable[str],
                     tasks: Sequence[str]) -> float | None:
    """Mean of `validation.<task>.auroc` over `sites` and `tasks`; None when all are undefined."""
    values = [per_site.get(site, {}).get(f"{VALIDATION_PREFIX}{task}.auroc", math.nan)
              for site in sites for task in tasks]
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def select_round(evaluation: dict[int, dict[str, dict[str, float]]], *, sites: Iterable[str],
                 tasks: Sequence[str], num_rounds: int) -> Selection:
    """The best of rounds 1..`num_rounds` by `validation_score`; the last round when no round has
    a defined score (no site has a validation split), and the earliest round on a tie."""
    sites = tuple(sites)
    scores = {r: validation_score(evaluation.get(r, {}), sites, tasks)
              for r in range(1, num_rounds + 1)}
    scored = {r: s for r, s in scores.items() if s is not None}
    best = max(scored, key=lambda r: (scored[r], -r)) if scored else num_rounds
    return Selection(round=best, score_per_round=scores)


@dataclass(kw_only=True)
class RoundArrays:
    """Keeps the global adapter of every round; passed to Flower's `Strategy.start` as its
    `evaluate_fn`, the hook Flower calls with each round's global arrays (round 0 included).
    `offset`: rounds already done before this `start` (a resumed run), added to Flower's count."""

    arrays: dict[int, ArrayRecord] = field(default_factory=dict)
    offset: int = 0

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        self.arrays[server_round + self.offset] = ArrayRecord(
            {name: arrays[name] for name in arrays.keys()})  # a copy: records are mutable
        return None

    def __getitem__(self, server_round: int) -> ArrayRecord:
        if server_round not in self.arrays:
            raise KeyError(f"no global adapter kept for round {server_round}; kept rounds "
                           f"{sorted(self.arrays)}")
        return self.arrays[server_round]
