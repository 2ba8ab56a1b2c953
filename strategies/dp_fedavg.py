"""Client-level differential privacy (DP-FedAvg): each site's update clipped, Gaussian noise added
at the server, with its own ε.

Composed from Flower, not reimplemented: our site-aware FedAvg is wrapped in Flower's
`DifferentialPrivacyServerSideFixedClipping`, which clips every reply's update (reply − global) to
L2 norm `clipping_norm` C and adds N(0, σ²) with σ = z·C/N to every coordinate of the average
(z = noise multiplier, N = `num_sampled_clients`). ε comes from Flower's own RDP accountant
(`flwr.supercore.privacy_accounting`), one Gaussian event per released round. What this module adds
is what makes that calibration true for our federation:

- **Uniform weights.** σ = z·C/N is the sensitivity of an *unweighted* mean of N clipped updates;
  with FedAvg's `num-examples` weights a large site could move the average by up to C·w/Σw ≫ C/N.
  Under `dp-fedavg` every trained site counts 1 (`EqualSiteWeights`), whatever its size.
- **Every training site, every round.** N is the number of training sites and all of them are
  asked each round (no client sampling, so no amplification: sample rate 1). If fewer than N train
  — an error, no reply, or a site that declined its round for its own budget — the noise sized for
  N would be too small for the mean of fewer, so the round is skipped (`run_log.skipped_rounds`)
  and the previous global adapter kept, rather than released under-noised. Flower's wrapper alone
  does not guarantee this: without its accountant it only warns on a short count, and a declined
  reply (no tensors) counts as an answer even in its strict mode; on an error it returns before
  our run log could record the round. `min-train-sites` is therefore ignored here, and the run
  starts only once every training site has joined (no late joiners: N is fixed at the start). (Flower's clip
  divides by the update's norm: a site returning the global adapter bit-for-bit unchanged would
  raise; any training step moves it.)
- **Accounting.** The privacy unit is one site's whole contribution (add/remove one site,
  replace-with-zero); each released round is one Gaussian mechanism with noise multiplier z at
  sample rate 1, composed by RDP and converted at `delta`. Skipped rounds release nothing and cost
  nothing. Flower's wrapper refuses to take the accountant itself because our `aggregate_train` is
  not FedAvg's verbatim, so the wrapper below composes the same event Flower would, after each
  release. δ is per site: with 4 sites any δ near 1/4 would permit releasing one hospital's
  update outright, so δ must be tiny next to 1/#sites; 1e-5 is the conventional choice.

The honest caveat. With few sites the noise is large: with N = 4 the noise on the averaged update
has std z·C/4 *per coordinate*, i.e. a norm of about z·C·√d/4 over d coordinates, while the
clipped mean update has norm at most C: a signal-to-noise ratio of at most N/(z·√d) per round,
whatever C is. The default adapter and heads (all-MiniLM-L6-v2, LoRA r=8, five heads) have
d ≈ 79,500 coordinates, so at z = 1 the noise's norm is ≈ 70 times the largest possible mean update,
every round. Client-level DP with a handful of hospitals buys its guarantee with model quality (it
was designed for thousands of clients); it is an option for the report to show, not a default.
C only trades clipping bias against step size: the default (10) sits just below the update norms
measured at the default settings (≈ 13.5 per site per round, mostly the heads).
And what it protects: a whole hospital's contribution — including every patient in it — against
whoever consumes the released adapter. The server itself still sees every site's raw update (no
secure aggregation), and the per-site training and evaluation metrics in the report are released
without noise, so this is a guarantee about the released model, not against the coordinator. That
a site took part is public (the roster); what is protected is what its data did to the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from strategies.roster import SiteRoster
from strategies.run_log import ClientLevelPrivacy, RunLog
from strategies.site_aware import SiteAware

log = logging.getLogger(__name__)

EQUAL_WEIGHT_KEY = "dp-site-weight"
"""Metric set to 1 on every trained reply just before Flower averages, so the mean is unweighted."""


@dataclass(frozen=True)
class ClientDP:
    """Client-level DP settings (validated where the run config is parsed: `ServerSettings`)."""

    noise_multiplier: float
    """z: noise std on the *sum* of clipped updates, in units of `clipping_norm`."""
    clipping_norm: float
    """C: L2 bound on one site's update (adapter + heads, all tensors together), per round."""
    delta: float
    """δ of the (ε, δ) reported; the unit is a site, so δ ≪ 1/#sites."""


class EqualSiteWeights:
    """Mixin placed between `SiteAware` and `FedAvg`: every site that answered weighs 1.

    Runs after `SiteAware` has recorded the replies (so the report keeps the sites' own metrics)
    and before Flower's FedAvg, which weights by `weighted_by_key`: that key is pointed at a metric
    set to 1 here, so sites need not send anything new. FedAvg uses the same key for evaluation
    replies, so Flower's own evaluation aggregate (logged only; the report keeps every site's
    numbers) becomes the unweighted mean over sites too.
    """

    def __init__(self, **kwargs) -> None:
        kwargs["weighted_by_key"] = EQUAL_WEIGHT_KEY
        super().__init__(**kwargs)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, _with_equal_weights(replies))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return super().aggregate_evaluate(server_round, _with_equal_weights(replies))


def _with_equal_weights(replies: Iterable[Message]) -> list[Message]:
    replies = list(replies)
    for message in replies:
        if not message.has_error():
            for metrics in message.content.metric_records.values():
                metrics[EQUAL_WEIGHT_KEY] = 1.0
    return replies


class UniformAdapterFedAvg(SiteAware, EqualSiteWeights, FedAvg):
    """Site-aware FedAvg with an unweighted mean: the rule client-level DP noise is sized for."""


class ClientLevelDPFedAvg(DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed-clipping DP around `UniformAdapterFedAvg`; see the module
    docstring."""

    def __init__(self, *, roster: SiteRoster, min_train_sites: int, client_dp: ClientDP) -> None:
        num_sites = len(roster.training_node_ids)
        if min_train_sites != num_sites:
            log.info("dp-fedavg: every one of the %d training sites must train each round; "
                     "`min-train-sites`=%d does not apply", num_sites, min_train_sites)
        if client_dp.delta >= 1 / num_sites:
            log.warning("dp-fedavg: `client-dp-delta`=%g is not small next to 1/%d sites: it "
                        "allows releasing one site's update outright", client_dp.delta, num_sites)
        inner = UniformAdapterFedAvg(roster=roster, min_train_sites=num_sites)
        super().__init__(inner, client_dp.noise_multiplier, client_dp.clipping_norm, num_sites)
        self.rdp_accountant = RdpAccountant(PrivacyConfig(
            target_delta=client_dp.delta,
            population_size=num_sites,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        ))
        inner.run_log.client_level = ClientLevelPrivacy(
            noise_multiplier=client_dp.noise_multiplier,
            clipping_norm=client_dp.clipping_norm,
            delta=client_dp.delta,
            num_sites=num_sites,
        )

    @property
    def run_log(self) -> RunLog:
        return self.strategy.run_log

    def resume_from(self, run_log: RunLog) -> None:
        """Continue a checkpointed run: restore its records and replay its released rounds into
        the accountant, so ε continues from where the killed server left it."""
        if run_log.client_level is None:
            raise ValueError("the checkpointed run has no client-level DP record; it was not a "
                             "`dp-fedavg` run")
        self.strategy.resume_from(run_log)
        n = self.num_sampled_clients
        for _ in run_log.client_level.released_rounds:
            self.rdp_accountant.compose(GaussianPrivacyEvent(
                noise_multiplier=self.noise_multiplier, sample_size=n, population_size=n))

    @property
    def roster(self) -> SiteRoster:
        return self.strategy.roster

    # What the server asks of every lang1-fl strategy, answered by the wrapped FedAvg
    def initial_arrays(self, arrays: ArrayRecord) -> ArrayRecord:
        return self.strategy.initial_arrays(arrays)

    def peft_state(self, arrays):
        return self.strategy.peft_state(arrays)

    def strategy_state(self) -> dict:
        return self.strategy.strategy_state()

    def restore_state(self, state) -> None:
        self.strategy.restore_state(state)

    def aggregate_intervals(self, server_round: int, replies: Iterable[Message]) -> None:
        self.strategy.aggregate_intervals(server_round, replies)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if len(messages) > self.num_sampled_clients:  # the noise is sized for N sites
            raise RuntimeError(f"round {server_round}: {len(messages)} training messages for "
                               f"{self.num_sampled_clients} training sites")
        if len(messages) < self.num_sampled_clients:  # a site is offline: `aggregate_train` skips
            log.warning("round %d: %d of %d training sites connected; under dp-fedavg the round "
                        "releases nothing", server_round, len(messages), self.num_sampled_clients)
        return messages

    def admit(self, entry) -> None:
        """Never reached: a `dp-fedavg` run starts with every training site (its noise and
        accountant are sized for all of them; `strategies.training_sites_needed`)."""
        raise RuntimeError(f"dp-fedavg cannot take site {entry.name!r} after the start: its noise "
                           "is sized for the training sites it started with")

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        # Flower's clipping below rewrites the replies' arrays in place: attest them first
        self.strategy.record_egress(server_round, replies)
        trained = [m for m in replies if not m.has_error() and "arrays" in m.content]
        if len(trained) < self.num_sampled_clients:
            log.warning("round %d: %d of %d training sites trained; noise sized for %d would "
                        "under-protect a mean of fewer, so nothing is released",
                        server_round, len(trained), self.num_sampled_clients,
                        self.num_sampled_clients)
            # The inner strategy records the replies and, with every site required, skips.
            arrays, metrics = self.strategy.aggregate_train(server_round, replies)
            if arrays is not None:
                raise RuntimeError(f"round {server_round} would be released under-noised")
        else:
            self._check_tensor_order(trained)
            arrays, metrics = super().aggregate_train(server_round, trained)
            if arrays is not None:
                self._account_release(server_round)
        record = self.run_log.client_level
        record.epsilon_per_round[server_round] = self.rdp_accountant.get_privacy_spent().epsilon
        return arrays, metrics

    def _check_tensor_order(self, replies: list[Message]) -> None:
        """Flower clips reply − global tensor by position: both must list tensors in one order."""
        expected = list(self.current_arrays.keys())
        for message in replies:
            if list(message.content["arrays"].keys()) != expected:
                raise ValueError(
                    f"site {self.roster.by_node(message.metadata.src_node_id).name} sent its "
                    "tensors in another order than the global adapter; clipping would be wrong"
                )

    def _account_release(self, server_round: int) -> None:
        """Compose the Gaussian event Flower's wrapper composes for an accounted release."""
        n = self.num_sampled_clients
        self.rdp_accountant.compose(GaussianPrivacyEvent(
            noise_multiplier=self.noise_multiplier, sample_size=n, population_size=n))
        self.run_log.client_level.released_rounds.append(server_round)
        spent = self.rdp_accountant.get_privacy_spent()
        log.info("round %d: client-level DP released with noise std %.4g; ε = %.3f at δ = %g "
                 "after %d releases", server_round, self.run_log.client_level.noise_std,
                 spent.epsilon, spent.delta, spent.num_releases)
