"""Run configuration: the shipped defaults parse, and each bad value is named with what was expected."""

from __future__ import annotations

import pytest

from client.run_config import InvalidRunConfig
from client.settings import ClientSettings
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
    assert settings.client.num_rounds >= 2
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
        ({"max_length": -1}, r"`max-length` is -1; expected a number >= 0"),
        ({"lora_r": 0}, r"`lora-r` is 0; expected a number > 0"),
        ({"learning_rate": "fast"}, r"`learning-rate` is 'fast'; expected a number"),
        ({"local_steps": -1}, r"`local-steps` is -1; expected a number >= 0"),
        ({"num_server_rounds": 0}, r"`num-server-rounds` is 0; expected a number > 0"),
        ({"strategy": "fedsgd"}, r"`strategy` is 'fedsgd'; expected one of fedavg"),
        ({"round_selection": "f1"}, r"`round-selection` is 'f1'; expected one of loss, auroc"),
        ({"run_name": "a/b"}, r"`run-name` is 'a/b'"),
        ({"lr_schedule": "linear"}, r"`lr-schedule` is 'linear'; expected one of constant, cosine"),
        ({"dp_optimizer": "adam"}, r"`dp-optimizer` is 'adam'; expected one of adamw, sgd"),
        ({"dp_learning_rate": 0.0}, r"`dp-learning-rate` is 0.0; expected a number > 0"),
        ({"dp_optimizer_state": "reset"},
         r"`dp-optimizer-state` is 'reset'; expected \"kept\" or \"fresh\""),
        ({"dp_adapter_clip_share": 1.0},
         r"`dp-adapter-clip-share` is 1.0; expected 0 \(one norm for all\) or a share"),
        ({"dp_adapter_clip_share": -0.5},
         r"`dp-adapter-clip-share` is -0.5; expected a number >= 0"),
        ({"proximal_mu": -0.1}, r"`proximal-mu` is -0.1; expected a number >= 0"),
        ({"tolerated_bad_sites": 1.5}, r"`tolerated-bad-sites` is 1.5; expected an integer"),
        ({"server_learning_rate": 0.0}, r"`server-learning-rate` is 0.0; expected a number > 0"),
        ({"server_beta_2": 1.0}, r"`server-beta-2` is 1.0; expected 0 <= beta < 1"),
        ({"strategy": "flora", "experiment": "transfer"},
         r"`strategy` is 'flora', which the transfer experiment cannot use"),
    ],
)
def test_bad_run_config_values_are_named(overrides, message):
    with pytest.raises(InvalidRunConfig, match=message):
        ServerSettings.from_run_config(default_run_config(**overrides))


@pytest.mark.parametrize(("base", "overrides", "expected"), [
    (None, {}, 128),  # the shipped default: MiniLM with heads, as it always read
    ("tiny_encoder", {}, 128),
    ("letter_llama", {}, 512),  # `auto` scores a decoder by its letters: the paper's 512
    ("letter_llama", {"scoring": "letters"}, 512),
    ("letter_llama", {"scoring": "head"}, 128),  # a decoder with heads reads as an encoder does
    ("letter_llama", {"max_length": 256}, 256),  # a number is taken as it is, for every base
    ("tiny_encoder", {"max_length": 512}, 512),
])
def test_max_length_0_follows_the_scoring_and_server_and_sites_agree(request, base, overrides,
                                                                     expected):
    """The ServerApp and every ClientApp read the same run config through the same parser."""
    if base is not None:
        overrides = {**overrides, "base_model": str(request.getfixturevalue(base))}
    config = default_run_config(**overrides)
    server = ServerSettings.from_run_config(config).client.model.max_length
    site = ClientSettings.from_run_config(config).model.max_length
    assert server == site == expected


def test_missing_key_is_named():
    config = default_run_config()
    del config["seed"]
    with pytest.raises(InvalidRunConfig, match=r"`seed` is missing"):
        ClientSettings.from_run_config(config)


def test_every_run_config_key_has_one_type_and_every_default_fits_it():
    from client.run_config import RUN_CONFIG_KEYS, read_run_config

    config = default_run_config()
    assert set(RUN_CONFIG_KEYS) == set(config)
    for key, (kind, _) in RUN_CONFIG_KEYS.items():
        assert isinstance(read_run_config(config, key), kind)


def test_lora_alpha_is_a_float_wherever_it_is_read():
    settings = ServerSettings.from_run_config(default_run_config(lora_alpha=16))
    assert settings.client.model.lora.alpha == settings.options.lora_alpha == 16.0
    assert isinstance(settings.client.model.lora.alpha, float)
    assert ServerSettings.from_run_config(default_run_config(lora_alpha=12.5)).options.lora_alpha == 12.5


@pytest.mark.parametrize("name", [".hidden", "..", "a/b", ""])
def test_one_run_name_rule_for_the_run_config_and_the_messages(name):
    from flwr.app import ConfigRecord

    from client.settings import MessageConfig

    if name:
        with pytest.raises(InvalidRunConfig, match=r"run config: `run-name` is .*not starting"):
            ServerSettings.from_run_config(default_run_config(run_name=name))
        with pytest.raises(InvalidRunConfig, match=r"train message: `run-name` is .*not starting"):
            MessageConfig.from_record(ConfigRecord({"run-name": name}), run_id=1,
                                      kind="train message")
    else:  # no name: the server takes a timestamp, a site Flower's run id
        assert ServerSettings.from_run_config(default_run_config(run_name=name)).run_name
        assert MessageConfig.from_record(ConfigRecord({}), run_id=3).run_name == "flwr-run-3"


def test_a_message_config_is_read_once_with_its_defaults():
    from flwr.app import ConfigRecord

    from client.settings import MessageConfig

    empty = MessageConfig.from_record(ConfigRecord({}), run_id=5)
    assert (empty.server_round, empty.tasks, empty.local_steps, empty.proximal_mu,
            empty.adapter_mode) == (None, None, 0, 0.0, "full")
    assert empty.splits == {"validation", "test"}
    sent = MessageConfig.from_record(ConfigRecord({
        "run-name": "r1", "server-round": 2, "tasks": "mortality", "local-steps": 4,
        "splits": "test", "proximal-mu": 0.5, "adapter-mode": "ffa"}), run_id=5)
    assert (sent.run_name, sent.server_round, sent.tasks, sent.local_steps, sent.splits,
            sent.proximal_mu, sent.adapter_mode) == ("r1", 2, ("mortality",), 4,
                                                     frozenset({"test"}), 0.5, "ffa")
    with pytest.raises(InvalidRunConfig, match=r"`splits` is 'train'"):
        MessageConfig.from_record(ConfigRecord({"splits": "train"}), run_id=5)
    with pytest.raises(InvalidRunConfig, match=r"`local-steps` is -1; expected >= 0"):
        MessageConfig.from_record(ConfigRecord({"local-steps": -1}), run_id=5)
