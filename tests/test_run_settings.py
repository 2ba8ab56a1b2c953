"""Run configuration: the shipped defaults parse, and each bad value is named with what was expected."""

from __future__ import annotations

import pytest

from client.settings import ClientSettings, InvalidRunConfig
from server.settings import ServerSettings
from sites.config import DEFAULT_CONSORTIUM
from sites.tasks import TASK_NAMES
from tests.run_config import default_run_config


def test_pyproject_defaults_parse_into_settings():
    settings = ServerSettings.from_run_config(default_run_config())
    assert settings.client.consortium == DEFAULT_CONSORTIUM
    assert settings.client.model.tasks == TASK_NAMES
    assert settings.client.model.base == "all-MiniLM-L6-v2"
    assert settings.strategy == "fedavg"
    assert settings.num_rounds >= 2
    assert settings.client.optimizer.name == "adamw"
    # DP sites take larger LoRA steps: under DP, AdamW's second moment also holds the noise.
    assert settings.client.dp_optimizer.learning_rate > settings.client.optimizer.learning_rate


def test_single_task_list_is_parsed():
    settings = ClientSettings.from_run_config(default_run_config(tasks="mortality, los"))
    assert settings.model.tasks == ("mortality", "los")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tasks": "mortality,sepsis"}, r"unknown task 'sepsis'"),
        ({"tasks": ""}, r"task list is empty"),
        ({"max_length": 1024}, r"`max-length` is 1024; expected at most 512"),
        ({"lora_r": 0}, r"`lora-r` is 0; expected a number > 0"),
        ({"learning_rate": "fast"}, r"`learning-rate` is 'fast'; expected a float"),
        ({"local_steps": -1}, r"`local-steps` is -1; expected a number >= 0"),
        ({"num_server_rounds": 0}, r"`num-server-rounds` is 0; expected a number > 0"),
        ({"strategy": "fedsgd"}, r"`strategy` is 'fedsgd'; expected one of fedavg"),
        ({"run_name": "a/b"}, r"`run-name` is 'a/b'"),
        ({"dp_optimizer": "adam"}, r"`dp-optimizer` is 'adam'; expected one of adamw, sgd"),
        ({"dp_learning_rate": 0.0}, r"`dp-learning-rate` is 0.0; expected a number > 0"),
        ({"dp_optimizer_state": "reset"},
         r"`dp-optimizer-state` is 'reset'; expected \"kept\" or \"fresh\""),
        ({"dp_adapter_clip_share": 1.0},
         r"`dp-adapter-clip-share` is 1.0; expected 0 \(one norm for all\) or a share"),
        ({"dp_adapter_clip_share": -0.5},
         r"`dp-adapter-clip-share` is -0.5; expected a number >= 0"),
        ({"proximal_mu": -0.1}, r"`proximal-mu` is -0.1; expected a number >= 0"),
        ({"tolerated_bad_sites": 1.5}, r"`tolerated-bad-sites` is 1.5; expected a int"),
        ({"server_learning_rate": 0.0}, r"`server-learning-rate` is 0.0; expected a number > 0"),
        ({"server_beta_2": 1.0}, r"`server-beta-2` is 1.0; expected 0 <= beta < 1"),
        ({"strategy": "flora", "experiment": "transfer"},
         r"`strategy` is 'flora', which the transfer experiment cannot use"),
    ],
)
def test_bad_run_config_values_are_named(overrides, message):
    with pytest.raises(InvalidRunConfig, match=message):
        ServerSettings.from_run_config(default_run_config(**overrides))


def test_missing_key_is_named():
    config = default_run_config()
    del config["seed"]
    with pytest.raises(InvalidRunConfig, match=r"`seed` is missing"):
        ClientSettings.from_run_config(config)
