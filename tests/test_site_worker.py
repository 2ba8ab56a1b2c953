"""The site worker: a message handed over by a short-lived ClientApp gets the reply the site's
ClientApp gives in-process, errors come back named, and the link refuses what is not its own.

The worker runs in a thread of this process here (as it does inside `lang1-fl deploy supernode
--exec`); tests/test_deployment_e2e.py runs it under real SuperNodes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

import client.worker_link
from client.app import app as site_app
from client.model import build_model, trainable_state
from client.node_app import app as node_app
from client.settings import ClientSettings
from client.site import site_runtime
from client.site_worker import SiteWorker, run_with_worker
from client.worker_link import AUTHKEY_FILE, WORKER_KEY, SiteWorkerError
from sites.config import load_consortium
from strategies.wire_pack import is_packed, pack, unpack
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("site_worker")
    consortium = write_small_consortium(root, encounters=120, local_steps=2)
    run_config = default_run_config(consortium=str(consortium), data_dir=str(root / "data"),
                                    base_model=str(make_tiny_encoder(root / "tiny-bert")),
                                    max_length=64, bootstrap_resamples=50)
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=__import__("torch").device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


@pytest.fixture
def worker():
    worker = SiteWorker()
    serving = threading.Thread(target=worker.serve_forever, daemon=True)
    serving.start()
    yield worker
    worker.close()
    serving.join(timeout=10)
    assert not serving.is_alive()


def _message(arrays: ArrayRecord, message_type: str, partition: int, **config):
    content = RecordDict({"arrays": arrays,
                          "config": ConfigRecord({"server-round": 1, **config})})
    return message_to(100 + partition, content, message_type)


def _context(run_config, partition: int, worker: SiteWorker | None) -> Context:
    node_config = {"partition-id": partition, "num-partitions": 3}
    if worker is not None:
        node_config[WORKER_KEY] = worker.address
    return Context(run_id=1, node_id=100 + partition, node_config=node_config,
                   state=RecordDict(), run_config=run_config)


def test_an_evaluate_message_through_the_worker_gets_the_in_process_reply(federation, worker):
    run_config, _, arrays = federation
    message = _message(arrays, MessageType.EVALUATE, 0, intervals=True)
    handed = node_app(message, _context(run_config, 0, worker))
    here = site_app(message, _context(run_config, 0, None))
    assert not handed.has_error() and worker.answered == 1
    np.testing.assert_equal(dict(handed.content["metrics"]), dict(here.content["metrics"]))
    assert handed.metadata.reply_to_message_id == message.metadata.message_id
    assert any(k.endswith(".auroc_low") for k in handed.content["metrics"])


def test_a_train_message_through_the_worker_carries_the_trained_adapter(federation, worker):
    run_config, _, arrays = federation
    reply = node_app(_message(arrays, MessageType.TRAIN, 1), _context(run_config, 1, worker))
    assert not reply.has_error()
    assert set(reply.content["arrays"].keys()) == set(arrays.keys())
    assert reply.content["metrics"]["steps"] == 2
    moved = [k for k in arrays.keys()
             if (reply.content["arrays"][k].numpy() != arrays[k].numpy()).any()]
    assert moved, "training through the worker changed no tensor"


@pytest.mark.parametrize("through_worker", [True, False])
def test_a_packed_message_is_answered_packed_with_the_plain_messages_reply(federation, worker,
                                                                           through_worker):
    """As the Deployment Engine's coordinator sends it (strategies/wire_pack.py)."""
    run_config, _, arrays = federation
    reply = node_app(_packed(_message(arrays, MessageType.EVALUATE, 0)),
                     _context(run_config, 0, worker if through_worker else None))
    here = site_app(_message(arrays, MessageType.EVALUATE, 0), _context(run_config, 0, None))
    assert not is_packed(reply.content)  # an evaluation reply holds no arrays to pack
    np.testing.assert_equal(dict(unpack(reply.content)["metrics"]), dict(here.content["metrics"]))
    trained = node_app(_packed(_message(arrays, MessageType.TRAIN, 1)),
                       _context(run_config, 1, worker if through_worker else None))
    assert is_packed(trained.content)
    assert set(unpack(trained.content)["arrays"].keys()) == set(arrays.keys())


def _packed(message):
    message.content = pack(message.content)
    return message


def test_the_sites_error_comes_back_named(federation, worker):
    run_config, _, arrays = federation  # partition 2 is the external system: it never trains
    with pytest.raises(SiteWorkerError, match="ExternalSiteCannotTrain: site .* `external`"):
        node_app(_message(arrays, MessageType.TRAIN, 2), _context(run_config, 2, worker))
    # the worker goes on answering after a failed message
    reply = node_app(_message(arrays, MessageType.QUERY, 2), _context(run_config, 2, worker))
    assert reply.content["site"]["role"] == "external" and worker.answered == 2


def test_a_link_with_another_key_is_refused(federation, worker):
    run_config, _, arrays = federation
    (worker.folder / AUTHKEY_FILE).write_bytes(b"not the worker's key")
    with pytest.raises(SiteWorkerError, match="refused the key"):
        node_app(_message(arrays, MessageType.QUERY, 0), _context(run_config, 0, worker))
    assert worker.answered == 0


def test_a_stopped_worker_is_named_not_waited_for(federation):
    run_config, _, arrays = federation
    stopped = SiteWorker()
    stopped.close()
    with pytest.raises(SiteWorkerError, match="deploy supernode --exec.*still running"):
        node_app(_message(arrays, MessageType.QUERY, 0), _context(run_config, 0, stopped))


def test_a_clientapp_of_another_protocol_is_refused(federation, worker, monkeypatch):
    run_config, _, arrays = federation
    monkeypatch.setattr(client.worker_link, "PROTOCOL", 99)
    with pytest.raises(SiteWorkerError, match="protocol 1, the ClientApp 99"):
        node_app(_message(arrays, MessageType.QUERY, 0), _context(run_config, 0, worker))
    assert worker.answered == 0


def test_the_clientapp_a_supernode_starts_imports_no_model_library():
    code = ("import sys, client.node_app; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_supernode_runs_beside_the_worker_and_its_status_is_returned():
    seen = {}

    def node_command(address: str) -> list[str]:
        seen["address"] = address
        return [sys.executable, "-c",
                f"import os, sys; sys.exit(7 if os.path.exists({address!r}) else 1)"]

    assert run_with_worker(node_command, {}) == 7
    assert not __import__("os").path.exists(seen["address"])  # the socket folder is removed


def test_a_table_rewritten_between_runs_is_read_afresh(federation, tmp_path):
    """A worker outlives runs: its cache must not key a changed table's state by the old one."""
    _, settings, _ = federation
    site = load_consortium(settings.consortium, data_root=settings.data_dir).sites[0]
    table = tmp_path / site.data.path.name
    shutil.copy(site.data.path, table)
    site = replace(site, data=replace(site.data, path=table))
    before = site_runtime(site, settings.model)
    assert site_runtime(site, settings.model).splits is before.splits  # cached
    frame = __import__("sites.dataset", fromlist=["x"]).read_site_table(site)
    frame.iloc[: len(frame) - 10].to_csv(table, index=False) if table.suffix == ".csv" else (
        frame.iloc[: len(frame) - 10].to_parquet(table, index=False))
    after = site_runtime(site, settings.model)
    assert after.fingerprint != before.fingerprint
    assert sum(s.size for s in after.splits.values()) == \
        sum(s.size for s in before.splits.values()) - 10
