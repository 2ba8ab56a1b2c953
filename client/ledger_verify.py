"""Verify a privacy ledger with an accountant that did not train: Google's `dp-accounting`.

A reviewer who trusts neither the site nor this toolkit re-checks three things, entry by entry, and
is told the first line that fails:

1. Integrity: every field present and well typed, each entry's `entry_sha256` seal matches its
   content, each `prev_sha256` matches the previous entry (64 zeros for the first), rounds strictly
   increase, and `site` and `accountant` stay the same. With `head_sha256` (the last entry's hash as
   reported outside the site) it also catches entries cut off the end or a recomputed chain.
2. Arithmetic: the cumulative `epsilon` of every entry is re-derived from the recorded
   `(noise_multiplier, sample_rate, steps)` of all entries so far, at that entry's `delta`, with
   dp-accounting's RDP accountant (entries trained with opacus's "rdp") or its PLD accountant
   (entries trained with opacus's "prv"), composing `steps` Poisson-subsampled Gaussian events.

Why the default tolerance is 1 % of the re-derived ε plus 0.02 absolute (measured with opacus 1.6.0
and dp-accounting 0.6.0 at δ = 1e-5, σ in 0.6..5, q in 0.001..1, 10..10,000 steps):
- RDP vs RDP: within 0.35 % for q ≤ 0.1 and ε in 0.5..20 (0.07 % at the golden ε = 8, q = 0.01), up
  to 1.1 % near ε = 0.5. Both use the same RDP-to-(ε, δ) conversion; the gap comes from the order
  grids and from fractional orders, where dp-accounting's bound is the more careful one.
- Outside that range a genuine opacus ledger can fail, and the message says by how much: with large
  sampling rates (q ≥ 0.2) and ε > 3, dp-accounting's ε is up to 5 % above opacus's (opacus reports
  less); below ε ≈ 0.5 the two grids differ by up to 0.08 in absolute ε (opacus reports more).
- PRV vs PLD: opacus's PRV adds its `eps_error` (0.01) on the safe side, so the gap is about 0.01
  in absolute ε at every ε (0.13 % at ε = 8, 1.5 % at ε = 0.6), hence the absolute term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from client.ledger import (
    FIELDS,
    GENESIS_SHA256,
    MECHANISM,
    LedgerFormatError,
    entry_sha256,
    parse_line,
    seal_sha256,
)
from client.privacy_math import ACCOUNTANTS

DEFAULT_TOLERANCE = 0.01
DEFAULT_ABSOLUTE_TOLERANCE = 0.02


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of `verify_ledger`; `str()` gives the line a reviewer reads."""

    path: str
    ok: bool
    entries: int  # entries that passed every check before the first bad one
    first_bad_line: int | None  # 1-based line number of the first bad entry
    reason: str | None  # why that line failed
    max_relative_gap: float  # largest |recorded − re-derived| / re-derived ε over passed entries
    head_sha256: str | None  # hash of the last entry read (what an anchor should hold)
    verifier: str  # the independent accountant used, with its version

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.path}: OK, {self.entries} entries, chain intact, every ε re-derived "
                    f"with {self.verifier} (largest relative gap {self.max_relative_gap:.2%})")
        return f"{self.path}:{self.first_bad_line}: {self.reason}"


class _Fail(Exception):
    """Internal: the current line fails with this reason."""


def verify_ledger(
    path: str | Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    absolute_tolerance: float = DEFAULT_ABSOLUTE_TOLERANCE,
    head_sha256: str | None = None,
) -> VerificationReport:
    """Check the ledger at `path` entry by entry and report the first bad line (see module doc).

    An entry's ε passes when |recorded − re-derived| ≤ `tolerance` · re-derived +
    `absolute_tolerance`. `head_sha256`, when given, must equal `entry_sha256` of the last entry.
    """
    if tolerance < 0 or absolute_tolerance < 0:
        raise ValueError("`tolerance` and `absolute_tolerance` must be >= 0")
    path = Path(path)
    verifier = f"dp-accounting {metadata.version('dp-accounting')}"

    def report(ok: bool, count: int, bad: int | None, reason: str | None, gap: float,
               head: str | None) -> VerificationReport:
        return VerificationReport(str(path), ok, count, bad, reason, gap, head, verifier)

    if not path.is_file():
        return report(False, 0, None, "no ledger file here", 0.0, None)
    lines = path.read_text(encoding="utf-8").splitlines()
    previous: dict[str, Any] | None = None
    accountant = None
    max_gap = 0.0
    for number, line in enumerate(lines, start=1):
        try:
            try:
                entry = parse_line(line, path=path, line_number=number)
            except LedgerFormatError as err:
                raise _Fail(str(err).split(": ", 1)[1]) from None
            _check_types(entry)
            _check_links(entry, previous)
            if accountant is None:
                accountant = _independent_accountant(entry["accountant"])
            gap = _check_epsilon(entry, accountant, tolerance, absolute_tolerance)
        except _Fail as fail:
            head = entry_sha256(previous) if previous else None
            return report(False, number - 1, number, str(fail), max_gap, head)
        max_gap = max(max_gap, gap)
        previous = entry
    head = entry_sha256(previous) if previous else None
    if head_sha256 is not None and head != head_sha256:
        return report(False, len(lines), len(lines) + 1,
                      f"ledger ends after line {len(lines)} with hash {head}, but the anchor says "
                      f"{head_sha256}: entries were cut off or the chain was rewritten",
                      max_gap, head)
    return report(True, len(lines), None, None, max_gap, head)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(entry: dict[str, Any]) -> None:
    """Every field of the kind the re-derivation assumes, or `_Fail` naming the field."""
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise _Fail(f"unknown field `{unknown[0]}`")
    rules = {
        "round": (_is_int(entry["round"]), "an integer"),
        "steps": (_is_int(entry["steps"]) and entry["steps"] >= 1, "an integer >= 1"),
        "examples": (_is_int(entry["examples"]) and entry["examples"] >= 1, "an integer >= 1"),
        "sample_rate": (_is_number(entry["sample_rate"]) and 0 < entry["sample_rate"] <= 1,
                        "a number in (0, 1]"),
        "noise_multiplier": (_is_number(entry["noise_multiplier"])
                             and entry["noise_multiplier"] > 0, "a number > 0"),
        "max_grad_norm": (_is_number(entry["max_grad_norm"]) and entry["max_grad_norm"] > 0,
                          "a number > 0"),
        "delta": (_is_number(entry["delta"]) and 0 < entry["delta"] < 1, "a number in (0, 1)"),
        "epsilon": (_is_number(entry["epsilon"]) and entry["epsilon"] >= 0, "a number >= 0"),
        "accountant": (entry["accountant"] in ACCOUNTANTS, f"one of {list(ACCOUNTANTS)}"),
        "mechanism": (entry["mechanism"] == MECHANISM, repr(MECHANISM)),
        "site": (isinstance(entry["site"], str) and entry["site"] != "", "a non-empty string"),
    }
    for name, (good, expected) in rules.items():
        if not good:
            raise _Fail(f"field `{name}` is {entry[name]!r}; expected {expected}")


def _check_links(entry: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """The seal, the chain, and what must hold between consecutive entries."""
    if entry["entry_sha256"] != seal_sha256(entry):
        raise _Fail("entry altered: its `entry_sha256` seal does not match its content")
    expected = entry_sha256(previous) if previous else GENESIS_SHA256
    if entry["prev_sha256"] != expected:
        what = "the previous entry" if previous else "64 zeros (first entry)"
        raise _Fail(f"hash chain broken: `prev_sha256` does not match {what}")
    if previous is None:
        return
    if not entry["round"] > previous["round"]:
        raise _Fail(f"round not increasing ({entry['round']} after {previous['round']})")
    for name in ("site", "accountant"):
        if entry[name] != previous[name]:
            raise _Fail(f"`{name}` changed from {previous[name]!r} to {entry[name]!r}")


def _independent_accountant(kind: str):
    """A fresh dp-accounting accountant matching opacus's `kind` ("rdp" → RDP, "prv" → PLD)."""
    if kind == "rdp":
        from dp_accounting.rdp import RdpAccountant

        return RdpAccountant()
    from dp_accounting.pld import PLDAccountant

    return PLDAccountant()


def _check_epsilon(entry: dict[str, Any], accountant, tolerance: float,
                   absolute_tolerance: float) -> float:
    """Compose this entry's steps, compare ε; return the relative gap or raise `_Fail`."""
    import dp_accounting

    event = dp_accounting.PoissonSampledDpEvent(
        entry["sample_rate"], dp_accounting.GaussianDpEvent(entry["noise_multiplier"])
    )
    accountant.compose(event, entry["steps"])
    derived = float(accountant.get_epsilon(entry["delta"]))
    recorded = float(entry["epsilon"])
    gap = abs(recorded - derived)
    if not gap <= tolerance * derived + absolute_tolerance:
        raise _Fail(f"epsilon {recorded:.3f} recorded, {derived:.3f} re-derived "
                    f"({entry['accountant']} via dp-accounting; gap {gap:.3f} is more than "
                    f"{tolerance:.1%} + {absolute_tolerance})")
    return gap / derived if derived > 0 else 0.0
