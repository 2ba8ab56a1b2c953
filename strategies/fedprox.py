"""FedProx over adapters: Flower's FedProx, which sends `proximal-mu` with every training message.

The proximal term keeps each site's local adapter near the global one, which limits client drift
when hospitals differ (non-IID). The site applies it as a separate pull after each optimizer step
(client/train.py), never through the loss, so under DP-SGD it is not clipped or noised with the
data's gradients and spends no privacy. Aggregation is FedAvg's, weighted by examples.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedProx

from strategies.site_aware import SiteAware


class AdapterFedProx(SiteAware, FedProx):
    """FedProx over the consortium's training sites."""
