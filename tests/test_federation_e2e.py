"""End to end: `lang1-fl run` drives `flwr run` over a small synthetic consortium with a tiny random
base — an encoder and a Llama-architecture decoder — and the federated model must learn.

These start Flower's simulation engine in a subprocess (about a minute each), hence `slow`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from server.cli import main as lang1_fl
from server.flower_run import local_superlink_pids
from tests.consortium_fixtures import write_small_consortium
from tests.tiny_models import make_tiny_encoder, make_tiny_llama

pytestmark = pytest.mark.slow

ROUNDS = 2


@pytest.fixture(scope="module", params=["encoder", "llama"])
def finished_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"e2e-{request.param}")
    make = make_tiny_encoder if request.param == "encoder" else make_tiny_llama
    base = make(root / "base")
    consortium = write_small_consortium(root, encounters=600, local_steps=25)
    status = lang1_fl(
        [
            "run", "--consortium", str(consortium), "--rounds", str(ROUNDS),
            "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs"),
            "--run-name", "e2e", "--cpus-per-site", "1",
            "--set", f"base-model={base}", "--set", "max-length=96",
            "--set", "bootstrap-resamples=200",
        ]
    )
    assert status == 0
    return root, base, root / "runs" / "e2e"


def test_run_directory_has_report_metrics_and_adapter(finished_run):
    _, _, run_dir = finished_run
    for name in ("report.md", "metrics.json", "auroc_per_round.png", "adapter/adapter_config.json"):
        assert (run_dir / name).exists(), name
    report = (run_dir / "report.md").read_text()
    assert "external-system" in report and "oracle" in report


def test_every_site_evaluated_every_round_and_external_never_trained(finished_run):
    _, _, run_dir = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == list(range(ROUNDS + 1))
    names = {s["name"] for s in metrics["sites"]}
    for entry in metrics["rounds"]:
        assert set(entry["evaluation"]) == names
        assert "external-system" not in entry["training"]
        assert not entry["failures"] and not entry["skipped"]
    assert set(metrics["rounds"][1]["training"]) == {"academic", "community"}
    cell = metrics["rounds"][-1]["evaluation"]["academic"]["tasks"]["comorbidity"]
    assert cell["ci"][0] <= cell["auroc"] <= cell["ci"][1]
    assert cell["n"] > 0 and cell["oracle_auroc"] is not None


def test_federated_model_beats_chance_on_held_out_data(finished_run):
    _, _, run_dir = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    final = metrics["rounds"][-1]["evaluation"]
    training_sites = [s["name"] for s in metrics["sites"] if s["role"] == "train"]
    aurocs = [final[s]["tasks"][t]["auroc"] for s in training_sites for t in ("los", "comorbidity")]
    assert np.mean(aurocs) > 0.6, aurocs


def test_saved_adapter_loads_with_plain_peft(finished_run):
    from peft import PeftModel
    from transformers import AutoModel

    _, base, run_dir = finished_run
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(base), run_dir / "adapter")
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(torch.count_nonzero(p) > 0 for p in lora), "final adapter is untrained"


def test_no_superlink_left_running(finished_run):
    root, _, _ = finished_run
    assert local_superlink_pids(root / "runs" / ".flwr") == []
