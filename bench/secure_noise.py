"""What does cryptographically secure DP noise cost per DP-SGD step, next to torch's generator?

A site's DP-SGD now draws its Gaussian noise and Poisson batches from a ChaCha20 CSPRNG
(client/privacy/noise.py `CsprngNoise`: 53-bit uniforms, Box–Muller in float64, opacus's secure
sum of four draws, drawn on the CPU and moved to the parameters' device) instead of torch's
Mersenne Twister (`TorchNoise`, os-seeded). This times `train_steps_private` with each source on
the same model, data and settings (one synthetic hospital of the default consortium, five joint
tasks, LoRA r=8, batch 16 by Poisson sampling, σ = 1, C = 1, `hooks`), the arms interleaved over
repeats so that drift on a shared machine hits them alike, for the tiny test models and the
default base all-MiniLM-L6-v2. It also times the noise draw alone for all trainable tensors, the
part that differs, and one arm of patient-level DP (CSPRNG, q = batch ÷ training encounters per
patient, so 16 encounters per step on average). Prints each arm ÷ torch and writes
bench/results/secure_noise.md.

    python bench/secure_noise.py                       # ~3 minutes on 2 busy cores
    python bench/secure_noise.py --models minilm --repeats 9 --minilm-steps 2
    python bench/secure_noise.py --device cuda          # noise still drawn on the CPU, then moved
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    machine_line,
    results_header,
    write_results,
)

MODELS = ("tiny-encoder", "tiny-llama", "minilm")
ARMS = ("torch", "csprng", "csprng, patient")
"""`torch`: TorchNoise() (os-seeded Mersenne Twister), the baseline; `csprng`: a site's default;
`csprng, patient`: the same source with the patient as privacy unit."""
RESULTS = RESULTS_DIR / "secure_noise.md"


def _base(name: str, folder: Path) -> str:
    from client.base_model import MINILM
    from tests.tiny_models import make_tiny_encoder, make_tiny_llama

    if name == "minilm":
        return MINILM
    make = make_tiny_encoder if name == "tiny-encoder" else make_tiny_llama
    return str(make(folder / name))


def _source(arm: str, batches_seed: int | None = None):
    """The arm's source; with `batches_seed`, one whose Poisson batches are the same in every arm
    (the arm's own uniforms are still drawn, so their cost counts, but a seeded torch generator
    picks the batch): batch sizes then cannot favour an arm, only the noise differs."""
    from client.privacy.noise import CsprngNoise, NoiseSource, TorchNoise

    source = TorchNoise() if arm == "torch" else CsprngNoise()
    if batches_seed is None:
        return source

    class SameBatches(NoiseSource):
        name, secure = source.name, source.secure
        batches = TorchNoise(seed=batches_seed)

        def gaussian(self, std, reference):
            return source.gaussian(std, reference)

        def gaussians(self, std, references):
            return source.gaussians(std, references)

        def uniform(self, n):
            source.uniform(n)
            return self.batches.uniform(n)

    return SameBatches()


def _draw_ms(model, repeats: int = 20) -> dict[str, float]:
    """Median milliseconds to draw σC noise for every trainable tensor once, per source."""
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    out = {}
    for arm in ARMS[:2]:
        source, times = _source(arm), []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            source.gaussians(1.0, params)  # as SourcedNoise.add_noise asks
            times.append(time.perf_counter() - started)
        out[arm] = 1000 * statistics.median(times[1:])  # the first warms up
    return out


def measure(name: str, folder: Path, train_table, *, steps: int, repeats: int, batch: int,
            max_length: int, device) -> dict:
    from dataclasses import replace

    from client.data import encode_site
    from client.model import build_model, load_tokenizer
    from client.privacy.dp_sgd import train_steps_private
    from client.run_config import default_run_config
    from client.settings import ClientSettings
    from sites.tasks import TASK_NAMES

    defaults = ClientSettings.from_run_config(default_run_config())
    settings = replace(defaults.model, base=_base(name, folder), max_length=max_length, seed=0,
                       scoring="head")
    train = encode_site(train_table, load_tokenizer(settings), TASK_NAMES,
                        max_length=max_length)["train"]
    model = build_model(settings, device=device)
    optimizer = defaults.optimizer

    def run(arm: str, n: int, repeat: int):
        return train_steps_private(
            model, train, steps=n, sample_rate=batch / train.size, noise_multiplier=1.0,
            max_grad_norm=1.0, optimizer=optimizer, seed=0, noise=_source(arm, repeat),
            privacy_unit="patient" if arm.endswith("patient") else "encounter")

    per_step = {arm: [] for arm in ARMS}
    per_example = {arm: [] for arm in ARMS}
    for arm in ARMS:
        run(arm, 1, -1)  # warm-up: allocator, first hooks
    for repeat in range(repeats):
        for arm in ARMS[repeat % 3:] + ARMS[:repeat % 3]:  # each arm first in turn
            started = time.perf_counter()
            result = run(arm, steps, repeat)
            elapsed = time.perf_counter() - started
            per_step[arm].append(elapsed / steps)
            per_example[arm].append(elapsed / max(1, result.examples))
    return {"model": name, "trainable": sum(p.numel() for p in model.parameters()
                                            if p.requires_grad),
            "encounters": train.size, "patients": train.patient_count,
            "step": {arm: statistics.median(v) for arm, v in per_step.items()},
            "example": {arm: statistics.median(v) for arm, v in per_example.items()},
            # per encounter, each repeat's arm ÷ that repeat's torch arm (close in time; for the
            # encounter unit the same batches, so also the step-time ratio)
            "paired": {arm: sorted(a / b for a, b in zip(v, per_example["torch"]))
                       for arm, v in per_example.items()},
            "draw_ms": _draw_ms(model)}


def report(rows: list[dict], args: argparse.Namespace, command: str, load: list[float]) -> str:

    machine = (f"{machine_line(threads=args.threads, device=args.device)}; 1-minute load "
               f"average {load[0]:.2f} at the start, {load[1]:.2f} at the end (other work shares "
               "the machine)")
    lines = results_header(
        "Secure DP noise: CSPRNG ÷ torch generator, DP-SGD step time", command=command,
        machine=machine, details=[
        f"setup: one synthetic hospital (default consortium, site `{args.site}`), five joint "
        f"tasks, LoRA r=8, Poisson batches of {args.batch} on average × {args.max_length} tokens, "
        f"σ = 1, C = 1, `hooks`; {args.repeats} repeats of {args.steps} steps per arm "
        f"({args.minilm_steps} for MiniLM), arms in rotating order; within a repeat every "
        "encounter-unit arm trains on the same Poisson batches, only the noise differs. s/step "
        "and ms/encounter: medians; ÷ torch: median (and range) over repeats of the arm's "
        "time per encounter ÷ the torch arm's in the same repeat (for the encounter unit, the "
        "same batches: the step-time ratio)"])
    lines += [
        "",
        "| model | trainable | arm | s/step | ms/encounter | ÷ torch | range |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        for arm in ARMS:
            paired = row["paired"][arm]
            lines.append(f"| {row['model']} | {row['trainable']:,} | {arm} | "
                         f"{row['step'][arm]:.4f} | {1000 * row['example'][arm]:.2f} | "
                         f"{statistics.median(paired):.3f} | {paired[0]:.3f}–{paired[-1]:.3f} |")
    lines += ["", "Noise draw alone, all trainable tensors at once (one step's noise, as "
              "`add_noise` asks it), median of 20, ms:", "",
              "| model | torch | csprng | csprng − torch | that ÷ torch step |",
              "|---|---:|---:|---:|---:|"]
    for row in rows:
        draw = row["draw_ms"]
        extra = draw["csprng"] - draw["torch"]
        lines.append(f"| {row['model']} | {draw['torch']:.2f} | {draw['csprng']:.2f} | "
                     f"{extra:.2f} | {extra / 1000 / row['step']['torch']:.3f} |")
    counts = "; ".join(f"{row['model']}: {row['patients']} patients, {row['encounters']} "
                       "encounters" for row in rows)
    lines += ["", f"The patient arm samples patients with q = batch ÷ training encounters "
              f"({counts}): its batches hold as many encounters on average, not the same ones, "
              "hence the ratio per encounter.",
              "",
              "The step ratios carry the machine's noise (other processes, one run): the CSPRNG "
              "cannot make a step faster, so a ratio below 1 measures that noise. The draw table "
              "isolates what differs: its last column is the CSPRNG's added cost as a share of "
              "a torch-generator step."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=4, help="steps per timed call")
    parser.add_argument("--minilm-steps", type=int, default=1,
                        help="steps per timed call for MiniLM (several seconds each on a CPU)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="a multiple of 3 puts each arm in each place of the order equally")
    parser.add_argument("--batch", type=int, default=16, help="expected Poisson batch")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--site", default="academic")
    parser.add_argument("--data-dir", type=Path, default=Path("lang1-fl-data"))
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()

    import torch

    from client.model import select_device
    from client.site import ensure_site_data
    from sites.config import DEFAULT_CONSORTIUM, load_consortium
    from sites.dataset import read_site_table

    torch.set_num_threads(args.threads)
    consortium = load_consortium(DEFAULT_CONSORTIUM, data_root=args.data_dir.resolve())
    site = consortium.site(args.site)
    ensure_site_data(site, seed=consortium.seed)
    table = read_site_table(site)
    rows, load = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            steps = args.minilm_steps if name == "minilm" else args.steps
            row = measure(name, Path(folder), table, steps=steps, repeats=args.repeats,
                          batch=args.batch, max_length=args.max_length,
                          device=select_device(args.device))
            rows.append(row)
            print(f"{name}: {row['trainable']:,} trainable; " + ", ".join(
                f"{arm} {row['step'][arm]:.4f} s/step (÷ torch per encounter: "
                f"{statistics.median(row['paired'][arm]):.3f})" for arm in ARMS)
                + f"; draw {row['draw_ms']['torch']:.2f} vs "
                f"{row['draw_ms']['csprng']:.2f} ms", flush=True)
    command = command_line("secure_noise.py")
    load.append(os.getloadavg()[0])
    text = report(rows, args, command, load)
    print("\n" + text)
    if not args.no_write:
        write_results("secure_noise", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
