"""Privacy ledgers written as a site writes them, and the edits of someone who rewrites one.

Shared by the ledger tests in this folder. `write_ledger` builds a format-2 ledger with `append_entry`,
ε computed by opacus (`client.privacy.accounting.cumulative_epsilon`) over the whole ledger and
over each run; `resealed_line` and `rewritten_ledger` edit an entry and seal (and sign) it, and the
chain, again.
"""

from __future__ import annotations

import json
from pathlib import Path

from client.privacy.accounting import cumulative_epsilon, noise_multiplier_for
from client.privacy.ledger import (
    GENESIS_SHA256,
    append_entry,
    canonical_line,
    entry_sha256,
    seal_sha256,
)
from client.privacy.signing import LedgerSigner

STEPS, Q, DELTA = 100, 0.01, 1e-5


def sigma_for(*, target: float, q: float = Q, steps: int = 3 * STEPS, accountant: str = "rdp"):
    return noise_multiplier_for(target_epsilon=target, steps=steps, sample_rate=q, delta=DELTA,
                                accountant=accountant)


def write_ledger(path: Path, plan: list[tuple[str, int, float, float, int]], *, signer: LedgerSigner,
           accountant: str = "rdp", budget: float = 100.0,
           cap: float | None = None) -> list[dict]:
    """A ledger as a site writes it: one entry per (run, round, σ, q, steps), ε by opacus over
    the whole ledger and over the entry's run."""
    history: list[tuple[float, float, int]] = []
    per_run: dict[str, list[tuple[float, float, int]]] = {}
    entries = []
    for day, (run, round_, sigma, q, steps) in enumerate(plan, start=1):
        history.append((sigma, q, steps))
        per_run.setdefault(run, []).append((sigma, q, steps))
        entries.append(append_entry(path, dict(
            run=run, round=round_, site="site-a", dataset="sha256:" + "d" * 16,
            privacy_unit="encounter", sample_rate=q, noise_multiplier=sigma, max_grad_norm=1.0,
            steps=steps, examples=3200, noise_source="csprng", delta=DELTA,
            accountant=accountant,
            epsilon=cumulative_epsilon(history=history, delta=DELTA, accountant=accountant),
            run_epsilon=cumulative_epsilon(history=per_run[run], delta=DELTA,
                                           accountant=accountant),
            epsilon_budget=budget, run_epsilon_cap=cap, site_config_sha256="ab" * 32,
            time=f"2026-01-{day:02d}T00:00:00+00:00",
        ), signer=signer))
    return entries


def one_run_plan(sigma: float, *, q: float = Q, rounds: int = 3, steps: int = STEPS, run="run-1"):
    return [(run, r, sigma, q, steps) for r in range(1, rounds + 1)]


def ledger_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_ledger_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def resealed_line(entry: dict, signer: LedgerSigner | None = None) -> str:
    """The entry's line after an edit: sealed again, and signed again when `signer` is given."""
    if signer is not None:
        entry["signer"] = signer.fingerprint
    entry["entry_sha256"] = seal_sha256(entry)
    if signer is not None:
        entry["signature"] = signer.sign(entry["entry_sha256"])
    return canonical_line(entry)


def rewritten_ledger(path: Path, out: Path, edit, *, at: int, signer: LedgerSigner | None) -> Path:
    """Apply `edit` to line `at` (1-based), reseal it, and recompute the chain (and, with
    `signer`, every signature) from there on: what someone who rewrites the file can do."""
    entries = [json.loads(line) for line in ledger_lines(path)]
    edit(entries[at - 1])
    lines = [canonical_line(e) for e in entries[: at - 1]]
    for entry in entries[at - 1:]:
        entry["prev_sha256"] = entry_sha256(json.loads(lines[-1])) if lines else GENESIS_SHA256
        lines.append(resealed_line(entry, signer))
    return write_ledger_lines(out, lines)
