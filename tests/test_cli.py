"""`lang1-fl` refuses bad input before starting Flower, with one line naming what is wrong."""

from __future__ import annotations

import pytest
import torch

from server.cli import main as lang1_fl
from tests.consortium_fixtures import write_small_consortium, write_table_consortium
from tests.tiny_models import keyword_table


def test_run_refuses_a_site_without_data_or_generator(tmp_path, capsys):
    consortium = write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20)), "b": ("external", keyword_table(20))},
        tasks=("mortality",),
    )
    (tmp_path / "b" / "encounters.parquet").unlink()
    assert lang1_fl(["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(f"{tmp_path / 'b' / 'encounters.parquet'}: does not exist; expected the "
                          "encounter table of site 'b'; relative `data.path` resolves against "
                          f"{tmp_path} (the folder of consortium.yaml); pass --data-dir FOLDER to "
                          "resolve it against another folder (`lang1-fl sites generate` writes "
                          "synthetic ones)")
    assert "\n" not in error


def test_a_generated_table_of_another_size_is_refused_not_reused(tmp_path, capsys):
    consortium = write_small_consortium(tmp_path, encounters=60)
    data = tmp_path / "data"
    assert lang1_fl(["sites", "generate", str(consortium), "--data-dir", str(data)]) == 0
    assert lang1_fl(["privacy", "forecast", str(consortium), "--data-dir", str(data)]) == 0
    capsys.readouterr()
    larger = write_small_consortium(tmp_path, encounters=90)  # same paths, another size
    table = data / "academic" / "encounters.parquet"
    before = table.read_bytes()
    assert lang1_fl(["privacy", "forecast", str(larger), "--data-dir", str(data)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(f"{table}: site 'academic' declares `synthetic.encounters: 90` but the "
                          "table there has 60 encounters (generated for another consortium?); "
                          "give the site its own `data.path`, or delete the file to generate "
                          "it again")
    assert table.read_bytes() == before
    for stale in data.glob("*/encounters.parquet"):
        stale.unlink()
    assert lang1_fl(["sites", "generate", str(larger), "--data-dir", str(data)]) == 0
    assert lang1_fl(["privacy", "forecast", str(larger), "--data-dir", str(data)]) == 0


def test_run_refuses_an_existing_run_name(tmp_path, capsys):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "runs"),
            "--run-name", "taken"]
    assert lang1_fl(argv) == 2
    assert "a run of that name exists" in capsys.readouterr().err


def test_sites_check_names_the_bad_row(tmp_path, capsys):
    table = keyword_table(20)
    table.loc[3, "admission_note"] = "   "
    consortium = write_table_consortium(tmp_path, {"a": ("train", table)}, tasks=("mortality",))
    site_yaml = tmp_path / "site.yaml"
    import yaml

    site = yaml.safe_load(consortium.read_text())["sites"][0]
    site_yaml.write_text(yaml.safe_dump(site))
    assert lang1_fl(["sites", "check", str(site_yaml)]) == 2
    assert "row 4, column `admission_note`" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["sites", "generate", "--help"]])
def test_help_answers(argv):
    with pytest.raises(SystemExit) as exit_:
        lang1_fl(argv)
    assert exit_.value.code == 0


def test_run_validates_every_site_table_before_starting_flower(tmp_path, capsys):
    bad = keyword_table(20)
    bad.loc[5, "mortality"] = 7
    consortium = write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20)), "b": ("train", bad)}, tasks=("mortality",)
    )
    assert lang1_fl(["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "b/encounters.parquet: row 6, column `mortality` is 7" in error
    assert not (tmp_path / "r").exists(), "nothing is started or written on bad input"


@pytest.mark.parametrize(
    ("flwr_status", "outcome", "expected", "message"),
    [
        (0, "completed", 0, "report.html"),
        (0, "no round trained", 1, "the run failed (no round trained)"),
        (0, None, 1, "the server stopped before writing metrics.json"),
        (1, "completed", 1, "the run failed"),
        (143, None, 143, "stopped by signal 15; Flower's processes were stopped; continue it "
         "with `lang1-fl run --resume"),
    ],
)
def test_run_outcome_is_what_the_server_recorded(tmp_path, capsys, flwr_status, outcome, expected,
                                                 message):
    """`flwr run` exits 0 even when the ServerApp raised; the recorded outcome decides."""
    import json

    from server.launch.run_cli import run_outcome

    if outcome is not None:
        (tmp_path / "metrics.json").write_text(json.dumps({"run": {"outcome": outcome}}))
    assert run_outcome(tmp_path, flwr_status) == expected
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


def _site_yaml(tmp_path, privacy=None):
    import yaml

    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(40))},
                                        tasks=("mortality",))
    site = yaml.safe_load(consortium.read_text())["sites"][0]
    if privacy is not None:
        site["privacy"] = privacy
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_sites_check_states_the_privacy_budget_or_its_absence(tmp_path, capsys):
    assert lang1_fl(["sites", "check", str(_site_yaml(tmp_path))]) == 0
    assert "privacy: NO differential privacy" in capsys.readouterr().out
    privacy = {"lifetime_epsilon": 8, "run_epsilon_cap": 2, "delta": 1e-3, "max_grad_norm": 1.0}
    assert lang1_fl(["sites", "check", str(_site_yaml(tmp_path, privacy))]) == 0
    out = capsys.readouterr().out
    assert ("privacy: DP-SGD per encounter, lifetime budget ε = 8 at δ = 0.001 for this data "
            "(spent so far: ε = 0.000 over 0 rounds), ε = 2 per run") in out


def test_sites_check_refuses_a_delta_not_below_one_over_n(tmp_path, capsys):
    privacy = {"lifetime_epsilon": 8, "delta": 0.1, "max_grad_norm": 1.0}
    assert lang1_fl(["sites", "check", str(_site_yaml(tmp_path, privacy))]) == 2
    err = capsys.readouterr().err
    assert "site.yaml: `privacy.delta` of site 'a' is 0.1; expected below 1/n = 0.0333" in err
    assert "n = 30 training encounters" in err


def test_run_refuses_before_flower_starts_a_run_a_sites_data_cannot_afford(tmp_path, capsys):
    """The budget belongs to the data: a site whose ledger has spent its lifetime budget would
    decline the run, so `lang1-fl run` stops before Flower starts, whatever the run's name."""
    from client.privacy.ledger import append_entry
    from client.privacy.signing import simulated_signer
    from client.state import SiteState
    from server.launch.run_cli import prepare_site_data
    from sites.config import load_consortium
    from sites.dataset import dataset_fingerprint
    from tests.consortium_fixtures import write_small_consortium

    privacy = {"lifetime_epsilon": 8, "delta": 1e-3, "max_grad_norm": 1.0}
    consortium = write_small_consortium(tmp_path, encounters=100, privacy=privacy)
    config = load_consortium(consortium, data_root=tmp_path / "data")
    prepare_site_data(config)
    site = config.sites[1]
    state = SiteState.open(site, dataset_fingerprint(site))
    append_entry(state.ledger, {  # an earlier run spent 7.9 of the 8
        "run": "earlier", "round": 1, "site": site.name, "dataset": state.dataset,
        "privacy_unit": "encounter", "sample_rate": 0.25, "noise_multiplier": 0.6, "steps": 20,
        "max_grad_norm": 1.0, "delta": 1e-3, "accountant": "rdp", "epsilon": 7.9,
        "run_epsilon": 7.9, "epsilon_budget": 8.0, "run_epsilon_cap": None, "examples": 70,
        "noise_source": "csprng", "site_config_sha256": ""}, signer=simulated_signer(state.root))
    argv = ["run", "--consortium", str(consortium), "--data-dir", str(tmp_path / "data"),
            "--runs-dir", str(tmp_path / "runs"), "--run-name", "a-new-name"]
    assert lang1_fl(argv) == 2
    captured = capsys.readouterr()
    assert "site 'community' would decline this run: its data has spent ε = " in captured.err
    assert "over its lifetime budget of 8" in captured.err
    assert "NO: declined" in captured.out  # the forecast's row
    assert not (tmp_path / "runs" / "a-new-name").exists()


def test_sites_check_prints_counts_prevalence_and_note_lengths_contacting_no_one(
        tmp_path, capsys, monkeypatch):
    import socket

    import yaml

    def refuse(*args, **kwargs):
        raise AssertionError("`lang1-fl sites check` tried to open a network connection")

    consortium = write_table_consortium(tmp_path, {"north": ("train", keyword_table(40))},
                                        tasks=("mortality",))
    site_yaml = tmp_path / "site.yaml"
    site_yaml.write_text(yaml.safe_dump(yaml.safe_load(consortium.read_text())["sites"][0]))
    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert lang1_fl(["sites", "check", str(site_yaml)]) == 0
    out = capsys.readouterr().out
    assert "site north (train)" in out and "40 encounters, 40 patients" in out
    counts = next(line for line in out.splitlines() if line.startswith("encounters"))
    assert counts.split()[1:] == ["30", "10"]  # train, test
    mortality = next(line for line in out.splitlines() if line.startswith("mortality"))
    assert "50.0% (15)" in mortality and "50.0% (5)" in mortality  # prevalence (positives)
    assert "admission note words: p10 9, p50 14, p90 20, p99 21" in out
    assert "discharge note" not in out  # mortality reads the admission note only


@pytest.mark.parametrize(("settings", "message"), [
    (["--set", "base-model=/nowhere/lang1-1b"],
     "`base` is '/nowhere/lang1-1b'; expected 'all-MiniLM-L6-v2', 'smollm2-135m', a local Hugging "
     "Face model folder containing config.json, or a .gguf file"),
    (["--set", "scoring=letters"],
     "run config: `scoring` is 'letters' but `base` 'all-MiniLM-L6-v2' is an encoder"),
    (["--set", "lora-r=0"], "run config: `lora-r` is 0; expected a number > 0"),
])
def test_run_checks_the_base_and_every_setting_before_starting_flower(tmp_path, capsys, settings,
                                                                      message):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r"), *settings]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not (tmp_path / "r").exists(), "nothing is started or written on bad input"


def test_run_refuses_a_decoder_whose_letters_are_not_single_tokens(tmp_path, capsys, tiny_llama):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r"),
            "--set", f"base-model={tiny_llama}"]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "writes answer letter 'A' after 'Answer:' as tokens" in error and "\n" not in error
    assert not (tmp_path / "r").exists()


def test_run_refuses_a_max_length_the_question_alone_fills_before_flower(tmp_path, capsys,
                                                                         letter_llama):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("readmission",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r"),
            "--set", f"base-model={letter_llama}", "--set", "max-length=24"]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert ("run config: `max-length` is 24 but task `readmission`'s question, options and "
            "answer cue take") in error and "expected `max-length` > " in error
    assert "\n" not in error
    assert not (tmp_path / "r").exists()


def test_a_decoder_reads_512_tokens_unless_told(tmp_path, capsys, monkeypatch, letter_llama):
    """`max-length = 0` reaches Flower as it is; the plan (like the server and the sites) reads
    it as 512 for a decoder scored by its letters."""
    import server.launch.flower_run as flower_run

    started: list[dict] = []
    monkeypatch.setattr(flower_run, "flwr_run",
                        lambda **kwargs: started.append(kwargs["run_config"]) or 0)
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r"),
            "--set", f"base-model={letter_llama}"]
    lang1_fl([*argv, "--run-name", "by-scoring"])
    lang1_fl([*argv, "--run-name", "told", "--set", "max-length=64"])
    out = capsys.readouterr().out
    assert "(16 × 1 prompts × 512 tokens)" in out
    assert "(16 × 1 prompts × 64 tokens)" in out
    assert "max-length" not in started[0] and started[1]["max-length"] == 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_refuses_a_site_device_this_machine_lacks_before_flower(tmp_path, capsys):
    consortium = write_table_consortium(tmp_path, {"a": ("train", keyword_table(20))},
                                        tasks=("mortality",))
    consortium.write_text(consortium.read_text().replace("device: cpu", "device: cuda")
                          .replace("device: auto", "device: cuda"))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r")]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("site 'a': `device` is 'cuda' but CUDA is not available here; "
                          "expected 'auto' or 'cpu' on this machine") and "\n" not in error
    assert not (tmp_path / "r").exists()


@pytest.fixture()
def flower_must_not_start(monkeypatch):
    """`lang1-fl run`'s pre-flight must stop bad input: starting Flower fails the test."""
    import server.launch.flower_run as flower_run

    def started(**kwargs):
        raise AssertionError(f"Flower was started with {kwargs['run_config']}")

    monkeypatch.setattr(flower_run, "flwr_run", started)


@pytest.mark.parametrize(("settings", "message"), [
    (["--set", "lora-rank=4"],
     "--set lora-rank=4: `lora-rank` is not a run-config key; did you mean `lora-r`?"),
    (["--set", "lora-r=abc"], "run config: `lora-r` is 'abc'; expected an integer"),
    (["--set", "round-timeout=-5"], "run config: `round-timeout` is -5.0; expected a number > 0"),
    (["--rounds", "-1"], "run config: `num-server-rounds` is -1; expected a number > 0"),
    (["--set", "tasks=sepsis"], "run config `tasks`: unknown task 'sepsis'"),
    (["--set", "strategy=fedavgg"], "run config: `strategy` is 'fedavgg'; expected one of"),
    (["--set", "tasks"], "--set 'tasks': expected KEY=VALUE"),
    (["--set", "run-name=../elsewhere"], "run config: `run-name` is '../elsewhere'"),
])
def test_a_bad_run_config_stops_with_its_key_before_anything_is_written(
        tmp_path, capsys, flower_must_not_start, settings, message):
    """Issue 34 #3: these surfaced after Flower started (a traceback, or Flower's "Invalid run
    configuration" naming no key) and left runs/ behind; the synthetic sites' data was generated
    before the run config was read."""
    consortium = write_small_consortium(tmp_path, encounters=60)
    argv = ["run", "--consortium", str(consortium), "--data-dir", str(tmp_path / "data"),
            "--runs-dir", str(tmp_path / "runs"), *settings]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lang1-fl: ") and message in error and "\n" not in error
    assert not (tmp_path / "runs").exists(), "no run folder, no .flwr"
    assert not (tmp_path / "data").exists(), "no site data generated for a run that cannot start"


def test_a_task_a_site_lacks_is_refused_naming_site_task_and_column(tmp_path, capsys,
                                                                   flower_must_not_start):
    """Issue 34 #2: sites without a discharge note, a run that trains readmission (which reads
    it): every site failed in every round with a KeyError, after Flower started."""
    consortium = write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20)), "b": ("external", keyword_table(20))},
        tasks=("mortality", "los"))
    argv = ["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r"),
            "--set", "tasks=mortality,readmission"]
    assert lang1_fl(argv) == 2
    error = capsys.readouterr().err.strip()
    assert ("`tasks` is 'mortality,readmission', but site 'a' (train) of "
            f"{consortium} does not have task 'readmission' (it declares mortality, los; "
            "'readmission' reads `discharge_note` and its label `readmission`); expected tasks "
            "every site has: pass --set tasks=mortality,los (the tasks every site has), or add "
            "'readmission' to `tasks` in the site's YAML") in error and "\n" not in error
    assert not (tmp_path / "r").exists()


def test_tasks_all_means_the_tasks_every_site_has(tmp_path, capsys, monkeypatch):
    """Issue 34 #2: `tasks = all` (the default) trained all five tasks whatever the sites had;
    it is now the tasks every site declares, said on the console and handed to Flower."""
    import server.launch.flower_run as flower_run

    seen = {}
    monkeypatch.setattr(flower_run, "flwr_run",
                        lambda **kwargs: seen.update(kwargs["run_config"]) or 0)
    consortium = write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20)), "b": ("external", keyword_table(20))},
        tasks=("mortality", "los"))
    lang1_fl(["run", "--consortium", str(consortium), "--runs-dir", str(tmp_path / "r")])
    assert seen["tasks"] == "mortality,los"
    assert ("tasks: all = mortality, los (the tasks every site of the consortium has)"
            in capsys.readouterr().out)


def test_the_server_app_refuses_a_task_a_site_lacks(tmp_path):
    """`flwr run .` has no pre-flight: the ServerApp checks the tasks before discovery."""
    from client.run_config import InvalidRunConfig
    from server.run_tasks import check_run_tasks
    from sites.config import load_consortium
    from sites.tasks import TASK_NAMES

    consortium = load_consortium(write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20))}, tasks=("mortality",)))
    check_run_tasks(("mortality",), consortium, value="mortality")
    with pytest.raises(InvalidRunConfig, match=r"`tasks` is 'all', but site 'a' \(train\) .* "
                       r"does not have task 'readmission'.*pass --set tasks=mortality"):
        check_run_tasks(TASK_NAMES, consortium, value="all")


@pytest.mark.slow
def test_a_run_whose_rounds_all_fail_exits_non_zero_saying_so(tmp_path, capsys):
    """Issue 34 #9: a run in which no round trained must not exit 0, whatever made the rounds
    fail. The real ServerApp and ClientApp in one process (as bench/in_process.py runs them),
    every training message answered with an error, as a site crashing inside Ray answers it."""
    from flwr.app import Context, Error, Message, MessageType, RecordDict

    from client.app import app as client_app
    from server.app import main as server_main
    from server.launch.run_cli import run_outcome
    from tests.flower_fakes import FakeGrid, set_task_identity
    from tests.run_config import default_run_config
    from tests.tiny_models import make_tiny_encoder

    consortium = write_small_consortium(tmp_path, encounters=60, local_steps=1)
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs"), run_name="failing", num_server_rounds=2,
        base_model=str(make_tiny_encoder(tmp_path / "tiny")), max_length=32,
        bootstrap_resamples=20, tasks="mortality")
    nodes = {100 + i: Context(run_id=1, node_id=100 + i, state=RecordDict(),
                              node_config={"partition-id": i, "num-partitions": 3},
                              run_config=run_config) for i in range(3)}

    def site(message: Message) -> Message:
        if message.metadata.message_type == MessageType.TRAIN:
            return Message(Error(code=0, reason="the site crashed"), reply_to=message)
        return client_app(message, nodes[message.metadata.dst_node_id])

    set_task_identity()
    with pytest.raises(RuntimeError, match="no round trained"):
        server_main(FakeGrid(nodes, site), Context(run_id=1, node_id=0, node_config={},
                                                   state=RecordDict(), run_config=run_config))
    assert run_outcome(tmp_path / "runs" / "failing", 0) == 1  # `flwr run` exits 0 here
    assert "lang1-fl run: the run failed (no round trained)" in capsys.readouterr().err
