"""Every strategy, two rounds end to end: Flower's `Strategy.start` driving the real ClientApp
in-process (tiny BERT, five synthetic sites: four hospitals train, one external system is only
evaluated). What each rule changes must show in what the sites sent and what the server kept."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, RecordDict
from peft import PeftModel

from client.adapter_export import save_adapter
from client.app import app as client_app
from client.model import build_model, load_trainable_state, trainable_state
from client.settings import ClientSettings
from server.settings import ServerSettings
from sites.config import load_consortium
from strategies import SiteEntry, SiteRoster, build_strategy
from strategies.flora import fold_rank
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_run_config, default_strategy_options
from tests.tiny_models import make_tiny_encoder

PROFILES = (("academic", "train"), ("community", "train"), ("safety_net", "train"),
            ("surgical", "train"), ("external_system", "external"))
NODE = 100


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    path = write_small_consortium(root, encounters=100, local_steps=2, profiles=PROFILES,
                                  tasks=("mortality", "los"))
    raw = yaml.safe_load(path.read_text())
    raw["sites"][3]["fault"] = {"update": "sign-flip", "factor": 5.0}  # surgical is faulty
    faulty = root / "faulty.yaml"
    faulty.write_text(yaml.safe_dump(raw, sort_keys=False))
    del raw["sites"][3]["fault"]
    raw["sites"][1]["training"]["lora_rank"] = 4  # community trains a smaller adapter (FLoRA)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_config = default_run_config(consortium=str(path), data_dir=str(root / "data"),
                                    base_model=str(make_tiny_encoder(root / "tiny-bert")),
                                    max_length=48, bootstrap_resamples=20, tasks="mortality,los",
                                    runs_dir=str(root / "runs"))
    return run_config, faulty


class ClientGrid(FakeGrid):
    """Routes each message to the ClientApp of node NODE + partition."""

    def __init__(self, run_config):
        self.run_config = run_config
        consortium = load_consortium(run_config["consortium"], data_root=run_config["data-dir"])
        self.roster = SiteRoster(tuple(SiteEntry(NODE + i, s.name, s.role)
                                       for i, s in enumerate(consortium.sites)))
        super().__init__(self.roster.node_ids, self._answer)

    def _answer(self, message):
        partition = message.metadata.dst_node_id - NODE
        context = Context(run_id=1, node_id=message.metadata.dst_node_id,
                          node_config={"partition-id": partition,
                                       "num-partitions": len(self.roster.node_ids)},
                          state=RecordDict(), run_config=self.run_config)
        return client_app(message, context)


def _run(run_config, name: str, **options):
    set_task_identity()
    settings = ClientSettings.from_run_config(run_config)
    grid = ClientGrid(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    initial = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    strategy = build_strategy(name, roster=grid.roster, min_train_sites=1,
                              options=default_strategy_options(lora_alpha=16.0, **options))
    start = strategy.initial_arrays(initial)
    run = f"{name}-{abs(hash(str(run_config['consortium']))) % 1000}"
    result = strategy.start(grid=grid, initial_arrays=start, num_rounds=2, timeout=60,
                            train_config=ConfigRecord({"run-name": run}),
                            evaluate_config=ConfigRecord({"splits": "validation,test",
                                                          "run-name": run}))
    return strategy, start, result.arrays, grid


def _same_rank(run_config) -> str:
    """The consortium without community's own LoRA rank."""
    path = run_config["consortium"].replace("consortium.yaml", "same-rank.yaml")
    raw = yaml.safe_load(open(run_config["consortium"]))
    del raw["sites"][1]["training"]["lora_rank"]
    open(path, "w").write(yaml.safe_dump(raw, sort_keys=False))
    return path


def _tensors(record):
    return {k: record[k].numpy() for k in record.keys()}


@pytest.mark.parametrize("name", ["fedavg", "ffa-lora", "fedprox", "flora", "median",
                                  "trimmed-mean", "fedadam"])
def test_each_strategy_runs_two_rounds(federation, name):
    run_config, _ = federation
    if name != "flora":  # only FLoRA takes a site of another rank
        run_config = {**run_config, "consortium": _same_rank(run_config)}
    strategy, start, final, _ = _run(run_config, name)
    log = strategy.run_log
    assert log.failures == {} and log.skipped_rounds == []
    assert sorted(log.training) == [1, 2] and len(log.training[2]) == 4
    assert set(log.evaluation[2]) == {"academic", "community", "safety-net", "surgical",
                                      "external-system"}
    assert all(math.isfinite(m["los.auroc"]) for m in log.evaluation[2].values())
    before, after = _tensors(start), _tensors(final)
    heads = [k for k in before if k.startswith("head.")]
    assert all(not np.array_equal(before[k], after[k]) for k in heads)
    uploads = {site: row["upload-bytes"] for site, row in log.training[1].items()}
    if name == "ffa-lora":
        a_keys = [k for k in before if ".lora_A." in k]
        assert a_keys and all(np.array_equal(before[k], after[k]) for k in a_keys)
        full = sum(v.nbytes for v in before.values())
        assert all(u <= 0.75 * full for u in uploads.values())  # B and heads only
    elif name == "flora":
        # round 1 stacks 8 + 4 + 8 + 8 = 28; round 2 would make 56, more than the tiny
        # model's 32-wide layers, so it is re-factored to 32
        assert fold_rank(after) == 32
        assert uploads["community"] < uploads["academic"]  # rank 4 against 8
    else:
        assert set(after) == set(before)


def test_the_flora_update_is_saved_as_a_plain_peft_adapter(federation, tmp_path):
    run_config, _ = federation
    strategy, _, final, _ = _run(run_config, "flora")
    settings = ServerSettings.from_run_config({**run_config, "strategy": "flora"})
    # What the ServerApp does with the selected round, through the strategy's public hook:
    # FLoRA's stacked update is a peft adapter of another rank than the run's
    lora, state = strategy.peft_state({k: v.numpy() for k, v in final.items()})
    run = settings.client.model
    assert lora is not None and lora.r != run.lora.r
    model_settings = replace(run, lora=replace(run.lora, r=lora.r, alpha=lora.alpha,
                                               dropout=lora.dropout))
    model = build_model(model_settings, device=torch.device("cpu"))
    load_trainable_state(model, state)
    save_adapter(model, tmp_path / "adapter", settings=model_settings)
    from transformers import AutoModel
    base = AutoModel.from_pretrained(run_config["base-model"])
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert loaded.peft_config["default"].r == fold_rank(_tensors(final)) == 32


def test_a_robust_rule_holds_where_fedavg_follows_a_faulty_site(federation):
    """surgical sends −5× its update every round; the median stays near the clean run, FedAvg
    does not."""
    run_config, faulty = federation
    clean = _tensors(_run({**run_config, "consortium": _same_rank(run_config)}, "median")[2])
    attacked = {name: _tensors(_run({**run_config, "consortium": str(faulty)}, name)[2])
                for name in ("median", "fedavg")}

    def distance(arrays):
        return math.sqrt(sum(float(np.square(arrays[k] - clean[k]).sum()) for k in clean))

    assert distance(attacked["median"]) < 0.5 * distance(attacked["fedavg"])


def _with_fifth_hospital(run_config, *, faulty: str | None) -> str:
    """The same-rank consortium plus a fifth training hospital, `regional` (profile community),
    with `faulty` sending −5× its update; Multi-Krum needs 2f + 3 = 5 training sites."""
    raw = yaml.safe_load(open(_same_rank(run_config)))
    regional = {**raw["sites"][1], "name": "regional",
                "data": {"path": "regional/encounters.parquet", "format": "parquet"},
                "state_dir": "state/regional"}
    raw["sites"].insert(4, regional)
    for site in raw["sites"]:
        if site["name"] == faulty:
            site["fault"] = {"update": "sign-flip", "factor": 5.0}
    path = run_config["consortium"].replace("consortium.yaml", f"five-{faulty}.yaml")
    open(path, "w").write(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_multi_krum_leaves_a_faulty_hospital_out_where_fedavg_follows_it(federation):
    run_config, _ = federation
    clean_strategy, _, clean, _ = _run(
        {**run_config, "consortium": _with_fifth_hospital(run_config, faulty=None)}, "multi-krum")
    assert sorted(clean_strategy.run_log.training) == [1, 2]
    assert len(clean_strategy.run_log.training[2]) == 5
    faulty = {**run_config, "consortium": _with_fifth_hospital(run_config, faulty="surgical")}
    clean = _tensors(clean)
    runs = {name: _run(faulty, name) for name in ("multi-krum", "fedavg")}
    attacked = {name: _tensors(run[2]) for name, run in runs.items()}
    assert runs["multi-krum"][0].run_log.left_out == {1: ["surgical"], 2: ["surgical"]}

    def distance(arrays):
        return math.sqrt(sum(float(np.square(arrays[k] - clean[k]).sum()) for k in clean))

    assert distance(attacked["multi-krum"]) < 0.25 * distance(attacked["fedavg"])


@pytest.mark.slow
def test_flora_with_mixed_ranks_through_flwr_run(federation, tmp_path):
    """The whole app under Flower's simulation engine: FLoRA with a rank-4 site, its report and
    its saved adapter (rank of the stack, loadable by plain peft)."""
    from server.cli import main as lang1_fl

    run_config, _ = federation
    status = lang1_fl([
        "run", "--consortium", run_config["consortium"], "--rounds", "2",
        "--data-dir", run_config["data-dir"], "--runs-dir", str(tmp_path), "--run-name", "flora",
        "--set", f"base-model={run_config['base-model']}", "--set", "tasks=mortality,los",
        "--set", "max-length=48", "--set", "bootstrap-resamples=20", "--set", "strategy=flora",
    ])
    assert status == 0
    run_dir = tmp_path / "flora"
    config = yaml.safe_load((run_dir / "adapter" / "adapter_config.json").read_text())
    metrics = yaml.safe_load((run_dir / "metrics.json").read_text())
    assert metrics["run"]["strategy"] == "flora"
    # round 1's stack is 8 + 4 + 8 + 8 = 28; round 2's is re-factored to the layers' width, 32
    expected = {1: 28, 2: 32}[metrics["selection"]["round"]]
    assert config["r"] == config["lora_alpha"] == expected
    assert "**flora**" in (run_dir / "report.md").read_text()
