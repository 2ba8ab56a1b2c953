"""End to end on loopback: the app on Flower's Deployment Engine, with real processes.

One SuperLink (TLS, SuperNode authentication, state on disk) and three SuperNodes — two training
hospitals and the external health system, each started from its own site YAML with its own key —
run as separate processes, started by server.launch.loopback (which bench/deployment.py times too).
Certificates, keys, the `flwr` connection (in a temporary FLWR_HOME) and the registrations go
through `lang1-fl deploy ...` as docs/coordinator.md and docs/hospital-it.md tell them to; the
SuperLink and SuperNodes run the command lines that `lang1-fl deploy superlink` and `lang1-fl
deploy supernode` print (the same builders). `flwr run` then runs two rounds. The same
config in simulation must give the same numbers, a fourth SuperNode whose key was never registered
must be refused, and nothing may be left running. The deployed consortium names every site's key
fingerprint, so each SuperNode is also checked at discovery against the key the SuperLink
authenticated it with (a node holding the wrong key: tests/test_site_keys_e2e.py).

Slow: Flower 1.42's SuperNode starts a fresh ClientApp process for every message (6 per site
here), each importing torch and loading the model again; about 4 minutes on 2 busy cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from client.node_identity import fingerprint, load_node_public_key
from server.launch.loopback import deploy, make_site_keys, simulate
from tests.consortium_fixtures import write_table_consortium
from tests.tiny_models import keyword_table, make_tiny_encoder, with_validation

pytestmark = pytest.mark.slow

ROUNDS = 2
SITES = {"north": "train", "south": "train", "external-system": "external"}


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """Tiny encoder, three table sites, one site YAML per hospital, and the run config."""
    root = tmp_path_factory.mktemp("deployment")
    tables = {name: (role, with_validation(keyword_table(120, seed=i)) if role == "train"
                     else keyword_table(80, seed=i))
              for i, (name, role) in enumerate(SITES.items(), start=1)}
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=6)
    site_yamls = {}
    for site in yaml.safe_load(consortium.read_text())["sites"]:  # what each hospital holds
        site_yamls[site["name"]] = root / "hospitals" / site["name"] / "site.yaml"
        site_yamls[site["name"]].parent.mkdir(parents=True)
        site_yamls[site["name"]].write_text(yaml.safe_dump(site))
    base = make_tiny_encoder(root / "base")
    run_config = {"consortium": str(consortium), "data-dir": str(root / "data"),
                  "runs-dir": str(root / "runs"), "num-server-rounds": ROUNDS,
                  "base-model": str(base), "tasks": "mortality", "max-length": 64,
                  "learning-rate": 0.01, "head-learning-rate": 0.1, "bootstrap-resamples": 50,
                  "round-timeout": 120.0}
    return root, consortium, site_yamls, run_config


def _metrics(run_config: dict, run_name: str) -> dict | None:
    path = Path(run_config["runs-dir"]) / run_name / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture(scope="module")
def simulated(federation) -> dict:
    """The same run config in Flower's simulation engine (server.launch.loopback.simulate: its own
    FLWR_HOME and free ports, its SuperLink stopped by process id afterwards)."""
    root, _, _, run_config = federation
    run = simulate({**run_config, "run-name": "simulated"}, num_sites=len(SITES), root=root)
    metrics = _metrics(run_config, "simulated")
    assert metrics is not None, run.log.read_text()[-3000:]
    return metrics


def _with_fingerprints(consortium: Path, root: Path) -> Path:
    """A copy of the consortium naming each site's key fingerprint, the hospitals' key pairs made
    first (as `lang1-fl deploy site-key`), as the coordinator writes it from `lang1-fl deploy
    register`'s output; beside the original, so relative paths resolve alike."""
    raw = yaml.safe_load(consortium.read_text())
    public = make_site_keys(root, [site["name"] for site in raw["sites"]])
    for site in raw["sites"]:
        site["key_fingerprint"] = fingerprint(load_node_public_key(public[site["name"]]))
    bound = consortium.with_name("consortium-keys.yaml")
    bound.write_text(yaml.safe_dump(raw, sort_keys=False))
    return bound


@pytest.fixture(scope="module")
def deployed(federation, simulated):
    """Join, start everything (and an unregistered intruder), run two rounds, stop everything."""
    root, consortium, site_yamls, run_config = federation
    bound = _with_fingerprints(consortium, root)
    run = deploy({**run_config, "consortium": str(bound), "run-name": "deployed"},
                 site_yamls=site_yamls, root=root, intruder_site=site_yamls["external-system"])
    return run, _metrics(run_config, "deployed")


def _aurocs(metrics: dict) -> dict[tuple, float | None]:
    """Every AUROC of the run: (round, site, split, task) -> value."""
    values = {}
    for entry in metrics["rounds"]:
        for site, result in entry["evaluation"].items():
            for task, cell in result["tasks"].items():
                values[(entry["round"], site, "test", task)] = cell["auroc"]
            for task, cell in result.get("validation", {}).items():
                values[(entry["round"], site, "validation", task)] = cell["auroc"]
    return values


def test_two_rounds_complete_on_the_deployment_engine(deployed):
    run, metrics = deployed
    assert run.status == 0 and metrics is not None, run.log("flwr-run")[-3000:]
    assert metrics["run"]["outcome"] == "completed"
    assert [r["round"] for r in metrics["rounds"]] == list(range(ROUNDS + 1))
    for entry in metrics["rounds"]:
        assert set(entry["evaluation"]) == set(SITES)
        assert set(entry["training"]) == ({"north", "south"} if entry["round"] else set())
        assert not entry["failures"]


def test_deployment_matches_simulation_bitwise(deployed, simulated):
    """Same seeds, same numbers: every seed derives from the run seed and the site's name, not
    from the engine; one torch thread in both (OMP_NUM_THREADS=1 in the deployment, one CPU per
    Ray actor in simulation); and with two training sites FedAvg's weighted sum is the same in
    either reply order (addition commutes; with three or more the order could move the last
    bits)."""
    metrics = deployed[1]
    deployment, simulation = _aurocs(metrics), _aurocs(simulated)
    assert deployment.keys() == simulation.keys() and len(deployment) >= 3 * (ROUNDS + 1)
    assert deployment == simulation
    for ours, theirs in zip(metrics["rounds"], simulated["rounds"]):
        assert ours["training"] == theirs["training"]  # losses and example counts
    assert metrics["selection"] == simulated["selection"]


def test_each_site_loads_its_model_once_in_its_worker(deployed):
    """A hospital's `lang1-fl deploy supernode --exec` keeps the model in its site worker: one
    load for the whole run, where a fresh ClientApp process per message would load it for each
    of the run's train and evaluate messages."""
    run, _ = deployed
    for site in SITES:
        log = run.log(site)
        assert "site worker ready at" in log
        assert log.count("loading base model") == 1, log[-3000:]
        assert log.count("scored") >= ROUNDS + 1  # every evaluate message answered in there


def test_an_unregistered_supernode_is_refused(deployed):
    run, _ = deployed
    assert run.intruder_status != 0
    assert "Failed to activate SuperNode" in run.log("intruder")
    assert len(run.nodes) == len(SITES)  # the three registered keys, nobody else


def test_nothing_is_left_running(deployed):
    assert deployed[0].left_running == []
