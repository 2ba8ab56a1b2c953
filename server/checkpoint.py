"""Per-round checkpoints, so a server killed at any round resumes where it stopped.

After each round (Flower calls `Strategy.start`'s `evaluate_fn` once a round's training and
evaluation are done) the run directory gets that round's global adapter and heads
(`checkpoints/round-<k>.safetensors`), the aggregation rule's own state if it keeps one
(FedAdam's moments: `checkpoints/strategy-round-<k>.safetensors`) and `checkpoints/state.json`: the
last completed round and the whole run log. Every round's adapter is kept, not only the last,
because the run reports the round the validation split prefers. `run_config.json` beside them
holds the run configuration, so `lang1-fl run --resume RUN_DIR` restarts with exactly the same settings.

Files are written to a temporary name and renamed, and the state is written after the adapter it
points to, so a kill while checkpointing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord

from server.round_selection import RoundArrays
from sites.files import write_atomic
from strategies import RunLog
from strategies.run_log_state import run_log_from_dict, run_log_to_dict

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
RUN_CONFIG_FILE = "run_config.json"


class NoCheckpoint(FileNotFoundError):
    """`--resume` named a run directory without a checkpoint to resume from."""


@dataclass
class Checkpoint:
    """A run as it stood after `round`: every round's global arrays and the run log."""

    round: int
    arrays: dict[int, ArrayRecord]
    run_log: RunLog
    strategy_state: dict[str, np.ndarray]
    """What the aggregation rule carried after `round` (FedAdam's moments; usually nothing)."""


def save_run_config(run_dir: Path, run_config: dict) -> None:
    write_atomic(run_dir / RUN_CONFIG_FILE, (json.dumps(run_config, indent=2) + "\n").encode())


def load_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_CONFIG_FILE
    if not path.is_file():
        raise NoCheckpoint(f"{path} not found: {run_dir} is not a lang1-fl run directory "
                           "(expected run_config.json and checkpoints/ written by `lang1-fl run`)")
    return json.loads(path.read_text())


def save_round(run_dir: Path, server_round: int, arrays: ArrayRecord, run_log: RunLog,
               strategy_state: dict[str, np.ndarray] | None = None) -> None:
    """Write round `server_round`'s global arrays and the rule's own state, then the state file
    that points at them."""
    from safetensors.numpy import save

    directory = run_dir / CHECKPOINT_DIR
    directory.mkdir(exist_ok=True)
    tensors = {name: np.ascontiguousarray(arrays[name].numpy()) for name in arrays.keys()}
    # safetensors sorts names; the order matters (aggregation pairs tensors by position)
    order = {"order": json.dumps(list(arrays.keys()))}
    write_atomic(directory / f"round-{server_round}.safetensors", save(tensors, metadata=order))
    if strategy_state:
        write_atomic(directory / f"strategy-round-{server_round}.safetensors",
                     save({k: np.ascontiguousarray(v) for k, v in strategy_state.items()}))
    state = {"round": server_round, "run_log": run_log_to_dict(run_log)}
    write_atomic(directory / STATE_FILE, (json.dumps(state) + "\n").encode())


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """The last completed round of the run in `run_dir`, with every earlier round's arrays."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise NoCheckpoint(f"{state_path} not found: the run in {run_dir} checkpointed no round "
                           "yet (it stopped before round 0 was evaluated); start it afresh")
    state = json.loads(state_path.read_text())
    arrays = {}
    for server_round in range(state["round"] + 1):
        path = directory / f"round-{server_round}.safetensors"
        if not path.is_file():
            raise NoCheckpoint(f"{path} not found; expected the adapter of every round up to "
                               f"round {state['round']} (named in {state_path})")
        arrays[server_round] = _read_arrays(path)
    rule_path = directory / f"strategy-round-{state['round']}.safetensors"
    rule_state = {}
    if rule_path.is_file():
        from safetensors.numpy import load_file

        rule_state = load_file(str(rule_path))
    return Checkpoint(round=state["round"], arrays=arrays,
                      run_log=run_log_from_dict(state["run_log"]), strategy_state=rule_state)


def _read_arrays(path: Path) -> ArrayRecord:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        order = json.loads(handle.metadata()["order"])
        return ArrayRecord({name: Array(handle.get_tensor(name)) for name in order})


@dataclass(kw_only=True)
class RoundCheckpointer(RoundArrays):
    """`RoundArrays` that also writes each round to disk, with the run log as it stands after
    that round (the strategy's, read at call time)."""

    run_dir: Path
    strategy: object
    """Anything with a `run_log` (a lang1-fl strategy, possibly wrapped)."""

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        super().__call__(server_round, arrays)
        rule_state = getattr(self.strategy, "strategy_state", dict)()
        save_round(self.run_dir, server_round + self.offset, arrays, self.strategy.run_log,
                   rule_state)
        return None
