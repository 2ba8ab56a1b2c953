"""At one ε and about the same compute, do fewer and larger DP-SGD batches keep more?

At a fixed ε, δ and number of example gradients, a larger batch raises the sampling rate q and
so the noise multiplier σ, but less than it raises the batch: the noise on a step's averaged
gradient, σC ÷ batch, falls (ε = 8 over a hospital's ~10,500 training encounters: batch 640 × 27
steps needs σ = 0.66, noise 1.0e-3 per coordinate; 1,920 × 9 needs σ = 0.79, noise 4.1e-4). The
price is fewer steps. This trains one hospital of the `private` consortium alone, without the
federation, for each shape `BxT` (batch × steps) without DP and with DP-SGD at `--epsilon`, from
the same initial model, and scores each model on the external system (all its encounters) and on
the hospital's own test split. Arm `clip` is DP-SGD without its noise (Poisson batches, every
encounter's gradient clipped to C, σ = 0). It trains at the DP rates, which were tuned with the
noise in AdamW's second moment and overshoot without it; `--set dp-learning-rate=...` at the
non-DP rate gives clipping alone, between which and `non-dp` lies what clipping costs. Prints
macro AUROC (mean of the five tasks) and each arm ÷ non-DP per shape, measured side by side in one
run. Rates and model are the app's run config (pyproject.toml), overridable with `--set` as for
`lang1-fl run`. DP's noise is drawn from OS entropy, as at a real site, so a DP number moves from
run to run; repeat a shape before trusting a small difference. An arm of ~17,000 example
gradients takes about 25 minutes on 2 cores, scoring included, and under a minute on one H100
(`--device cuda`; non-DP under bf16 autocast there, DP-SGD in fp32).

    python bench/dp_shapes.py --shapes 640x27 1920x9
    python bench/dp_shapes.py --shapes 640x27 --arms clip --set dp-learning-rate=0.003
    python bench/dp_shapes.py --shapes 1920x9 --arms dp --set dp-learning-rate=0.02
    python bench/dp_shapes.py --device cuda --shapes 640x27 640x54 1280x27 --arms non-dp dp dp

What it prints is also kept, with the date, machine and command, in bench/results/dp_shapes.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402
from client.run_config import run_config_overrides  # noqa: E402

ARMS = ("non-dp", "dp", "clip")
"""`clip` spends no privacy; it isolates what clipping alone costs."""


def _shape(text: str) -> tuple[int, int]:
    batch, sep, steps = text.partition("x")
    if not (sep and batch.isdigit() and steps.isdigit() and int(batch) > 0 and int(steps) > 0):
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected BATCHxSTEPS, e.g. 1920x9")
    return int(batch), int(steps)


def _rates(optimizer) -> str:
    return f"{optimizer.name} {optimizer.learning_rate:g}/{optimizer.head_learning_rate:g}"


def _macro(metrics: dict[str, float], tasks: tuple[str, ...]) -> float:
    return statistics.fmean(metrics[f"{task}.auroc"] for task in tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=_shape, nargs="+", required=True, metavar="BxT")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["non-dp", "dp"],
                        help="`clip`: DP-SGD's sampling and clipping without its noise (σ = 0)")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--site", default="academic", help="the training hospital")
    parser.add_argument("--consortium", default="private")
    parser.add_argument("--data-dir", type=Path, default=Path("lang1-fl-data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu",
                        help="where to train and score: cpu, cuda, cuda:N or auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a run-config override, as for `lang1-fl run`")
    args = parser.parse_args()

    import torch

    from client.data import encode_site
    from client.evaluate import evaluate_split
    from client.model import build_model, load_tokenizer, select_device
    from client.privacy.accounting import noise_multiplier_for
    from client.privacy.dp_sgd import train_steps_private
    from client.run_config import default_run_config
    from client.settings import ClientSettings
    from client.site import ensure_site_data
    from client.train import train_steps
    from sites.config import load_consortium
    from sites.dataset import read_site_table

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    data_dir = args.data_dir.resolve()
    settings = ClientSettings.from_run_config({
        **default_run_config(), **run_config_overrides(args.set),
        "consortium": args.consortium, "data-dir": str(data_dir)})
    consortium = load_consortium(settings.consortium, data_root=data_dir)
    site, external = consortium.site(args.site), consortium.external_sites[0]
    if site.privacy is None:
        raise SystemExit(f"{settings.consortium}: site {site.name!r} has no privacy block to "
                         "take δ, clipping norm and accountant from")
    for each in (site, external):
        ensure_site_data(each, seed=consortium.seed)
    tokenizer, tasks = load_tokenizer(settings.model), settings.model.tasks
    length = settings.model.max_length
    splits = encode_site(read_site_table(site), tokenizer, tasks, max_length=length)
    held_out = read_site_table(external).assign(split="test")  # all of it, as a run scores it
    scored = {"external": encode_site(held_out, tokenizer, tasks, max_length=length)["test"],
              "own test": splits["test"]}
    train, piece = splits["train"], site.training.max_physical_batch_size
    privacy = site.privacy
    print(f"on {device}; {site.name} alone: {train.size} training encounters; external "
          f"{external.name}: {scored['external'].size}; own test split: "
          f"{scored['own test'].size}; ε = {args.epsilon:g}, δ = {privacy.delta:g}, "
          f"C = {privacy.max_grad_norm:g}, {privacy.accountant}; LoRA/head rates "
          f"{_rates(settings.optimizer)} without DP, {_rates(settings.dp_optimizer)} with DP")

    rows = []
    for batch, steps in args.shapes:
        q = batch / train.size
        sigma = noise_multiplier_for(target_epsilon=args.epsilon, delta=privacy.delta,
                                     sample_rate=q, steps=steps, accountant=privacy.accountant)
        result = {}
        for arm in args.arms:
            model = build_model(settings.model, device=device)
            started = time.perf_counter()
            if arm in ("dp", "clip"):
                train_steps_private(model, train, steps=steps, sample_rate=q,
                                    noise_multiplier=sigma if arm == "dp" else 0.0,
                                    max_grad_norm=privacy.max_grad_norm,
                                    optimizer=settings.dp_optimizer, seed=settings.seed,
                                    max_physical_batch_size=piece,
                                    adapter_clip_share=settings.dp_adapter_clip_share)
            else:
                train_steps(model, train, steps=steps, batch_size=batch,
                            optimizer=settings.optimizer, seed=settings.seed,
                            max_physical_batch_size=piece)
            seconds = time.perf_counter() - started
            result[arm] = {name: _macro(evaluate_split(model, data, tasks, batch_size=64,
                                                       seed=settings.seed, n_resamples=1), tasks)
                           for name, data in scored.items()}
            print(f"{batch}x{steps} {arm}: {seconds:.0f} s training, " + ", ".join(
                f"{name} {value:.3f}" for name, value in result[arm].items()), flush=True)
        rows.append((batch, steps, sigma, result))

    print(f"\nmacro AUROC (mean of five tasks), {site.name} alone, ε = {args.epsilon:g}; noise = "
          "σC ÷ batch per coordinate of a step's averaged gradient")
    print(f"{'shape':>9} {'σ':>6} {'noise':>8} {'arm':>7} {'external':>9} {'÷ non-DP':>9} "
          f"{'own test':>9} {'÷ non-DP':>9}")
    for batch, steps, sigma, result in rows:
        base = result.get("non-dp")
        for arm, values in result.items():
            ratios = [f"{values[k] / base[k]:>9.3f}" if base else f"{'–':>9}"
                      for k in ("external", "own test")]
            used = {"dp": sigma, "clip": 0.0}.get(arm)  # non-DP: no σ at all
            sigma_text = "–" if used is None else f"{used:.3f}"
            noise = "–" if used is None else f"{used * privacy.max_grad_norm / batch:.1e}"
            print(f"{f'{batch}x{steps}':>9} {sigma_text:>6} {noise:>8} {arm:>7} "
                  f"{values['external']:>9.3f} {ratios[0]} {values['own test']:>9.3f} {ratios[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("dp_shapes", __doc__.splitlines()[0], main))
