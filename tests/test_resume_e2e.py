"""Kill the server mid-run, resume it, and get what an uninterrupted run gets.

Flower's simulation runs in a subprocess tree; the test kills that whole tree with SIGKILL as soon
as the run has checkpointed round 1 (wherever round 2 then is: training, replying, evaluating),
then `lang1-fl run --resume` finishes it. Without DP the final adapter must equal an uninterrupted
run's bit for bit (CPU, fixed seeds). With DP the noise is fresh randomness, so what must hold is
the privacy spend: every site's ledger has one entry per round, ends at the planned ε, and
verifies. A few minutes in all, hence `slow`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.privacy.ledger import read_ledger
from client.privacy.verify import verify_ledger
from server.cli import main as lang1_fl
from server.launch.flower_run import APP_DIR, stop_local_superlink
from sites.config import load_consortium
from tests.consortium_fixtures import write_small_consortium
from tests.site_ledgers import site_ledger
from tests.tiny_models import make_tiny_encoder

pytestmark = pytest.mark.slow

ROUNDS = 3
PRIVACY = {"lifetime_epsilon": 8.0, "delta": 1e-3, "max_grad_norm": 1.0}


def _args(root: Path, consortium: Path, base: Path, name: str) -> list[str]:
    return ["run", "--consortium", str(consortium), "--rounds", str(ROUNDS),
            "--data-dir", str(root / "data"), "--runs-dir", str(root / "runs"),
            "--run-name", name, "--set", f"base-model={base}", "--set", "tasks=mortality,los",
            "--set", "max-length=48", "--set", "bootstrap-resamples=20"]


def _run_and_kill_after_round(root: Path, args: list[str], run_dir: Path, after: int) -> None:
    """Start `lang1-fl run` in its own session; SIGKILL the whole session once round `after` is
    checkpointed; stop the SuperLink it started."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    process = subprocess.Popen([sys.executable, "-m", "server.cli", *args], cwd=APP_DIR, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = run_dir / "checkpoints" / "state.json"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if state.exists() and json.loads(state.read_text())["round"] >= after:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
        assert state.exists(), "no checkpoint within 10 minutes"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        stop_local_superlink(root / "runs" / ".flwr")
    assert not (run_dir / "metrics.json").exists()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    consortium = write_small_consortium(root, encounters=240, local_steps=4)
    base = make_tiny_encoder(root / "base")
    assert lang1_fl(_args(root, consortium, base, "whole")) == 0
    _run_and_kill_after_round(root, _args(root, consortium, base, "killed"),
                              root / "runs" / "killed", after=1)
    assert lang1_fl(["run", "--resume", str(root / "runs" / "killed")]) == 0
    return root / "runs"


def _tensors(path: Path) -> tuple[dict[str, bytes], dict[str, str] | None]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return ({k: handle.get_tensor(k).tobytes() for k in handle.keys()}, handle.metadata())


def test_a_resumed_run_ends_with_the_uninterrupted_run_s_adapter_bit_for_bit(plain):
    # Tensors and metadata compared, not file bytes: safetensors writes the metadata's keys
    # in no fixed order.
    for name in ("adapter_model.safetensors", "heads.safetensors"):
        whole = _tensors(plain / "whole" / "adapter" / name)
        assert _tensors(plain / "killed" / "adapter" / name) == whole, name


def test_a_resumed_run_reports_every_round_once(plain):
    whole = json.loads((plain / "whole" / "metrics.json").read_text())
    resumed = json.loads((plain / "killed" / "metrics.json").read_text())
    assert [r["round"] for r in resumed["rounds"]] == list(range(ROUNDS + 1))
    assert resumed["selection"] == whole["selection"]
    for before, after in zip(whole["rounds"], resumed["rounds"]):
        assert after["evaluation"] == before["evaluation"]


def test_resuming_a_finished_run_is_refused(plain, capsys):
    assert lang1_fl(["run", "--resume", str(plain / "whole")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-dp")
    consortium = write_small_consortium(root, encounters=240, local_steps=4, privacy=PRIVACY)
    base = make_tiny_encoder(root / "base")
    run_dir = root / "runs" / "dp"
    _run_and_kill_after_round(root, _args(root, consortium, base, "dp"), run_dir, after=1)
    assert lang1_fl(["run", "--resume", str(run_dir)]) == 0
    return load_consortium(consortium, data_root=root / "data"), run_dir


def test_a_resumed_dp_run_spends_each_round_once_and_lands_on_its_budget(private):
    consortium, run_dir = private
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for site in consortium.training_sites:
        summary = metrics["privacy"]["sites"][site.name]
        ledger, public_key = site_ledger(site)
        entries = read_ledger(ledger)
        assert [e["round"] for e in entries] == list(range(1, ROUNDS + 1)), site.name
        assert entries[-1]["epsilon"] == pytest.approx(summary["epsilon"])
        assert summary["epsilon"] == pytest.approx(PRIVACY["lifetime_epsilon"], rel=0.01)
        assert summary["source"] == "ledger"
        assert verify_ledger(ledger, public_key=public_key,
                             head_sha256=summary["ledger_head"]).ok
