"""The run log as JSON, so a server that was killed resumes with everything the report needs.

`RunLog` is plain data (per-round dicts of floats, lists and strings), so it round-trips through
JSON with two adjustments: round numbers come back from JSON object keys as strings and are made
ints again, and the client-level DP record is rebuilt as its dataclass. NaN (an undefined AUROC)
is written as JSON's `NaN` token, which Python reads back; this file is internal state, not the
run's published `metrics.json`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from strategies.run_log import ClientLevelPrivacy, RunLog

ADDED_LATER: frozenset[str] = frozenset({"participation", "egress_intervals", "timing"})
"""Fields a checkpoint written before them lacks; such a run resumes with the field empty."""


def run_log_to_dict(run_log: RunLog) -> dict[str, Any]:
    """Every field of `run_log` as JSON-ready data."""
    return dataclasses.asdict(run_log)


def run_log_from_dict(data: dict[str, Any]) -> RunLog:
    """The `RunLog` that `run_log_to_dict` wrote; round-keyed dicts get int keys back."""
    fields = {}
    for field in dataclasses.fields(RunLog):
        if field.name in ADDED_LATER and field.name not in data:
            continue  # a run checkpointed before the field existed: its default
        if field.name not in data:
            raise KeyError(f"checkpointed run log lacks `{field.name}`; expected every field of "
                           "RunLog (was it written by another version of lang1-fl?)")
        value = data[field.name]
        if field.name == "client_level":
            value = None if value is None else _client_level(value)
        elif isinstance(value, dict):
            value = {int(r): v for r, v in value.items()}
        fields[field.name] = value
    return RunLog(**fields)


def _client_level(data: dict[str, Any]) -> ClientLevelPrivacy:
    data = dict(data)
    data["epsilon_per_round"] = {int(r): e for r, e in data["epsilon_per_round"].items()}
    return ClientLevelPrivacy(**data)
