"""What `verify_ledger` found, in the few lines a privacy reviewer reads.

A failure is one line, `<file>:<line>: <reason>`. A pass says who signed, what the site spent over
its lifetime and per run, what the independent accountant and the provable lower bound say, where
the noise came from, and — as information — how far the recorded ε falls below the independent
accountant when it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
