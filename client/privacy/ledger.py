"""A site's privacy ledger (format 2): an append-only JSON Lines file, one signed entry per trained
round, over every run the site trains on one dataset — its lifetime spend.

Each line is one entry in canonical JSON (sorted keys, no spaces, ASCII), so that its SHA-256 is
well defined. Fields are named as opacus names the quantities, so any DP tool can read them. The
chain order is the file order.

What the round was charged under:
- `run` (str): the label of the run that charged the round. A label only: rounds strictly increase
  within one run, while different runs may interleave and each starts again at round 1.
- `round` (int >= 1): the federated round within `run`.
- `site` (str), `dataset` (str: a fingerprint of the site's data, supplied by the caller) and
  `privacy_unit` ("encounter": one row of the site's table — its notes and labels — is what each
  per-example gradient clips, and a patient with several encounters needs group-level reasoning;
  "patient": one patient's rows together). These three are the same in every entry.

The mechanism and its parameters, enough to re-derive every ε:
- `mechanism` ("DP-SGD, Poisson-subsampled Gaussian"), `sample_rate` (q), `noise_multiplier` (σ),
  `max_grad_norm` (C), `steps` (optimizer steps of this round), `examples` (training examples at
  the site), `noise_source` (where the noise and the Poisson sampling draw from, e.g. "csprng",
  "os-seeded", "seeded (insecure, tests only)").
- `delta` and `accountant` ("rdp" or "prv", the opacus accountant that computed the ε fields): the
  same in every entry.

The spend, cumulative, at `delta`, after this round:
- `epsilon`: over EVERY entry of the ledger up to this one, all runs together (the lifetime spend).
- `run_epsilon`: over the entries of this entry's `run` only.
- `epsilon_budget`: the site's lifetime budget when the round was charged; `run_epsilon_cap`: the
  per-run cap, or null when there is none. The verifier flags an entry above either.

Provenance and tamper evidence:
- `library_versions` (opacus, torch, peft, flwr), `site_config_sha256`, `time` (UTC, ISO 8601).
- `prev_sha256`: SHA-256 of the previous entry's whole canonical line (64 zeros for the first),
  which chains the entries so that removing or reordering one breaks the chain.
- `entry_sha256`: the seal, SHA-256 of this entry's canonical line without `entry_sha256` and
  `signature`; any edit of any entry shows, the last one included.
- `signer` ("SHA256:<base64>", the fingerprint of the site's public key as `ssh-keygen -lf` prints
  it) and `signature` (base64 ECDSA over the seal's ASCII, client/privacy/signing.py). Without a
  signature anyone who rewrites the file can recompute the seals and the chain; with one, only the
  holder of the site's private key can, and the verifier checks every entry against the public key
  the site registered.

What remains: the last entries cut off, or the whole file replaced by an older copy. Both need an
anchor kept outside the site — the head hash (`entry_sha256(last entry)`) that the site reports each
round — which `verify_ledger` accepts.

A format-1 ledger (unsigned, one per run) has no `signature` and is refused with that field named.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.privacy.accounting import ACCOUNTANTS

if TYPE_CHECKING:
    from client.privacy.signing import LedgerSigner

MECHANISM = "DP-SGD, Poisson-subsampled Gaussian"
PRIVACY_UNITS: tuple[str, ...] = ("encounter", "patient")
GENESIS_SHA256 = "0" * 64
LIBRARIES = ("opacus", "torch", "peft", "flwr")

FIELDS: tuple[str, ...] = (
    "run", "round", "site", "dataset", "privacy_unit", "mechanism", "sample_rate",
    "noise_multiplier", "max_grad_norm", "steps", "examples", "noise_source", "delta",
    "accountant", "epsilon", "run_epsilon", "epsilon_budget", "run_epsilon_cap",
    "library_versions", "site_config_sha256", "time", "signer", "prev_sha256", "entry_sha256",
    "signature",
)
CONSTANT_FIELDS: tuple[str, ...] = ("site", "dataset", "privacy_unit", "accountant", "delta")
"""Fields every entry of one ledger shares: one site, one dataset, one accounting."""
# Fields `append_entry` computes; the caller may not supply them.
_COMPUTED = ("signer", "prev_sha256", "entry_sha256", "signature")
_UNSEALED = ("entry_sha256", "signature")


class LedgerFormatError(ValueError):
    """A ledger line is not a well-formed entry; the message names file, line and field."""


def canonical_line(entry: dict[str, Any]) -> str:
    """The entry as one line of canonical JSON: sorted keys, no spaces, ASCII, no NaN/inf."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def entry_sha256(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of the entry's whole canonical line: what the next entry's `prev_sha256`
    holds, and the head hash a site reports."""
    return hashlib.sha256(canonical_line(entry).encode("ascii")).hexdigest()


def seal_sha256(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical line without `entry_sha256` and `signature`: the value
    `entry_sha256` holds, and what the signature signs."""
    return entry_sha256({k: v for k, v in entry.items() if k not in _UNSEALED})


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


# --- reading ------------------------------------------------------------------------------------

def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every entry of the ledger at `path`, in file order; [] when the file does not exist.

    Raises `LedgerFormatError` naming the file and 1-based line for a line that is not a JSON
    object or lacks a field. Content checks (types, chain, seal, signature, ε) are
    `verify_ledger`'s job.
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
    if "signature" not in entry and "entry_sha256" in entry:
        raise LedgerFormatError(
            f"{where}: field `signature` missing: an unsigned entry, as a format-1 ledger (one file "
            "per run, before ledgers were signed) writes; only entries signed with the site's key "
            "can be verified")
    missing = [name for name in FIELDS if name not in entry]
    if missing:
        raise LedgerFormatError(f"{where}: field `{missing[0]}` missing")
    return entry


# --- one entry's fields -------------------------------------------------------------------------

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _rules(entry: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """field -> (whether its value is of the kind the re-derivation assumes, what is expected)."""
    get = entry.get
    cap = get("run_epsilon_cap")
    versions = get("library_versions")
    return {
        "run": (_text(get("run")), "a non-empty string"),
        "round": (_integer(get("round")) and get("round") >= 1, "an integer >= 1"),
        "site": (_text(get("site")), "a non-empty string"),
        "dataset": (_text(get("dataset")), "a non-empty string (the data's fingerprint)"),
        "privacy_unit": (get("privacy_unit") in PRIVACY_UNITS, f"one of {list(PRIVACY_UNITS)}"),
        "mechanism": (get("mechanism") == MECHANISM, repr(MECHANISM)),
        "sample_rate": (_number(get("sample_rate")) and 0 < get("sample_rate") <= 1,
                        "a number in (0, 1]"),
        "noise_multiplier": (_number(get("noise_multiplier")) and get("noise_multiplier") > 0,
                             "a number > 0"),
        "max_grad_norm": (_number(get("max_grad_norm")) and get("max_grad_norm") > 0,
                          "a number > 0"),
        "steps": (_integer(get("steps")) and get("steps") >= 1, "an integer >= 1"),
        "examples": (_integer(get("examples")) and get("examples") >= 1, "an integer >= 1"),
        "noise_source": (_text(get("noise_source")), "a non-empty string such as 'csprng'"),
        "delta": (_number(get("delta")) and 0 < get("delta") < 1, "a number in (0, 1)"),
        "accountant": (get("accountant") in ACCOUNTANTS, f"one of {list(ACCOUNTANTS)}"),
        "epsilon": (_number(get("epsilon")) and get("epsilon") >= 0, "a number >= 0"),
        "run_epsilon": (_number(get("run_epsilon")) and get("run_epsilon") >= 0,
                        "a number >= 0"),
        "epsilon_budget": (_number(get("epsilon_budget")) and get("epsilon_budget") > 0,
                           "a number > 0"),
        "run_epsilon_cap": (cap is None or (_number(cap) and cap > 0), "null or a number > 0"),
        "library_versions": (isinstance(versions, dict)
                             and all(isinstance(v, str) for v in versions.values()),
                             "an object of library name -> version string"),
        "site_config_sha256": (isinstance(get("site_config_sha256"), str), "a string"),
        "time": (_text(get("time")), "an ISO 8601 time"),
        "signer": (isinstance(get("signer"), str) and get("signer").startswith("SHA256:"),
                   "a key fingerprint 'SHA256:<base64>'"),
        "prev_sha256": (isinstance(get("prev_sha256"), str), "a SHA-256 hex string"),
        "entry_sha256": (isinstance(get("entry_sha256"), str), "a SHA-256 hex string"),
        "signature": (_text(get("signature")), "a base64 signature"),
    }


def field_problem(entry: dict[str, Any]) -> str | None:
    """What is wrong with one entry's fields on their own (unknown, or of the wrong kind), naming
    the field and what was expected; None when nothing is."""
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        return f"unknown field `{unknown[0]}`; expected only {list(FIELDS)}"
    for name, (good, expected) in _rules(entry).items():
        if name in entry and not good:
            return f"field `{name}` is {entry[name]!r}; expected {expected}"
    return None


def continuity_problem(entry: dict[str, Any], *, first: dict[str, Any] | None,
                       last_round_of_run: int | None) -> str | None:
    """What this entry breaks with respect to the entries before it, or None: a field that must stay
    as in the ledger's `first` entry (a constant field, the signer) changed, or the round does not
    increase past `last_round_of_run`, the latest round of the entry's run so far."""
    if first is None:
        return None
    for name in CONSTANT_FIELDS:
        if entry[name] != first[name]:
            return (f"`{name}` is {entry[name]!r} but the ledger's first entry has "
                    f"{first[name]!r}; one ledger holds one site, dataset and accounting")
    if entry["signer"] != first["signer"]:
        return (f"`signer` is {entry['signer']} but the ledger is signed by {first['signer']}; "
                "one ledger is signed by one site key")
    if last_round_of_run is not None and not entry["round"] > last_round_of_run:
        return (f"`round` is {entry['round']!r} but run {entry['run']!r} already reached round "
                f"{last_round_of_run!r}; rounds must strictly increase within a run")
    return None


# --- writing ------------------------------------------------------------------------------------

def append_entry(path: str | Path, entry_fields: dict[str, Any], *,
                 signer: LedgerSigner) -> dict[str, Any]:
    """Append one round's entry to the ledger at `path`, signed by `signer`, and return it.

    `entry_fields` holds the round's values (every field but the computed ones); `mechanism`,
    `library_versions` and `time` are filled in when absent, `signer`, `prev_sha256`,
    `entry_sha256` and `signature` always. An entry the verifier would refuse (a field of the wrong
    kind, another site/dataset/δ/accountant/privacy unit or signer than the ledger's, a round that
    does not increase within its run) raises `ValueError` and writes nothing. The line is written
    with one `write` on a file opened for appending, then flushed and fsynced, so a crash leaves
    either the whole line or a torn last line that `read_ledger` reports.
    """
    path = Path(path)
    for name in _COMPUTED:
        if name in entry_fields:
            raise ValueError(f"`{name}` is computed by the ledger; leave it out of `entry_fields`")
    entry = {
        "mechanism": MECHANISM,
        "library_versions": library_versions(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **entry_fields,
    }
    missing = [name for name in FIELDS if name not in entry and name not in _COMPUTED]
    if missing:
        raise ValueError(f"ledger entry field `{missing[0]}` missing from `entry_fields`")
    entry["signer"] = signer.fingerprint
    problem = field_problem(entry)
    if problem:
        raise ValueError(f"cannot append to {path}: {problem}")
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        raise LedgerFormatError(f"{path}: the last line is incomplete (a torn write); repair it first")
    previous = read_ledger(path)
    same_run = [e["round"] for e in previous if e["run"] == entry["run"]]
    problem = continuity_problem(entry, first=previous[0] if previous else None,
                                 last_round_of_run=same_run[-1] if same_run else None)
    if problem:
        raise ValueError(f"cannot append to {path}: {problem}")
    entry["prev_sha256"] = entry_sha256(previous[-1]) if previous else GENESIS_SHA256
    entry["entry_sha256"] = seal_sha256(entry)
    entry["signature"] = signer.sign(entry["entry_sha256"])
    _append_line(path, canonical_line(entry) + "\n")
    return entry


def _append_line(path: Path, line: str) -> None:
    """One write, flushed and fsynced; a new file's directory entry made durable too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a", encoding="ascii") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
