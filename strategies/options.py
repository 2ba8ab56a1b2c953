"""The settings of the aggregation rules that have any, from the run config (`ServerSettings`).

Their defaults are written once, in pyproject.toml's `[tool.flwr.app.config]`; here every field is
required, so a rule never runs on a value nobody chose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrategyOptions:
    """Each field is used by one strategy only and ignored by the others."""

    proximal_mu: float
    """`fedprox`: μ of the proximal term; the site pulls by lr·μ of the distance per step."""
    tolerated_bad_sites: int
    """`median`, `trimmed-mean`, `multi-krum`: f, the faulty or malicious training sites to tolerate
    (the median needs 2f + 1 replies per round, the trimmed mean 2f + 2, Multi-Krum 2f + 3)."""
    server_learning_rate: float
    """`fedadam`: the server's Adam step size (η)."""
    server_beta_1: float
    server_beta_2: float
    server_tau: float
    """`fedadam`: Adam's moment decays and its ε-like adaptivity constant τ."""
    lora_alpha: float
    """`flora`: the run's LoRA alpha, to scale each site's factors as peft does (alpha / r)."""

    def __post_init__(self) -> None:
        checks = (
            ("proximal-mu", self.proximal_mu >= 0, "a number >= 0"),
            ("tolerated-bad-sites", isinstance(self.tolerated_bad_sites, int)
             and self.tolerated_bad_sites >= 0, "an integer >= 0"),
            ("server-learning-rate", self.server_learning_rate > 0, "a number > 0"),
            ("server-beta-1", 0 <= self.server_beta_1 < 1, "0 <= beta < 1"),
            ("server-beta-2", 0 <= self.server_beta_2 < 1, "0 <= beta < 1"),
            ("server-tau", self.server_tau > 0, "a number > 0"),
            ("lora-alpha", self.lora_alpha > 0, "a number > 0"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"run config: `{key}` is {getattr(self, _field(key))!r}; "
                                 f"expected {expected}")


USED_BY: dict[str, tuple[str, ...]] = {
    "fedprox": ("proximal-mu",),
    "median": ("tolerated-bad-sites",),
    "trimmed-mean": ("tolerated-bad-sites",),
    "multi-krum": ("tolerated-bad-sites",),
    "fedadam": ("server-learning-rate", "server-beta-1", "server-beta-2", "server-tau"),
}


def options_used(options: StrategyOptions, strategy: str) -> dict[str, float | int]:
    """The run-config keys and values the strategy reads, for the run's record and report."""
    return {key: getattr(options, _field(key)) for key in USED_BY.get(strategy, ())}


def _field(key: str) -> str:
    return key.replace("-", "_")
