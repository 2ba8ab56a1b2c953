"""Robust aggregation against faulty or malicious sites: Flower's trimmed mean, median, Multi-Krum.

A site whose update is scaled up or sign-flipped (a bug, a poisoned extract, an attacker) moves a
FedAvg mean as far as it likes. The coordinate-wise median and trimmed mean (Yin et al., 2018) do
not: with at most `tolerated-bad-sites` = f bad sites among n replies, every output coordinate
stays within the range of the honest sites' values. Aggregation is Flower's (`FedMedian`,
`FedTrimmedAvg`); what this module adds is that f is the setting, not a fraction:

- the trimmed mean cuts exactly f values from each end of every coordinate, whatever n is this
  round (Flower's `beta` is a fraction of n, so a site dropping out would silently trim fewer);
- a round needs enough replies for the rule to tolerate f: the median n ≥ 2f + 1, the trimmed mean
  n ≥ 2f + 2 (something must be left after cutting 2f). With fewer, the round is skipped and the
  global adapter kept, like any round short of its quorum (strategies/site_aware.py).

Both rules are unweighted: a site's size must not buy it influence when it may be lying. Adapter
parameters rather than updates are aggregated; as every site starts from the same global adapter,
the median or trimmed mean of parameters is that of updates, shifted.

Coordinate-wise rules judge each number alone, so a bad site still moves which honest values
survive; with few sites (four or five hospitals) that shift is a visible fraction of the update.
Multi-Krum (Blanchard et al., 2017; Flower's `MultiKrum`) judges whole updates instead: each site's
score is its squared distance to its n − f − 2 nearest neighbours, and the n − f best-scored sites
are averaged by examples. A scaled or sign-flipped update is far from every honest one and is left
out whole, so what remains is FedAvg over honest sites. With no bad site the rule still leaves f
sites out, the honest ones farthest from the rest: that is its price in a clean round. Krum's
guarantee needs n ≥ 2f + 3. Unlike the two rules above, the average of the kept sites is weighted
by the examples each reports (Flower's way): a kept site that overstates its count gains weight,
and the counts are in the report's training table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg, MultiKrum
from flwr.serverapp.strategy.multikrum import select_multikrum

from strategies.site_aware import SiteAware

log = logging.getLogger(__name__)


def _trained(replies: list[Message]) -> int:
    return sum(1 for m in replies if not m.has_error() and "arrays" in m.content)


class _Tolerant(SiteAware):
    """The quorum a robust rule needs to tolerate `tolerated_bad_sites` bad ones."""

    rule: str = ""
    """The `strategy` name the coordinator chose, for messages."""
    extra_replies: int = 1
    """Replies the rule needs beyond 2f."""

    def __init__(self, *, tolerated_bad_sites: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        training = len(self.roster.training_node_ids)
        needed = 2 * tolerated_bad_sites + self.extra_replies
        if tolerated_bad_sites < 0 or needed > training:
            raise ValueError(
                f"`tolerated-bad-sites` is {tolerated_bad_sites}; `strategy` {self.rule!r} needs "
                f"2×{tolerated_bad_sites}+{self.extra_replies} = {needed} training sites to "
                f"tolerate that many, and the run has {training}")
        self.tolerated_bad_sites = tolerated_bad_sites
        self.min_train_sites = max(self.min_train_sites, needed)


class RobustMedian(_Tolerant, FedMedian):
    """Coordinate-wise median of the trained sites' adapters and heads."""

    rule = "median"
    extra_replies = 1


class RobustTrimmedMean(_Tolerant, FedTrimmedAvg):
    """Coordinate-wise mean after cutting the f lowest and f highest values."""

    rule = "trimmed-mean"
    extra_replies = 2

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        n = _trained(replies)
        # Flower cuts int(beta·n) from each end; (f + ½)/n makes that exactly f for this round.
        self.beta = (self.tolerated_bad_sites + 0.5) / n if n else 0.0
        if self.beta >= 0.5:  # too few replies: SiteAware's quorum check skips the round
            self.beta = 0.0
        return super().aggregate_train(server_round, replies)


class RobustMultiKrum(_Tolerant, MultiKrum):
    """FedAvg over the n − f sites whose updates lie closest to their neighbours'. Which sites were
    left out is logged and kept in the run log: a site left out round after round is one to call."""

    rule = "multi-krum"
    extra_replies = 3

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        trained = [m for m in replies if not m.has_error() and "arrays" in m.content]
        self.num_malicious_nodes = self.tolerated_bad_sites
        # Keep all but f of this round's replies, so a dropout does not make the rule keep fewer.
        self.num_nodes_to_select = max(1, len(trained) - self.tolerated_bad_sites)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None:
            # Flower's selection again, on the same replies: it returns contents, not sites.
            kept = select_multikrum([m.content for m in trained], self.num_malicious_nodes,
                                    self.num_nodes_to_select)
            left_out = sorted(self.roster.by_node(m.metadata.src_node_id).name for m in trained
                              if not any(m.content is k for k in kept))
            self.run_log.left_out[server_round] = left_out
            log.info("round %d: multi-krum left out %s", server_round, ", ".join(left_out) or "none")
        return arrays, metrics
