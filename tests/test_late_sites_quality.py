"""Issue 35's number: one of five sites offline at start and joining at round 2 — the run completes
and its round-2+ AUROC is within noise of a run where every site joined at once.

The real ServerApp (`server.app.main`: discovery with the start quorum, late admission between
rounds, report) drives the real ClientApp of each site in-process (tiny BERT, five keyword-table
sites: four hospitals train, the external system is evaluated), twice with the same seeds: once
with every node connected, once with `surgical`'s node connecting only after round 1's training
messages went out. In-process, not on loopback: two 4-round runs of five sites there would take
most of an hour on 2 cores, and what is compared here — the numbers — does not depend on the
transport (tests/test_late_sites_e2e.py runs a late and a hung site with real processes).

The noise band: half the mean width of the all-joined run's 95 % bootstrap CIs of test AUROC at
its reported round (the only round whose intervals the sites compute), i.e. the uncertainty of one
AUROC on these test splits, whatever the round.
The mean absolute difference between the two runs over those cells must be inside it; both are
printed (`pytest -s`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, MessageType, RecordDict

from client.app import app as client_app
from server.app import main as server_main
from tests.consortium_fixtures import write_table_consortium
from tests.flower_fakes import FakeGrid, set_task_identity
from tests.run_config import default_run_config
from tests.tiny_models import keyword_table, make_tiny_encoder, with_validation

pytestmark = pytest.mark.slow

SITES = {"academic": "train", "community": "train", "safety-net": "train", "surgical": "train",
         "external-system": "external"}
LATE = 3  # surgical's partition
FIRST_NODE = 100
ROUNDS = 4


class ClientAppGrid(FakeGrid):
    """Node FIRST_NODE + i is partition i, answered by the ClientApp with that node's Context;
    with `late`, that partition's node connects once round 1's training messages have gone
    out."""

    def __init__(self, run_config: dict, late: int | None) -> None:
        self.contexts = {FIRST_NODE + i: Context(
            run_id=1, node_id=FIRST_NODE + i, state=RecordDict(), run_config=run_config,
            node_config={"partition-id": i, "num-partitions": len(SITES)})
            for i in range(len(SITES))}
        self.hidden = None if late is None else FIRST_NODE + late
        super().__init__(self.contexts, lambda m: client_app(m, self.contexts[
            m.metadata.dst_node_id]))

    def get_node_ids(self) -> list[int]:
        return [n for n in self.nodes if n != self.hidden]

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        if any(m.metadata.message_type == MessageType.TRAIN for m in messages):
            self.hidden = None  # connects during round 1
        return replies


def _run(root: Path, base: Path, consortium: Path, name: str, late: int | None) -> dict:
    set_task_identity()
    run_config = default_run_config(
        consortium=str(consortium), data_dir=str(root / "data"), runs_dir=str(root / "runs"),
        run_name=name, base_model=str(base), tasks="mortality", max_length=48,
        learning_rate=0.01, head_learning_rate=0.1, num_server_rounds=ROUNDS,
        bootstrap_resamples=200, start_wait=0.5, round_timeout=60.0)
    server_main(ClientAppGrid(run_config, late),
                Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                        run_config=run_config))
    return json.loads((root / "runs" / name / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Keyword tables (tests/tiny_models.py: mortality = a keyword in the note), learnable by the
    tiny model in a few rounds, so that "within noise" is not the agreement of two runs that
    learned nothing."""
    root = tmp_path_factory.mktemp("late-quality")
    tables = {name: (role, with_validation(keyword_table(160, seed=i)) if role == "train"
                     else keyword_table(120, seed=i))
              for i, (name, role) in enumerate(SITES.items(), start=1)}
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=4)
    base = make_tiny_encoder(root / "tiny-bert")
    return (_run(root, base, consortium, "all-joined", None),
            _run(root, base, consortium, "late-surgical", LATE))


def _cells(metrics: dict) -> dict[tuple[int, str], float | None]:
    """(round, site) -> test mortality AUROC, rounds 2 and later (None where a site's test split
    holds one class only)."""
    return {(e["round"], site): v["tasks"]["mortality"]["auroc"]
            for e in metrics["rounds"] if e["round"] >= 2
            for site, v in e["evaluation"].items()}


def _noise_band(metrics: dict) -> float:
    """Mean 95 % CI half-width of test mortality AUROC over the sites at the reported round."""
    reported = metrics["selection"]["round"]
    (entry,) = [e for e in metrics["rounds"] if e["round"] == reported]
    halves = [(hi - lo) / 2 for v in entry["evaluation"].values()
              for lo, hi in [v["tasks"]["mortality"]["ci"]] if lo is not None and hi is not None]
    assert len(halves) >= 3, entry["evaluation"]  # most sites have both classes in test
    return sum(halves) / len(halves)


def test_the_late_run_completes_and_surgical_trains_from_round_2(runs):
    _, late = runs
    assert late["run"]["outcome"] == "completed"
    surgical = [(e["round"], e["participation"]["surgical"]["train"]) for e in late["rounds"]]
    assert surgical == [(0, None), (1, "not joined"), (2, "trained"), (3, "trained"),
                        (4, "trained")]


def test_round_2_and_later_auroc_is_within_noise_of_all_joined(runs):
    everyone, late = _cells(runs[0]), _cells(runs[1])
    assert everyone.keys() == late.keys() and len(everyone) == 5 * (ROUNDS - 1)
    defined = {c for c in everyone if everyone[c] is not None and late[c] is not None}
    assert len(defined) >= 3 * (ROUNDS - 1), everyone  # most sites have both classes in test
    everyone = {c: everyone[c] for c in defined}
    late = {c: late[c] for c in defined}
    difference = sum(abs(everyone[c] - late[c]) for c in everyone) / len(everyone)
    band = _noise_band(runs[0])
    mean_all = sum(everyone.values()) / len(everyone)
    mean_late = sum(late.values()) / len(late)
    final = [v for (r, _), v in everyone.items() if r == ROUNDS]
    assert sum(final) / len(final) > 0.8, everyone  # the runs learned: the comparison means something
    print(f"\nround 2+ test AUROC (mortality, 5 sites x {ROUNDS - 1} rounds): all joined "
          f"{mean_all:.3f}, surgical late {mean_late:.3f}; mean |difference| {difference:.3f}, "
          f"noise band (mean 95 % CI half-width at the reported round) {band:.3f}")
    for r in range(2, ROUNDS + 1):
        a = [v for (k, _), v in everyone.items() if k == r]
        b = [v for (k, _), v in late.items() if k == r]
        print(f"round {r}: all joined {sum(a) / len(a):.3f}, surgical late {sum(b) / len(b):.3f}")
    assert difference <= band
