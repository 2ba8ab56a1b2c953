"""The ClientApp in-process: what a site sends back, and what it refuses to do.

Privacy is the product: a reply may carry the adapter and head tensors and aggregate metrics, and
nothing else — no note text, token ids, labels or per-example values.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

from client.app import ExternalSiteCannotTrain
from client.app import app as client_app
from client.model import build_model, trainable_state
from client.run_config import InvalidRunConfig
from client.settings import ClientSettings
from sites.config import load_consortium
from sites.dataset import read_site_table
from strategies.exchange import NUM_BINS, metric_keys, validation_keys
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

ALLOWED_METRIC_SUFFIXES = (".auroc", ".auroc_low", ".auroc_high", ".n", ".positives", ".prevalence",
                           ".oracle_auroc", ".note_ceiling_auroc", ".ece")
RELIABILITY_SUFFIXES = (".reliability_confidence", ".reliability_frequency", ".reliability_count")
ALLOWED_METRICS = {"num-examples", "train-loss", "steps", "loss", "validation.loss"}  # split means


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("client_app")
    consortium = write_small_consortium(root, encounters=120, local_steps=2)
    base = make_tiny_encoder(root / "tiny-bert")
    run_config = default_run_config(
        consortium=str(consortium),
        data_dir=str(root / "data"),
        base_model=str(base),
        max_length=64,
        bootstrap_resamples=50,
    )
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=__import__("torch").device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


def _context(run_config, partition: int) -> Context:
    return Context(
        run_id=1,
        node_id=100 + partition,
        node_config={"partition-id": partition, "num-partitions": 3},
        state=RecordDict(),
        run_config=run_config,
    )


def _send(run_config, partition: int, message_type: str, arrays: ArrayRecord, **config):
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1, **config})})
    return client_app(message_to(100 + partition, content, message_type), _context(run_config, partition))


def _site_notes_and_sizes(settings: ClientSettings, partition: int):
    site = load_consortium(settings.consortium, data_root=settings.data_dir).sites[partition]
    table = read_site_table(site)
    notes = list(table["admission_note"]) + list(table["discharge_note"])
    return notes, set(table["split"].value_counts().tolist()) | {len(table)}


def test_train_reply_carries_only_adapter_heads_and_aggregates(federation):
    run_config, settings, arrays = federation
    reply = _send(run_config, 0, MessageType.TRAIN, arrays)
    assert not reply.has_error(), reply.error
    assert set(reply.content.keys()) == {"arrays", "metrics", "privacy", "egress"}
    privacy = dict(reply.content["privacy"])  # no DP: said so, with the dataset it trained on
    assert privacy == {"dp": False, "declined": "", "dataset": privacy["dataset"]}
    assert len(privacy["dataset"]) == 16
    sent = reply.content["arrays"]
    # Exactly the tensors the server sent: same names, shapes and dtype; all adapter or head.
    assert list(sent.keys()) == list(arrays.keys())
    assert all(k.startswith(("adapter.", "head.")) for k in sent.keys())
    for key in sent.keys():
        assert sent[key].shape == arrays[key].shape and sent[key].dtype == "float32"
    changed = [k for k in sent.keys() if not np.array_equal(sent[k].numpy(), arrays[k].numpy())]
    assert changed, "training changed no adapter or head tensor"
    assert set(reply.content["metrics"].keys()) == {"num-examples", "train-loss", "steps"}
    _assert_nothing_about_examples(reply, settings, partition=0)


def test_evaluate_reply_is_per_task_aggregates_with_identical_keys(federation):
    run_config, settings, arrays = federation
    replies = [_send(run_config, p, MessageType.EVALUATE, arrays) for p in (0, 2)]
    keys = [set(r.content["metrics"].keys()) for r in replies]
    assert keys[0] == keys[1], "sites must send identical metric keys"
    tasks = settings.model.tasks
    assert keys[0] == set(metric_keys(tasks)) | set(validation_keys(tasks)) | {"num-examples"}
    for key in keys[0]:
        assert key in ALLOWED_METRICS or key.endswith(ALLOWED_METRIC_SUFFIXES + RELIABILITY_SUFFIXES), key
    assert set(replies[0].content.keys()) == {"metrics", "egress"}
    for partition, reply in zip((0, 2), replies):
        metrics = reply.content["metrics"]
        for key, value in metrics.items():  # lists only for the 10 reliability bins, never per example
            assert isinstance(value, (int, float)) or (
                key.endswith(RELIABILITY_SUFFIXES) and len(value) == NUM_BINS), key
        assert 0.0 <= metrics["mortality.auroc"] <= 1.0
        _assert_nothing_about_examples(reply, settings, partition=partition)


def _assert_nothing_about_examples(reply, settings, *, partition: int) -> None:
    """No array is shaped by the data (token ids, labels, per-example scores); no note text."""
    notes, sizes = _site_notes_and_sizes(settings, partition)
    for record in reply.content.values():
        if isinstance(record, ArrayRecord):
            for key in record.keys():
                assert not set(record[key].shape) & sizes, f"{key} has a data-sized dimension"
    payload = repr(reply.content).encode() + b"".join(
        bytes(r[k].data) for r in reply.content.values() if isinstance(r, ArrayRecord) for k in r.keys()
    )
    for note in notes[:50]:
        assert note[:40].encode() not in payload


def test_only_the_training_split_reaches_a_training_step(federation, monkeypatch):
    """Through the data path: the rows handed to the optimizer loop are the site's `train` rows,
    never validation or test rows (which select and report), and the external site has none."""
    import client.app

    run_config, settings, arrays = federation
    seen = []
    original = client.app.train_steps

    def spy(model, data, **kwargs):
        seen.append((data.size, {t: data.labels[t].tolist() for t in data.labels}))
        return original(model, data, **kwargs)

    monkeypatch.setattr(client.app, "train_steps", spy)
    _send(run_config, 0, MessageType.TRAIN, arrays, **{"run-name": "spy"})
    site = load_consortium(settings.consortium, data_root=settings.data_dir).sites[0]
    train = read_site_table(site).query("split == 'train'")
    assert seen[0][0] == len(train)
    assert seen[0][1]["los"] == train["los"].tolist()  # the same rows, in table order
    with pytest.raises(ExternalSiteCannotTrain):
        _send(run_config, 2, MessageType.TRAIN, arrays, **{"run-name": "spy"})
    assert len(seen) == 1, "the external site reached a training step"


def test_a_re_sent_round_is_answered_from_the_stored_reply_without_training(federation,
                                                                           monkeypatch):
    """A restarted server re-sends the round it was in: same global adapter, same answer."""
    import client.app

    run_config, _, arrays = federation
    first = _send(run_config, 0, MessageType.TRAIN, arrays, **{"run-name": "resent"})
    trained = []
    original = client.app.train_steps
    monkeypatch.setattr(client.app, "train_steps",
                        lambda *a, **k: trained.append(1) or original(*a, **k))
    again = _send(run_config, 0, MessageType.TRAIN, arrays, **{"run-name": "resent"})
    assert not trained
    for name in first.content["arrays"].keys():
        assert again.content["arrays"][name].data == first.content["arrays"][name].data
    other = ArrayRecord({k: Array(v.numpy() + 1.0) for k, v in arrays.items()})
    _send(run_config, 0, MessageType.TRAIN, other, **{"run-name": "resent"})
    assert trained == [1], "a site without DP trains a re-sent round from another adapter"


def test_external_site_refuses_to_train(federation):
    """Flower turns the exception into an error reply, which the strategy drops."""
    run_config, _, arrays = federation
    with pytest.raises(ExternalSiteCannotTrain, match="role `external`"):
        _send(run_config, 2, MessageType.TRAIN, arrays)


def test_query_reply_names_the_site_and_role_only(federation):
    run_config, _, arrays = federation
    reply = client_app(
        message_to(102, RecordDict({"config": ConfigRecord({})}), MessageType.QUERY),
        _context(run_config, 2),
    )
    assert dict(reply.content["site"]) == {"name": "external-system", "role": "external"}


def test_external_site_is_evaluated_on_its_whole_table(federation):
    """It never trains, so every encounter is held out; a training site scores its test split."""
    run_config, settings, arrays = federation
    sizes = {}
    for partition in (0, 2):
        site = load_consortium(settings.consortium, data_root=settings.data_dir).sites[partition]
        table = read_site_table(site)
        reply = _send(run_config, partition, MessageType.EVALUATE, arrays)
        sizes[partition] = (reply.content["metrics"]["num-examples"], table)
    assert sizes[2][0] == len(sizes[2][1])  # and no validation split
    assert sizes[0][0] == sizes[0][1]["split"].isin(["test", "validation"]).sum()


def test_evaluate_scores_only_the_splits_the_server_asks_for(federation):
    """Round selection asks for validation only; the final scoring for test only."""
    run_config, _, arrays = federation
    validation = _send(run_config, 0, MessageType.EVALUATE, arrays, splits="validation")
    test = _send(run_config, 0, MessageType.EVALUATE, arrays, splits="test")
    both = _send(run_config, 0, MessageType.EVALUATE, arrays)
    assert set(validation.content["metrics"].keys()) == set(both.content["metrics"].keys())
    v, t, b = (r.content["metrics"] for r in (validation, test, both))
    assert math.isnan(v["mortality.auroc"]) and v["mortality.n"] == 0
    assert v["validation.mortality.n"] > 0 and v["validation.los.auroc"] == b["validation.los.auroc"]
    assert math.isnan(t["validation.mortality.auroc"]) and t["validation.mortality.n"] == 0
    assert t["mortality.auroc"] == b["mortality.auroc"]
    external = _send(run_config, 2, MessageType.EVALUATE, arrays)  # its whole table is test
    assert external.content["metrics"]["validation.mortality.n"] == 0


def test_evaluate_refuses_an_unknown_split(federation):
    run_config, _, arrays = federation
    with pytest.raises(InvalidRunConfig, match="`splits` is 'train'"):
        _send(run_config, 0, MessageType.EVALUATE, arrays, splits="train")


def test_a_message_can_narrow_the_tasks_and_set_the_steps(federation):
    """A transfer experiment's single-task regime: the site builds a one-head model for it."""
    run_config, settings, _ = federation
    single = build_model(replace(settings.model, tasks=("los",)), device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(single).items()})
    reply = _send(run_config, 0, MessageType.TRAIN, arrays, tasks="los", **{"local-steps": 3})
    assert reply.content["metrics"]["steps"] == 3  # the pooled site's steps come this way
    heads = [k for k in reply.content["arrays"].keys() if k.startswith("head.")]
    assert sorted(k.split(".")[1] for k in heads) == ["los", "los"]
    metrics = _send(run_config, 0, MessageType.EVALUATE, arrays, tasks="los").content["metrics"]
    assert {k.split(".")[0] for k in metrics.keys() if "." in k} - {"validation"} == {"los"}
