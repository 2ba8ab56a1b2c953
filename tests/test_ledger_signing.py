"""Ledger signing keys: a SuperNode key, or a simulated site's key made once in its state folder."""

from __future__ import annotations

import os

import pytest

from client.node_identity import (
    NodeKeyError,
    fingerprint,
    load_node_public_key,
    write_node_key_pair,
)
from client.privacy.signing import LedgerSigner, signature_valid, simulated_signer

SEAL = "ab" * 32


def test_a_supernode_key_signs_and_its_registered_public_key_verifies(tmp_path):
    pair = write_node_key_pair(tmp_path, name="site-a")
    signer = LedgerSigner.from_openssh_file(pair.private_key)
    public = load_node_public_key(pair.public_key)
    assert signer.fingerprint == fingerprint(public)
    signature = signer.sign(SEAL)
    assert signature_valid(public, seal_hex=SEAL, signature=signature)
    assert not signature_valid(public, seal_hex="cd" * 32, signature=signature)
    assert not signature_valid(public, seal_hex=SEAL, signature="not base64!")
    other = LedgerSigner.from_openssh_file(write_node_key_pair(tmp_path, name="b").private_key)
    assert not signature_valid(other.public_key, seal_hex=SEAL, signature=signature)


def test_a_key_readable_by_others_or_missing_is_refused(tmp_path):
    pair = write_node_key_pair(tmp_path, name="site-a")
    os.chmod(pair.private_key, 0o644)
    with pytest.raises(NodeKeyError, match=r"site-a: readable by others \(mode 644\)"):
        LedgerSigner.from_openssh_file(pair.private_key)
    with pytest.raises(NodeKeyError, match=r"absent: SuperNode private key file does not exist"):
        LedgerSigner.from_openssh_file(tmp_path / "absent")
    with pytest.raises(TypeError, match="expected an EC private key"):
        LedgerSigner("not a key")


def test_a_simulated_site_makes_its_key_once_and_loads_it_after(tmp_path):
    first = simulated_signer(tmp_path / "state")
    private, public = tmp_path / "state" / "signing-key", tmp_path / "state" / "signing-key.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    assert fingerprint(load_node_public_key(public)) == first.fingerprint
    assert simulated_signer(tmp_path / "state").fingerprint == first.fingerprint
    assert simulated_signer(tmp_path / "other").fingerprint != first.fingerprint


def test_a_simulated_key_pair_with_a_half_missing_or_mismatched_is_refused(tmp_path):
    simulated_signer(tmp_path / "a")
    (tmp_path / "a" / "signing-key.pub").unlink()
    with pytest.raises(NodeKeyError, match=r"signing-key\.pub: missing, but \S+signing-key exists; "
                                           "restore it from a backup"):
        simulated_signer(tmp_path / "a")
    simulated_signer(tmp_path / "b")
    another = write_node_key_pair(tmp_path / "c", name="k").public_key
    (tmp_path / "b" / "signing-key.pub").write_bytes(another.read_bytes())
    with pytest.raises(NodeKeyError, match=r"b/signing-key\.pub: does not match the private key"):
        simulated_signer(tmp_path / "b")
