"""End to end: `lang1-fl experiment transfer` in Flower's simulation engine with a tiny encoder.

Three training hospitals and an external system, two tasks, one round per regime: every regime
(untrained, federated, local-only, leave-one-site-out, pooled, single-task) must be trained by the
real ClientApp and scored at every site, and the report must render. About a minute, hence `slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main as lang1_fl
from tests.consortium_fixtures import write_small_consortium
from tests.tiny_models import make_tiny_encoder

pytestmark = pytest.mark.slow

SITES = (("academic", "train"), ("community", "train"), ("safety_net", "train"),
         ("external_system", "external"))


def _arguments(root: Path, run_name: str, regimes: str = "all") -> list[str]:
    return ["experiment", "transfer", str(root / "consortium.yaml"), "--rounds", "1",
            "--regimes", regimes, "--data-dir", str(root / "data"),
            "--runs-dir", str(root / "runs"), "--run-name", run_name,
            "--set", f"base-model={root / 'base'}", "--set", "tasks=mortality,los",
            "--set", "max-length=64", "--set", "bootstrap-resamples=50"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer-e2e")
    consortium = write_small_consortium(root, encounters=300, local_steps=5, profiles=SITES)
    assert consortium == root / "consortium.yaml"
    make_tiny_encoder(root / "base")
    assert lang1_fl(_arguments(root, "t")) == 0
    return root / "runs" / "t"


def test_every_regime_is_scored_at_every_site_including_the_external_one(experiment):
    transfer = json.loads((experiment / "transfer.json").read_text())
    names = [r["name"] for r in transfer["regimes"]]
    assert names == ["untrained", "federated", "local:academic", "local:community",
                     "local:safety-net", "without:academic", "without:community",
                     "without:safety-net", "pooled", "single:mortality", "single:los"]
    sites = {"academic", "community", "safety-net", "external-system"}
    for regime in transfer["regimes"]:
        cells = transfer["cells"][regime["name"]]
        assert set(cells) == sites, regime["name"]
        for _site, tasks in cells.items():
            assert set(tasks) == set(regime["tasks"])
            for cell in tasks.values():
                assert cell["n"] > 0
                # undefined only where the split has one class (a small site with no death)
                assert cell["auroc"] is not None or cell["prevalence"] == 0.0
        assert "external-system" not in regime["trained_on"]
        assert regime["selected_round"] == (0 if regime["kind"] == "untrained" else 1)
    external = transfer["cells"]["federated"]["external-system"]["mortality"]["n"]
    assert external == 300  # the external system is scored on its whole table


def test_the_experiment_report_renders_and_rerenders(experiment):
    for name in ("report.md", "report.html", "transfer_mortality.png", "transfer_los.png"):
        assert (experiment / name).is_file(), name
    (experiment / "report.html").unlink()
    assert lang1_fl(["report", str(experiment)]) == 0
    assert "<img" in (experiment / "report.html").read_text()


def test_the_in_process_bench_driver_reproduces_the_experiment(experiment):
    """bench/in_process.py (for a GPU machine without Ray) runs the same experiment to the same
    numbers: every regime, site and task. Run as its users run it, a script taking the
    command's arguments; tests never import bench/."""
    root = experiment.parents[1]
    script = Path(__file__).resolve().parents[1] / "bench" / "in_process.py"
    command = [sys.executable, str(script),
               *_arguments(root, "in-process", "federated,local,pooled")]
    assert subprocess.run(command, check=False).returncode == 0
    ours = json.loads((root / "runs" / "in-process" / "transfer.json").read_text())
    theirs = json.loads((experiment / "transfer.json").read_text())
    names = [r["name"] for r in ours["regimes"]]
    assert names == ["untrained", "federated", "local:academic", "local:community",
                     "local:safety-net", "pooled"]
    for name in names:
        for site, tasks in theirs["cells"][name].items():
            for task, cell in tasks.items():
                assert ours["cells"][name][site][task]["auroc"] == pytest.approx(
                    cell["auroc"], abs=1e-3), (name, site, task)
