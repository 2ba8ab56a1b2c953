"""A site's identity bound to its SuperNode key: the consortium names each site's key
fingerprint, and discovery refuses a node whose registered key is not the key of the site it
claims (with real processes: tests/test_site_keys_e2e.py)."""

from __future__ import annotations

import re
import secrets

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.app import ConfigRecord, Message, RecordDict

from client.node_identity import fingerprint
from server.discovery import SiteDiscoveryError, discover_sites
from server.site_keys import key_mismatch, presented_fingerprint
from sites.config import InvalidSiteConfig, load_consortium
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity

SITES = ("academic", "community", "external-system")
CLAIMS = {1: ("academic", "train"), 2: ("community", "train"), 3: ("external-system", "external")}


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A public key as Flower 1.42's LinkState holds it (`public_key_to_bytes`: PEM)."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def site_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP384R1()) for name in SITES}


def _consortium_file(tmp_path, fingerprints: dict[str, object]):
    """The small consortium with `key_fingerprint` set for the sites named in `fingerprints`."""
    path = write_small_consortium(tmp_path)
    raw = yaml.safe_load(path.read_text())
    for site in raw["sites"]:
        if site["name"] in fingerprints:
            site["key_fingerprint"] = fingerprints[site["name"]]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture()
def bound(tmp_path, site_keys):
    """A consortium naming every site's key fingerprint."""
    set_task_identity()
    path = _consortium_file(tmp_path, {n: fingerprint(k.public_key()) for n, k in site_keys.items()})
    return load_consortium(path, data_root=tmp_path)


def _answering(claims: dict[int, tuple[str, str]]):
    def respond(message: Message) -> Message:
        name, role = claims[message.metadata.dst_node_id]
        return Message(RecordDict({"site": ConfigRecord({"name": name, "role": role})}),
                       reply_to=message)

    return respond


def _grid(keys: dict[int, bytes]) -> FakeGrid:
    return FakeGrid(CLAIMS, _answering(CLAIMS), keys=keys)


# --- the consortium file --------------------------------------------------------------------


def test_fingerprints_as_deploy_register_prints_them_load(bound, site_keys):
    assert [s.key_fingerprint for s in bound.sites] == [
        fingerprint(site_keys[name].public_key()) for name in SITES]


@pytest.mark.parametrize("value", [
    "SHA256:abc",  # too short
    "sha256:" + "A" * 43,  # ssh-keygen writes SHA256 in capitals
    "MD5:" + "ab:" * 15 + "ab",  # the old MD5 form
    "SHA256:" + "A" * 42 + "=",  # base64 padding is not printed
    "SHA256:" + "A" * 44,
    12345,
])
def test_a_malformed_fingerprint_is_refused_at_load(tmp_path, value):
    path = _consortium_file(tmp_path, {name: "SHA256:" + "A" * 43 for name in SITES}
                            | {"community": value})
    with pytest.raises(InvalidSiteConfig, match=(
            r"consortium.yaml: `sites\[1\].key_fingerprint` is .*; expected the site's SuperNode "
            r"key fingerprint as `lang1-fl deploy register` prints it: 'SHA256:' and 43 base64 "
            r"characters$")):
        load_consortium(path, data_root=tmp_path)


def test_once_one_site_names_a_fingerprint_every_site_must(tmp_path, site_keys):
    named = {n: fingerprint(site_keys[n].public_key()) for n in ("academic", "external-system")}
    with pytest.raises(InvalidSiteConfig, match=(
            r"consortium.yaml: `sites\[1\].key_fingerprint` of site 'community' is missing; "
            r"expected one for every site once any site names one \(copy it from `lang1-fl deploy "
            r"register`'s output for that site's public key\)$")):
        load_consortium(_consortium_file(tmp_path, named), data_root=tmp_path)


def test_two_sites_cannot_name_one_key(tmp_path, site_keys):
    named = {n: fingerprint(k.public_key()) for n, k in site_keys.items()}
    named["external-system"] = named["academic"]
    with pytest.raises(InvalidSiteConfig, match=(
            r"`sites\[2\].key_fingerprint` of site 'external-system' is 'SHA256:.*', the key of "
            r"site 'academic'; expected each site's own key$")):
        load_consortium(_consortium_file(tmp_path, named), data_root=tmp_path)


# --- the check --------------------------------------------------------------------------------


def test_presented_fingerprint_reads_the_registered_pem_key(site_keys):
    key = site_keys["academic"]
    assert presented_fingerprint(_pem(key)) == fingerprint(key.public_key())


@pytest.mark.parametrize("public_key", [
    None,  # the node left before its key was read
    b"",  # Grid.get_nodes() without a key (Flower's default NodeInfo)
    secrets.token_bytes(32),  # a simulated node: Flower registers random bytes
])
def test_a_node_without_a_supernode_key_presents_none(public_key):
    assert presented_fingerprint(public_key) is None


def test_key_mismatch_cases(bound, site_keys):
    academic = bound.site("academic")
    expected = fingerprint(site_keys["academic"].public_key())
    presented = fingerprint(site_keys["community"].public_key())
    # match
    assert key_mismatch(1, academic, _pem(site_keys["academic"]),
                        consortium_file=bound.source) is None
    # mismatch: one line naming the site, the expected and the presented fingerprint
    problem = key_mismatch(1, academic, _pem(site_keys["community"]), consortium_file=bound.source)
    assert problem == (
        f"node 1 claims site 'academic', whose key fingerprint in {bound.source} is {expected}, "
        f"but its registered key is {presented}; refused: start that site's SuperNode with its "
        "own private key, or correct `key_fingerprint`")
    # missing: a node with no SuperNode key (simulation)
    problem = key_mismatch(1, academic, secrets.token_bytes(32), consortium_file=None)
    assert problem.startswith(f"node 1 claims site 'academic', whose key fingerprint is {expected}"
                              ", but it has no SuperNode key (a simulated node has none")
    assert "\n" not in problem


# --- discovery ------------------------------------------------------------------------------


def test_nodes_holding_their_sites_keys_are_accepted(bound, site_keys):
    keys = {node: _pem(site_keys[name]) for node, (name, _) in CLAIMS.items()}
    roster = discover_sites(_grid(keys), bound, timeout=5)
    assert [(e.name, e.node_id) for e in roster.entries] == [
        ("academic", 1), ("community", 2), ("external-system", 3)]


def test_a_node_claiming_a_site_whose_key_it_does_not_hold_is_refused(bound, site_keys):
    """The issue's case: node 1 signs with community's registered key but claims academic."""
    keys = {1: _pem(site_keys["community"]), 2: _pem(site_keys["community"]),
            3: _pem(site_keys["external-system"])}
    expected = fingerprint(site_keys["academic"].public_key())
    presented = fingerprint(site_keys["community"].public_key())
    with pytest.raises(SiteDiscoveryError, match=(
            rf"^node 1 claims site 'academic', whose key fingerprint in .*consortium.yaml is "
            rf"{re.escape(expected)}, but its registered key is {re.escape(presented)}; refused")):
        discover_sites(_grid(keys), bound, timeout=5)


def test_a_simulated_node_is_refused_when_the_consortium_names_keys(bound):
    keys = {node: secrets.token_bytes(32) for node in CLAIMS}  # as Flower's simulation registers
    with pytest.raises(SiteDiscoveryError, match=r"it has no SuperNode key \(a simulated node"):
        discover_sites(_grid(keys), bound, timeout=5)


def test_without_fingerprints_discovery_asks_flower_for_no_keys(tmp_path):
    """Simulation is unchanged: no fingerprint named, no key read, every node accepted."""
    set_task_identity()
    consortium = load_consortium(write_small_consortium(tmp_path), data_root=tmp_path)
    grid = _grid({node: secrets.token_bytes(32) for node in CLAIMS})
    roster = discover_sites(grid, consortium, timeout=5)
    assert len(roster.entries) == 3 and grid.node_info_calls == 0


def test_each_discovery_query_carries_its_own_nonce(bound, site_keys):
    """A message's id is its content's hash in Flower 1.42: without a nonce another node could
    compute the id of a node's query and answer it in that node's name."""
    keys = {node: _pem(site_keys[name]) for node, (name, _) in CLAIMS.items()}
    grid = _grid(keys)
    discover_sites(grid, bound, timeout=5)
    nonces = [m.content["config"]["nonce"] for m in grid.sent]
    assert len(nonces) == 3 and len(set(nonces)) == 3 and all(len(n) == 32 for n in nonces)
