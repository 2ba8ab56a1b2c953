"""The per-site privacy ledger: an append-only JSON Lines file, one entry per trained round.

Each line is one entry in canonical JSON (sorted keys, no spaces), so that its SHA-256 is well
defined. Fields are named as opacus names the quantities, so any DP tool can read them:

- `round` (int, strictly increasing), `site` (str)
- `mechanism` ("DP-SGD, Poisson-subsampled Gaussian") and `privacy_unit` ("encounter": one row
  of the site's table — its notes and labels — is what each per-example gradient clips; a patient
  with several encounters needs group-level reasoning, ε grows with the group size)
- `sample_rate`, `noise_multiplier`, `max_grad_norm`, `steps` (optimizer steps of this round),
  `delta`, `accountant` ("rdp" or "prv")
- `epsilon`: the cumulative spend at `delta` after this round, over every round so far
- `examples` (training examples at the site), `library_versions` (opacus, torch, peft, flwr),
  `site_config_sha256`, `time` (UTC, ISO 8601)
- `prev_sha256`: SHA-256 of the previous entry's canonical line (64 zeros for the first entry),
  which chains the entries so that removing or reordering one breaks the chain
- `entry_sha256`: SHA-256 of this entry's own canonical line without this field, a seal that makes
  any edit of any entry visible, the last one included (the chain alone cannot see the last entry)

What the chain and seal cannot see: a whole new chain recomputed by someone who rewrote the file, or
the last entries cut off. Both need an anchor kept outside the site — the head hash
(`entry_sha256(last entry)`) that the site reports each round — which `verify_ledger` accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

MECHANISM = "DP-SGD, Poisson-subsampled Gaussian"
PRIVACY_UNIT = "encounter"
GENESIS_SHA256 = "0" * 64
LIBRARIES = ("opacus", "torch", "peft", "flwr")

FIELDS: tuple[str, ...] = (
    "round", "site", "mechanism", "privacy_unit", "sample_rate", "noise_multiplier",
    "max_grad_norm", "steps", "delta", "accountant", "epsilon", "examples", "library_versions",
    "site_config_sha256", "prev_sha256", "time", "entry_sha256",
)
# Fields the caller may leave out of `append_entry`: they are filled in here.
_FILLED = ("mechanism", "privacy_unit", "library_versions", "prev_sha256", "time", "entry_sha256")


class LedgerFormatError(ValueError):
    """A ledger line is not a JSON object with every field; the message names file and line."""


def canonical_line(entry: dict[str, Any]) -> str:
    """The entry as one line of canonical JSON: sorted keys, no spaces, ASCII, no NaN/inf."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def entry_sha256(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of the entry's canonical line: what the next entry's `prev_sha256` holds."""
    return hashlib.sha256(canonical_line(entry).encode("ascii")).hexdigest()


def seal_sha256(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical line without `entry_sha256`: the value that field holds."""
    return entry_sha256({k: v for k, v in entry.items() if k != "entry_sha256"})


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose code decides the privacy guarantee."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (for `site_config_sha256`)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every entry of the ledger at `path`, in file order; [] when the file does not exist.

    Raises `LedgerFormatError` naming the file and 1-based line for a line that is not a JSON
    object or lacks a field. Content checks (chain, seal, ε) are `verify_ledger`'s job.
    """
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entries.append(parse_line(line, path=path, line_number=number))
    return entries


def parse_line(line: str, *, path: str | Path, line_number: int) -> dict[str, Any]:
    """One ledger line as a dict, or `LedgerFormatError` naming `path:line_number`."""
    where = f"{path}:{line_number}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise LedgerFormatError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(entry, dict):
        raise LedgerFormatError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    missing = [name for name in FIELDS if name not in entry]
    if missing:
        raise LedgerFormatError(f"{where}: field `{missing[0]}` missing")
    return entry


def append_entry(path: str | Path, entry_fields: dict[str, Any]) -> dict[str, Any]:
    """Append one round's entry to the ledger at `path` and return the full entry written.

    `entry_fields` holds the round's values; `mechanism`, `privacy_unit`, `library_versions` and
    `time` are filled in when absent, `prev_sha256` and `entry_sha256` always. The line is written
    with one `write` on a file opened for appending, then flushed and fsynced, so a crash leaves
    either the whole line or a torn last line that `read_ledger` reports.
    """
    path = Path(path)
    for name in ("prev_sha256", "entry_sha256"):
        if name in entry_fields:
            raise ValueError(f"`{name}` is computed by the ledger; leave it out of `entry_fields`")
    entry = {
        "mechanism": MECHANISM,
        "privacy_unit": PRIVACY_UNIT,
        "library_versions": library_versions(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **entry_fields,
    }
    missing = [name for name in FIELDS if name not in entry and name not in _FILLED]
    if missing:
        raise ValueError(f"ledger entry field `{missing[0]}` missing from `entry_fields`")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown ledger field `{unknown[0]}`; expected only {list(FIELDS)}")
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        raise LedgerFormatError(f"{path}: the last line is incomplete (a torn write); repair it first")
    previous = read_ledger(path)
    if previous and not entry["round"] > previous[-1]["round"]:
        raise ValueError(
            f"`round` is {entry['round']!r} but {path} already ends at round "
            f"{previous[-1]['round']!r}; rounds must strictly increase"
        )
    entry["prev_sha256"] = entry_sha256(previous[-1]) if previous else GENESIS_SHA256
    entry["entry_sha256"] = seal_sha256(entry)
    line = canonical_line(entry) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a", encoding="ascii") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if created:  # make the new directory entry itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return entry
