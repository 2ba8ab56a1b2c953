"""What does bf16 buy a CPU site whose cores compute it natively, and what does it change?

A site with `precision: auto` (the default) on a CPU with AVX512-BF16 or AMX loads its base in
bf16 and trains and scores under bf16 autocast (client/precision.py). This bench measures, side
by side in one process on one thread (as a simulated site runs), on one default-consortium
site's real notes with the run's settings (MiniLM, its top layers adapted, the rest kept):

- a training step of the run's batch and scoring the site's validation and test splits, fp32
  and bf16, once every note's frozen layers are kept;
- what bf16 changes in the result: the same local training from the same adapter in both, then
  each task's test AUROC, and the largest difference of a test log-probability.

    python bench/cpu_bf16.py              # about 6 minutes on 2 cores
    python bench/cpu_bf16.py --steps 5

On a CPU without native bf16 it says so and measures anyway (emulated bf16 is slower than fp32,
which is why such a CPU stays fp32). What it prints is also kept in bench/results/cpu_bf16.md
(bench/results_file.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.one_site import one_site, timed  # noqa: E402
from bench.results_file import record_printed  # noqa: E402
from client.evaluate import auroc, log_probs  # noqa: E402
from client.model import build_model  # noqa: E402
from client.precision import cpu_computes_bf16  # noqa: E402
from client.train import train_steps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per measurement")
    parser.add_argument("--site", default="academic", help="default-consortium site to read")
    args = parser.parse_args(argv)
    chosen = one_site(args.site)
    settings, site, splits = chosen.settings, chosen.site, chosen.splits
    model_settings = settings.model
    batch = site.training.batch_size
    train, tasks = splits["train"], model_settings.tasks
    scored = splits["validation"].size + splits["test"].size
    print(f"site {site.name}: {train.size} training encounters, {scored} scored (validation + "
          f"test); {model_settings.base}, {model_settings.max_length} tokens a note, LoRA on the "
          f"top {model_settings.lora.layers or 'all'} layers, batch {batch}, {args.steps} steps "
          f"a measurement, 1 thread")
    print(f"this CPU computes bf16 natively (AVX512-BF16): {cpu_computes_bf16()}"
          + ("" if cpu_computes_bf16() else " (a site here stays fp32; bf16 below is emulated)"))

    cpu = torch.device("cpu")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}

    def step(model, seed: int, steps: int = args.steps) -> None:
        train_steps(model, train, steps=steps, batch_size=batch, optimizer=settings.optimizer,
                    seed=seed)

    def score(model) -> dict[str, dict[str, np.ndarray]]:
        return {name: log_probs(model, splits[name], tasks, batch_size=site.evaluation.batch_size)
                for name in ("validation", "test")}

    rows, test_scores = {}, {}
    for name, dtype in dtypes.items():
        model = build_model(model_settings, device=cpu, base_dtype=dtype)  # one seed: one adapter
        step(model, 7, steps=2 * args.steps)
        test_scores[name] = score(model)["test"]
        step(model, 1, steps=-(-train.size // batch))  # untimed: every training note kept
        rows[name] = (timed(lambda m=model: step(m, 2)) / args.steps,
                      timed(lambda m=model: score(m)))

    print(f"\n{'':6s} {'step':>8s} {'scoring':>9s}")
    for name, (step_time, score_time) in rows.items():
        print(f"{name:6s} {step_time:7.2f}s {score_time:8.1f}s")
    fp32, bf16 = rows["fp32"], rows["bf16"]
    print(f"\nbf16 ÷ fp32: a step {bf16[0] / fp32[0]:.2f}, scoring {bf16[1] / fp32[1]:.2f}")

    labels = splits["test"].labels
    print(f"\nafter the same {2 * args.steps} steps from the same adapter, test AUROC:")
    print(f"{'task':12s} {'fp32':>6s} {'bf16':>6s} {'diff':>7s}")
    diffs = []
    for task in tasks:
        y = labels[task].numpy().astype(np.int64)
        a, b = (auroc(y, np.exp(test_scores[n][task])) for n in ("fp32", "bf16"))
        diffs.append(b - a)
        print(f"{task:12s} {a:6.3f} {b:6.3f} {b - a:+7.3f}")
    print(f"{'macro':12s} {'':6s} {'':6s} {np.mean(diffs):+7.3f}")
    worst = max(float(np.abs(test_scores["fp32"][t] - test_scores["bf16"][t]).max())
                for t in tasks)
    print(f"largest difference of a test log-probability, bf16 vs fp32: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("cpu_bf16", __doc__.splitlines()[0], main))
