"""Named run profiles: what each sets, the order (defaults, then the profile, then `--set`), the
refusals before anything starts, and the name the run records."""

from __future__ import annotations

import json

import pytest

from client import run_profiles
from client.run_config import InvalidRunConfig, planned_run_config, run_config_overrides
from client.run_profiles import profile_overrides
from server.cli import main as lang1_fl
from tests.consortium_fixtures import write_small_consortium, write_table_consortium
from tests.run_config import default_run_config
from tests.tiny_models import keyword_table


def test_the_shipped_profiles_set_what_they_document():
    assert profile_overrides(None) == {}
    assert profile_overrides("paper-512") == {"max-length": 512, "profile": "paper-512"}
    assert profile_overrides("decoder") == {"base-model": "smollm2-135m", "scoring": "letters",
                                            "max-length": 512, "lora-layers": 0,
                                            "profile": "decoder"}


def test_set_and_rounds_win_over_the_profile_which_wins_over_the_defaults():
    default = planned_run_config(None, rounds=None)
    assert (default["max-length"], default["profile"]) == (0, "")
    paper = planned_run_config(None, rounds=None, profile=profile_overrides("paper-512"))
    assert (paper["max-length"], paper["base-model"], paper["profile"]) == (
        512, "all-MiniLM-L6-v2", "paper-512")  # the default base kept
    mixed = planned_run_config(["max-length=256"], rounds=2, profile=profile_overrides("decoder"))
    assert (mixed["base-model"], mixed["scoring"], mixed["max-length"],
            mixed["num-server-rounds"], mixed["profile"]) == (
        "smollm2-135m", "letters", 256, 2, "decoder")


def test_an_unknown_profile_is_refused_listing_the_profiles_there_are():
    with pytest.raises(InvalidRunConfig, match=r"^--profile paper512: no such run profile; "
                       r"expected one of decoder, paper-512 \(\[tool\.lang1-fl\.profiles\.<name>\] "
                       r"in .*pyproject\.toml\)$"):
        profile_overrides("paper512")


def test_the_profile_label_is_set_by_profile_alone():
    with pytest.raises(InvalidRunConfig, match=r"--set profile=paper-512: `profile` names the run "
                       r"profile .*; expected --profile NAME, which applies them"):
        run_config_overrides(["profile=paper-512"])


@pytest.mark.parametrize(("line", "message"), [
    ("max-lenght = 512", r"run profile `long` \(\[tool\.lang1-fl\.profiles\.long\] in .*\): "
     r"`max-lenght` is not a run-config key; did you mean `max-length`\? .*; the profiles are "
     r"long, short$"),
    ('run-name = "x"', r"run profile `long` .*: `run-name` is the command line's to set .*; the "
     r"profiles are long, short$"),
    ('max-length = "all"', r"run profile `long` .*: `max-length` is 'all'; expected an integer$"),
    ("lora-r = 0", r"run profile `long` .*: `lora-r` is 0; expected a number > 0$"),
])
def test_a_bad_profile_is_refused_naming_it_and_its_key(tmp_path, monkeypatch, line, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.lang1-fl.profiles.long]\n{line}\n\n"
                         "[tool.lang1-fl.profiles.short]\nlora-alpha = 8\n")
    monkeypatch.setattr(run_profiles, "PYPROJECT", pyproject)
    with pytest.raises(InvalidRunConfig, match=message):
        profile_overrides("long")
    # the good one next to it still reads, its int taken as the float the key is
    assert profile_overrides("short") == {"lora-alpha": 8.0, "profile": "short"}


@pytest.fixture()
def flower_must_not_start(monkeypatch):
    import server.launch.flower_run as flower_run

    monkeypatch.setattr(flower_run, "flwr_run",
                        lambda **kwargs: pytest.fail(f"Flower started: {kwargs['run_config']}"))


@pytest.mark.parametrize("command", [["run", "--consortium"], ["experiment", "transfer"],
                                     ["privacy", "forecast"]])
def test_a_command_with_an_unknown_profile_stops_before_anything_is_written(
        tmp_path, capsys, flower_must_not_start, command):
    consortium = write_small_consortium(tmp_path, encounters=60)
    argv = [*command, str(consortium), "--data-dir", str(tmp_path / "data"), "--profile",
            "paper512"]
    if command[0] != "privacy":
        argv += ["--runs-dir", str(tmp_path / "runs")]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lang1-fl: --profile paper512: no such run profile; expected one of "
                            "decoder, paper-512") and "\n" not in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_a_run_hands_flower_the_profile_under_set_and_records_its_name(tmp_path, capsys,
                                                                      monkeypatch):
    import server.launch.flower_run as flower_run
    from server.app import _open_run_dir
    from server.checkpoint import RUN_CONFIG_FILE
    from server.settings import ServerSettings

    started: list[dict] = []
    monkeypatch.setattr(flower_run, "flwr_run",
                        lambda **kwargs: started.append(kwargs["run_config"]) or 0)
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "runs"),
            "--profile", "paper-512"]
    lang1_fl([*argv, "--run-name", "paper", "--set", "lora-r=4"])
    lang1_fl([*argv, "--run-name", "shorter", "--set", "max-length=64"])
    paper, shorter = started
    assert (paper["profile"], paper["max-length"], paper["lora-r"]) == ("paper-512", 512, 4)
    assert (shorter["profile"], shorter["max-length"]) == ("paper-512", 64)  # --set wins
    assert "1 notes × 512 tokens" in capsys.readouterr().out  # the memory plan read it too

    # The server records the run config it was handed, the profile's name in it
    config = {**default_run_config(), **paper}
    settings = ServerSettings.from_run_config(config)
    assert settings.client.model.max_length == 512
    _open_run_dir(settings.run_dir, settings, config)
    recorded = json.loads((settings.run_dir / RUN_CONFIG_FILE).read_text())
    assert (recorded["profile"], recorded["max-length"]) == ("paper-512", 512)


def test_resume_takes_no_profile(tmp_path, capsys):
    assert lang1_fl(["run", "--resume", str(tmp_path), "--profile", "paper-512"]) == 2
    assert "drop --set, --profile, --rounds and --run-name" in capsys.readouterr().err


def test_sites_check_counts_tokens_with_the_profile_s_length(tmp_path, capsys):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    cut_at = {}
    for extra in ([], ["--profile", "paper-512"], ["--profile", "paper-512", "--set",
                                                    "max-length=16"]):
        assert lang1_fl(["sites", "check", str(consortium), *extra]) == 0
        tokens = next(line for line in capsys.readouterr().out.splitlines()
                      if "note tokens" in line)
        cut_at[" ".join(extra)] = tokens.rsplit("max-length ", 1)[1]
    assert cut_at == {"": "128", "--profile paper-512": "512",
                      "--profile paper-512 --set max-length=16": "16"}
