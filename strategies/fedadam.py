"""FedAdam over adapters: Flower's FedAdam, a server-side Adam step on the averaged update.

The sites train as under FedAvg; the server treats the weighted mean of their updates as a
pseudo-gradient and moves the global adapter and heads by Adam (Reddi et al., 2021), with its own
learning rate (`server-learning-rate`) and moments that persist across rounds. Adaptive server
steps help when site updates are noisy or point in different directions (non-IID hospitals).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.serverapp.strategy import FedAdam

from strategies.site_aware import SiteAware


class AdapterFedAdam(SiteAware, FedAdam):
    """FedAdam over the consortium's training sites; its moments go into every checkpoint, so a
    resumed run takes the same steps as one that was never stopped."""

    def strategy_state(self) -> dict[str, np.ndarray]:
        state = {f"m.{k}": v for k, v in (self.m_t or {}).items()}
        state.update({f"v.{k}": v for k, v in (self.v_t or {}).items()})
        return state

    def restore_state(self, state: Mapping[str, np.ndarray]) -> None:
        unknown = sorted(k for k in state if not k.startswith(("m.", "v.")))
        if unknown:
            raise ValueError(f"FedAdam checkpoint state has `{unknown[0]}`; expected `m.*` and "
                             "`v.*` moments")
        self.m_t = {k[2:]: np.asarray(v) for k, v in state.items() if k.startswith("m.")} or None
        self.v_t = {k[2:]: np.asarray(v) for k, v in state.items() if k.startswith("v.")} or None
