"""A site's identity bound to its SuperNode key: the node that claims a hospital must be the node
Flower authenticated with that hospital's key.

A node says which site it is from its own YAML, so on its own the claim proves nothing. The
consortium file therefore names each site's key fingerprint (`key_fingerprint`, copied from
`lang1-fl deploy register`'s output), and discovery compares it with the fingerprint of the public
key Flower itself holds for the node that answered.

Why the key read here is the key that node signs with (Flower 1.42, read in its source):
- The node's public key comes from the SuperLink's own state: `Grid.get_nodes()` returns each
  node's `NodeInfo`, whose `public_key` is the one stored with its node id, over the ServerApp's
  Runtime API (not from anything the node sends in a message). With `--enable-supernode-auth`
  that entry is made only by the coordinator's `flwr supernode register`; a node cannot register
  itself (`FLEET_SUPERNODE_REGISTRATION_DISABLED`).
- Every Fleet request a SuperNode makes is signed with its private key; the SuperLink verifies
  the signature against the public key sent with it and refuses the request unless the node id it
  names is the id stored for that key (`NodeAuthMiddleware`, `NodeAuthServerInterceptor`). So
  only the holder of node N's private key can pull N's messages.
- A reply is stored only if the message it answers was addressed to its sender
  (`store_message_res`). Flower 1.42 makes a message's id the hash of its content, so the
  discovery query carries a random nonce: no other node can work out the id of N's query and
  answer in N's name.
The argument trusts the SuperLink, which the coordinator runs. The private key never travels; the
node signs with it from its own key file (`--auth-supernode-private-key`). Its limit: Flower 1.42
does not compare a pushed reply's sender with the node that signed the push, and the round
messages after discovery carry no nonce (their ids hash the same content for every site and a
creation time), so a registered node that guessed such an id could answer in another's name;
this module binds the claim at discovery only.

A simulated node has no SuperNode key (Flower gives it random bytes), so a consortium that names
fingerprints cannot be simulated; one that names none is not checked, as before.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.serverapp import Grid

from client.node_identity import fingerprint
from sites.config import ConsortiumConfig, SiteConfig, display_path


def registered_keys(grid: Grid, consortium: ConsortiumConfig) -> dict[int, bytes]:
    """Each connected node's public key as the SuperLink holds it (PEM bytes); empty when the
    consortium names no fingerprints, so a simulation asks Flower nothing more than before."""
    if not any(site.key_fingerprint for site in consortium.sites):
        return {}
    return {info.node_id: bytes(info.public_key) for info in grid.get_nodes()}


def presented_fingerprint(public_key: bytes | None) -> str | None:
    """The fingerprint of a node's registered key, or None when it holds no SuperNode key (a
    simulated node's random bytes, or a node that left before its key was read)."""
    try:
        key = serialization.load_pem_public_key(public_key or b"")
    except (ValueError, TypeError):
        return None
    return fingerprint(key) if isinstance(key, ec.EllipticCurvePublicKey) else None


def key_mismatch(node: int, site: SiteConfig, public_key: bytes | None, *,
                 consortium_file: Path | None) -> str | None:
    """Why `node` may not be `site` (one line: the site, the expected and the presented
    fingerprint), or None when the consortium names no key for it or the keys match."""
    expected = site.key_fingerprint
    if expected is None:
        return None
    presented = presented_fingerprint(public_key)
    if presented == expected:
        return None
    where = f" in {display_path(consortium_file)}" if consortium_file else ""
    shown = (f"its registered key is {presented}" if presented else "it has no SuperNode key (a "
             "simulated node has none: a consortium naming `key_fingerprint` needs the Deployment "
             "Engine)")
    return (f"node {node} claims site {site.name!r}, whose key fingerprint{where} is {expected}, "
            f"but {shown}; refused: start that site's SuperNode with its own private key, or "
            "correct `key_fingerprint`")
