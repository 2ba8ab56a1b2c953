"""A hospital's SuperNode identity: the key pair its SuperNode signs every request with.

With `--enable-supernode-auth` a Flower 1.42 SuperLink accepts a SuperNode only if its public key
was registered beforehand (`flwr supernode register`), and the SuperNode proves it holds the
matching private key by signing each request. So the hospital makes the pair itself, keeps the
private key on the SuperNode's machine (mode 0600; it never travels), and sends the coordinator
only the public key, whose fingerprint both sides read to each other over a second channel
(phone, signed e-mail) before registering it. Flower 1.42 expects both halves in OpenSSH format,
on a NIST elliptic curve; we use P-384.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sites.files import write_private_file, write_public_file

log = logging.getLogger(__name__)

NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
"""The curves Flower 1.42 accepts for SuperNode keys (it also lists the weak P-192/P-224)."""


class NodeKeyError(ValueError):
    """A SuperNode key file is missing or is not the kind of key Flower accepts."""


@dataclass(frozen=True)
class NodeKeyPair:
    """A SuperNode's key files."""

    private_key: Path
    """OpenSSH private key, mode 0600: stays on the hospital's SuperNode machine."""
    public_key: Path
    """OpenSSH public key (`<name>.pub`): what the coordinator registers."""


def write_node_key_pair(out_dir: Path, *, name: str, overwrite: bool = False) -> NodeKeyPair:
    """Create `<name>` (private) and `<name>.pub` (public) in `out_dir`: a P-384 key pair in the
    OpenSSH format `flower-supernode --auth-supernode-private-key` and `flwr supernode register`
    read; the public key's comment names the site."""
    if not name or "/" in name or name.startswith("."):
        raise NodeKeyError(f"`name` is {name!r}; expected a file name such as the site's name")
    pair = NodeKeyPair(private_key=Path(out_dir) / name, public_key=Path(out_dir) / f"{name}.pub")
    for path in (pair.private_key, pair.public_key):  # check both before writing either
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it (the coordinator "
                                  "must then register the new public key)")
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    write_private_file(pair.private_key, private, overwrite=overwrite)
    write_public_file(pair.public_key, public + f" lang1-fl:{name}\n".encode(), overwrite=overwrite)
    log.info("wrote SuperNode key pair %s (private, mode 0600) and %s", pair.private_key,
             pair.public_key)
    return pair


def load_node_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The OpenSSH EC public key in `path`, checked the way `flwr supernode register` checks it,
    or a `NodeKeyError` that names the file and says what it holds instead."""
    path = Path(path)
    if not path.is_file():
        raise NodeKeyError(f"{path}: public key file does not exist")
    data = path.read_bytes().strip()
    if b"PRIVATE KEY" in data:
        raise NodeKeyError(f"{path}: is a PRIVATE key; the site keeps that one. Register the "
                           f"`.pub` file beside it instead")
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise NodeKeyError(f"{path}: not an OpenSSH public key (expected one line "
                           "`ecdsa-sha2-nistp384 AAAA... comment`, as `lang1-fl deploy site-key` "
                           "writes)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, NIST_CURVES):
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise NodeKeyError(f"{path}: a {kind} key; Flower accepts SuperNode keys on the NIST "
                           "curves P-256, P-384 or P-521 only")
    return key


def check_node_private_key(path: Path) -> None:
    """Refuse a SuperNode private key that is missing, not an OpenSSH EC key, or readable by
    anyone but its owner: the SuperNode would fail later with a vaguer message."""
    path = Path(path)
    if not path.is_file():
        raise NodeKeyError(f"{path}: SuperNode private key file does not exist; create it with "
                           "`lang1-fl deploy site-key`")
    if path.stat().st_mode & 0o077:
        raise NodeKeyError(f"{path}: readable by others (mode {path.stat().st_mode & 0o777:o}); "
                           f"run `chmod 600 {path}`")
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise NodeKeyError(f"{path}: not an unencrypted OpenSSH private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NodeKeyError(f"{path}: a {type(key).__name__}; expected an EC (P-384) key")


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """`SHA256:<base64>`, as `ssh-keygen -lf` prints it: what site and coordinator compare."""
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.sha256(base64.b64decode(blob.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
