"""Verify a site's privacy ledger (format 2) against the site's public key, with an accountant that
did not train: Google's `dp-accounting`.

A reviewer who trusts neither the site nor this toolkit checks, and is told the first line that
fails:

1. What the file says. Every field present and well typed; each entry's `entry_sha256` seal
   matches its content; each `prev_sha256` matches the previous entry (64 zeros for the first);
   every entry's `signer` is the given public key's fingerprint and its `signature` verifies (so a
   file rewritten with recomputed seals and chain fails without the site's private key); `site`,
   `dataset`, `privacy_unit`, `accountant` and `delta` stay the same; rounds strictly increase
   within each run; no entry's `epsilon` exceeds its `epsilon_budget`, nor its `run_epsilon` its
   `run_epsilon_cap` (beyond 1e-9 relative, the site's own guard's slack): a site that overspent.
   With `head_sha256` (the last entry's hash as reported outside the site) it also catches entries
   cut off the end.
2. What the mechanism spends, only on a ledger that passed 1 (arithmetic on a forged file proves
   nothing). For every entry, over the whole ledger so far (`epsilon`) and over the entry's run
   (`run_epsilon`), from the recorded (σ, q, steps): a lower bound (dp-accounting's optimistic PLD)
   and an independent accountant (dp-accounting's RDP for opacus "rdp" ledgers, its pessimistic
   PLD for "prv"), client/privacy/verify_arithmetic.py. The check is ONE-SIDED: a recorded ε below the
   lower bound fails ("understated"); any ε at or above it passes, since it then may be a valid
   upper bound — opacus's RDP is below dp-accounting's above ε ≈ 10, and both are valid. The
   largest shortfall against the independent accountant is reported as information.

Why one-sided, and the slack (1e-6 absolute + 1e-6 relative, for floating-point round-off only;
measured numbers in client/privacy/verify_arithmetic.py): overstating a spend costs the site utility, never
a patient privacy; understating it is the one thing a reviewer must catch. The v1 verifier's
two-sided 1 % + 0.02 tolerance let a final ε 1.65 % too low pass (2.951 for 3.001) and failed
honest ledgers above ε ≈ 10 (24.04 by opacus RDP, 25.17 by dp-accounting's looser fractional-order
bound). The lower bound's own resolution is about total steps × Δ / 2 (0.4 % of ε by default);
the report prints Δ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from client.node_identity import fingerprint, load_node_public_key
from client.privacy.ledger import (
    GENESIS_SHA256,
    LedgerFormatError,
    continuity_problem,
    entry_sha256,
    field_problem,
    parse_line,
    seal_sha256,
)
from client.privacy.signing import signature_valid
from client.privacy.verify_arithmetic import (
    History,
    Round,
    below_lower_bound,
    grid_for,
    independent_name,
)

BUDGET_SLACK = 1e-9
"""Relative slack of the budget and cap checks: the site's guard allows the same."""
SHORTFALL_SHOWN = 1e-4
"""A recorded ε further than this (relative) below the independent accountant's is reported."""


class _Fail(Exception):
    """Internal: line `line` fails with this reason."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def verify_ledger(
    path: str | Path,
    *,
    public_key: ec.EllipticCurvePublicKey | str | Path,
    head_sha256: str | None = None,
) -> VerificationReport:
    """Check the ledger at `path` entry by entry and report the first bad line (module doc).

    `public_key` is the site's key (an EC public key, or the path of its OpenSSH `.pub` file: the
    site's registered SuperNode public key, or `<state folder>/signing-key.pub` for a simulated
    site); `head_sha256`, when given, must equal `entry_sha256` of the last entry.
    """
    path = Path(path)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key = load_node_public_key(Path(public_key))
    signer = fingerprint(public_key)
    base = dict(path=str(path), signer=signer,
                verifier=f"dp-accounting {metadata.version('dp-accounting')}")
    if not path.is_file():
        return VerificationReport(ok=False, entries=0, first_bad_line=None,
                                  reason="no ledger file here", head_sha256=None, **base)
    entries: list[dict[str, Any]] = []
    try:
        _check_file(path, public_key, signer, entries)
        head = entry_sha256(entries[-1]) if entries else None
        if head_sha256 is not None and head != head_sha256:
            raise _Fail(len(entries) + 1,
                        f"ledger ends after line {len(entries)} with hash {head}, but the anchor "
                        f"says {head_sha256}: entries were cut off or the chain was rewritten")
        if not entries:
            return VerificationReport(ok=True, entries=0, first_bad_line=None, reason=None,
                                      head_sha256=None, anchored=head_sha256 is not None, **base)
        base["verifier"] += f" {independent_name(entries[0]['accountant'])}"
        arithmetic = _check_arithmetic(entries)
    except _Fail as fail:
        before = entries[: fail.line - 1]
        return VerificationReport(
            ok=False, entries=fail.line - 1, first_bad_line=fail.line, reason=fail.reason,
            head_sha256=entry_sha256(before[-1]) if before else None, **base)
    last = entries[-1]
    return VerificationReport(
        ok=True, entries=len(entries), first_bad_line=None, reason=None,
        head_sha256=entry_sha256(last), anchored=head_sha256 is not None,
        delta=last["delta"], epsilon=last["epsilon"], epsilon_budget=last["epsilon_budget"],
        noise_sources=tuple(dict.fromkeys(e["noise_source"] for e in entries)),
        **arithmetic, **base)


def _check_file(path: Path, public_key: ec.EllipticCurvePublicKey, signer: str,
                entries: list[dict[str, Any]]) -> None:
    """Append every entry of the file to `entries`, or raise `_Fail` at the first line whose
    content is not as it must be (`entries` then holds the lines before it)."""
    last_round: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = parse_line(line, path=path, line_number=number)
        except LedgerFormatError as err:
            raise _Fail(number, str(err).split(": ", 1)[1]) from None
        reason = (field_problem(entry)
                  or _link_problem(entry, entries[-1] if entries else None)
                  or _signature_problem(entry, public_key, signer)
                  or continuity_problem(entry, first=entries[0] if entries else None,
                                        last_round_of_run=last_round.get(entry["run"]))
                  or _overspend_problem(entry))
        if reason:
            raise _Fail(number, reason)
        entries.append(entry)
        last_round[entry["run"]] = entry["round"]


def _link_problem(entry: dict[str, Any], previous: dict[str, Any] | None) -> str | None:
    if entry["entry_sha256"] != seal_sha256(entry):
        return "entry altered: its `entry_sha256` seal does not match its content"
    expected = entry_sha256(previous) if previous else GENESIS_SHA256
    if entry["prev_sha256"] != expected:
        what = "the previous entry" if previous else "64 zeros (first entry)"
        return f"hash chain broken: `prev_sha256` does not match {what}"
    return None


def _signature_problem(entry: dict[str, Any], public_key: ec.EllipticCurvePublicKey,
                       signer: str) -> str | None:
    if entry["signer"] != signer:
        return (f"`signer` is {entry['signer']}, not the site key given ({signer}): signed by "
                "another key")
    if not signature_valid(public_key, seal_hex=entry["entry_sha256"],
                           signature=entry["signature"]):
        return (f"`signature` does not verify with the site key {signer}: the entry was resealed "
                "or re-signed without the site's private key")
    return None


def _overspend_problem(entry: dict[str, Any]) -> str | None:
    if entry["epsilon"] > entry["epsilon_budget"] * (1 + BUDGET_SLACK):
        return (f"`epsilon` {entry['epsilon']:.4g} is over the entry's `epsilon_budget` "
                f"{entry['epsilon_budget']:g}: the site spent past its lifetime budget")
    cap = entry["run_epsilon_cap"]
    if cap is not None and entry["run_epsilon"] > cap * (1 + BUDGET_SLACK):
        return (f"`run_epsilon` {entry['run_epsilon']:.4g} is over the entry's `run_epsilon_cap` "
                f"{cap:g}: run {entry['run']!r} spent past its cap")
    return None


def _check_arithmetic(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-derive every entry's `epsilon` and `run_epsilon`; `_Fail` at the first understated one.
    Returns the report's arithmetic fields."""
    first = entries[0]
    grid = grid_for([_round(e) for e in entries], delta=first["delta"])
    settings = dict(accountant=first["accountant"], grid=grid, delta=first["delta"])
    ledger = History(**settings)
    runs: dict[str, History] = {}
    shortfall: Shortfall | None = None
    for number, entry in enumerate(entries, start=1):
        item = _round(entry)
        ledger.extend(item)
        run = runs.setdefault(entry["run"], History(**settings))
        if run.rounds + (item,) == ledger.rounds:
            run.follow(ledger)
        else:
            run.extend(item)
        for name, history, scope in (("epsilon", ledger, "the ledger"),
                                     ("run_epsilon", run, f"run {entry['run']!r}")):
            spend, recorded = history.spend(), entry[name]
            if below_lower_bound(recorded, spend.lower_bound):
                raise _Fail(number, f"`{name}` understated: recorded {recorded:.4f}, the mechanism "
                            f"provably spends at least {spend.lower_bound:.4f} over the "
                            f"{history.steps} steps of {scope} (independent accountant: "
                            f"{spend.independent:.4f})")
            gap = (spend.independent - recorded) / spend.independent if spend.independent else 0
            if gap > SHORTFALL_SHOWN and (shortfall is None or gap > shortfall.relative):
                shortfall = Shortfall(number, name, recorded, spend.independent)
    summaries = {}
    for label, history in runs.items():
        mine = [e for e in entries if e["run"] == label]
        spend = history.spend()
        summaries[label] = RunSummary(tuple(e["round"] for e in mine), mine[-1]["run_epsilon"],
                                      spend.lower_bound, spend.independent)
    final = ledger.spend()
    return dict(independent=final.independent, lower_bound=final.lower_bound, grid=grid,
                runs=summaries, shortfall=shortfall)


def _round(entry: dict[str, Any]) -> Round:
    return (entry["noise_multiplier"], entry["sample_rate"], entry["steps"])


# -----------------------------------------------------------------------------------------------
# What `verify_ledger` found, in the few lines a privacy reviewer reads.
#
# A failure is one line, `<file>:<line>: <reason>`. A pass says who signed, what the site spent over
# its lifetime and per run, what the independent accountant and the provable lower bound say, where
# the noise came from, and — as information — how far the recorded ε falls below the independent
# accountant when it does.
# -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run's share of the ledger."""

    rounds: tuple[int, ...]
    run_epsilon: float
    """The recorded `run_epsilon` of the run's last entry."""
    lower_bound: float | None = None
    independent: float | None = None


@dataclass(frozen=True)
class Shortfall:
    """The entry whose recorded ε is furthest below the independent accountant's."""

    line: int
    field: str  # "epsilon" or "run_epsilon"
    recorded: float
    independent: float

    @property
    def relative(self) -> float:
        return (self.independent - self.recorded) / self.independent


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of `verify_ledger`; `str()` gives what a reviewer reads."""

    path: str
    ok: bool
    entries: int
    """Entries before the first bad line (all of them when `ok`)."""
    first_bad_line: int | None
    reason: str | None
    head_sha256: str | None
    """Hash of the last entry read: what an anchor should hold."""
    signer: str | None
    """Fingerprint of the public key every entry was checked against."""
    verifier: str
    """The independent accountant and the lower bound, with dp-accounting's version."""
    delta: float | None = None
    epsilon: float | None = None
    """Lifetime ε recorded by the last entry."""
    epsilon_budget: float | None = None
    independent: float | None = None
    lower_bound: float | None = None
    grid: float | None = None
    """Δ of the PLD grid: the lower bound sits about total steps × Δ / 2 below the true ε."""
    runs: dict[str, RunSummary] = field(default_factory=dict)
    shortfall: Shortfall | None = None
    noise_sources: tuple[str, ...] = ()
    anchored: bool = False
    """Whether the head hash was checked against an anchor from outside the site."""

    def __str__(self) -> str:
        if not self.ok:
            return f"{self.path}:{self.first_bad_line}: {self.reason}"
        if self.entries == 0:
            return f"{self.path}: OK, empty ledger (nothing spent)"
        anchor = ", head matches the anchor" if self.anchored else " (no --head anchor given)"
        lines = [
            f"{self.path}: OK, {self.entries} entries in {len(self.runs)} run(s), each signed by "
            f"{self.signer}, chain intact{anchor}",
            f"  lifetime ε = {self.epsilon:.3f} at δ = {self.delta:g} (budget {self.epsilon_budget:g});"
            f" {self.verifier}: {self.independent:.3f}; lower bound {self.lower_bound:.3f} "
            f"(optimistic PLD, grid Δ = {self.grid:.2g})",
        ]
        for run, summary in self.runs.items():
            lines.append(f"  run {run!r}: rounds {_rounds(summary.rounds)}, ε = "
                         f"{summary.run_epsilon:.3f} (independent {summary.independent:.3f}, "
                         f"lower bound {summary.lower_bound:.3f})")
        lines.append(f"  noise and sampling: {', '.join(self.noise_sources)}")
        if self.shortfall is not None:
            s = self.shortfall
            lines.append(f"  note: line {s.line}'s `{s.field}` {s.recorded:.3f} is {s.relative:.1%} "
                         f"below the independent accountant ({s.independent:.3f}); both bound ε "
                         "from above, and it is above the lower bound, so this is not a finding")
        return "\n".join(lines)


def _rounds(rounds: tuple[int, ...]) -> str:
    """`1–3, 5` for (1, 2, 3, 5)."""
    spans: list[list[int]] = []
    for r in rounds:
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
