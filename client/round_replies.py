"""A site's answer to each training round, kept on its disk so a re-sent round is answered again
without training again.

A server that is killed and resumed re-sends the round it was in the middle of. Training that
round a second time would release a second update computed from the same notes: for a DP site a
second draw of noise, i.e. privacy spent twice for one round of the run, and a cumulative ε that
depends on when the server died. So the site keeps the reply it released for each round, keyed by
the run, the round and a digest of the global adapter it was asked to train from. The same round
from the same global adapter gets the same reply back — post-processing of what was already
released, free of privacy cost, and bitwise what an uninterrupted run would have used. The same
round from a *different* adapter is a new request for an already spent round: a DP site declines
it; a site without DP trains it again.

Files, in the site's own state folder (`client.site_state`): `<dataset>/runs/<run>/round-replies/
round-<k>.safetensors` (the tensors) and `round-<k>.json` (metrics, privacy record, input
digest), written tensors first, then the JSON that marks the entry complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord

from sites.atomic_file import write_atomic


def arrays_digest(record: ArrayRecord) -> str:
    """SHA-256 over the tensors' names, shapes, dtypes and bytes, in record order."""
    digest = hashlib.sha256()
    for name in record.keys():
        array = record[name]
        digest.update(f"{name}|{list(array.shape)}|{array.dtype}|".encode())
        digest.update(array.data)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredReply:
    """What a site released for one round: tensors, metrics, privacy record, and the digest of the
    global adapter it trained from."""

    arrays: dict[str, np.ndarray]
    metrics: dict[str, float | int]
    privacy: dict[str, object]
    input_digest: str


class RoundReplies:
    """The stored replies of one site, dataset and run, in `directory`
    (`SiteState.replies_dir(run)`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _paths(self, server_round: int) -> tuple[Path, Path]:
        stem = self.directory / f"round-{server_round}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    def load(self, server_round: int) -> StoredReply | None:
        """The reply released for `server_round`, or None if this site never completed one."""
        from safetensors.numpy import load_file

        tensors, meta = self._paths(server_round)
        if not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        arrays = load_file(str(tensors))
        ordered = {name: arrays[name] for name in data["order"]}  # safetensors sorts names
        return StoredReply(arrays=ordered, metrics=data["metrics"], privacy=data["privacy"],
                           input_digest=data["input_digest"])

    def save(self, server_round: int, reply: StoredReply) -> None:
        """Keep `reply` for `server_round` (tensors first, then the JSON that completes it)."""
        from safetensors.numpy import save

        self.directory.mkdir(parents=True, exist_ok=True)
        tensors, meta = self._paths(server_round)
        write_atomic(tensors, save({k: np.ascontiguousarray(v) for k, v in reply.arrays.items()}))
        write_atomic(meta, json.dumps({
            "order": list(reply.arrays), "metrics": reply.metrics, "privacy": reply.privacy,
            "input_digest": reply.input_digest,
        }).encode())


def as_array_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(value) for name, value in arrays.items()})
