"""What do LoRA on the top layers and keeping the frozen layers' output buy a site's round?

The default run adapts MiniLM's top 3 of 6 layers (`lora-layers = 3`): layers 0-2 carry nothing
trainable, so each site keeps their output per note (client/frozen_layers.py) and a step runs
only layers 3-5. This bench measures, side by side in one process on one thread (as a simulated
site runs), on one default-consortium site's real notes at the run's max-length:

- a training step of the run's batch, and scoring the site's validation and test splits, for
  LoRA on all layers (the previous default), LoRA on the top layers recomputing the frozen ones
  each time, and the same keeping them: the first time each note is seen (nothing kept yet) and
  once they are all kept;
- that keeping changes nothing: after the same training, the kept and the recomputed model's
  log-probabilities on the test split, largest difference.

    python bench/frozen_layers.py             # about 8 minutes on 2 cores
    python bench/frozen_layers.py --steps 5

What it prints is also kept in bench/results/frozen_layers.md (bench/results_file.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.one_site import one_site, timed  # noqa: E402
from bench.results_file import record_printed  # noqa: E402
from client.evaluate import log_probs  # noqa: E402
from client.model import build_model  # noqa: E402
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
    if not model_settings.lora.layers:
        raise SystemExit("the run config's `lora-layers` is 0 (all layers): nothing to compare")
    batch = site.training.batch_size
    train, tasks = splits["train"], model_settings.tasks
    scored = splits["validation"].size + splits["test"].size
    print(f"site {site.name}: {train.size} training encounters, {scored} scored (validation + "
          f"test); {model_settings.base}, {model_settings.max_length} tokens a note, batch "
          f"{batch}, {args.steps} steps a measurement, 1 thread")

    every = dataclasses.replace(model_settings,
                                lora=dataclasses.replace(model_settings.lora, layers=0))
    cpu = torch.device("cpu")
    models = {"all layers": build_model(every, device=cpu),
              "top, recomputed": build_model(model_settings, device=cpu),
              "top, kept": build_model(model_settings, device=cpu)}
    models["top, recomputed"].frozen = None
    frozen = models["top, kept"].frozen
    top = model_settings.lora.layers

    def step(model, seed: int) -> None:
        train_steps(model, train, steps=args.steps, batch_size=batch,
                    optimizer=settings.optimizer, seed=seed)

    def score(model) -> None:
        for name in ("validation", "test"):
            log_probs(model, splits[name], tasks, batch_size=site.evaluation.batch_size)

    rows = {}
    for name, model in models.items():
        first = timed(lambda m=model: step(m, 0)) / args.steps
        if model.frozen is not None:  # one pass over the split, untimed: every note kept
            train_steps(model, train, steps=-(-train.size // batch), batch_size=batch,
                        optimizer=settings.optimizer, seed=1)
        later = timed(lambda m=model: step(m, 2)) / args.steps
        score_first = timed(lambda m=model: score(m))
        score_later = timed(lambda m=model: score(m))
        rows[name] = (first, later, score_first, score_later)
    print(f"\n{'':18s} {'step, notes new':>16s} {'step, notes kept':>17s} "
          f"{'scoring, first':>15s} {'scoring, again':>15s}")
    for name, (first, later, score_first, score_later) in rows.items():
        print(f"{name:18s} {first:15.2f}s {later:16.2f}s {score_first:14.1f}s "
              f"{score_later:14.1f}s")
    base = rows["all layers"]
    kept = rows["top, kept"]
    print(f"\nLoRA on the top {top} layers with the rest kept ÷ LoRA on all layers: a step "
          f"{kept[0] / base[0]:.2f} while its notes are new, {kept[1] / base[1]:.2f} once kept; "
          f"scoring {kept[2] / base[2]:.2f} the first time, {kept[3] / base[3]:.2f} after")
    recomputed = rows["top, recomputed"]
    print(f"keeping ÷ recomputing the frozen layers (both LoRA on the top {top}): a step "
          f"{kept[1] / recomputed[1]:.2f}, scoring {kept[3] / recomputed[3]:.2f} once kept")
    print(f"kept: {frozen.stored_bytes / 2**20:.0f} MiB for the site's "
          f"{len(frozen._entries)} distinct notes ({frozen.hits} reads, {frozen.misses} computed)")

    # The same training on both top-layer models must give the same scores.
    same = {n: build_model(model_settings, device=cpu) for n in ("kept", "recomputed")}
    same["recomputed"].frozen = None
    scores = {}
    for name, model in same.items():
        step(model, 7)
        step(model, 8)
        scores[name] = log_probs(model, splits["test"], tasks, batch_size=64)
    worst = max(float(np.abs(scores["kept"][t] - scores["recomputed"][t]).max()) for t in tasks)
    print(f"after the same {2 * args.steps} steps, kept vs recomputed: largest difference of a "
          f"test log-probability {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("frozen_layers", __doc__.splitlines()[0], main))
