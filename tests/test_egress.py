"""Egress attestation: a site sends only what its model declares, logs every reply before it leaves,
and the server's manifest of what arrived matches the site's.

The spec comes from the model definition, so these tests make the reply-building code send
something else (an extra tensor, a wrong shape or dtype, smuggled bytes, an undeclared metric) and
check that the site refuses — the handler raises, so Flower sends an error reply with no content —
and that its egress log records the refusal and no send.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    MessageType,
    MetricRecord,
    RecordDict,
)

import client.app
from client.app import app as client_app
from client.egress import (
    EgressLog,
    EgressRefused,
    TensorSpec,
    check_metrics,
    check_tensors,
    declared_spec,
    evaluate_declaration,
    read_egress_log,
)
from client.model import build_model, trainable_state
from client.settings import ClientSettings
from client.state import SiteState
from server.report.markdown import render_markdown
from server.report.metrics_file import egress_summary
from server.report.sections import egress_lines
from sites.config import load_consortium
from sites.dataset import dataset_fingerprint
from strategies import SiteEntry, SiteRoster, build_strategy
from strategies.exchange import manifest_digest, reply_manifest
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to, set_task_identity
from tests.model_settings import model_settings
from tests.run_config import default_run_config
from tests.test_report import _metrics as report_metrics
from tests.tiny_models import make_letter_llama, make_tiny_encoder

ROSTER = SiteRoster((SiteEntry(100, "academic", "train"), SiteEntry(101, "community", "train"),
                     SiteEntry(102, "external-system", "external")))


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("egress")
    consortium = write_small_consortium(root, encounters=120, local_steps=2)
    base = make_tiny_encoder(root / "tiny-bert")
    run_config = default_run_config(consortium=str(consortium), data_dir=str(root / "data"),
                                    base_model=str(base), max_length=64, bootstrap_resamples=20)
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    sites = load_consortium(settings.consortium, data_root=settings.data_dir)
    return run_config, settings, arrays, sites


def _send(run_config, partition: int, message_type: str, arrays: ArrayRecord, run: str,
          server_round: int = 1):
    config = ConfigRecord({"server-round": server_round, "run-name": run})
    context = Context(run_id=1, node_id=100 + partition,
                      node_config={"partition-id": partition, "num-partitions": 3},
                      state=RecordDict(), run_config=run_config)
    content = RecordDict({"arrays": arrays, "config": config})
    return client_app(message_to(100 + partition, content, message_type), context)


def _log_path(sites, run: str, partition: int = 0) -> Path:
    """The egress log in the site's own state folder (client/state.py)."""
    site = sites.sites[partition]
    return SiteState.peek(site, dataset_fingerprint(site)).egress_log(run)


def _log(sites, run: str, partition: int = 0) -> list[dict]:
    return read_egress_log(_log_path(sites, run, partition))


# --- the manifest ---------------------------------------------------------------------------------

def _content(values: np.ndarray, loss: float = 0.5) -> RecordDict:
    return RecordDict({
        "arrays": ArrayRecord({"adapter.a": Array(values), "head.mortality.bias": Array(values[0])}),
        "metrics": MetricRecord({"num-examples": 10, "train-loss": loss, "steps": 2}),
        "privacy": ConfigRecord({"dp": False, "declined": ""}),
    })


def _with_byte_flipped(array: Array, index: int) -> Array:
    data = bytearray(array.data)
    data[index] ^= 0x01
    return Array(dtype=array.dtype, shape=array.shape, stype=array.stype, data=bytes(data))


def test_manifest_is_deterministic_and_changes_with_any_byte():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    digest = manifest_digest(reply_manifest(_content(values)))
    assert digest == manifest_digest(reply_manifest(_content(values.copy())))
    entry = reply_manifest(_content(values))["arrays"]["arrays"]["adapter.a"]
    assert entry["shape"] == [2, 3] and entry["dtype"] == "float32"
    assert entry["bytes"] == len(Array(values).data)
    size = len(Array(values).data)
    for index in (0, size // 2, size - 1):  # header, payload, last byte
        content = _content(values)
        content["arrays"]["adapter.a"] = _with_byte_flipped(content["arrays"]["adapter.a"], index)
        assert manifest_digest(reply_manifest(content)) != digest, index
    assert manifest_digest(reply_manifest(_content(values, loss=0.5000001))) != digest
    # The reply's own `egress` record is not part of what it attests.
    content = _content(values)
    content["egress"] = ConfigRecord({"digest": digest})
    assert manifest_digest(reply_manifest(content)) == digest


# --- the declared spec, and the check --------------------------------------------------------------

def test_declared_spec_is_the_fresh_models_trainable_state(tiny_base):
    settings = model_settings(base=str(tiny_base), max_length=32, scoring="head")
    model = build_model(settings, device=torch.device("cpu"))
    expected = {k: TensorSpec(v.shape) for k, v in trainable_state(model).items()}
    assert declared_spec(model) == expected
    assert declared_spec(model) is declared_spec(model)  # derived once per model object


def test_declared_spec_of_a_letter_scoring_model_is_its_adapter_only(tmp_path):
    base = make_letter_llama(tmp_path / "letter-llama")
    model = build_model(model_settings(base=str(base), max_length=32), device=torch.device("cpu"))
    spec = declared_spec(model)
    assert spec == {k: TensorSpec(v.shape) for k, v in trainable_state(model).items()}
    assert spec and all(k.startswith("adapter.") and ".lora_" in k for k in spec)


SPEC = {"adapter.a": TensorSpec((2, 3)), "head.mortality.bias": TensorSpec((3,))}


def _plain(**overrides) -> ArrayRecord:
    arrays = {"adapter.a": Array(np.zeros((2, 3), np.float32)),
              "head.mortality.bias": Array(np.zeros(3, np.float32))}
    return ArrayRecord({**arrays, **overrides})


def _appended(array: Array) -> Array:
    return Array(dtype=array.dtype, shape=array.shape, stype=array.stype, data=array.data + b"x")


@pytest.mark.parametrize("record, match", [
    (_plain(**{"adapter.embeddings": Array(np.zeros(4, np.float32))}),
     r"tensor `adapter.embeddings` is not declared .* expected only its 2 adapter/head tensors"),
    (_plain(**{"adapter.a": Array(np.zeros((2, 4), np.float32))}),
     r"tensor `adapter.a` has shape \(2, 4\); expected \(2, 3\)"),
    (_plain(**{"adapter.a": Array(np.zeros((2, 3), np.float64))}),
     r"tensor `adapter.a` has dtype 'float64' \(numpy.ndarray\); expected 'float32'"),
    (_plain(**{"adapter.a": _appended(Array(np.zeros((2, 3), np.float32)))}),
     r"tensor `adapter.a`'s bytes are not the plain serialization"),
    (ArrayRecord({"adapter.a": Array(np.zeros((2, 3), np.float32))}),
     r"tensor `head.mortality.bias` is missing; expected all 2 declared tensors"),
])
def test_the_tensor_check_refuses_anything_but_the_spec(record, match):
    check_tensors(_plain(), SPEC)  # the declared tensors pass
    with pytest.raises(EgressRefused, match=match):
        check_tensors(record, SPEC)


@pytest.mark.parametrize("metrics, match", [
    ({"mortality.scores": 0.5}, r"metric `mortality.scores` is not declared; expected one of"),
    ({"mortality.auroc": [0.5] * 10}, r"metric `mortality.auroc` is a list of 10; expected a scalar"),
    ({"mortality.reliability_count": [1.0] * 200}, r"is a list of 200; expected a scalar"),
])
def test_the_metric_check_refuses_undeclared_keys_and_lists(metrics, match):
    declared = evaluate_declaration(("mortality",))
    check_metrics(MetricRecord({"mortality.auroc": 0.7, "num-examples": 5,
                                "mortality.reliability_count": [1.0] * 10}), declared)
    with pytest.raises(EgressRefused, match=match):
        check_metrics(MetricRecord(metrics), declared)


# --- at the site: refused replies, and the egress log ----------------------------------------------

def _extra_key(model):
    state = trainable_state(model)
    state["adapter.word_embeddings"] = np.zeros((4, 8), np.float32)
    return state


def _wrong_shape(model):
    state = trainable_state(model)
    name = next(iter(state))
    state[name] = state[name][:1]
    return state


def _wrong_dtype(model):
    return {k: v.astype(np.float64) for k, v in trainable_state(model).items()}


@pytest.mark.parametrize("sent, match", [
    (_extra_key, r"tensor `adapter.word_embeddings` is not declared"),
    (_wrong_shape, r"tensor `adapter\.\S+` has shape \(1, \d+\); expected \(\d+, \d+\)"),
    (_wrong_dtype, r"has dtype 'float64' \(numpy.ndarray\); expected 'float32'"),
])
def test_a_site_refuses_to_send_what_its_model_does_not_declare(federation, monkeypatch, sent,
                                                                match):
    run_config, _, arrays, sites = federation
    run = f"refused-{sent.__name__.strip('_')}"
    monkeypatch.setattr(client.app, "sent_state", lambda model, mode: sent(model))
    with pytest.raises(EgressRefused, match=match):  # Flower sends an error reply, no content
        _send(run_config, 0, MessageType.TRAIN, arrays, run)
    lines = _log(sites, run)
    assert [line["status"] for line in lines] == ["refused"]
    assert "digest" not in lines[0] and "manifest" not in lines[0]
    assert lines[0]["message_type"] == "train" and lines[0]["server_round"] == 1


def test_a_site_refuses_an_undeclared_metric(federation, monkeypatch):
    run_config, _, arrays, sites = federation
    import client.evaluate  # client.app imports it when an evaluate message arrives

    original = client.evaluate.validation_metrics
    monkeypatch.setattr(client.evaluate, "validation_metrics", lambda *a, **k: {
        **original(*a, **k), "validation.mortality.scores": 0.25})
    with pytest.raises(EgressRefused, match="`validation.mortality.scores` is not declared"):
        _send(run_config, 0, MessageType.EVALUATE, arrays, "refused-metric")
    assert [line["status"] for line in _log(sites, "refused-metric")] == ["refused"]


def test_the_egress_log_has_one_line_per_reply_with_the_digest_it_carries(federation):
    run_config, settings, arrays, sites = federation
    replies = [_send(run_config, 0, MessageType.TRAIN, arrays, "logged"),
               _send(run_config, 0, MessageType.EVALUATE, arrays, "logged")]
    lines = _log(sites, "logged")
    assert [(line["message_type"], line["status"]) for line in lines] == [
        ("train", "sent"), ("evaluate", "sent")]
    for reply, line in zip(replies, lines):
        egress = dict(reply.content["egress"])
        assert set(egress) == {"digest", "tensors", "bytes"}
        assert (egress["digest"], egress["tensors"], egress["bytes"]) == (
            line["digest"], line["tensors"], line["bytes"])
        assert manifest_digest(line["manifest"]) == line["digest"] == manifest_digest(
            reply_manifest(reply.content))
        assert line["site"] == "academic" and line["run"] == "logged"
    train, evaluate = lines
    assert set(train["manifest"]["arrays"]["arrays"]) == set(arrays.keys())
    assert train["tensors"] == len(arrays.keys())
    declared = evaluate_declaration(settings.model.tasks).metric_keys
    assert set(evaluate["manifest"]["metrics"]["metrics"]) == declared
    assert evaluate["tensors"] == 0 and evaluate["manifest"]["arrays"] == {}
    path = _log_path(sites, "logged")
    assert path.parent.parent.parent.parent == sites.sites[0].state_dir  # <dataset>/runs/<run>/


def test_a_torn_last_line_does_not_swallow_the_next(tmp_path):
    log = EgressLog(path=tmp_path / "run.jsonl", site="academic", run="run")
    log.append({"status": "sent"})
    with open(log.path, "a") as handle:
        handle.write('{"status": "se')  # a crash mid-write
    log.append({"status": "sent", "server_round": 2})
    assert [line.get("server_round") for line in read_egress_log(log.path)] == [None, 2]


# --- at the server, and in the report ---------------------------------------------------------------

def test_the_server_records_the_sites_digest_and_the_report_shows_the_match(federation):
    run_config, _, arrays, sites = federation
    set_task_identity()
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    honest = _send(run_config, 0, MessageType.TRAIN, arrays, "served", server_round=1)
    strategy.aggregate_train(1, [honest])
    recorded = strategy.run_log.egress[1]["academic"]
    site_line = _log(sites, "served")[-1]
    assert recorded["sent_digest"] == recorded["received_digest"] == site_line["digest"]
    assert recorded["match"] and recorded["tensors"] == site_line["tensors"]
    assert recorded["bytes"] == site_line["bytes"]
    # Round 2: the reply is altered on the way; the server's manifest no longer matches the log.
    altered = _send(run_config, 0, MessageType.TRAIN, arrays, "served", server_round=2)
    name = next(iter(altered.content["arrays"].keys()))
    altered.content["arrays"][name] = _with_byte_flipped(altered.content["arrays"][name], -1)
    strategy.aggregate_train(2, [altered])
    assert not strategy.run_log.egress[2]["academic"]["match"]

    summary = egress_summary(sites, strategy.run_log, "served")
    json.dumps(summary, allow_nan=False)  # metrics.json-ready
    academic = summary["sites"]["academic"]
    assert academic["rounds"] == [1, 2] and academic["mismatched_rounds"] == [2]
    dataset = _log_path(sites, "served").parent.parent.parent.name
    assert academic["log"] == (f"<state folder of academic>/{dataset}/runs/served/"
                               "egress-log.jsonl")
    assert summary["sites"]["community"]["rounds"] == []
    table = "\n".join(egress_lines({"egress": summary}))
    assert "| academic | 1–2 |" in table and "**NO** (round 2)" in table
    assert "| community | – | 0 | 0 | – |" in table

    strategy.run_log.egress.pop(2)
    report = render_markdown({**report_metrics(), "egress": egress_summary(
        sites, strategy.run_log, "served")})
    section = report.split("## What left the sites")[1].split("\n## ")[0]
    assert f"| academic | 1 | {recorded['tensors']} | {recorded['bytes']:,} | yes | – | `" in section
    assert "/runs/served/egress-log.jsonl" in section


def test_the_server_also_recomputes_evaluation_replies(federation):
    """Every site's evaluation replies (the external one's included) are checked on arrival too."""
    run_config, _, arrays, sites = federation
    set_task_identity()
    strategy = build_strategy("fedavg", roster=ROSTER, min_train_sites=1)
    honest = _send(run_config, 2, MessageType.EVALUATE, arrays, "scored")
    altered = _send(run_config, 0, MessageType.EVALUATE, arrays, "scored")
    altered.content["metrics"]["mortality.auroc"] = 0.99  # changed after the site logged it
    strategy.aggregate_evaluate(1, [honest, altered])
    recorded = strategy.run_log.egress_evaluation[1]
    assert recorded[sites.sites[2].name]["match"] and not recorded["academic"]["match"]
    summary = egress_summary(sites, strategy.run_log, "scored")
    assert summary["sites"][sites.sites[2].name]["evaluation_replies"] == 1
    assert not summary["sites"]["academic"]["evaluation_match"]
    table = "\n".join(egress_lines({"egress": summary}))
    assert "**NO** (1)" in table and "yes (1)" in table
