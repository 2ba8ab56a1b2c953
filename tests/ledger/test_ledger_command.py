"""`lang1-fl privacy verify`: the ledger verifier as a reviewer runs it, and its exit codes.

0 for a genuine ledger with the site's public key, 1 for a tampered one (naming the line), 2
without a usable public key (saying where a site's key is found).
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization

from client.privacy.ledger import canonical_line
from tests.ledger.ledger_files import ledger_lines, write_ledger_lines


def test_privacy_verify_command_exit_codes_and_lines(genuine, signer, tmp_path, capsys):
    from server.cli import main as lang1_fl

    key = tmp_path / "site.pub"
    key.write_bytes(signer.public_key.public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH))
    assert lang1_fl(["privacy", "verify", str(genuine), "--public-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "OK, 3 entries" in out and "lower bound" in out and "run 'run-1'" in out
    lines = ledger_lines(genuine)
    entry = json.loads(lines[1])
    entry["epsilon"] = entry["epsilon"] / 2
    lines[1] = canonical_line(entry)
    tampered = write_ledger_lines(tmp_path / "tampered.jsonl", lines)
    assert lang1_fl(["privacy", "verify", str(tampered), "--public-key", str(key)]) == 1
    assert f"{tampered}:2:" in capsys.readouterr().out
    assert lang1_fl(["privacy", "verify", str(genuine)]) == 2
    err = capsys.readouterr().err
    assert "pass --public-key KEY.pub" in err and "signing-key.pub" in err
    assert "registered SuperNode public key" in err
    assert lang1_fl(["privacy", "verify", str(genuine), "--public-key", str(genuine)]) == 2
    assert "not an OpenSSH public key" in capsys.readouterr().err
