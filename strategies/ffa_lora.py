"""FFA-LoRA (Sun et al., 2024): LoRA's A frozen at its shared initialisation, only B averaged.

Every site starts from the server's initial adapter, whose A comes from the seed all sites and the
server share (client.model.build_model), and keeps that A frozen (`adapter-mode = "ffa"`,
strategies/exchange.py; the site's side is client/adapter_mode.py). A site's update is then B_k·A
with the same A everywhere, so FedAvg of the B's is exact: (Σ p_k B_k)·A = Σ p_k (B_k·A) — unlike
averaging A and B separately, which adds cross terms no site learned. Sites send B and the heads
only, about half of the adapter upload, and under DP-SGD the noise is spread over half as many
adapter coordinates.

The rule is Flower's FedAvg over what arrives (B and heads); A is put back from the global adapter
the round started from, so the global state keeps its full shape for evaluation and checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from strategies.exchange import MODE_KEY, is_lora_a
from strategies.site_aware import SiteAware


class FrozenAFedAvg(FedAvg):
    """FedAvg of B and heads, with the round's frozen A carried over unchanged."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        config[MODE_KEY] = "ffa"
        self._frozen = ArrayRecord({k: arrays[k] for k in arrays.keys() if is_lora_a(k)})
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:
            return None, metrics
        sent_a = sorted(k for k in arrays.keys() if is_lora_a(k))
        if sent_a:
            raise ValueError(f"round {server_round}: a site sent `{sent_a[0]}` under FFA-LoRA; "
                             "expected LoRA A to stay frozen at the server's initial value")
        merged = ArrayRecord({k: self._frozen[k] for k in self._frozen.keys()})
        for key in arrays.keys():
            merged[key] = arrays[key]
        return merged, metrics


class FfaLoraFedAvg(SiteAware, FrozenAFedAvg):
    """FFA-LoRA over the consortium's training sites."""
