"""A DP site's optimizer state, kept on its own disk from one round to the next.

A fresh AdamW's first step divides each coordinate's gradient by its own magnitude: it moves every
coordinate by the full learning rate. Under DP-SGD most adapter coordinates are noise early on, so
a site that makes a fresh optimizer each round starts every round with a full-size step in a random
direction on each of them, and its moments never average more than one round's few noisy steps.
Kept across rounds, the moments average the noise down as a site training alone would.

The state (AdamW's moments and step count, or SGD's momentum) is computed from the clipped, noised
gradients only: post-processing of what DP-SGD released to the site itself, so keeping it costs no
privacy. It never leaves the site (the egress declaration lists adapter and head tensors only).

Files, in the site's own state folder (`client.state`):
`<dataset>/runs/<run>/optimizer-state/after-round-<k>.pt`. Round k starts from
the state after the latest earlier round the site trained, so a round trained again after a crash
starts where it started the first time, and a round the site declined leaves no file.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import torch

from sites.files import write_atomic

_NAME = re.compile(r"after-round-(\d+)\.pt")


class OptimizerStateMismatch(ValueError):
    """A stored state that does not fit this round's optimizer (another model or adapter mode)."""


class OptimizerMemory:
    """The stored optimizer states of one site, dataset and run, in `directory`
    (`SiteState.optimizer_dir(run)`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, server_round: int) -> Path:
        return self.directory / f"after-round-{server_round}.pt"

    def latest_before(self, server_round: int) -> Path | None:
        """The file of the latest round before `server_round` that left a state, if any."""
        rounds = [int(m.group(1)) for f in self.directory.glob("after-round-*.pt")
                  if (m := _NAME.fullmatch(f.name)) and int(m.group(1)) < server_round]
        return self._path(max(rounds)) if rounds else None

    def restore(self, optimizer: torch.optim.Optimizer, server_round: int) -> Path | None:
        """Load into `optimizer` the state the site had before `server_round`; the learning rates
        stay the optimizer's own (this run's configuration). Returns the file read, or None for a
        site's first round."""
        path = self.latest_before(server_round)
        if path is None:
            return None
        stored = torch.load(path, map_location="cpu", weights_only=True)
        current = optimizer.state_dict()["param_groups"]
        sizes = [len(g["params"]) for g in stored["param_groups"]]
        if sizes != [len(g["params"]) for g in current]:
            raise OptimizerStateMismatch(
                f"{path}: optimizer state for parameter groups of sizes {sizes}; this round's "
                f"optimizer has {[len(g['params']) for g in current]} (another model or adapter "
                "mode than the run's earlier rounds)")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for index, state in stored["state"].items():
            shapes = {tuple(v.shape) for v in state.values() if torch.is_tensor(v) and v.ndim}
            if shapes - {tuple(params[int(index)].shape)}:
                raise OptimizerStateMismatch(
                    f"{path}: optimizer state of parameter {index} has shape {sorted(shapes)}; "
                    f"this round's parameter has {tuple(params[int(index)].shape)} (another "
                    "model, LoRA rank or adapter mode than the run's earlier rounds)")
        rates = [g["lr"] for g in current]
        optimizer.load_state_dict(stored)  # moves the state to the parameters' device
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
        return path

    def save(self, optimizer: torch.optim.Optimizer, server_round: int) -> Path:
        """Keep the state after `server_round` (written whole, then renamed into place)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(server_round)
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        return write_atomic(path, buffer.getvalue())
