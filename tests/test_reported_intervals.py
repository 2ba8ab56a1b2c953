"""Evaluation cost in proportion: bootstrap intervals only where the report shows them.

A site's stratified bootstrap (1,000 resamples per task) used to run every round at every site
although the report shows the interval of one round only. Rounds now carry AUROC without its
interval; the server asks every site once, after round selection, for the reported round's
intervals, and adds them to what that round recorded.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

import client.evaluate
from client.app import app as client_app
from client.model import build_model, trainable_state
from client.run_config import InvalidRunConfig
from client.settings import ClientSettings
from server.app import main as server_main
from server.report.metrics_file import egress_summary
from sites.config import load_consortium
from strategies import SiteEntry, SiteRoster, build_strategy
from strategies.exchange import INTERVALS_KEY
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, message_to, set_task_identity
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

ROSTER = SiteRoster((SiteEntry(100, "academic", "train"), SiteEntry(101, "community", "train"),
                     SiteEntry(102, "external-system", "external")))
TASKS = ("mortality", "los")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("intervals")
    consortium = write_small_consortium(root, encounters=120, local_steps=2, tasks=TASKS)
    base = make_tiny_encoder(root / "tiny-bert")
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(root / "data"), base_model=str(base),
        max_length=64, bootstrap_resamples=30, tasks=",".join(TASKS), num_server_rounds=2,
        runs_dir=str(root / "runs"), run_name="intervals")
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


@pytest.fixture
def bootstraps(monkeypatch):
    """Every call of the site's bootstrap, by the config of the message being answered."""
    calls: list[dict] = []
    real = client.evaluate.bootstrap_ci

    def counted(*args, **kwargs):
        calls.append({"n_resamples": kwargs["n_resamples"]})
        return real(*args, **kwargs)

    monkeypatch.setattr(client.evaluate, "bootstrap_ci", counted)
    return calls


def _context(run_config, partition: int) -> Context:
    return Context(run_id=1, node_id=100 + partition,
                   node_config={"partition-id": partition, "num-partitions": 3},
                   state=RecordDict(), run_config=run_config)


def _evaluate(run_config, partition: int, arrays: ArrayRecord, **config):
    content = RecordDict({"arrays": arrays, "config": ConfigRecord(
        {"server-round": 1, "run-name": "intervals-unit", **config})})
    return client_app(message_to(100 + partition, content, MessageType.EVALUATE),
                      _context(run_config, partition))


# --- The site: no bootstrap unless asked ---------------------------------------------------------


def test_a_rounds_evaluation_computes_no_bootstrap(federation, bootstraps):
    run_config, _, arrays = federation
    metrics = _evaluate(run_config, 0, arrays).content["metrics"]
    assert bootstraps == []
    for task in TASKS:  # the keys stay (Flower needs them at every site); the values are NaN
        assert math.isnan(metrics[f"{task}.auroc_low"]) and math.isnan(metrics[f"{task}.auroc_high"])
        assert 0.0 <= metrics[f"{task}.auroc"] <= 1.0


def test_asked_for_intervals_a_site_bootstraps_each_task_once_with_the_run_configs_resamples(
        federation, bootstraps):
    run_config, _, arrays = federation
    plain = _evaluate(run_config, 0, arrays).content["metrics"]
    asked = _evaluate(run_config, 0, arrays, splits="test",
                      **{INTERVALS_KEY: True}).content["metrics"]
    assert bootstraps == [{"n_resamples": 30}] * len(TASKS)
    for task in TASKS:
        assert asked[f"{task}.auroc_low"] <= asked[f"{task}.auroc"] <= asked[f"{task}.auroc_high"]
        assert asked[f"{task}.auroc"] == plain[f"{task}.auroc"]


@pytest.fixture
def model_passes(monkeypatch):
    """Every pass of the site's model over a non-empty split (the messages below ask for the test
    split only)."""
    calls: list[int] = []
    real = client.evaluate.log_probs

    def counted(model, data, *args, **kwargs):
        if data.size:
            calls.append(data.size)
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(client.evaluate, "log_probs", counted)
    return calls


def test_the_reported_rounds_intervals_reuse_that_adapters_test_scores(federation, model_passes):
    """The intervals cost a bootstrap, not a second pass of the model, when the site scored that
    very adapter before; another adapter (tensors changed) is scored afresh."""
    run_config, _, arrays = federation
    plain = _evaluate(run_config, 0, arrays, splits="test").content["metrics"]
    asked = _evaluate(run_config, 0, arrays, splits="test",
                      **{INTERVALS_KEY: True}).content["metrics"]
    assert len(model_passes) == 1 and model_passes[0] > 0
    for task in TASKS:
        assert asked[f"{task}.auroc"] == plain[f"{task}.auroc"]
        assert asked[f"{task}.auroc_low"] <= asked[f"{task}.auroc"] <= asked[f"{task}.auroc_high"]
    changed = ArrayRecord({k: Array(v.numpy() * (1.5 if i == 0 else 1.0))
                           for i, (k, v) in enumerate(arrays.items())})
    _evaluate(run_config, 0, changed, splits="test", **{INTERVALS_KEY: True})
    assert len(model_passes) == 2


@pytest.mark.parametrize("value", ["yes", 1])
def test_an_intervals_flag_that_is_not_a_boolean_is_refused(federation, value):
    run_config, _, arrays = federation
    with pytest.raises(InvalidRunConfig, match=r"evaluate message: `intervals` is .*; expected "
                       "true or false"):
        _evaluate(run_config, 0, arrays, **{INTERVALS_KEY: value})


def test_evaluate_split_refuses_negative_resamples(federation):
    _, settings, _ = federation
    with pytest.raises(ValueError, match=r"`n_resamples` is -1; expected >= 0"):
        client.evaluate.evaluate_split(None, None, TASKS, batch_size=8, seed=0, n_resamples=-1)


# --- The server: intervals added to the reported round, nothing else changed ----------------------


def test_intervals_complete_the_reported_round_and_change_nothing_else(federation):
    run_config, settings, arrays = federation
    set_task_identity()
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    round_replies = [_evaluate(run_config, p, arrays) for p in (0, 2)]
    strategy.aggregate_evaluate(1, round_replies)
    before = json.loads(json.dumps(strategy.run_log.evaluation[1]))
    honest = _evaluate(run_config, 0, arrays, splits="test", **{INTERVALS_KEY: True})
    altered = _evaluate(run_config, 2, arrays, splits="test", **{INTERVALS_KEY: True})
    altered.content["metrics"]["mortality.auroc_low"] = 0.0  # changed after the site logged it
    strategy.aggregate_intervals(1, [honest, altered])
    after = strategy.run_log.evaluation[1]
    for task in TASKS:
        low, high = after["academic"][f"{task}.auroc_low"], after["academic"][f"{task}.auroc_high"]
        assert low <= after["academic"][f"{task}.auroc"] <= high
        assert math.isnan(after["external-system"][f"{task}.auroc_low"])  # refused: left out
    changed = {k for k in before["academic"]
               if json.dumps(before["academic"][k]) != json.dumps(after["academic"][k])}
    assert changed == {f"{t}.auroc_{end}" for t in TASKS for end in ("low", "high")}
    # community answered neither the round nor the intervals: each is a failure of that round
    assert strategy.run_log.failures[1] == ["community: no reply",
                                            "community (test AUROC intervals): no reply"]
    sites = load_consortium(settings.consortium, data_root=settings.data_dir)
    summary = egress_summary(sites, strategy.run_log, "intervals-unit")
    assert summary["sites"]["academic"]["evaluation_replies"] == 2
    assert not summary["sites"]["external-system"]["evaluation_match"]


@pytest.mark.slow
def test_a_whole_run_bootstraps_only_the_reported_round_and_reports_its_intervals(
        federation, bootstraps):
    """The real ServerApp and ClientApp in one process: every bootstrap belongs to the one
    message that asks for intervals, and metrics.json and the report show them for that round."""
    run_config, _, _ = federation
    contexts = {100 + p: _context(run_config, p) for p in range(3)}
    asked = []

    def respond(message):
        config = message.content["config"] if "config" in message.content else {}
        before = len(bootstraps)
        reply = client_app(message, contexts[message.metadata.dst_node_id])
        if len(bootstraps) > before:
            asked.append((config.get("server-round"), config.get(INTERVALS_KEY)))
        return reply

    set_task_identity()
    server_main(FakeGrid(contexts, respond), Context(run_id=1, node_id=0, node_config={},
                                                     state=RecordDict(), run_config=run_config))
    run_dir = f"{run_config['runs-dir']}/{run_config['run-name']}"
    metrics = json.loads(open(f"{run_dir}/metrics.json").read())
    chosen = metrics["selection"]["round"]
    assert set(asked) == {(chosen, True)} and len(bootstraps) == 3 * len(TASKS)
    shown = 0
    for entry in metrics["rounds"]:
        for site, values in entry["evaluation"].items():
            for task in TASKS:
                ci = values["tasks"][task]["ci"]
                if entry["round"] == chosen:  # defined wherever the AUROC is (two classes)
                    defined = values["tasks"][task]["auroc"] is not None
                    assert (None not in ci) == defined, (site, task)
                    shown += defined
                else:
                    assert ci == [None, None], (entry["round"], site, task)
    assert shown >= 3
    for entry in metrics["rounds"]:
        if entry["round"] > 0:
            assert {"train_s", "aggregate_s", "evaluate_s",
                    "server_peak_rss_bytes"} <= set(entry["timing"])
    report = open(f"{run_dir}/report.md").read()
    final = metrics["rounds"][chosen]["evaluation"]["academic"]["tasks"]["mortality"]
    low, high = final["ci"]
    assert f"{final['auroc']:.3f} [{low:.3f}, {high:.3f}]" in report
