"""Best-round selection on the validation split, never on test (early stopping, as ReMedE does it).

Every round the sites score the new global adapter on their validation split too; the run keeps
each round's adapter, and the one it saves and reports is the round the validation split prefers.
Test numbers of every round are still shown, but they never choose anything, so the reported test
AUROC is not optimistically biased by the selection.

Two criteria (run config `round-selection`):

- `loss` (the default): the lowest validation loss, the mean over tasks of the cross-entropy,
  averaged over the training sites by their validation size. It rests on every validation
  encounter of every task, which is what a consortium of small hospitals has.
- `auroc`: the highest mean validation AUROC over the training sites and tasks, the paper's
  criterion, for validation splits large enough to rank on. A validation AUROC resting on a
  handful of encounters is mostly noise: a hospital whose validation split holds one death scores
  mortality 0.986 on n = 147 by luck of where that one death ranks. A site × task cell whose
  validation split has fewer than `MIN_LABELS` positives or negatives (the counts travel with the
  metrics, `validation.<task>.n|positives`) is therefore left out of the mean, and the selection
  names the cells it left out so that the report can say so. In the default consortium that leaves
  out mortality and comorbidity at every hospital, the two tasks that go on improving longest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, MetricRecord

from sites.site_check import MIN_POSITIVES
from strategies.exchange import VALIDATION_LOSS, VALIDATION_PREFIX

MIN_LABELS = MIN_POSITIVES
"""Fewest positives, and fewest negatives, a site's validation split needs for its AUROC on a task
to help choose the round under `auroc` (multi-class tasks: encounters of the rarest class present,
and all others)."""
CRITERIA = {
    "loss": ("lowest validation loss (mean cross-entropy over the tasks, averaged over the "
             "training sites by validation size), among rounds 1..R (test data never selects)"),
    "auroc": ("highest mean validation AUROC over the training sites and tasks, among rounds "
              f"1..R, leaving out site × task cells with fewer than {MIN_LABELS} positives or "
              "negatives in the validation split (test data never selects)"),
}
"""`round-selection` values and what each chooses, as the report states it."""


@dataclass(frozen=True)
class ThinCell:
    """A site × task whose validation split is too thin to help choose the round."""

    site: str
    task: str
    positives: int
    negatives: int

    def describe(self) -> str:
        return (f"{self.site} × {self.task} ({self.positives} positive"
                f"{'s' if self.positives != 1 else ''}, {self.negatives} negative"
                f"{'s' if self.negatives != 1 else ''})")


@dataclass(frozen=True)
class Selection:
    """The chosen round, the score of every candidate (None where no site had validation) and the
    cells left out of the scores."""

    round: int
    score_per_round: dict[int, float | None]
    by: str = "auroc"
    """The `round-selection` value (a key of `CRITERIA`) that chose."""
    left_out: tuple[ThinCell, ...] = ()

    @property
    def criterion(self) -> str:
        return CRITERIA[self.by]


def thin_cells(per_site: dict[str, dict[str, float]], sites: Iterable[str],
               tasks: Sequence[str]) -> list[ThinCell]:
    """The cells of one round's metrics whose validation split has fewer than `MIN_LABELS`
    positives or negatives. Cells without a validation split (n = 0) or without counts (a run
    recorded before they were sent) are not listed."""
    cells = []
    for site in sites:
        metrics = per_site.get(site, {})
        for task in tasks:
            n = metrics.get(f"{VALIDATION_PREFIX}{task}.n", math.nan)
            pos = metrics.get(f"{VALIDATION_PREFIX}{task}.positives", math.nan)
            if math.isnan(n) or math.isnan(pos) or n == 0:
                continue
            cell = ThinCell(site, task, positives=int(pos), negatives=int(n - pos))
            if min(cell.positives, cell.negatives) < MIN_LABELS:
                cells.append(cell)
    return cells


def validation_score(per_site: dict[str, dict[str, float]], sites: Iterable[str],
                     tasks: Sequence[str]) -> float | None:
    """Mean of `validation.<task>.auroc` over `sites` and `tasks`, thin cells (`thin_cells`) left
    out; None when no value is left."""
    sites = tuple(sites)
    thin = {(c.site, c.task) for c in thin_cells(per_site, sites, tasks)}
    values = [per_site.get(site, {}).get(f"{VALIDATION_PREFIX}{task}.auroc", math.nan)
              for site in sites for task in tasks if (site, task) not in thin]
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def validation_loss(per_site: dict[str, dict[str, float]], sites: Iterable[str],
                    tasks: Sequence[str]) -> float | None:
    """`validation.loss` averaged over `sites`, each weighted by its validation size (the
    `validation.<task>.n` of its first task); None where no site has a defined loss."""
    total = weight = 0.0
    for site in sites:
        metrics = per_site.get(site, {})
        loss = metrics.get(VALIDATION_LOSS, math.nan)
        n = metrics.get(f"{VALIDATION_PREFIX}{tasks[0]}.n", math.nan) if tasks else math.nan
        if not (math.isnan(loss) or math.isnan(n)) and n > 0:
            total, weight = total + loss * n, weight + n
    return total / weight if weight else None


def select_round(evaluation: dict[int, dict[str, dict[str, float]]], *, sites: Iterable[str],
                 tasks: Sequence[str], num_rounds: int, criterion: str = "loss") -> Selection:
    """The best of rounds 1..`num_rounds` by `criterion` (a key of `CRITERIA`); the last round
    when no round has a defined score (no site has a validation split, or under `auroc` every cell
    is thin), and the earliest round on a tie."""
    if criterion not in CRITERIA:
        raise ValueError(f"round selection {criterion!r}; expected one of {', '.join(CRITERIA)}")
    sites, on_auroc = tuple(sites), criterion == "auroc"
    score = validation_score if on_auroc else validation_loss
    scores = {r: score(evaluation.get(r, {}), sites, tasks) for r in range(1, num_rounds + 1)}
    higher = {r: s if on_auroc else -s for r, s in scores.items() if s is not None}
    best = max(higher, key=lambda r: (higher[r], -r)) if higher else num_rounds
    left_out: dict[tuple[str, str], ThinCell] = {}
    if on_auroc:  # the split is fixed: the latest round a site replied counts
        for r in sorted(evaluation):
            left_out |= {(c.site, c.task): c for c in thin_cells(evaluation[r], sites, tasks)}
    return Selection(round=best, score_per_round=scores, by=criterion,
                     left_out=tuple(left_out.values()))


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
