"""The consortium's certificate authority and the SuperLink's TLS certificate.

Every hospital's SuperNode and the coordinator's `flwr` command check the SuperLink against one
root certificate, the consortium CA's, which the coordinator creates once here and hands to each
hospital (it is public). The CA's private key signs the SuperLink's certificate and nothing else:
it stays with the coordinator, offline if possible. The server certificate names every host name
and IP address the sites dial, plus `localhost` and `127.0.0.1`, because Flower 1.42's SuperLink
starts its own ServerApp process, which reaches the SuperLink over loopback with TLS and checks the
certificate like any client. Private keys are written with mode 0600 and never overwritten unless
asked.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sites.files import write_private_file, write_public_file

log = logging.getLogger(__name__)

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1")
"""Always in the server certificate: the SuperLink's own ServerApp process connects over loopback."""


class CertificateError(ValueError):
    """A certificate or key file is missing, unreadable or not what the command needs."""


@dataclass(frozen=True)
class CertificatePair:
    """A certificate and its private key on disk."""

    cert: Path
    """PEM certificate: public, may be copied anywhere."""
    key: Path
    """PEM private key, mode 0600: never leaves the machine it was made on."""


def write_ca(
    out_dir: Path, *, name: str = "lang1-fl consortium CA", days: int = 3650, overwrite: bool = False
) -> CertificatePair:
    """Create the consortium CA (`ca.crt`, `ca.key`) in `out_dir`: a self-signed P-384 CA that may
    sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    pair = CertificatePair(cert=Path(out_dir) / CA_CERT, key=Path(out_dir) / CA_KEY)
    _write_pair(pair, cert, key, overwrite=overwrite)
    return pair


def write_server_certificate(
    out_dir: Path,
    *,
    ca: CertificatePair,
    hosts: list[str],
    days: int = 825,
    overwrite: bool = False,
) -> CertificatePair:
    """Create the SuperLink's `server.crt`/`server.key` in `out_dir`, signed by `ca`, valid for
    `hosts` (DNS names or IP addresses the sites dial) and for loopback."""
    ca_cert, ca_key = load_certificate(ca.cert, what="CA certificate"), load_private_key(ca.key)
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise CertificateError(f"{ca.key} is not the private key of {ca.cert}; pass the CA's own key")
    names = subject_alt_names(hosts)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost")])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    pair = CertificatePair(cert=Path(out_dir) / SERVER_CERT, key=Path(out_dir) / SERVER_KEY)
    _write_pair(pair, cert, key, overwrite=overwrite)
    return pair


def subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    """`hosts` plus loopback as SAN entries: IP addresses as IPAddress, the rest as DNSName."""
    entries: list[x509.GeneralName] = []
    for host in [*hosts, *LOOPBACK_NAMES]:
        host = host.strip().strip("[]")
        if not host:
            raise CertificateError("`--host` is empty; expected a DNS name or an IP address")
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if ":" in host or "/" in host or " " in host:
                raise CertificateError(f"`--host` {host!r} is neither an IP address nor a DNS "
                                       "name; give the name without port or scheme") from None
            entry = x509.DNSName(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def load_certificate(path: Path, *, what: str = "certificate") -> x509.Certificate:
    """A PEM certificate, or a `CertificateError` naming the file."""
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise CertificateError(f"{path}: not a PEM {what} ({error})") from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM EC private key, or a `CertificateError` naming the file."""
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path}: a {type(key).__name__}; expected an EC private key")
    return key


def _write_pair(pair: CertificatePair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                *, overwrite: bool) -> None:
    for path in (pair.cert, pair.key):  # check both before writing either
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it (everything it "
                                  "signed or identified stops working)")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_private_file(pair.key, key_pem, overwrite=overwrite)
    write_public_file(pair.cert, cert.public_bytes(serialization.Encoding.PEM), overwrite=overwrite)
    log.info("wrote %s and %s (private, mode 0600)", pair.cert, pair.key)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    if days < 1:
        raise CertificateError(f"`--days` is {days}; expected a positive number of days")
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
            .not_valid_after(now + datetime.timedelta(days=days)))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=not ca,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def _read(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise CertificateError(f"{path}: {what} file does not exist")
    return path.read_bytes()
