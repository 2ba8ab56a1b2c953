"""Signing ledger entries with the site's key, and checking those signatures.

A hash chain proves nothing to someone who can rewrite the whole file: they recompute every seal
and link. A signature binds each entry to the site: it is ECDSA (SHA-384) over the entry's seal
(`entry_sha256`, as ASCII hex), made with a private key that never leaves the site, and checked by
the reviewer against the public key the site registered.

The key is the one the site already has and the coordinator already registered: its SuperNode key
pair (`lang1-fl deploy site-key`, client/node_identity.py; OpenSSH format, P-384), whose
fingerprint both sides compared over a second channel. A simulated site has no SuperNode key, so
`simulated_signer` makes a pair once in the site's state folder (`signing-key`, mode 0600, and
`signing-key.pub`) and loads it on every later call; that public key is as trustworthy as the copy
the reviewer got of it, which is why `lang1-fl privacy verify` never picks it up by itself.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from client.node_identity import (
    NodeKeyError,
    check_node_private_key,
    fingerprint,
    load_node_public_key,
    write_node_key_pair,
)

SIMULATED_KEY_NAME = "signing-key"
_ALGORITHM = ec.ECDSA(hashes.SHA384())


class LedgerSigner:
    """Signs ledger seals with one site's EC private key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"`private_key` is a {type(private_key).__name__}; expected an EC "
                            "private key (the site's SuperNode key)")
        self._key = private_key
        self.public_key: ec.EllipticCurvePublicKey = private_key.public_key()
        self.fingerprint: str = fingerprint(self.public_key)
        """`SHA256:<base64>`: what each entry's `signer` field holds."""

    @classmethod
    def from_openssh_file(cls, path: str | Path) -> LedgerSigner:
        """The signer of the OpenSSH private key at `path` (a SuperNode key): refused with a
        `NodeKeyError` naming the file if it is missing, readable by others, or not EC."""
        path = Path(path)
        check_node_private_key(path)
        return cls(serialization.load_ssh_private_key(path.read_bytes(), password=None))

    def sign(self, seal_hex: str) -> str:
        """Base64 ECDSA (SHA-384) signature over `seal_hex`'s ASCII bytes."""
        return base64.b64encode(self._key.sign(seal_hex.encode("ascii"), _ALGORITHM)).decode()

    def __repr__(self) -> str:
        return f"LedgerSigner({self.fingerprint})"


def signature_valid(public_key: ec.EllipticCurvePublicKey, *, seal_hex: str,
                    signature: str) -> bool:
    """Whether `signature` (base64) is `public_key`'s ECDSA (SHA-384) signature of `seal_hex`."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, seal_hex.encode("ascii"), _ALGORITHM)
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


def simulated_signer(folder: str | Path) -> LedgerSigner:
    """The signer of a simulated site whose state lives in `folder`: a P-384 key pair generated
    into `<folder>/signing-key` (mode 0600) and `signing-key.pub` the first time, loaded after.

    Refuses (`NodeKeyError`, naming the file) a pair with one half missing or whose halves do not
    match: a new key would leave the ledger's earlier entries signed by a key nobody can use.
    """
    folder = Path(folder)
    private, public = folder / SIMULATED_KEY_NAME, folder / f"{SIMULATED_KEY_NAME}.pub"
    if not private.exists() and not public.exists():
        write_node_key_pair(folder, name=SIMULATED_KEY_NAME)
    for present, absent in ((private, public), (public, private)):
        if present.exists() and not absent.exists():
            raise NodeKeyError(
                f"{absent}: missing, but {present} exists; restore it from a backup (a new pair "
                "would not verify the entries already signed), or move both away to start a new "
                "ledger")
    signer = LedgerSigner.from_openssh_file(private)
    if fingerprint(load_node_public_key(public)) != signer.fingerprint:
        raise NodeKeyError(f"{public}: does not match the private key {private} "
                           f"({signer.fingerprint}); restore the matching public key")
    return signer
