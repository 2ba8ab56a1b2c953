"""The run log: what the report needs of a federation, per round and site, as the server saw it.

Plain data only (per-round dicts of floats, lists and strings, and the client-level DP record), so
that a checkpoint can keep it as JSON (strategies/run_log_state.py) and the report read it back.
Every strategy fills it (strategies/site_aware.py); `dp-fedavg` adds its privacy record
(strategies/dp_fedavg.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClientLevelPrivacy:
    """What the report shows about client-level DP: the settings and ε after each round."""

    noise_multiplier: float
    clipping_norm: float
    delta: float
    num_sites: int
    accountant: str = "rdp"
    privacy_unit: str = "site"
    released_rounds: list[int] = field(default_factory=list)
    epsilon_per_round: dict[int, float] = field(default_factory=dict)
    """round -> cumulative ε after it (a skipped round repeats the previous value)."""

    @property
    def noise_std(self) -> float:
        """Per-coordinate std of the noise on the averaged update: z·C/N."""
        return self.noise_multiplier * self.clipping_norm / self.num_sites

    @property
    def epsilon(self) -> float:
        """ε after every round so far (0.0 before any release)."""
        if not self.epsilon_per_round:
            return 0.0
        return self.epsilon_per_round[max(self.epsilon_per_round)]


PARTICIPATION: dict[str, str] = {
    "trained": "sent its update",
    "declined": "answered without an update (its privacy budget would be exceeded)",
    "evaluated": "sent its evaluation metrics",
    "failed": "answered with an error",
    "timed out": "was sent the round's message and did not answer within `round-timeout`",
    "lost": "was sent the round's message and stopped reporting to the SuperLink before answering "
            "(hung, or its connection dropped)",
    "offline": "had joined the run but was not connected when the round began; sent nothing",
}
"""What a site did in one round, per step (`RunLog.participation`), and what each status means."""


@dataclass
class RunLog:
    """Everything the report needs, per round and site. Only aggregate values: sites send nothing
    else."""

    evaluation: dict[int, dict[str, dict[str, float | list[float]]]] = field(default_factory=dict)
    """round -> site -> metric name -> value (round 0 = the untrained model); reliability-curve
    metrics are lists (one value per probability bin)."""
    training: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """round -> site -> {"train-loss", "num-examples", "steps", "upload-bytes", "upload-tensors"}."""
    privacy: dict[int, dict[str, dict[str, object]]] = field(default_factory=dict)
    """round -> site -> the `privacy` record the site sent (ε so far, δ, σ, q, ledger head...)."""
    declined: dict[int, dict[str, str]] = field(default_factory=dict)
    """round -> site -> why the site declined to train (its privacy budget would be exceeded)."""
    failures: dict[int, list[str]] = field(default_factory=dict)
    """round -> descriptions of sites that replied with an error or not at all."""
    skipped_rounds: list[int] = field(default_factory=list)
    participation: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)
    """round -> site -> {"train": status, "evaluate": status}: who took part in which round, as
    `PARTICIPATION` names it. A site of the consortium absent from a round had not joined yet."""
    left_out: dict[int, list[str]] = field(default_factory=dict)
    """round -> training sites whose whole update the robust rule left out (`multi-krum`)."""
    egress: dict[int, dict[str, dict]] = field(default_factory=dict)
    """round -> site -> {"sent_digest" (the digest the site logged; None if it sent none),
    "received_digest" (recomputed here from what arrived), "match", "tensors", "bytes"}, for
    training replies."""
    egress_evaluation: dict[int, dict[str, dict]] = field(default_factory=dict)
    """The same for evaluation replies (metrics only), every site's."""
    egress_intervals: dict[int, dict[str, dict]] = field(default_factory=dict)
    """The same for the replies that carried the reported round's test intervals, asked once after
    the last round (`SiteAware.aggregate_intervals`); keyed by the reported round."""
    timing: dict[int, dict[str, float]] = field(default_factory=dict)
    """round -> where its wall time went, as the server saw it, in seconds: `train_s` (training
    messages sent until every reply is in), `aggregate_s` (the rule, with the server's checks of
    the replies), `evaluate_s` (evaluation messages sent until every reply is in), and
    `server_peak_rss_bytes` (the peak resident memory of the process running the ServerApp so far);
    what a round records is there, what it skipped is absent."""
    client_level: ClientLevelPrivacy | None = None
    """Client-level DP settings and ε per round, under `dp-fedavg` only."""
