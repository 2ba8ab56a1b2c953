"""The ClientApp with DP on, driven message by message: the privacy settings a site checks.

Patient-level DP samples patients and says so in the ledger; a site YAML that changes its δ under
an existing ledger, or a δ not below 1/n, is refused before training; a run name from the server
cannot point a site's files outside its folder.

Each test gets a fresh small consortium (its own data and state folders); the tiny encoder is
built once.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

from client.privacy.ledger import read_ledger
from client.settings import ClientSettings
from sites.config import InvalidSiteConfig
from sites.dataset import count_training_units
from tests.client_privacy.dp_sites import PRIVACY, make_federation, send_message, site_of, state_of
from tests.consortium_fixtures import write_small_consortium
from tests.run_config import default_run_config


def test_patient_level_dp_samples_patients_and_says_so_in_the_ledger(tmp_path, tiny_bert):
    """Finding 5: with `privacy.unit: patient` the plan counts patients, the ledger names the
    unit, and the round trains."""
    run_config, settings, arrays = make_federation(tmp_path, tiny_bert,
                                               privacy={**PRIVACY, "unit": "patient"})
    reply = send_message(run_config, MessageType.TRAIN, arrays, 1)
    assert not reply.has_error(), reply.error and "arrays" in reply.content
    assert reply.content["privacy"]["unit"] == "patient"
    site = site_of(settings)
    counts = count_training_units(site)
    assert counts.patients < counts.encounters  # synthetic patients have 1.25 encounters
    entry = read_ledger(state_of(settings).ledger)[-1]
    assert entry["privacy_unit"] == "patient" and entry["examples"] == counts.patients
    assert entry["sample_rate"] == pytest.approx(16 / counts.encounters)


def test_a_site_yaml_that_changes_its_delta_under_an_existing_ledger_is_refused(federation):
    run_config, settings, arrays = federation
    send_message(run_config, MessageType.TRAIN, arrays, 1, run="first")
    consortium = settings.consortium
    raw = yaml.safe_load(consortium.read_text())
    raw["sites"][0]["privacy"]["delta"] = 5e-4
    consortium.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(InvalidSiteConfig, match=r"`privacy.delta` 0.0005, but the ledger of its "
                       r"data .* composes at 0.001"):
        send_message(run_config, MessageType.TRAIN, arrays, 1, run="second")


def test_delta_not_below_one_over_n_is_refused_before_training(tmp_path, tiny_encoder):
    consortium = write_small_consortium(tmp_path, encounters=120, local_steps=2,
                                        privacy={**PRIVACY, "delta": 0.05})
    run_config = default_run_config(consortium=str(consortium), data_dir=str(tmp_path / "data"),
                                    base_model=str(tiny_encoder), max_length=32)
    arrays = ArrayRecord({"x": Array(np.zeros(1, dtype=np.float32))})
    with pytest.raises(InvalidSiteConfig, match=r"`privacy.delta` of site 'academic' is 0.05; "
                                                r"expected below 1/n = "):
        send_message(run_config, MessageType.TRAIN, arrays, 1)
    settings = ClientSettings.from_run_config(run_config)
    assert not state_of(settings).ledger.exists()


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden", ""])
def test_a_server_cannot_point_a_site_file_outside_its_folder(name):
    from client.settings import MessageConfig

    def run_name(config: ConfigRecord, context: Context) -> str:
        return MessageConfig.from_record(config, run_id=context.run_id).run_name

    context = Context(run_id=7, node_id=1, node_config={}, state=RecordDict(), run_config={})
    if name == "":  # no name from the server: Flower's run id names the run's files
        assert run_name(ConfigRecord({"run-name": ""}), context) == "flwr-run-7"
        return
    with pytest.raises(ValueError, match="`run-name` is"):
        run_name(ConfigRecord({"run-name": name}), context)
