"""On loopback, with real processes: a SuperNode holding one hospital's registered key but claiming
another hospital is refused at discovery.

The consortium names every site's key fingerprint, copied from the hospitals' public keys as a
coordinator copies them from `lang1-fl deploy register`'s output. The SuperLink (TLS, SuperNode
authentication) registers site `south`'s key; the one SuperNode that joins signs with it but serves
site `north`'s YAML. `flwr run` must stop at discovery, naming `north`, the fingerprint the
consortium expects and the one Flower authenticated: the ServerApp read the key the SuperLink
holds for that node, not anything the node said. (The matching case, with real processes, is
tests/test_deployment_e2e.py, whose deployed consortium names every site's fingerprint.)

Slow: a SuperLink, a SuperNode, the ServerApp and one ClientApp process, about a minute.
"""

from __future__ import annotations

import re

import pytest
import yaml

from client.node_identity import fingerprint, load_node_public_key
from server.launch.loopback import deploy, make_site_keys
from tests.consortium_fixtures import write_table_consortium
from tests.tiny_models import keyword_table, make_tiny_encoder

pytestmark = pytest.mark.slow

SITES = {"north": "train", "south": "train", "external-system": "external"}


@pytest.fixture(scope="module")
def impostor(tmp_path_factory):
    """Keys made, fingerprints in the consortium, then a node with south's key claiming north."""
    root = tmp_path_factory.mktemp("site-keys")
    tables = {name: (role, keyword_table(40, seed=i)) for i, (name, role) in
              enumerate(SITES.items(), start=1)}
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=2)
    fingerprints = {name: fingerprint(load_node_public_key(public)) for name, public in
                    make_site_keys(root, list(SITES)).items()}
    raw = yaml.safe_load(consortium.read_text())
    for site in raw["sites"]:
        site["key_fingerprint"] = fingerprints[site["name"]]
    consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    north = root / "hospitals" / "north" / "site.yaml"  # what the impostor serves
    north.parent.mkdir(parents=True)
    north.write_text(yaml.safe_dump(raw["sites"][0]))
    run_config = {"consortium": str(consortium), "data-dir": str(root / "data"),
                  "runs-dir": str(root / "runs"), "run-name": "impostor",
                  "num-server-rounds": 1, "base-model": str(make_tiny_encoder(root / "base")),
                  "tasks": "mortality", "max-length": 32, "round-timeout": 120.0}
    run = deploy(run_config, site_yamls={"north": north}, signing_keys={"north": "south"},
                 root=root, timeout_s=240)
    return run, fingerprints, consortium, root / "runs" / "impostor"


def test_a_node_holding_another_sites_key_is_refused_at_discovery(impostor):
    run, fingerprints, consortium, run_dir = impostor
    log = run.log("flwr-run")  # `flwr run --stream` exits 0 even so: the log says what ended it
    refusal = (rf"node \d+ claims site 'north', whose key fingerprint in {re.escape(str(consortium))}"
               rf" is {re.escape(fingerprints['north'])}, but its registered key is "
               rf"{re.escape(fingerprints['south'])}; refused")
    assert re.search(refusal, log), log[-3000:]
    assert "Exit Code: 201" in log  # the ServerApp stopped on the exception
    assert not (run_dir / "metrics.json").exists()  # no round ran, nothing reported
    assert len(run.nodes) == 1  # the one key registered: south's


def test_nothing_is_left_running(impostor):
    assert impostor[0].left_running == []

