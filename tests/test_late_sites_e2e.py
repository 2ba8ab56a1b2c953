"""Issue 35 on loopback, with real processes: a site that joins late and a site that hangs.

One deployment (server.launch.loopback: SuperLink with TLS and SuperNode authentication, one
SuperNode per site YAML, every site's key fingerprint in the consortium), three rounds:
- `south`'s SuperNode is not started before the run. After `start-wait` the run starts with
  `north` and the external system (the start quorum: one training site and every external one);
  `south` is started as round 1 begins, identified between rounds 1 and 2 (its key checked),
  and trains from round 2 on the global adapter of round 1.
- When round 2 has ended, `north`'s SuperNode and everything below it are SIGSTOPped: a hung
  hospital. The round leaves it out after `round-timeout` (or sooner, when the SuperLink has
  noticed its missing heartbeats), `south` alone trains it, and `north` is SIGCONTinued once the
  round has recorded it missing. The run completes, the report shows who took part in which
  round, and nothing is left running.

Slow: a fresh ClientApp process per message, one round-timeout spent on the hung site and one
`start-wait` on the late one; 8.5 minutes measured on 2 busy cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from client.node_identity import fingerprint, load_node_public_key
from server.launch.loopback import LiveDeployment, deploy, make_site_keys
from tests.consortium_fixtures import write_table_consortium
from tests.tiny_models import keyword_table, make_tiny_encoder, with_validation

pytestmark = pytest.mark.slow

ROUNDS = 3
SITES = {"north": "train", "south": "train", "external-system": "external"}


def _late_and_hung(run_dir: Path):
    """South joins during round 1; north hangs from the end of round 2 until round 3 has recorded
    it missing. Checkpoints mark the rounds (written at once, where the streamed log lags). A
    deployed round of this tiny model takes seconds, less than south's start, so north is paused
    from round 0's checkpoint until south's SuperNode has connected: round 1 stays open (north's
    reply held, well within round-timeout and the heartbeat's patience) and south, connected
    during it, is identified before round 2 however fast the rounds run."""
    def during(live: LiveDeployment) -> None:
        live.wait_for_file(run_dir / "checkpoints" / "round-0.safetensors")
        live.pause("north")
        live.start("south")
        live.wait_for(r"SuperNode ID", log_of="south")
        live.resume("north")
        live.wait_for_file(run_dir / "checkpoints" / "round-2.safetensors")
        live.pause("north")
        live.wait_for(r"round 3: north: ")
        live.resume("north")
    return during


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("late-sites")
    tables = {name: (role, with_validation(keyword_table(100, seed=i)) if role == "train"
                     else keyword_table(60, seed=i))
              for i, (name, role) in enumerate(SITES.items(), start=1)}
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=4)
    raw = yaml.safe_load(consortium.read_text())
    public = make_site_keys(root, list(SITES))
    site_yamls = {}
    for site in raw["sites"]:
        site["key_fingerprint"] = fingerprint(load_node_public_key(public[site["name"]]))
        site_yamls[site["name"]] = root / "hospitals" / site["name"] / "site.yaml"
        site_yamls[site["name"]].parent.mkdir(parents=True)
        site_yamls[site["name"]].write_text(yaml.safe_dump(site))
    consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_config = {"consortium": str(consortium), "data-dir": str(root / "data"),
                  "runs-dir": str(root / "runs"), "run-name": "late", "num-server-rounds": ROUNDS,
                  "base-model": str(make_tiny_encoder(root / "base")), "tasks": "mortality",
                  "max-length": 48, "learning-rate": 0.01, "head-learning-rate": 0.1,
                  "bootstrap-resamples": 20, "round-timeout": 90.0, "start-wait": 60.0}
    deployed = deploy(run_config, site_yamls=site_yamls, root=root,
                      held_back=frozenset({"south"}),
                      during=_late_and_hung(root / "runs" / "late"), timeout_s=1200)
    metrics_path = root / "runs" / "late" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    return deployed, metrics, root / "runs" / "late"


def _who(metrics: dict, site: str) -> list[tuple]:
    return [(e["round"], e["participation"][site]["train"], e["participation"][site]["evaluate"])
            for e in metrics["rounds"]]


def test_the_run_completes_with_a_late_and_a_hung_site(run):
    deployed, metrics, _ = run
    assert deployed.status == 0 and metrics is not None, deployed.log("flwr-run")[-4000:]
    assert metrics["run"]["outcome"] == "completed"
    assert [e["round"] for e in metrics["rounds"]] == list(range(ROUNDS + 1))
    assert "starting with 2 of 3 sites" in deployed.log("flwr-run")


def test_the_late_site_trains_from_the_round_after_it_connected(run):
    deployed, metrics, _ = run
    assert _who(metrics, "south")[:3] == [
        (0, None, "not joined"), (1, "not joined", "not joined"), (2, "trained", "evaluated")]
    assert set(metrics["rounds"][2]["training"]) == {"north", "south"}
    assert "site south (train) joined: it takes part from round 2" in deployed.log("flwr-run")


def test_the_hung_site_is_left_out_of_its_round_and_the_others_go_on(run):
    _, metrics, _ = run
    north = _who(metrics, "north")
    assert north[:3] == [(0, None, "evaluated"), (1, "trained", "evaluated"),
                         (2, "trained", "evaluated")]
    assert north[3][1] in {"timed out", "lost"}, north  # the SuperLink may notice it first
    assert set(metrics["rounds"][3]["training"]) == {"south"}
    assert not metrics["rounds"][3]["skipped"]


def test_the_report_shows_who_took_part_in_which_round(run):
    _, _, run_dir = run
    report = (run_dir / "report.md").read_text()
    assert "## Who took part in each round" in report
    assert "| south | train | not joined | not joined | trained | trained |" in report


def test_nothing_is_left_running(run):
    assert run[0].left_running == []

