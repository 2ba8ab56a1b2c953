"""What does a LoRA step cost at Lang1's sizes: step time, peak memory, tokens per second and
model-FLOPs utilisation, without and with DP-SGD?

Lang1's weights are not public, so each shape is a Llama configuration of that size with random
weights, built directly on the device (in bf16 where the device runs bf16, as a site loads its
base, `client.precision`). The step is the toolkit's own: `client.lora.add_lora` (LoRA on the
attention projections, peft's Llama default), the answer-letter model `client.model.LetterModel`,
`client.train.train_steps` and, for DP, `client.privacy.dp_sgd.train_steps_private` (fp32, as a DP
site trains) — on prompts of random token ids, every one `--length` tokens long, one task.

Model FLOPs per token are counted as 4 · N + 12 · layers · hidden · length, N the parameters of
the decoder layers (the forward pass and the backward pass to the activations, 2N each: the frozen
base has no weight gradients and LoRA's are negligible; the second term is attention's score and
value products, forward and backward, as PaLM's appendix counts them). The embedding and the LM
head are left out: a lookup multiplies nothing, and the answer-letter model applies the head to
one position of each prompt. Utilisation divides by `--peak-tflops` (default: the device's dense
peak when it is known: H100/H200 989 in bf16 and 67 in fp32, A100 312 and 19.5).

Arms: `non-dp` (the site's precision: bf16 weights and autocast on a bf16 GPU), `non-dp-fp32`
(fp32 weights, no autocast: what a DP site computes in, without DP) and `dp` (DP-SGD, fp32). DP ÷
non-DP is printed against the fp32 arm when it ran (same precision: what DP itself costs), else
against `non-dp` (goal ≤ 1.25).

    python bench/lang1_shapes.py --shapes lang1-1b lang1-7b --batch 8 --length 512   # a GPU
    python bench/lang1_shapes.py --shapes tiny --batch 4 --length 64 --steps 2         # CPU check

On 2 CPU cores only the `tiny` and `lang1-100m` shapes finish in minutes. On an H200
(bench/results/lang1_shapes.md, lang1_shapes_batch16.md) a step cost about 5 ms per decoder layer
on top of its arithmetic, whatever the layer's width (the 100M shape ran no faster in bf16 than in
fp32): the 1B shape reached 16.5 % MFU at batch 8 and 26 % at 16, the 7B shape 37 % at batch 8.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402

SHAPES = {
    # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (64, 2, 4, 4, 128, 32000),
    "lang1-100m": (576, 30, 9, 3, 1536, 49152),  # SmolLM2-135M's shape
    "lang1-1b": (2048, 16, 32, 8, 8192, 128256),  # Llama-3.2-1B's shape
    "lang1-7b": (4096, 32, 32, 32, 11008, 32000),  # Llama-2-7B's shape
}
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5)}
"""Dense peak TFLOP/s by device name: (bf16, fp32), from the vendors' datasheets."""
ARMS = ("non-dp", "non-dp-fp32", "dp")
LETTERS = (330, 389)
"""Two answer-letter token ids (any ids below the vocabulary do for random weights)."""


def build(shape: str, device, dtype):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from client.lora import add_lora
    from client.model import LetterModel
    from tests.model_settings import model_settings

    hidden, layers, heads, kv, intermediate, vocab = SHAPES[shape]
    config = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=intermediate,
                         vocab_size=vocab, max_position_embeddings=4096, attention_dropout=0.0)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(config, dtype=dtype)
    settings = model_settings(base=shape, tasks=("mortality",), scoring="letters", seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = add_lora(base, settings.lora, device=device)
    return LetterModel(backbone, ("mortality",), LETTERS)


def prompts(rows: int, length: int, vocab: int):
    import torch

    from client.data import EncodedNotes, EncodedSplit

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (rows, length), generator=generator)
    notes = EncodedNotes(input_ids=ids, attention_mask=torch.ones_like(ids))
    labels = {"mortality": torch.randint(0, 2, (rows,), generator=generator)}
    return EncodedSplit(notes={}, labels=labels, oracle={}, size=rows,
                        prompts={"mortality": notes})


def measure(shape: str, *, device_name: str, batch: int, length: int, steps: int,
            repeats: int, arm: str) -> dict:
    import contextlib

    import torch

    import client.train
    from client.precision import autocast as site_autocast
    from client.precision import base_weights_dtype
    from client.privacy.dp_sgd import train_steps_private
    from client.train import train_steps
    from tests.model_settings import optimizer_settings

    device = torch.device(device_name)
    private = arm == "dp"
    dtype = torch.float32 if arm == "non-dp-fp32" else base_weights_dtype(device, private=private)
    # the fp32 arm without DP: the site's own training loop with its autocast switched off
    client.train.autocast = (lambda _device: contextlib.nullcontext()) if arm == "non-dp-fp32" \
        else site_autocast
    model = build(shape, device, dtype)
    data = prompts(batch * 8, length, SHAPES[shape][5])
    optimizer = optimizer_settings()

    def step(n: int, seed: int) -> None:
        if private:
            train_steps_private(model, data, steps=n, sample_rate=batch / data.size,
                                noise_multiplier=1.0, max_grad_norm=1.0, optimizer=optimizer,
                                seed=seed, noise_seed=seed)
        else:
            train_steps(model, data, steps=n, batch_size=batch, optimizer=optimizer, seed=seed)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(1, 0)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for repeat in range(repeats):
        sync()
        started = time.perf_counter()
        step(steps, repeat + 1)
        sync()
        times.append((time.perf_counter() - started) / steps)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    layers = model.backbone.get_base_model().get_decoder().layers
    parameters = sum(p.numel() for p in layers.parameters())
    return {"seconds": statistics.median(times), "peak": peak, "parameters": parameters,
            "dtype": str(dtype).replace("torch.", "")}


def model_flops(shape: str, parameters: int, tokens: int, length: int) -> float:
    """Per step: 4 · N + 12 · layers · hidden · length per token (the module docstring)."""
    hidden, layers = SHAPES[shape][:2]
    return tokens * (4 * parameters + 12 * layers * hidden * length)


def peak_tflops(device_name: str, dtype: str, given: float | None) -> float | None:
    """The device's dense peak for `dtype`: `--peak-tflops` (bf16) if given, else the table."""
    import torch

    if given:
        return given if dtype == "bfloat16" else None
    if not device_name.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device_name))
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return None if peaks is None else peaks[0 if dtype == "bfloat16" else 1]


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["lang1-1b", "lang1-7b"],
                        choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 dense peak")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--results", default="lang1_shapes",
                        help="name of the results file under bench/results/")
    args = parser.parse_args()
    device_label = (torch.cuda.get_device_name(torch.device(args.device))
                    if args.device.startswith("cuda") else "cpu")
    print(f"device {device_label}; batch {args.batch} × {args.length} tokens, one prompt per "
          f"example; median of {args.repeats} × {args.steps} steps\n")
    print("shape        arm          dtype    layer params  s/step  tokens/s   MFU  "
          "peak memory  DP ÷ non-DP")
    for shape in args.shapes:
        results = {}
        for arm in args.arms:
            row = measure(shape, device_name=args.device, batch=args.batch, length=args.length,
                          steps=args.steps, repeats=args.repeats, arm=arm)
            results[arm] = row
            tokens = args.batch * args.length
            flops = model_flops(shape, row["parameters"], tokens, args.length) / row["seconds"]
            peak = peak_tflops(args.device, row["dtype"], args.peak_tflops)
            mfu = f"{flops / (peak * 1e12):5.1%}" if peak else "  –  "
            baseline = results.get("non-dp-fp32") or results.get("non-dp")
            ratio = (f"{row['seconds'] / baseline['seconds']:10.2f}"
                     if arm == "dp" and baseline else "")
            print(f"{shape:12s} {arm:12s} {row['dtype']:8s} {row['parameters'] / 1e6:9.1f} M "
                  f"{row['seconds']:8.3f} {tokens / row['seconds']:9.0f} {mfu} "
                  f"{row['peak'] / 2**30:9.1f} GiB  {ratio}")
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print("\n(MFU: model FLOPs per step, see the docstring, ÷ time ÷ the dtype's dense peak; "
          "peak memory: torch.cuda.max_memory_allocated on a GPU, the process's peak RSS on a CPU)")
    return 0


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--results", default="lang1_shapes")
    sys.exit(record_printed(_results.parse_known_args()[0].results, __doc__.splitlines()[0], main,
                            script="lang1_shapes.py"))
