"""End to end: `lang1-fl run` drives `flwr run` with tiny random bases, and the federated model must
learn.

Two federations, each of 3 sites (2 training, 1 external) over 2 rounds:
- a BERT-style encoder, joint five-task finetuning on the synthetic hospitals;
- a Llama-architecture decoder scored the way Lang1 is (multiple-choice answer letters,
  `scoring=auto`), single-task (mortality) on sites given as plain tables — the real-data path —
  where a note's keyword decides the label.
The DP run below keeps task heads on the Llama (`scoring=head`).
Each starts Flower's simulation engine in a subprocess (under a minute), hence `slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from client.adapter_export import HEADS_FILE
from client.letter_scoring import PROMPTS_FILE
from server.cli import main as lang1_fl
from server.launch.flower_run import local_superlink_pids
from tests.consortium_fixtures import write_small_consortium, write_table_consortium
from tests.tiny_models import (
    keyword_table,
    make_letter_llama,
    make_tiny_encoder,
    make_tiny_llama,
    with_validation,
)

pytestmark = pytest.mark.slow

ROUNDS = 2
ARGUMENTS = {}  # each finished run's root → the base, consortium and tasks it ran


def _encoder_joint(root):
    consortium = write_small_consortium(root, encounters=600, local_steps=40)
    return make_tiny_encoder(root / "base"), consortium, "all"


def _llama_mortality(root):
    tables = {
        "north": ("train", with_validation(keyword_table(240, seed=1))),
        "south": ("train", with_validation(keyword_table(240, seed=2))),
        "external-system": ("external", keyword_table(120, seed=3)),
    }
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=25)
    return make_letter_llama(root / "base"), consortium, "mortality"


def _run_arguments(root, base, consortium, tasks, name: str) -> list[str]:
    return [
        "--consortium", str(consortium), "--rounds", str(ROUNDS),
        "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs"), "--run-name", name,
        "--set", f"base-model={base}", "--set", f"tasks={tasks}", "--set", "max-length=128",
        "--set", "learning-rate=0.01", "--set", "head-learning-rate=0.1",
        "--set", "bootstrap-resamples=200",
    ]


@pytest.fixture(scope="module", params=[_encoder_joint, _llama_mortality], ids=["encoder", "llama"])
def finished_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param.__name__)
    base, consortium, tasks = request.param(root)
    assert lang1_fl(["run", *_run_arguments(root, base, consortium, tasks, "e2e")]) == 0
    ARGUMENTS[root] = (base, consortium, tasks)
    return root, base, root / "runs" / "e2e"


def _metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _is_letters(run_dir) -> bool:
    return (run_dir / "adapter" / PROMPTS_FILE).exists()


def test_run_directory_has_report_metrics_and_adapter(finished_run):
    _, _, run_dir = finished_run
    for name in ("report.md", "report.html", "metrics.json", "auroc_per_round.png",
                 "adapter/adapter_config.json"):
        assert (run_dir / name).exists(), name
    # encoder: task heads beside the adapter; Lang1 path: the multiple-choice prompts, no heads
    assert (run_dir / "adapter" / HEADS_FILE).exists() != _is_letters(run_dir)
    report = (run_dir / "report.md").read_text()
    assert "external-system | **external**" in report
    card = (run_dir / "adapter" / "README.md").read_text()
    assert "## Results" in card and f"Round {_metrics(run_dir)['selection']['round']} of" in card


def test_the_saved_adapter_is_the_round_validation_selected(finished_run):
    _, _, run_dir = finished_run
    metrics = _metrics(run_dir)
    selection = metrics["selection"]
    scores = {int(r): v for r, v in selection["score_per_round"].items()}
    assert set(scores) == set(range(1, ROUNDS + 1))
    training = [s["name"] for s in metrics["sites"] if s["role"] == "train"]
    # the default criterion: the lowest validation loss, weighted by the sites' validation sizes;
    # no cell is left out of it, however thin
    assert selection["by"] == "loss" and selection["criterion"].startswith("lowest validation loss")
    assert selection["left_out"] == [] and None not in scores.values()
    assert selection["round"] == min(scores, key=lambda r: (scores[r], r))
    for number, score in scores.items():
        evaluation = metrics["rounds"][number]["evaluation"]
        sizes = [next(iter(evaluation[s]["validation"].values()))["n"] for s in training]
        losses = [evaluation[s]["validation_loss"] for s in training]
        assert score == pytest.approx(np.average(losses, weights=sizes))


def test_every_site_evaluated_every_round_and_external_never_trained(finished_run):
    _, _, run_dir = finished_run
    metrics = _metrics(run_dir)
    assert [r["round"] for r in metrics["rounds"]] == list(range(ROUNDS + 1))
    names = {s["name"] for s in metrics["sites"]}
    training = {s["name"] for s in metrics["sites"] if s["role"] == "train"}
    for entry in metrics["rounds"]:
        assert set(entry["evaluation"]) == names
        assert set(entry["training"]) == (training if entry["round"] else set())
        assert not entry["failures"] and not entry["skipped"]
    task = metrics["run"]["tasks"][-1]
    reported = metrics["selection"]["round"]  # the only round whose intervals the sites compute
    for site in names:
        cell = metrics["rounds"][reported]["evaluation"][site]["tasks"][task]
        assert cell["ci"][0] <= cell["auroc"] <= cell["ci"][1]
        assert cell["n"] > 0


def test_federated_model_beats_chance_on_held_out_data(finished_run):
    _, _, run_dir = finished_run
    metrics = _metrics(run_dir)
    final = metrics["rounds"][-1]["evaluation"]
    if metrics["run"]["tasks"] == ["mortality"]:  # keyword task: learnable at every site
        aurocs = [final[s["name"]]["tasks"]["mortality"]["auroc"] for s in metrics["sites"]]
        assert min(aurocs) > 0.8, aurocs
    else:  # synthetic hospitals: comorbidity (listed conditions) is the clearest signal
        start = metrics["rounds"][0]["evaluation"]
        training = [s["name"] for s in metrics["sites"] if s["role"] == "train"]
        aurocs = [final[s]["tasks"]["comorbidity"]["auroc"] for s in training]
        untrained = [start[s]["tasks"]["comorbidity"]["auroc"] for s in training]
        # what the first 128 tokens of each note state allows: the bar a reader of them can reach
        ceiling = [final[s]["tasks"]["comorbidity"]["note_ceiling_auroc"] for s in training]
        assert np.mean(aurocs) > np.mean(untrained) + 0.03, (untrained, aurocs)
        assert 0.6 < np.mean(ceiling) < 1.0, ceiling
        closed = (np.mean(aurocs) - np.mean(untrained)) / (np.mean(ceiling) - np.mean(untrained))
        assert closed > 0.15, (untrained, aurocs, ceiling)  # a tiny random base, 2 rounds


def test_saved_adapter_loads_with_plain_peft(finished_run):
    from peft import PeftModel
    from transformers import AutoModel, AutoModelForCausalLM

    _, base, run_dir = finished_run
    auto = AutoModelForCausalLM if _is_letters(run_dir) else AutoModel
    model = PeftModel.from_pretrained(auto.from_pretrained(base), run_dir / "adapter")
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(torch.count_nonzero(p) > 0 for p in lora), "final adapter is untrained"


def test_lang1_fl_score_gives_the_external_site_s_reported_auroc(finished_run, tmp_path):
    """The run's adapter/ folder alone (model.json) scores the external site's table — all of it
    is its test split (client/site.py) — to the AUROC the site reported for the selected round."""
    import pandas as pd

    from client.evaluate import auroc
    from sites.config import load_consortium
    from sites.dataset import read_site_table
    from sites.tasks import TASKS

    root, _, run_dir = finished_run
    metrics = _metrics(run_dir)
    consortium = load_consortium(ARGUMENTS[root][1], data_root=root / "data")
    external = next(s for s in consortium.sites if s.role == "external")
    test = read_site_table(external)
    test.drop(columns="split").to_parquet(tmp_path / "new.parquet", index=False)
    assert lang1_fl(["score", str(run_dir), str(tmp_path / "new.parquet"),
                     "--out", str(tmp_path / "scores.parquet")]) == 0
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    reported = metrics["rounds"][metrics["selection"]["round"]]["evaluation"][external.name]
    for task in metrics["run"]["tasks"]:
        probs = scores[[f"{task}.p_{c}" for c in TASKS[task].class_names]].to_numpy()
        got = auroc(test[TASKS[task].label_column].to_numpy(), probs)
        assert got == pytest.approx(reported["tasks"][task]["auroc"], abs=1e-6), task


def test_no_superlink_left_running(finished_run):
    root, _, _ = finished_run
    assert local_superlink_pids(root / "runs" / ".flwr") == []


def test_the_in_process_bench_driver_reproduces_the_simulation(finished_run):
    """bench/in_process.py (for a GPU machine without Ray) reports the numbers that Flower's
    simulation engine gave for the same run: every site, task and round. The bench is run as
    its users run it, a script with `lang1-fl run`'s arguments; tests never import bench/."""
    root, _, run_dir = finished_run
    script = Path(__file__).resolve().parents[1] / "bench" / "in_process.py"
    command = [sys.executable, str(script), *_run_arguments(root, *ARGUMENTS[root], "in-process")]
    assert subprocess.run(command, check=False).returncode == 0
    simulated, local = _metrics(run_dir), _metrics(root / "runs" / "in-process")
    assert local["selection"]["round"] == simulated["selection"]["round"]
    for number, score in simulated["selection"]["score_per_round"].items():  # float sums' order
        assert local["selection"]["score_per_round"][number] == pytest.approx(score, rel=1e-6)
    assert len(local["rounds"]) == len(simulated["rounds"]) == ROUNDS + 1
    for ours, theirs in zip(local["rounds"], simulated["rounds"]):
        assert ours["evaluation"].keys() == theirs["evaluation"].keys()
        for site, scored in theirs["evaluation"].items():
            for task, values in scored["tasks"].items():
                assert ours["evaluation"][site]["tasks"][task]["auroc"] == pytest.approx(
                    values["auroc"], abs=1e-3), (ours["round"], site, task)


# ---------------------------------------------------------------------------------------------
# The same Lang1 path with DP-SGD at both training sites: ledgers, forecast, report.

# `noise_seed`: tests only, so that the AUROC asserted below is one number, not a draw from the
# spread of secure noise (a real site's noise is a CSPRNG's; the ledger names which).
DP_PRIVACY = {"lifetime_epsilon": 8.0, "delta": 1e-3, "max_grad_norm": 1.0, "noise_seed": 11}


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("private")
    # Twice the non-DP run's encounters and batch: the same sampling rate and σ, half the noise on
    # the averaged gradient (σC ÷ batch). At 240 the external AUROC after two rounds spread over
    # about 0.57–0.76 across runs of secure noise; at 480 over 0.76–0.83. The noise is seeded here.
    tables = {
        "north": ("train", keyword_table(480, seed=1)),
        "south": ("train", keyword_table(480, seed=2)),
        "external-system": ("external", keyword_table(120, seed=3)),
    }
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=25,
                                        privacy=DP_PRIVACY, batch_size=32)
    base = make_tiny_llama(root / "base")
    status = lang1_fl(
        [
            "run", "--consortium", str(consortium), "--rounds", str(ROUNDS),
            "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs"), "--run-name", "dp",
            "--set", f"base-model={base}", "--set", "tasks=mortality", "--set", "max-length=96",
            "--set", "scoring=head",
            "--set", "dp-learning-rate=0.01", "--set", "dp-head-learning-rate=0.1",
            "--set", "bootstrap-resamples=100",
        ]
    )
    assert status == 0
    return root, consortium, root / "runs" / "dp"


def test_private_run_spends_each_site_budget_and_leaves_verifiable_ledgers(private_run):
    from client.privacy.forecast import forecast
    from client.privacy.ledger import read_ledger
    from client.privacy.verify import verify_ledger
    from sites.config import load_consortium
    from tests.site_ledgers import site_ledger

    root, consortium_file, run_dir = private_run
    metrics = _metrics(run_dir)
    consortium = load_consortium(consortium_file, data_root=root / "data")
    privacy = metrics["privacy"]["sites"]
    assert set(privacy) == {"north", "south"}
    forecasts = {f.site: f for f in forecast(consortium, rounds=ROUNDS, local_steps=0)}
    for site in consortium.training_sites:
        reported = privacy[site.name]
        assert reported["dp"] and reported["declined_rounds"] == []
        # The report is the ledger: every number the privacy table shows is the ledger's.
        ledger, public_key = site_ledger(site)
        entries = read_ledger(ledger)
        assert [e["round"] for e in entries] == list(range(1, ROUNDS + 1))
        assert reported["source"] == "ledger"
        assert reported["epsilon"] == entries[-1]["epsilon"]
        assert reported["run_epsilon"] == entries[-1]["run_epsilon"]
        assert reported["ledger_entries"] == len(entries)
        assert reported["lifetime_epsilon"] == entries[-1]["epsilon_budget"] == 8.0
        assert reported["unit"] == entries[-1]["privacy_unit"] == "encounter"
        assert reported["noise_source"] == entries[-1]["noise_source"] == "seeded (insecure, tests only)"
        # The realised ε is the forecast's, within 1 %, and within the budget; the forecast now
        # sees it spent.
        after = forecasts[site.name]
        assert not after.fits and after.spent.epsilon == pytest.approx(reported["epsilon"])
        assert abs(reported["epsilon"] - after.plan.planned_epsilon) <= 0.01 * after.plan.planned_epsilon
        assert reported["epsilon"] <= DP_PRIVACY["lifetime_epsilon"]
        report = verify_ledger(ledger, public_key=public_key, head_sha256=reported["ledger_head"])
        assert report.ok, str(report)
    for entry in metrics["rounds"][1:]:
        assert all(values["train-loss"] is None for values in entry["training"].values())
    report = (run_dir / "report.md").read_text()
    assert "## Privacy" in report and "lang1-fl privacy verify" in report
    assert (run_dir / "privacy_per_round.png").exists()
    # Still learns: the keyword task at ε = 8 per site.
    final = metrics["rounds"][-1]["evaluation"]
    assert final["external-system"]["tasks"]["mortality"]["auroc"] > 0.6
