"""What does one ClientApp message cost in a fresh process, before the work itself?

On the Deployment Engine (flwr 1.42) a SuperNode starts a new `flwr-clientapp` process for every
message (flwr/supernode/runtime/run_clientapp.py pulls one message, runs it and exits), so each
train and evaluate message pays the start-up that simulation pays once per run. This bench runs
each message kind the way that process does — a new Python process that imports Flower and
`client.app`, then calls the app on one message — for the default consortium's `academic` site
(the real MiniLM base, its 1,500 synthetic encounters, on the CPU) and prints where the time goes:

- interpreter start (`python -c pass`), `import flwr`, `import client.app`;
- building the model (transformers, peft and the base's weights), reading and validating the
  table, tokenizing it (or reading the site's token cache, client/token_cache.py);
- the work itself (`--steps` local steps for train; the site's evaluation) and the rest.

Each kind runs twice with one state folder: first with no token cache, then with the cache the
first run left — the second is what every later message of a run pays.

    python bench/clientapp_cold_start.py             # 2 train steps per train message
    python bench/clientapp_cold_start.py --steps 0   # the site's own local steps

Writes bench/results/clientapp_cold_start.md (bench/results_file.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_file import record_printed  # noqa: E402

SITE = "academic"
KINDS = ("identify", "train", "evaluate")
TIMED = {"client.site.site_memory_plan": "memory plan",
         "client.site.build_model": "build model (base weights, LoRA)",
         "client.site.read_site_table": "read + validate table",
         "client.site.load_tokenizer": "load tokenizer",
         "client.site.cached_encode_site": "tokenize (or read token cache)"}
MODEL_IMPORTS = "import transformers + peft"


# ---------------------------------------------------------------------------------------------
# The cold process: what flwr-clientapp does for one message, timed


def child(kind: str, work: Path, steps: int, run_name: str) -> None:
    started = time.perf_counter()
    marks: dict[str, float] = {}
    import flwr.app  # noqa: F401
    import flwr.clientapp  # noqa: F401

    marks["import flwr"] = time.perf_counter() - started
    import client.app

    marks["import client.app"] = time.perf_counter() - started - sum(marks.values())
    if kind != "identify":  # what building a model imports first (client/model.py, peft)
        begun = time.perf_counter()
        import peft  # noqa: F401
        import transformers.modeling_utils  # noqa: F401

        marks[MODEL_IMPORTS] = time.perf_counter() - begun
    spent = _time_calls(marks)
    message, context = _message(kind, work, steps, run_name)
    called = time.perf_counter()
    reply = client.app.app(message, context)
    if reply.has_error():
        raise RuntimeError(f"{kind}: {reply.error}")
    handler = time.perf_counter() - called
    marks.update({TIMED[name]: spent.get(name, 0.0) for name in TIMED})
    marks["the work and the rest"] = handler - sum(spent.values())
    print(json.dumps(marks))


def _time_calls(marks: dict[str, float]) -> dict[str, float]:
    """Wrap the functions of client/site.py in TIMED so that their seconds are recorded."""
    import client.site

    spent: dict[str, float] = {}
    for name in TIMED:
        attribute = name.rsplit(".", 1)[1]
        original = getattr(client.site, attribute)

        def timed(*args, _original=original, _name=name, **kwargs):
            begun = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - begun

        setattr(client.site, attribute, timed)
    return spent


def _message(kind: str, work: Path, steps: int, run_name: str):
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

    from tests.flower_fakes import message_to, set_task_identity
    from tests.run_config import default_run_config

    set_task_identity()
    context = Context(run_id=1, node_id=7, node_config={"site-config": str(work / "site.yaml")},
                      state=RecordDict(),
                      run_config=default_run_config(local_steps=steps, bootstrap_resamples=100))
    # a run of its own per process: a round answered before would be replayed, not trained
    config = ConfigRecord({"server-round": 1, "run-name": run_name})
    if kind == "identify":
        return message_to(7, RecordDict({"config": config}), MessageType.QUERY), context
    arrays = ArrayRecord({k: Array(v) for k, v in np.load(work / "initial.npz").items()})
    kinds = {"train": MessageType.TRAIN, "evaluate": MessageType.EVALUATE}
    return message_to(7, RecordDict({"arrays": arrays, "config": config}), kinds[kind]), context


# ---------------------------------------------------------------------------------------------
# The parent: a site, the initial adapter, each kind twice


def prepare(work: Path) -> None:
    """The academic site's YAML and table (state folder in `work`) and the initial adapter."""
    import numpy as np
    import torch
    import yaml

    from client.model import build_model, trainable_state
    from client.settings import ClientSettings
    from server.cli import main as lang1_fl
    from sites.config import DEFAULT_CONSORTIUM
    from tests.run_config import default_run_config

    site = yaml.safe_load((DEFAULT_CONSORTIUM.parent / "default" / f"{SITE}.yaml").read_text())
    site.update(device="cpu", state_dir=str(work / "state"))
    site["data"]["path"] = str(work / "data" / site["data"]["path"])
    consortium = {"name": "cold-start", "seed": 2026, "sites": [site]}
    (work / "consortium.yaml").write_text(yaml.safe_dump(consortium, sort_keys=False))
    (work / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    if lang1_fl(["sites", "generate", str(work / "consortium.yaml")]) != 0:
        raise RuntimeError("generating the site's table failed")
    model = build_model(ClientSettings.from_run_config(default_run_config()).model,
                        device=torch.device("cpu"))
    np.savez(work / "initial.npz", **trainable_state(model))


def run_child(kind: str, work: Path, steps: int, run_name: str) -> dict[str, float]:
    begun = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--work-dir", str(work),
                           "--steps", str(steps), "--run-name", run_name], cwd=ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))  # as loopback.py's nodes
    total = time.perf_counter() - begun
    if done.returncode != 0:
        raise RuntimeError(f"{kind}: the cold process failed:\n{done.stderr[-3000:]}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    marks["process total"] = total
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2,
                        help="local steps per train message; 0 = the site's own (35)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work_dir, args.steps, args.run_name)
        return 0
    with tempfile.TemporaryDirectory(prefix="cold-start-") as folder:
        work = Path(folder)
        prepare(work)
        begun = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        interpreter = time.perf_counter() - begun
        runs = {(kind, cache): run_child(kind, work, args.steps, f"{kind}-{n}")
                for kind in KINDS for n, cache in enumerate(("no token cache", "token cache"))}
    print(f"site {SITE} (1,500 encounters, MiniLM, CPU), {args.steps or 'its own'} train "
          f"steps; seconds, one fresh process per message\n")
    columns = list(runs)
    print(f"{'':44s}" + "".join(f"{k[:8] + (' (2nd)' if c == 'token cache' else ''):>15s}"
                                  for k, c in columns))
    rows = ["python start", "import flwr", "import client.app", MODEL_IMPORTS, *TIMED.values(),
            "the work and the rest", "process total"]
    for row in rows:
        values = [interpreter if row == "python start" else runs[c].get(row, 0.0)
                  for c in columns]
        print(f"{row:44s}" + "".join(f"{v:15.2f}" for v in values))
    print("\n(2nd): the same message again, with the token cache the first one wrote. 'process "
          "total' is the\nwhole child process from the parent, the message built in it included.")
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(main())
    sys.exit(record_printed("clientapp_cold_start", __doc__.splitlines()[0], main))
