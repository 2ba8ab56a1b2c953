"""Joining a real federation: the consortium CA, the SuperLink certificate, a site's key pair, the
`flwr` connection and the SuperLink/SuperNode command lines (all fast, no process started)."""

from __future__ import annotations

import ipaddress
import stat
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from client.node_identity import (
    NodeKeyError,
    check_node_private_key,
    fingerprint,
    load_node_public_key,
    write_node_key_pair,
)
from server.cli import main as lang1_fl
from server.launch.certificates import (
    CertificateError,
    load_certificate,
    write_ca,
    write_server_certificate,
)
from server.launch.deployment import (
    DeploymentError,
    SuperLinkFiles,
    add_connection,
    register_command,
    run_command,
    superlink_command,
    supernode_command,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for a host name and an IP, and one site's key pair."""
    root = tmp_path_factory.mktemp("pki")
    ca = write_ca(root / "ca")
    server = write_server_certificate(root / "ca", ca=ca, hosts=["link.example.org", "10.0.0.5"])
    node = write_node_key_pair(root / "site", name="north")
    return root, ca, server, node


def test_the_ca_signs_the_server_certificate(pki):
    _, ca, server, _ = pki
    ca_cert, cert = load_certificate(ca.cert), load_certificate(server.cert)
    cert.verify_directly_issued_by(ca_cert)  # raises if the signature or issuer is wrong
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_names_the_given_hosts_and_loopback(pki):
    _, _, server, _ = pki
    sans = load_certificate(server.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"link.example.org", "localhost"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("127.0.0.1")}


def test_private_keys_are_owner_only_and_public_files_readable(pki):
    _, ca, server, node = pki
    assert [_mode(p) for p in (ca.key, server.key, node.private_key)] == [0o600] * 3
    assert [_mode(p) for p in (ca.cert, server.cert, node.public_key)] == [0o644] * 3


@pytest.mark.parametrize("write", [
    lambda d, pki: write_ca(d),
    lambda d, pki: write_server_certificate(d, ca=pki[1], hosts=["x"]),
    lambda d, pki: write_node_key_pair(d, name="north"),
], ids=["ca", "server", "site-key"])
def test_existing_files_are_kept_unless_overwrite(tmp_path, pki, write):
    first = write(tmp_path, pki)
    key = next(p for p in vars(first).values() if p.suffix in (".key", ""))
    before = key.read_bytes()
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        write(tmp_path, pki)
    assert key.read_bytes() == before


def test_overwrite_replaces_the_key(tmp_path):
    first = write_ca(tmp_path).key.read_bytes()
    assert write_ca(tmp_path, overwrite=True).key.read_bytes() != first
    assert _mode(tmp_path / "ca.key") == 0o600


def test_server_certificate_refuses_a_key_that_is_not_the_cas(tmp_path, pki):
    _, ca, server, _ = pki
    from server.launch.certificates import CertificatePair

    with pytest.raises(CertificateError, match="is not the private key of"):
        write_server_certificate(tmp_path, ca=CertificatePair(cert=ca.cert, key=server.key),
                                 hosts=["x"])


@pytest.mark.parametrize("host, message", [
    ("https://link.example.org", "neither an IP address nor a DNS name"),
    ("link.example.org:8000", "neither an IP address nor a DNS name"),
    (" ", "is empty"),
])
def test_server_certificate_refuses_a_host_that_is_not_a_name(tmp_path, pki, host, message):
    with pytest.raises(CertificateError, match=message):
        write_server_certificate(tmp_path, ca=pki[1], hosts=[host])


def test_a_missing_certificate_is_named(tmp_path):
    with pytest.raises(CertificateError, match=r"missing\.crt: CA certificate file does not exist"):
        load_certificate(tmp_path / "missing.crt", what="CA certificate")


def test_site_key_pair_is_the_openssh_p384_pair_flower_reads(pki):
    _, _, _, node = pki
    private = serialization.load_ssh_private_key(node.private_key.read_bytes(), password=None)
    public = load_node_public_key(node.public_key)
    assert isinstance(private.curve, ec.SECP384R1)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert node.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert node.public_key.read_text().rstrip().endswith("lang1-fl:north")
    assert fingerprint(public).startswith("SHA256:") and len(fingerprint(public)) == 50


def test_a_private_key_passed_as_public_is_refused_by_name(pki):
    _, _, _, node = pki
    with pytest.raises(NodeKeyError, match=r"is a PRIVATE key; .* `\.pub` file"):
        load_node_public_key(node.private_key)


@pytest.mark.parametrize("content, message", [
    (b"not a key", "not an OpenSSH public key"),
    (ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
     "Flower accepts SuperNode keys on the NIST curves"),
])
def test_a_public_key_flower_would_refuse_is_refused(tmp_path, content, message):
    (tmp_path / "site.pub").write_bytes(content)
    with pytest.raises(NodeKeyError, match=message):
        load_node_public_key(tmp_path / "site.pub")


def test_a_readable_private_key_is_refused(tmp_path):
    pair = write_node_key_pair(tmp_path, name="north")
    pair.private_key.chmod(0o644)
    with pytest.raises(NodeKeyError, match="readable by others .*`chmod 600"):
        check_node_private_key(pair.private_key)


def test_superlink_command_has_tls_auth_state_and_no_dependency_installation(pki, tmp_path):
    _, ca, server, _ = pki
    command = superlink_command(SuperLinkFiles(ca.cert, server.cert, server.key,
                                               tmp_path / "state.db"), port=9443)
    assert Path(command[0]).name == "flower-superlink"
    flags = dict(zip(command[1:], command[2:]))
    assert flags["--ssl-ca-certfile"] == str(ca.cert) and flags["--ssl-keyfile"] == str(server.key)
    assert flags["--ssl-certfile"] == str(server.cert)
    assert flags["--database"] == str(tmp_path / "state.db")
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "9443"
    assert {"--enable-supernode-auth", "--disable-runtime-dependency-installation"} <= set(command)
    assert "--insecure" not in command


def test_superlink_command_names_a_missing_file(pki, tmp_path):
    _, ca, server, _ = pki
    files = SuperLinkFiles(ca.cert, tmp_path / "server.crt", server.key, tmp_path / "s.db")
    with pytest.raises(CertificateError, match=r"server\.crt: server certificate "
                                               r"\(--ssl-certfile\) file does not exist"):
        superlink_command(files)


def _site_yaml(tmp_path: Path) -> Path:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "north", "role": "train", "tasks": ["mortality"],
                                    "data": {"path": "north.parquet", "format": "parquet"}}))
    return site


def test_supernode_command_trusts_the_ca_signs_and_names_its_site(pki, tmp_path):
    _, ca, _, node = pki
    site = _site_yaml(tmp_path)
    command = supernode_command(superlink="link.example.org:8000", root_cert=ca.cert,
                                private_key=node.private_key, site_config=site, runtime_port=9100)
    flags = dict(zip(command[3:], command[4:]))
    assert command[:3] == [sys.executable, "-m", "client.supernode"]  # flower-supernode's flags
    assert flags["--superlink"] == "link.example.org:8000"
    assert flags["--root-certificates"] == str(ca.cert)
    assert flags["--auth-supernode-private-key"] == str(node.private_key)
    assert flags["--node-config"] == f'site-config="{site}"'
    assert flags["--port"] == "9100" and "--insecure" not in command


@pytest.mark.parametrize("change, error, message", [
    ({"superlink": "link.example.org"}, DeploymentError, "expected HOST:PORT"),
    ({"root_cert": Path("/nowhere/ca.crt")}, CertificateError, r"--root-certificates\) file "
                                                               "does not exist"),
    ({"private_key": Path("/nowhere/north")}, NodeKeyError, "private key file does not exist"),
])
def test_supernode_command_names_what_is_wrong(pki, tmp_path, change, error, message):
    _, ca, _, node = pki
    arguments = {"superlink": "l:8000", "root_cert": ca.cert, "private_key": node.private_key,
                 "site_config": _site_yaml(tmp_path), **change}
    with pytest.raises(error, match=message):
        supernode_command(**arguments)


def test_connection_is_added_once_with_an_absolute_ca_path(pki, tmp_path):
    _, ca, _, node = pki
    config = tmp_path / "flwr" / "config.toml"
    add_connection(config, "consortium", address="link.example.org:8000", root_cert=ca.cert)
    parsed = tomllib.loads(config.read_text())["superlink"]
    assert parsed["default"] == "local"  # Flower's own default stays
    assert parsed["consortium"] == {"address": "link.example.org:8000",
                                    "root-certificates": str(ca.cert.resolve())}
    with pytest.raises(FileExistsError, match=r"\[superlink.consortium\] exists"):
        add_connection(config, "consortium", address="other:8000", root_cert=ca.cert)
    assert register_command(node.public_key, connection="consortium")[2:] == [
        "register", str(node.public_key), "consortium"]
    assert run_command("consortium", run_config={"num-server-rounds": 2})[-4:] == [
        "consortium", "--stream", "--run-config", "num-server-rounds=2"]


def test_cli_walks_the_coordinator_and_the_hospital_through_joining(tmp_path, capsys):
    assert lang1_fl(["deploy", "ca", "--out", str(tmp_path / "ca")]) == 0
    assert "next: lang1-fl deploy server-cert" in capsys.readouterr().out
    assert lang1_fl(["deploy", "server-cert", "--ca-dir", str(tmp_path / "ca"),
                     "--host", "link.example.org"]) == 0
    assert "next: lang1-fl deploy superlink" in capsys.readouterr().out
    assert lang1_fl(["deploy", "site-key", "north", "--out", str(tmp_path / "key")]) == 0
    out = capsys.readouterr().out
    assert "fingerprint: SHA256:" in out and "lang1-fl deploy supernode" in out
    assert lang1_fl(["deploy", "superlink", "--ca-cert", str(tmp_path / "ca" / "ca.crt"),
                     "--certs-dir", str(tmp_path / "ca")]) == 0
    assert "--enable-supernode-auth" in capsys.readouterr().out
    assert lang1_fl(["deploy", "supernode", "--superlink", "link.example.org:8000",
                     "--root-cert", str(tmp_path / "ca" / "ca.crt"),
                     "--key", str(tmp_path / "key" / "north"),
                     "--site", str(_site_yaml(tmp_path))]) == 0
    assert "site-config=" in capsys.readouterr().out
    assert lang1_fl(["deploy", "supernode", "--superlink", "link.example.org:8000",
                     "--root-cert", str(tmp_path / "ca" / "ca.crt"),
                     "--key", str(tmp_path / "key" / "north"),
                     "--site", str(_site_yaml(tmp_path)), "--no-worker"]) == 2
    assert capsys.readouterr().err.strip() == (
        "lang1-fl deploy: --no-worker only changes how --exec runs the SuperNode; add --exec")


def test_supernode_command_names_the_site_worker_in_its_node_config(pki, tmp_path):
    _, ca, _, node = pki
    site = _site_yaml(tmp_path)
    command = supernode_command(superlink="l:8000", root_cert=ca.cert,
                                private_key=node.private_key, site_config=site,
                                site_worker="/tmp/lang1-fl-worker-x/socket")
    flags = dict(zip(command[3:], command[4:]))
    assert flags["--node-config"] == (
        f'site-config="{site}" site-worker="/tmp/lang1-fl-worker-x/socket"')


def test_cli_errors_are_one_line_naming_the_file(tmp_path, capsys):
    assert lang1_fl(["deploy", "register", str(tmp_path / "north.pub"),
                     "--connection", "c"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"lang1-fl deploy: {tmp_path / 'north.pub'}: public key file does not exist")
    assert lang1_fl(["deploy", "server-cert", "--ca-dir", str(tmp_path), "--host", "x"]) == 2
    assert "ca.crt: CA certificate file does not exist" in capsys.readouterr().err
