"""FedAvg over LoRA adapters and task heads, weighted by each site's training examples.

Flower's FedAvg averages every tensor of the replies' ArrayRecord; sites send only adapter and head
tensors, so this is FedAvg over the adapter. Note that averaging LoRA's A and B separately is not
the average of the sites' products B·A — the exact alternatives (FFA-LoRA, FLoRA) are other
strategies.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedAvg

from strategies.site_aware import SiteAware


class AdapterFedAvg(SiteAware, FedAvg):
    """FedAvg that trains only training sites and records every site's evaluation."""
