"""FLoRA (Wang et al., 2024): stack the sites' LoRA factors, so the global update is exact and sites
may train different ranks.

Averaging A's and B's separately gives (Σ p_k B_k)(Σ p_k A_k), which is not Σ p_k B_k·A_k and is not
even defined when ranks differ. Stacking is exact: with B = [p_1 s_1 B_1 | … | p_K s_K B_K]
(columns) and A = [A_1; …; A_K] (rows), B·A = Σ p_k s_k B_k·A_k, the weighted sum of the sites'
updates (s_k = alpha / r_k, peft's scaling at site k; p_k = its share of training examples).

The global state is the federation's whole update so far, kept as stacked factors under `fold.*`
keys (strategies/exchange.py), plus the heads (FedAvg). Each round's stack is appended to it; every
site folds it into its frozen base and trains a fresh adapter of its own rank on top
(client/adapter_mode.py, `adapter-mode = "flora"`). The stack's rank grows by Σ r_k per round; once it
exceeds the layer's smaller dimension it is re-factored exactly by SVD to that dimension (a product
of that size has no higher rank), so it never grows past the size of a dense update. The run's
adapter is the stack itself: a LoRA of rank R with alpha = R (scaling 1), which
`PeftModel.from_pretrained` loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from strategies.exchange import (
    ADAPTER_PREFIX,
    FOLD_PREFIX,
    HEAD_PREFIX,
    MODE_KEY,
    as_fold_arrays,
    fold_pairs,
)
from strategies.site_aware import LoraOverride, SiteAware

Factors = dict[str, tuple[np.ndarray, np.ndarray]]
"""module name -> (A [rank, in], B [out, rank])."""


def site_factors(arrays: Mapping[str, np.ndarray]) -> Factors:
    """A site's LoRA factors from its `adapter.<module>.lora_A|B.weight` tensors."""
    return fold_pairs({k: v for k, v in arrays.items() if k.startswith(ADAPTER_PREFIX)},
                      prefix=ADAPTER_PREFIX)


def stack(previous: Factors, sites: list[tuple[float, Factors]], *, alpha: float) -> Factors:
    """`previous` with each site's scaled, weighted factors appended: the product of the result is
    previous B·A + Σ_k weight_k · (alpha / r_k) · B_k·A_k. Weights are used as given."""
    modules = sorted(set(previous) | {m for _, factors in sites for m in factors})
    out: Factors = {}
    for module in modules:
        a_parts, b_parts = [], []
        if module in previous:
            a_parts.append(previous[module][0])
            b_parts.append(previous[module][1])
        for weight, factors in sites:
            if module not in factors:
                raise KeyError(f"a site's adapter lacks module `{module}`; expected the same "
                               "target modules at every site")
            a, b = factors[module]
            rank = a.shape[0]
            a_parts.append(a)
            b_parts.append(b * (weight * alpha / rank))
        a = np.concatenate(a_parts, axis=0).astype(np.float32)
        b = np.concatenate(b_parts, axis=1).astype(np.float32)
        out[module] = refactor(a, b)
    return out


def refactor(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same product B·A with rank at most min(out, in): an exact SVD re-factorisation once the
    stack is wider than that, unchanged otherwise."""
    limit = min(b.shape[0], a.shape[1])
    if a.shape[0] <= limit:
        return a, b
    u, s, vt = np.linalg.svd(b.astype(np.float64) @ a.astype(np.float64), full_matrices=False)
    return vt[:limit].astype(np.float32), (u[:, :limit] * s[:limit]).astype(np.float32)


def fold_rank(arrays: Mapping[str, object]) -> int:
    """Rank of the stacked global update (0 before any round trained)."""
    ranks = {np.shape(_numpy(v))[0] for k, v in arrays.items()
             if k.startswith(FOLD_PREFIX) and ".lora_A." in k}
    return max(ranks, default=0)


def _numpy(value: object) -> np.ndarray:
    return value.numpy() if isinstance(value, Array) else np.asarray(value)


class StackedLoraAggregation(FedAvg):
    """FLoRA's rule: heads by FedAvg, adapters stacked onto the global update."""

    lora_alpha: float = 16.0

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        config[MODE_KEY] = "flora"
        self._global = {k: arrays[k].numpy() for k in arrays.keys()}
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        config[MODE_KEY] = "flora"
        return super().configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        if not valid:
            return None, None
        weights = np.array([float(m.content["metrics"][self.weighted_by_key]) for m in valid])
        weights = weights / weights.sum()
        records = [{k: m.content["arrays"][k].numpy() for k in m.content["arrays"].keys()}
                   for m in valid]
        previous = fold_pairs({k: v for k, v in self._global.items()
                               if k.startswith(FOLD_PREFIX)})
        stacked = stack(previous, [(float(w), site_factors(r)) for w, r in zip(weights, records)],
                        alpha=self.lora_alpha)
        heads = sorted(k for k in records[0] if k.startswith(HEAD_PREFIX))
        arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in as_fold_arrays(stacked).items()})
        for key in heads:
            mean = sum(w * r[key] for w, r in zip(weights, records))
            arrays[key] = Array(np.asarray(mean, dtype=np.float32))
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return arrays, metrics


class FLoRA(SiteAware, StackedLoraAggregation):
    """FLoRA over the consortium's training sites; `lora_alpha` is the run's LoRA alpha."""

    def __init__(self, *, lora_alpha: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lora_alpha = float(lora_alpha)
        self._untrained: dict[str, np.ndarray] = {}

    def initial_arrays(self, arrays: ArrayRecord) -> ArrayRecord:
        """The heads only: no update yet, and every site starts its own adapter. The run's initial
        adapter is kept to stand for "no update" when the run is saved before any round trained."""
        self._untrained = {k: arrays[k].numpy() for k in arrays.keys()
                           if k.startswith(ADAPTER_PREFIX)}
        return ArrayRecord({k: arrays[k] for k in arrays.keys() if k.startswith(HEAD_PREFIX)})

    def peft_state(self, arrays: Mapping[str, np.ndarray]
                   ) -> tuple[LoraOverride | None, dict[str, np.ndarray]]:
        """The global update as a plain peft adapter (rank R, scaling 1) plus the heads; before any
        update, the run's adapter at its initialisation (B = 0: no update) under the run's
        settings."""
        rank = fold_rank(arrays)
        heads = {k: v for k, v in arrays.items() if k.startswith(HEAD_PREFIX)}
        if rank == 0:
            return None, {**self._untrained, **heads}
        adapter = {}
        for module, (a, b) in fold_pairs({k: v for k, v in arrays.items()
                                          if k.startswith(FOLD_PREFIX)}).items():
            # One rank for all layers: a layer re-factored to a smaller rank gets zero rows of A
            # and zero columns of B, which leave its product unchanged.
            pad = rank - a.shape[0]
            adapter[f"{ADAPTER_PREFIX}{module}.lora_A.weight"] = np.pad(a, ((0, pad), (0, 0)))
            adapter[f"{ADAPTER_PREFIX}{module}.lora_B.weight"] = np.pad(b, ((0, 0), (0, pad)))
        # alpha = R (scaling 1) and no dropout: the stacked B already carries each site's weight
        # and scaling.
        return LoraOverride(r=rank, alpha=rank, dropout=0.0), {**adapter, **heads}
