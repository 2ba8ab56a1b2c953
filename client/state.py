"""A site's own state folder: everything a hospital keeps between messages, runs and restarts.

The privacy guarantee of a site must hold whatever the server does, so what the site remembers is
keyed by the site and its data, never by a field of a server message and never by where a table
happens to sit (two hospitals' tables may share a folder):

```
<state_dir>/                         the site YAML's `state_dir`, default <state home>/sites/<name>
  site.json                          which site owns the folder (claimed on first use)
  signing-key, signing-key.pub       the key that signs ledger entries, when the YAML names none
  <dataset>/                         one folder per dataset: the first 16 hex digits of its
                                     fingerprint (`sites.dataset.dataset_fingerprint`)
    privacy-ledger.jsonl             the lifetime ledger, charged by every run on this data
    runs/<run>/round-replies/        replies released per round (client/state.py)
    runs/<run>/optimizer-state/      a DP site's kept optimizer moments (client/privacy/optimizer_memory.py)
    runs/<run>/egress-log.jsonl      every reply, checked and logged before it left (client/egress.py)
    token-cache/                     the notes as token ids, so a fresh process skips the
                                     tokenizer (client/token_cache.py): patient data, kept here
```

`<run>` is the run name the server sends: a label that separates one run's replies from
another's. It may key what the site *stored*, never what the site may *spend*: the budget is the
dataset's, in its one ledger.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord

from sites.config import SiteConfig
from sites.files import write_atomic

OWNER_FILE = "site.json"
LEDGER_FILE = "privacy-ledger.jsonl"
DATASET_DIGITS = 16
"""Hex digits of the dataset fingerprint that name its folder (64 bits: no two datasets of one
site collide by chance)."""


class StateFolderClaimed(RuntimeError):
    """A site's state folder already belongs to another site."""


def dataset_key(fingerprint: str) -> str:
    """The short form of a dataset fingerprint (`sha256:<hex>`) that names its folder and that a
    site reports: enough to tell datasets apart, nothing about any patient."""
    algorithm, _, digest = fingerprint.partition(":")
    if algorithm != "sha256" or len(digest) < DATASET_DIGITS:
        raise ValueError(f"dataset fingerprint {fingerprint!r}; expected 'sha256:<hex>'")
    return digest[:DATASET_DIGITS]


@dataclass(frozen=True)
class SiteState:
    """The state folder of one site and one of its datasets."""

    root: Path
    site: str
    dataset: str
    """The dataset's short key (`dataset_key`)."""

    @classmethod
    def open(cls, site: SiteConfig, fingerprint: str) -> SiteState:
        """The state of `site` for the dataset with `fingerprint`; claims the folder for the
        site on first use and refuses a folder another site claimed."""
        assert site.state_dir is not None  # SiteConfig sets the default
        claim_state_folder(site.state_dir, site.name)
        return cls(root=site.state_dir, site=site.name, dataset=dataset_key(fingerprint))

    @classmethod
    def peek(cls, site: SiteConfig, fingerprint: str) -> SiteState:
        """The same, read-only: nothing is written (a forecast, the checks before a run); a
        folder another site claimed is still refused."""
        assert site.state_dir is not None
        check_state_folder(site.state_dir, site.name)
        return cls(root=site.state_dir, site=site.name, dataset=dataset_key(fingerprint))

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.dataset

    @property
    def ledger(self) -> Path:
        """The lifetime privacy ledger of this site and dataset."""
        return self.dataset_dir / LEDGER_FILE

    @property
    def token_cache_dir(self) -> Path:
        """The site's tokenized notes (client/token_cache.py), keyed by the table's content."""
        return self.dataset_dir / "token-cache"

    @property
    def frozen_layers_dir(self) -> Path:
        """The frozen layers' output for the site's notes (client/frozen_store.py)."""
        return self.dataset_dir / "frozen-layers"

    def run_dir(self, run: str) -> Path:
        return self.dataset_dir / "runs" / run

    def replies_dir(self, run: str) -> Path:
        return self.run_dir(run) / "round-replies"

    def optimizer_dir(self, run: str) -> Path:
        return self.run_dir(run) / "optimizer-state"

    def egress_log(self, run: str) -> Path:
        return self.run_dir(run) / "egress-log.jsonl"


def check_state_folder(folder: Path, site: str) -> bool:
    """True if `folder` is claimed by `site`, False if by nobody yet; raise `StateFolderClaimed`
    if another site claimed it (two sites on one folder would mix their ledgers)."""
    owner = folder / OWNER_FILE
    if not owner.is_file():
        return False
    claimed = json.loads(owner.read_text(encoding="utf-8")).get("site")
    if claimed != site:
        raise StateFolderClaimed(
            f"{folder}: this state folder belongs to site {claimed!r} ({owner}); site {site!r} "
            "needs a folder of its own: set `state_dir` in its site YAML")
    return True


def claim_state_folder(folder: Path, site: str) -> None:
    """Write `site.json` naming `site` in `folder` unless it is claimed already (see
    `check_state_folder`)."""
    if check_state_folder(folder, site):
        return
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # it may hold the site's signing key
    write_atomic(folder / OWNER_FILE, json.dumps({"site": site}).encode())


# -----------------------------------------------------------------------------------------------
# A site's answer to each training round, kept on its disk so a re-sent round is answered again
# without training again.
#
# A server that is killed and resumed re-sends the round it was in the middle of. Training that
# round a second time would release a second update computed from the same notes: for a DP site a
# second draw of noise, i.e. privacy spent twice for one round of the run, and a cumulative ε that
# depends on when the server died. So the site keeps the reply it released for each round, keyed by
# the run, the round and a digest of the global adapter it was asked to train from. The same round
# from the same global adapter gets the same reply back — post-processing of what was already
# released, free of privacy cost, and bitwise what an uninterrupted run would have used. The same
# round from a *different* adapter is a new request for an already spent round: a DP site declines
# it; a site without DP trains it again.
#
# Files, in the site's own state folder (`client.state`): `<dataset>/runs/<run>/round-replies/
# round-<k>.safetensors` (the tensors) and `round-<k>.json` (metrics, privacy record, input
# digest), written tensors first, then the JSON that marks the entry complete.
# -----------------------------------------------------------------------------------------------


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
