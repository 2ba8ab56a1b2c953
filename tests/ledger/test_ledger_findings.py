"""The privacy ledger, format 2: the review's findings, and the one-sided verifier.

Format 1 accepted an ε lowered by 1.65 % and resealed; the site's signature now rejects that, and
for a key holder the verifier is one-sided: an ε below what the mechanism provably spends is a
finding, a value still above it is not. Ledgers spanning several runs re-derive each run's ε;
a repeated round, a changed constant field, an entry over its budget or cap, or another key's
signature is named by its line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from client.privacy.ledger import canonical_line, entry_sha256, read_ledger, seal_sha256
from client.privacy.verify import verify_ledger
from tests.ledger.ledger_files import (
    STEPS,
    ledger_lines,
    one_run_plan,
    rewritten_ledger,
    sigma_for,
    write_ledger,
    write_ledger_lines,
)

FINDING_RATIO = 2.951 / 3.001  # the review's understatement: 1.65 % too low


def test_finding_1_an_epsilon_lowered_and_resealed_without_the_key_is_rejected(
        genuine, signer, tmp_path):
    """1.65 % too low on the final entry, seal and chain recomputed, anchored by its own head:
    format 1 accepted this; the signature now rejects it, naming the line."""
    forged = rewritten_ledger(genuine, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=e["epsilon"] * FINDING_RATIO), at=3, signer=None)
    report = verify_ledger(forged, public_key=signer.public_key,
                           head_sha256=entry_sha256(read_ledger(forged)[-1]))
    assert not report.ok and report.first_bad_line == 3
    assert str(report) == (f"{forged}:3: `signature` does not verify with the site key "
                           f"{signer.fingerprint}: the entry was resealed or re-signed without "
                           "the site's private key")


def test_finding_1_the_same_understatement_by_the_key_holder_is_rejected_by_arithmetic(
        genuine_prv, signer, tmp_path):
    """With the key, the forgery signs; but 1.65 % below a PRV ε is below what the mechanism
    provably spends (format 1's two-sided 1 % + 0.02 let it pass)."""
    final = read_ledger(genuine_prv)[-1]["epsilon"]
    lowered = final * FINDING_RATIO
    assert final - lowered <= 0.01 * final + 0.02  # inside the old tolerance
    forged = rewritten_ledger(genuine_prv, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=lowered, run_epsilon=lowered), at=3,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 3
    assert report.reason.startswith(f"`epsilon` understated: recorded {lowered:.4f}, the "
                                    "mechanism provably spends at least ")
    assert "over the 300 steps of the ledger" in report.reason


def test_a_key_holder_lowering_an_rdp_epsilon_toward_the_truth_is_not_a_finding(
        genuine, signer, tmp_path):
    """One-sided: opacus's RDP is ≥ 20 % above the true ε here; a value 1.65 % lower still bounds
    the spend from above, and the verifier cannot call it false."""
    forged = rewritten_ledger(genuine, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=e["epsilon"] * FINDING_RATIO,
                                         run_epsilon=e["run_epsilon"] * FINDING_RATIO),
                      at=3, signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert report.ok, str(report)
    assert report.shortfall is not None and report.shortfall.line == 3  # shown, as information
    assert "not a finding" in str(report)


@pytest.mark.parametrize("below, ok", [(0.0, True), (1e-4, False)])
def test_at_the_lower_bound_passes_and_just_below_fails(genuine_prv, signer, tmp_path, below, ok):
    """The line is the lower bound itself, less a round-off slack of about 1e-6; the grid comes
    from the recorded (σ, q, steps) alone, so the claim does not move the line."""
    bound = verify_ledger(genuine_prv, public_key=signer.public_key).lower_bound
    claim = bound - below
    forged = rewritten_ledger(genuine_prv, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=claim, run_epsilon=claim), at=3, signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert report.ok is ok, str(report)
    assert report.ok or report.reason.startswith(f"`epsilon` understated: recorded {claim:.4f}")


def test_finding_1_an_honest_ledger_at_epsilon_24_verifies(tmp_path, signer):
    """opacus's RDP records less than dp-accounting's RDP here, by more than format 1's two-sided
    tolerance allowed; both are upper bounds, and the ledger verifies."""
    path = tmp_path / "high.jsonl"
    write_ledger(path, one_run_plan(0.57, q=0.05), signer=signer)  # ε = 23.98 after 300 steps
    report = verify_ledger(path, public_key=signer.public_key)
    assert report.ok, str(report)
    assert report.epsilon == pytest.approx(24.0, rel=0.01)
    assert abs(report.epsilon - report.independent) > 0.01 * report.independent + 0.02
    assert report.shortfall.field in ("epsilon", "run_epsilon")
    assert report.shortfall.recorded < report.shortfall.independent
    assert report.lower_bound < report.epsilon


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, signer) -> tuple[Path, list[dict]]:
    """Three runs at different sampling rates, interleaved, each starting at round 1."""
    sigmas = {"a": sigma_for(target=2.0, q=0.02), "b": sigma_for(target=2.0, q=0.05, steps=150)}
    rates = {"a": 0.02, "b": 0.05}
    plan = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3), ("c", 1)]
    path = tmp_path_factory.mktemp("multi") / "lifetime.jsonl"
    entries = write_ledger(path, [(run, r, sigmas.get(run, sigmas["a"]), rates.get(run, 0.02),
                             STEPS if run != "b" else 50) for run, r in plan], signer=signer)
    return path, entries


def test_a_multi_run_ledger_verifies_and_each_run_is_re_derived(multi_run, signer):
    path, entries = multi_run
    report = verify_ledger(path, public_key=signer.public_key)
    assert report.ok, str(report)
    assert {run: s.rounds for run, s in report.runs.items()} == {
        "a": (1, 2, 3), "b": (1, 2, 3), "c": (1,)}
    for run, summary in report.runs.items():
        last = [e for e in entries if e["run"] == run][-1]
        assert summary.run_epsilon == last["run_epsilon"]
        assert summary.lower_bound <= summary.run_epsilon
        assert summary.independent == pytest.approx(summary.run_epsilon, rel=0.01)
        assert summary.run_epsilon < report.epsilon  # a run's spend is part of the lifetime's
    assert report.epsilon == entries[-1]["epsilon"]
    assert "run 'a': rounds 1–3, ε = " in str(report) and "run 'c': rounds 1, ε = " in str(report)


def test_a_run_epsilon_understated_by_the_key_holder_is_named(multi_run, signer, tmp_path):
    """Line 4 is run b's round 2: its run ε replaced by its round-1 value (half its spend)."""
    path, entries = multi_run
    forged = rewritten_ledger(path, tmp_path / "l.jsonl",
                      lambda e: e.update(run_epsilon=entries[1]["run_epsilon"]), at=4,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 4
    assert report.reason.startswith("`run_epsilon` understated: recorded ")
    assert "over the 100 steps of run 'b'" in report.reason


def test_a_round_repeated_within_a_run_is_named(multi_run, signer, tmp_path):
    path, _ = multi_run
    forged = rewritten_ledger(path, tmp_path / "l.jsonl", lambda e: e.update(round=1), at=3,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 3
    assert report.reason == ("`round` is 1 but run 'a' already reached round 1; rounds must "
                             "strictly increase within a run")


@pytest.mark.parametrize("field, value", [("site", "site-b"), ("dataset", "sha256:other"),
                                          ("accountant", "prv"), ("privacy_unit", "patient")])
def test_a_constant_field_changed_by_the_key_holder_is_named(multi_run, signer, tmp_path, field,
                                                             value):
    path, _ = multi_run
    forged = rewritten_ledger(path, tmp_path / "l.jsonl", lambda e: e.update({field: value}), at=2,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith(f"`{field}` is {value!r} but the ledger's first entry has ")


@pytest.mark.parametrize("budget, cap, line, message", [
    (1.8, None, 2, r"`epsilon` 1\.848 is over the entry's `epsilon_budget` 1\.8: the site spent "
                   r"past its lifetime budget"),
    (100.0, 1.9, 3, r"`run_epsilon` 1\.999 is over the entry's `run_epsilon_cap` 1\.9: run "
                    r"'run-1' spent past its cap"),
])
def test_an_entry_over_its_budget_or_cap_is_flagged(tmp_path, signer, budget, cap, line, message):
    path = tmp_path / "over.jsonl"
    write_ledger(path, one_run_plan(sigma_for(target=2.0)), signer=signer, budget=budget, cap=cap)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == line, str(report)
    assert str(report).startswith(f"{path}:{line}: ")
    assert re.fullmatch(message, report.reason), report.reason


def test_another_keys_signature_fails_naming_the_line(genuine, signer, intruder, tmp_path):
    report = verify_ledger(genuine, public_key=intruder.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason == (f"`signer` is {signer.fingerprint}, not the site key given "
                             f"({intruder.fingerprint}): signed by another key")
    # Someone with another key rewrites from line 2 on, chain and signatures recomputed.
    forged = rewritten_ledger(genuine, tmp_path / "a.jsonl", lambda e: e.update(epsilon=0.1), at=2,
                      signer=intruder)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith(f"`signer` is {intruder.fingerprint}, not the site key")
    # ... or claims the site's fingerprint and signs with their own key.
    entries = [json.loads(line) for line in ledger_lines(genuine)]
    entries[1]["epsilon"] = 0.1
    entries[1]["entry_sha256"] = seal_sha256(entries[1])
    entries[1]["signature"] = intruder.sign(entries[1]["entry_sha256"])
    claimed = write_ledger_lines(tmp_path / "b.jsonl", [canonical_line(e) for e in entries])
    report = verify_ledger(claimed, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith("`signature` does not verify with the site key")
