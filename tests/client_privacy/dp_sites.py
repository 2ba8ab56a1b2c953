"""DP hospitals for the ClientApp privacy tests in this folder, and the messages a server sends.

`make_federation` writes a small consortium of DP sites (its own data and state folders) and the run
config and adapter a server would start from; `send_message` delivers one message to the ClientApp as a
site's SuperNode would; `state_of` and `verify_site_ledger` find and verify a site's lifetime ledger;
`restart_client` drops what a client process caches.
"""

from __future__ import annotations

import torch
import yaml
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, RecordDict

import client.site
from client.app import app as client_app
from client.model import build_model, trainable_state
from client.privacy.verify import verify_ledger
from client.settings import ClientSettings
from client.state import SiteState
from sites.config import load_consortium
from sites.dataset import dataset_fingerprint
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import message_to
from tests.run_config import default_run_config

PRIVACY = {"lifetime_epsilon": 4.0, "delta": 1e-3, "max_grad_norm": 1.0, "accountant": "rdp"}


RUN = "dp-test-run"


TWO_HOSPITALS = (("academic", "train"), ("community", "train"),
                 ("external_system", "external"))


THREE_HOSPITALS = (("academic", "train"), ("community", "train"), ("safety_net", "train"))


def make_federation(root, base, *, privacy=PRIVACY, rounds=3, shared_folder=False,
                    profiles=TWO_HOSPITALS):
    """A small consortium of DP hospitals (by default two and an external system); with
    `shared_folder`, the sites' tables sit side by side in one data folder."""
    consortium = write_small_consortium(root, encounters=120, local_steps=2, privacy=privacy,
                                        profiles=profiles)
    if shared_folder:
        raw = yaml.safe_load(consortium.read_text())
        for site in raw["sites"]:
            site["data"]["path"] = f"hospitals/{site['name']}.parquet"
        consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(root / "data"), base_model=str(base),
        max_length=32, bootstrap_resamples=20, num_server_rounds=rounds,
    )
    settings = ClientSettings.from_run_config(run_config)
    model = build_model(settings.model, device=torch.device("cpu"))
    arrays = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})
    return run_config, settings, arrays


def send_message(run_config, message_type: str, arrays: ArrayRecord | None, server_round: int,
                 partition=0, run=RUN):
    config = ConfigRecord({"server-round": server_round, "run-name": run})
    content = RecordDict({"config": config, **({"arrays": arrays} if arrays else {})})
    context = Context(run_id=1, node_id=100 + partition,
                      node_config={"partition-id": partition, "num-partitions": 3},
                      state=RecordDict(), run_config=run_config)
    return client_app(message_to(100 + partition, content, message_type), context)


def site_of(settings: ClientSettings, partition: int = 0):
    return load_consortium(settings.consortium, data_root=settings.data_dir).sites[partition]


def state_of(settings: ClientSettings, partition: int = 0) -> SiteState:
    from client.site import ensure_site_data

    consortium = load_consortium(settings.consortium, data_root=settings.data_dir)
    site = consortium.sites[partition]
    ensure_site_data(site, seed=consortium.seed)  # as the site's first message would
    return SiteState.peek(site, dataset_fingerprint(site))


def verify_site_ledger(state: SiteState, head: str | None = None):
    return verify_ledger(state.ledger, public_key=state.root / "signing-key.pub",
                         head_sha256=head)


def restart_client() -> None:
    """A new client process: no cached model, data or accountant."""
    client.site._MODELS.clear()
    client.site._SPLITS.clear()
