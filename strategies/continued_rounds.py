"""A strategy that continues a run at round k+1: what a resumed server runs.

Flower's `Strategy.start` numbers its rounds from 1. A server resumed after round k must send
round k+1, k+2, …: the sites seed their local shuffling by the round, a DP site's ledger expects
rounds to increase, and the run log keys every record by round. This wrapper adds the offset in
each hook and otherwise leaves the wrapped strategy's rules untouched (compose, don't copy).
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class ContinuedRounds(Strategy):
    """`strategy` with every round number shifted by `offset` (the rounds already done)."""

    def __init__(self, strategy: Strategy, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"`offset` is {offset}; expected the number of rounds done, >= 0")
        self.strategy = strategy
        self.offset = offset

    def __getattr__(self, name: str):
        # `run_log`, `roster`, …: whatever the wrapped strategy exposes
        return getattr(self.strategy, name)

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_train(server_round + self.offset, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round + self.offset, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round + self.offset, replies)
