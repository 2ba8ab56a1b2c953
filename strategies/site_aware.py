"""What every lang1-fl strategy adds to a Flower strategy: roles, per-site records, a quorum.

Written as a mixin placed before a Flower strategy class (`class X(SiteAware, FedAvg)`), so each
hook calls the Flower implementation and only filters its input or records its output: the
aggregation rule itself stays Flower's (or the specific strategy's).

- `configure_train` drops messages to non-training sites: the external system is never trained;
  `configure_evaluate` keeps the sites the roster evaluates (all, unless an experiment narrows it).
- `aggregate_train` records each site's upload (bytes, tensors), loss and privacy spend, sets aside
  the replies of sites that declined the round (out of privacy budget: no tensors), and skips the
  round — keeping the previous global adapter — when fewer than `min_train_sites` trained.
- `aggregate_train` also recomputes the egress manifest of each reply it received
  (`strategies.exchange`) and records whether its digest matches the one the site logged and sent
  (`client.egress`).
- `aggregate_evaluate` keeps each site's metrics under its name: Flower's aggregate is a weighted
  mean across sites, which hides exactly the per-site, out-of-distribution numbers we report.
- `aggregate_intervals` adds the reported round's test AUROC intervals, asked once after the last
  round, to what each site reported for that round.
- Every round records where its time went (`RunLog.timing`): waiting for training replies,
  aggregating, waiting for evaluation replies.
- Both record who took part in each round (`RunLog.participation`): a roster site that was sent
  nothing because its node was not connected is `offline`, one that did not answer within the
  round's timeout `timed out`, one whose heartbeats stopped before it answered `lost`. Flower is
  never asked to wait for a number of nodes, so a hung or departed site costs one round's
  timeout, not the run; `admit` takes in a site that identified itself after the start
  (server/late_sites.py), from the next round on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from strategies.exchange import INTERVAL_SUFFIXES, received_egress
from strategies.replies import replying_node
from strategies.roster import SiteEntry, SiteRoster
from strategies.run_log import RunLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraOverride:
    """LoRA settings under which a global state is a plain peft adapter, where they are not the
    run's own (FLoRA's stacked update); the server builds the model to save with them."""

    r: int
    """Rank of the adapter."""
    alpha: int
    """Scaling numerator (the update is multiplied by alpha / r)."""
    dropout: float = 0.0


def arrayrecord_bytes(record: ArrayRecord) -> int:
    """Bytes of tensor data in a record: what a site uploads per round."""
    return sum(len(record[name].data) for name in record.keys())


class _ConnectedNow:
    """The grid as Flower's sampling should see it: one snapshot of the connected nodes that
    the step wants. Flower counts the connected nodes, then lists them again and waits while the
    list is shorter than the count; a node leaving in between would stall the round."""

    def __init__(self, grid: Grid, wanted: frozenset[int]) -> None:
        self._grid = grid
        self._nodes = [node for node in grid.get_node_ids() if node in wanted]

    def get_node_ids(self) -> list[int]:
        return list(self._nodes)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


class SiteAware:
    """Mixin for a Flower `Strategy`; see the module docstring."""

    def __init__(self, *, roster: SiteRoster, min_train_sites: int = 1, **kwargs) -> None:
        training = len(roster.training_node_ids)
        if not 1 <= min_train_sites <= training:
            raise ValueError(
                f"`min-train-sites` is {min_train_sites}; expected 1..{training} (the number of "
                "training sites)"
            )
        # Flower's sampling waits, without end, until this many nodes are connected: a site
        # whose node went away (a hung SuperNode stops its heartbeats) would stall the run. It
        # samples every connected roster node instead (fraction 1, `_ConnectedNow`).
        kwargs.setdefault("min_available_nodes", 0)
        kwargs.setdefault("min_train_nodes", 0)
        kwargs.setdefault("min_evaluate_nodes", 0)
        super().__init__(**kwargs)
        self.roster = roster
        self.min_train_sites = min_train_sites
        self.run_log = RunLog()
        self._sent_at: dict[tuple[str, int], float] = {}  # (phase, round) -> when its messages left
        self._sent: dict[tuple[str, int], tuple[Message, ...]] = {}
        """(step, round) -> the messages of that step: a roster node sent none was not
        connected, and a reply the SuperLink made in a node's place names the message."""

    def initial_arrays(self, arrays: ArrayRecord) -> ArrayRecord:
        """The global state round 1 starts from, given the model's initial adapter and heads (a
        strategy that exchanges something else, FLoRA, changes it)."""
        return arrays

    def peft_state(self, arrays: Mapping[str, np.ndarray]
                   ) -> tuple[LoraOverride | None, dict[str, np.ndarray]]:
        """A global state as the adapter and heads of a model built with the run's LoRA settings,
        or with the returned ones instead (what the run saves with `save_pretrained`); the state
        itself, under the run's settings (None), for strategies that exchange the adapter itself."""
        return None, dict(arrays)

    def strategy_state(self) -> dict[str, np.ndarray]:
        """What the rule itself carries from round to round besides the global arrays (FedAdam's
        moments), for the checkpoint; most rules carry nothing."""
        return {}

    def restore_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Take back `strategy_state()` from a checkpoint."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state between rounds, but the "
                             f"checkpoint holds {sorted(state)[:3]}…; resume with the strategy "
                             "the run was started with")

    def resume_from(self, run_log: RunLog) -> None:
        """Continue a checkpointed run: its records so far become this strategy's."""
        self.run_log = run_log

    def admit(self, entry: SiteEntry) -> None:
        """Take in a site that identified itself after the run started: it gets the next round's
        messages (the current global state) like every other site of its role."""
        self.roster = self.roster.with_entry(entry)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        wanted = self.roster.training_node_ids
        messages = super().configure_train(server_round, arrays, config,
                                           _ConnectedNow(grid, wanted))
        return self._sending("train", server_round, [
            m for m in messages if m.metadata.dst_node_id in wanted])

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        wanted = self.roster.evaluation_node_ids
        messages = super().configure_evaluate(server_round, arrays, config,
                                              _ConnectedNow(grid, wanted))
        return self._sending("evaluate", server_round, [
            m for m in messages if m.metadata.dst_node_id in wanted])

    def _sending(self, step: str, server_round: int, messages: list[Message]) -> list[Message]:
        self._sent[(step, server_round)] = tuple(messages)  # Flower gives them ids as it pushes
        self._sent_at[(step, server_round)] = time.monotonic()
        return messages

    def site_of(self, reply: Message, server_round: int, step: str) -> str:
        """The site a reply answers for, the SuperLink's own error replies included
        (strategies/replies.py)."""
        return self.roster.by_node(replying_node(
            reply, self._sent.get((step, server_round), ()), nodes=self.roster.node_ids)).name

    def _time_since_sent(self, phase: str, server_round: int, key: str) -> None:
        """Record in `RunLog.timing` the seconds since the round's `phase` messages left (nothing
        when they left before a resumed server started)."""
        sent = self._sent_at.pop((phase, server_round), None)
        if sent is not None:
            timing = self.run_log.timing.setdefault(server_round, {})
            timing[key] = time.monotonic() - sent

    def _record_failures(self, server_round: int, replies: list[Message], expected: set[int],
                         step: str, *, asked: str = "") -> None:
        """Log and record who failed, timed out or was offline, with that status for the round
        (`RunLog.participation`; the caller records the sites that answered). `asked` names what
        was asked when it is not the round's own training or evaluation (its status is then the
        round's, and left as it was)."""
        messages = self._sent.get((step, server_round))
        sent = expected if messages is None else {m.metadata.dst_node_id for m in messages}
        status = {} if asked else self.run_log.participation.setdefault(server_round, {})
        failed = []
        for message in replies:
            if message.has_error():
                site = self.site_of(message, server_round, step)
                lost = message.error.code == ErrorCode.NODE_UNAVAILABLE  # the SuperLink's verdict
                status.setdefault(site, {})[step] = "lost" if lost else "failed"
                failed.append(f"{site}{asked}: {message.error.reason}")
        answered = {replying_node(m, messages or (), nodes=self.roster.node_ids) for m in replies}
        for node in sorted(expected - answered):
            site = self.roster.by_node(node).name
            timed_out = node in sent
            status.setdefault(site, {})[step] = "timed out" if timed_out else "offline"
            failed.append(f"{site}{asked}: no reply" if timed_out
                          else f"{site}{asked}: not connected")
        if failed:
            self.run_log.failures.setdefault(server_round, []).extend(failed)
            for line in failed:
                log.warning("round %d: %s", server_round, line)

    def record_egress(self, server_round: int, replies: Iterable[Message], *,
                      evaluation: bool = False) -> None:
        """Recompute each reply's egress manifest and compare its digest with the one the site
        logged and sent. Call it before anything alters a reply (Flower's client-level DP wrapper
        clips arrays in place): a site already recorded for the round is kept as it was."""
        records = self.run_log.egress_evaluation if evaluation else self.run_log.egress
        per_site = records.setdefault(server_round, {})
        for message in replies:
            if message.has_error():
                continue
            site = self.roster.by_node(message.metadata.src_node_id).name
            if site not in per_site:
                per_site[site] = received_egress(message.content)
                if not per_site[site]["match"]:
                    log.warning("round %d: what %s sent does not match the egress digest it "
                                "logged: %s", server_round, site, per_site[site])

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self._time_since_sent("train", server_round, "train_s")
        started = time.monotonic()
        try:
            return self._aggregate_train(server_round, replies)
        finally:
            timing = self.run_log.timing.setdefault(server_round, {})
            timing["aggregate_s"] = time.monotonic() - started

    def _aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._record_failures(server_round, replies, set(self.roster.training_node_ids), "train")
        valid = [m for m in replies if not m.has_error()]
        self.record_egress(server_round, valid)
        trained = [m for m in valid if "arrays" in m.content]
        per_site = self.run_log.training.setdefault(server_round, {})
        status = self.run_log.participation.setdefault(server_round, {})
        for message in valid:
            site = self.roster.by_node(message.metadata.src_node_id).name
            status.setdefault(site, {})["train"] = "trained" if "arrays" in message.content else "declined"
            if "privacy" in message.content:
                privacy = dict(message.content["privacy"])
                self.run_log.privacy.setdefault(server_round, {})[site] = privacy
                if privacy.get("declined"):
                    self.run_log.declined.setdefault(server_round, {})[site] = str(privacy["declined"])
                    log.warning("round %d: %s", server_round, privacy["declined"])
            if "arrays" not in message.content:
                continue
            record = message.content["arrays"]
            per_site[site] = {
                **{k: float(v) for k, v in message.content["metrics"].items()},
                "upload-bytes": float(arrayrecord_bytes(record)),
                "upload-tensors": float(len(record)),
            }
        if len(trained) < self.min_train_sites:
            log.warning(
                "round %d: %d training sites trained, fewer than `min-train-sites`=%d; the round "
                "is skipped and the global adapter kept",
                server_round, len(trained), self.min_train_sites,
            )
            self.run_log.skipped_rounds.append(server_round)
            return None, None
        # Declined replies carry no tensors: only errors and trained replies go to the rule.
        return super().aggregate_train(
            server_round, [m for m in replies if m.has_error() or "arrays" in m.content])

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        self._time_since_sent("evaluate", server_round, "evaluate_s")
        self._record_failures(server_round, replies, set(self.roster.evaluation_node_ids),
                              "evaluate")
        self.record_egress(server_round, [m for m in replies if not m.has_error()],
                           evaluation=True)
        per_site = self.run_log.evaluation.setdefault(server_round, {})
        status = self.run_log.participation.setdefault(server_round, {})
        for message in replies:
            if not message.has_error():
                site = self.roster.by_node(message.metadata.src_node_id).name
                status.setdefault(site, {})["evaluate"] = "evaluated"
                per_site[site] = {k: [float(x) for x in v] if isinstance(v, list) else float(v)
                                  for k, v in message.content["metrics"].items()}
        return super().aggregate_evaluate(server_round, replies)

    def aggregate_intervals(self, server_round: int, replies: Iterable[Message]) -> None:
        """Add the test AUROC intervals of the replies to what each site reported for
        `server_round` (the reported one), leaving every other value as the round recorded it.

        A reply whose egress digest does not match what arrived adds nothing (and is recorded,
        like every reply here, under `egress_intervals`); a site that did not answer, or that had
        not answered that round, keeps NaN intervals, and a missing answer is a failure of the
        round."""
        replies = list(replies)
        self._sent_at.pop(("evaluate", server_round), None)
        self._record_failures(server_round, replies, set(self.roster.evaluation_node_ids),
                              "evaluate", asked=" (test AUROC intervals)")
        egress = self.run_log.egress_intervals.setdefault(server_round, {})
        recorded = self.run_log.evaluation.get(server_round, {})
        for message in replies:
            if message.has_error():
                continue
            site = self.site_of(message, server_round, "evaluate")
            egress[site] = received_egress(message.content)
            if not egress[site]["match"]:
                log.warning("round %d: the intervals %s sent do not match the egress digest it "
                            "logged; they are left out: %s", server_round, site, egress[site])
                continue
            if site in recorded:
                metrics = message.content["metrics"]
                recorded[site].update({k: float(v) for k, v in metrics.items()
                                       if k.rpartition(".")[2] in INTERVAL_SUFFIXES})
