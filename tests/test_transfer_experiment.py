"""The transfer experiment's server side, driven in-process against fake sites.

The fake sites answer every message and log it, so the tests can check through the data path who
was asked to train on what: the external system never, the pooled site only in its own regime,
and test splits only once per regime, after the round was chosen on validation.
"""

from __future__ import annotations

import json
import math

import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from server.settings import TRAINED_KINDS, ServerSettings
from server.transfer.experiment import (
    TransferExperimentError,
    evaluate_at,
    plan_regimes,
    pooled_local_steps,
    run_transfer_experiment,
)
from sites.config import load_consortium
from sites.pooling import POOLED_SITE, with_pooled_site
from strategies import SiteEntry, SiteRoster
from strategies.exchange import INTERVALS_KEY
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_run_config
from tests.tiny_models import make_tiny_encoder

TASKS = ("mortality", "los")
BEST_ROUND = 2


def test_regimes_cover_local_leave_one_out_pooled_and_single_task():
    regimes = plan_regimes(("a", "b", "c"), TASKS, pooled=True)
    assert [r.name for r in regimes] == [
        "untrained", "federated", "local:a", "local:b", "local:c", "without:a", "without:b",
        "without:c", "pooled", "single:mortality", "single:los"]
    assert {r.name: r.trained_on for r in regimes}["without:b"] == ("a", "c")
    assert {r.name: r.tasks for r in regimes}["single:los"] == ("los",)
    two = [r.name for r in plan_regimes(("a", "b"), ("los",), pooled=False)]
    assert two == ["untrained", "federated", "local:a", "local:b"]  # without:a would be local:b
    chosen = plan_regimes(("a", "b", "c"), TASKS, pooled=True,
                          kinds=frozenset({"federated", "pooled"}))
    assert [r.name for r in chosen] == ["untrained", "federated", "pooled"]


def test_unknown_regime_kinds_are_named():
    from client.run_config import InvalidRunConfig
    from server.settings import parse_regimes

    assert parse_regimes("all") == frozenset(TRAINED_KINDS)
    with pytest.raises(InvalidRunConfig, match="`experiment-regimes` is 'federated,lokal'"):
        parse_regimes("federated,lokal")


class FakeSites:
    """Answers like a site would (metrics only), logging (site, type, round, splits, tasks)."""

    def __init__(self, roster: SiteRoster) -> None:
        self.roster = roster
        self.log: list[tuple[str, str, int | None, str | None, str]] = []
        self.intervals: list[tuple[str | None, bool]] = []  # (splits, asked for intervals)

    def __call__(self, message: Message) -> Message:
        site = self.roster.by_node(message.metadata.dst_node_id).name
        config = message.content["config"]
        server_round = int(config["server-round"]) if "server-round" in config else None
        tasks = str(config["tasks"]).split(",")
        kind = message.metadata.message_type
        self.log.append((site, kind, server_round, config.get("splits"), ",".join(tasks)))
        if kind == MessageType.EVALUATE:
            self.intervals.append((config.get("splits"), bool(config.get(INTERVALS_KEY, False))))
        if kind == MessageType.TRAIN:
            metrics = MetricRecord({"num-examples": 10, "train-loss": 0.5, "steps": 1})
            return Message(RecordDict({"arrays": message.content["arrays"], "metrics": metrics}),
                           reply_to=message)
        validation = 0.9 if server_round == BEST_ROUND else 0.6
        metrics: dict[str, float] = {"num-examples": 10, "loss": 0.5, "validation.loss": (
            math.nan if site == "external-system" else 1.5 - validation)}
        for task in tasks:
            metrics.update({f"{task}.auroc": 0.7, f"{task}.auroc_low": 0.6,
                            f"{task}.auroc_high": 0.8, f"{task}.n": 50.0,
                            f"{task}.prevalence": 0.1, f"{task}.oracle_auroc": 0.8,
                            f"{task}.note_ceiling_auroc": 0.75,
                            f"validation.{task}.auroc": validation if site != "external-system"
                            else math.nan, f"validation.{task}.n": 20.0})
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)


@pytest.fixture(scope="module")
def experiment(answered):
    sites, transfer, run_dir = answered
    return sites.log, transfer, run_dir


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    set_task_identity()
    root = tmp_path_factory.mktemp("transfer")
    path = write_small_consortium(root, profiles=(("academic", "train"), ("community", "train"),
                                                  ("safety_net", "train"),
                                                  ("external_system", "external")))
    config = default_run_config(consortium=str(path), data_dir=str(root / "data"),
                                runs_dir=str(root / "runs"), run_name="t", experiment="transfer",
                                base_model=str(make_tiny_encoder(root / "base")),
                                tasks=",".join(TASKS), num_server_rounds=3)
    settings = ServerSettings.from_run_config(config)
    consortium = with_pooled_site(load_consortium(path, data_root=root / "data"),
                                  data_dir=root / "data")
    roster = SiteRoster(tuple(SiteEntry(10 + i, s.name, s.role)
                              for i, s in enumerate(consortium.sites)))
    sites = FakeSites(roster)
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True)
    run_transfer_experiment(FakeGrid(roster.node_ids, sites), settings=settings,
                            consortium=consortium, roster=roster, run_dir=run_dir)
    return sites, json.loads((run_dir / "transfer.json").read_text()), run_dir


def test_the_external_system_never_receives_a_training_message(experiment):
    log, _, _ = experiment
    trained = {site for site, kind, *_ in log if kind == MessageType.TRAIN}
    assert trained == {"academic", "community", "safety-net", POOLED_SITE}


def test_the_pooled_site_trains_as_many_steps_per_round_as_the_whole_federation(tmp_path):
    path = write_small_consortium(tmp_path, local_steps=7, profiles=(
        ("academic", "train"), ("community", "train"), ("external_system", "external")))
    consortium = with_pooled_site(load_consortium(path, data_root=tmp_path), data_dir=tmp_path)
    assert pooled_local_steps(consortium, 0) == 14  # 7 + 7: not the pooled site's own 14 again
    assert pooled_local_steps(consortium, 5) == 10


def test_the_pooled_site_trains_only_in_its_regime_and_is_never_a_test_column(experiment):
    log, transfer, _ = experiment
    pooled = [entry for entry in log if entry[0] == POOLED_SITE]
    assert {kind for _, kind, *_ in pooled} == {MessageType.TRAIN, MessageType.EVALUATE}
    assert all(splits == "validation" for _, kind, _, splits, _ in pooled
               if kind == MessageType.EVALUATE)
    assert len([e for e in pooled if e[1] == MessageType.TRAIN]) == 3  # its 3 rounds only
    assert all(POOLED_SITE not in cells for cells in transfer["cells"].values())


def test_test_splits_are_scored_once_per_regime_after_selection(experiment):
    log, transfer, _ = experiment
    tests = [(site, tasks) for site, kind, _, splits, tasks in log
             if kind == MessageType.EVALUATE and splits == "test"]
    evaluated = ["academic", "community", "safety-net", "external-system"]
    assert len(tests) == len(transfer["regimes"]) * len(evaluated)
    for regime in transfer["regimes"]:
        assert sorted(transfer["cells"][regime["name"]]) == sorted(evaluated)
        if regime["kind"] != "untrained":
            assert regime["selected_round"] == BEST_ROUND  # the lowest validation loss
            assert regime["validation_per_round"]["2"] == pytest.approx(0.6)
    rounds = [r for _, kind, r, splits, _ in log if splits == "validation"]
    assert rounds and all(r in (1, 2, 3) for r in rounds)


def test_only_the_test_splits_ask_for_bootstrap_intervals(answered):
    """The matrix shows each regime's test AUROC with its interval; the rounds' validation
    scoring, which only selects, skips the bootstrap."""
    sites, _, _ = answered
    assert {(splits, asked) for splits, asked in sites.intervals} == {("test", True),
                                                                      ("validation", False)}


def test_transfer_json_and_report_describe_every_regime(experiment):
    _, transfer, run_dir = experiment
    names = [r["name"] for r in transfer["regimes"]]
    assert names[:2] == ["untrained", "federated"] and "pooled" in names
    assert "single:los" in names and transfer["cells"]["single:los"]["academic"].keys() == {"los"}
    cell = transfer["cells"]["federated"]["external-system"]["mortality"]
    assert cell["auroc"] == pytest.approx(0.7) and cell["ci"] == pytest.approx([0.6, 0.8])
    assert cell["oracle_auroc"] == 0.8 and cell["note_ceiling_auroc"] == 0.75
    assert {s["name"] for s in transfer["sites"]} == {"academic", "community", "safety-net",
                                                     "external-system"}
    for name in ("report.md", "report.html"):
        assert (run_dir / name).is_file()


def test_a_site_that_fails_stops_the_experiment(tmp_path):
    set_task_identity()
    roster = SiteRoster((SiteEntry(1, "a", "train"), SiteEntry(2, "x", "external")))

    def fail(message: Message) -> Message:
        return Message(Error(code=0, reason="out of memory"), reply_to=message)

    with pytest.raises(TransferExperimentError, match="site 'a' failed to evaluate: out of memory"):
        evaluate_at(FakeGrid([1, 2], fail), roster, ("a", "x"), ArrayRecord(),
                    ConfigRecord({"splits": "test"}), timeout=1.0, label="federated/test")


def test_a_consortium_with_dp_sites_is_refused_before_anything_runs(tmp_path, capsys):
    from server.cli import main as lang1_fl

    path = write_small_consortium(tmp_path, privacy={"lifetime_epsilon": 8.0, "delta": 1e-5,
                                                     "max_grad_norm": 1.0})
    status = lang1_fl(["experiment", "transfer", str(path), "--data-dir", str(tmp_path / "data"),
                       "--runs-dir", str(tmp_path / "runs")])
    assert status == 2
    assert "train with DP" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def _transfer_argv(tmp_path, *extra):
    from tests.consortium_fixtures import write_table_consortium
    from tests.tiny_models import keyword_table

    consortium = write_table_consortium(
        tmp_path, {"a": ("train", keyword_table(20)), "b": ("train", keyword_table(20)),
                   "x": ("external", keyword_table(20))}, tasks=("mortality",))
    return ["experiment", "transfer", str(consortium), "--data-dir", str(tmp_path / "data"),
            "--runs-dir", str(tmp_path / "runs"), *extra]


@pytest.mark.parametrize(("regimes", "pooled"), [("local,federated", False), ("all", True),
                                                 ("pooled", True)])
def test_the_pooled_copy_of_the_notes_is_written_only_when_pooled_is_requested(
        tmp_path, monkeypatch, regimes, pooled):
    """Issue 34 #8: every training site's notes were copied into the data folder whatever the
    regimes."""
    import server.launch.flower_run as flower_run
    from server.cli import main as lang1_fl

    started = []
    monkeypatch.setattr(flower_run, "flwr_run", lambda **kwargs: started.append(kwargs) or 0)
    lang1_fl(_transfer_argv(tmp_path, "--regimes", regimes))
    assert started and started[0]["run_config"]["experiment-regimes"] == regimes
    assert (tmp_path / "data" / "tables-pooled" / "encounters.parquet").exists() == pooled


def test_a_taken_run_name_is_refused_before_the_pooled_copy_is_written(tmp_path, capsys,
                                                                      monkeypatch):
    import server.launch.flower_run as flower_run
    from server.cli import main as lang1_fl

    monkeypatch.setattr(flower_run, "flwr_run", lambda **kwargs: pytest.fail("Flower started"))
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    assert lang1_fl(_transfer_argv(tmp_path, "--run-name", "taken")) == 2
    assert "a run of that name exists" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
