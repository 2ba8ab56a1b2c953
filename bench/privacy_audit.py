"""Does the empirical audit tell a site without DP from the same site at ε = 8? Both, side by side.

One site of a shipped consortium (default: `academic` of `default`, all-MiniLM-L6-v2, the run
config of pyproject.toml) is audited twice with the same audit seed — the same 1,000 canaries and
the same coins — once trained without DP and once with DP-SGD at ε = 8, δ = 1e-5, C = 1 (the
`private` consortium's budget; the default consortium's sites have no `privacy` block). Each arm
prints ε_lower (β = 0.05) beside its accounted ε, and bench/results/privacy_audit.md records date,
machine, command and numbers. A working DP-SGD keeps the ε = 8 arm's ε_lower at most 8; how far
the non-private arm rises shows how much power the audit has at this shape.

    python bench/privacy_audit.py                                  # the default shape
    python bench/privacy_audit.py --set max-length=32 --note "..." # a cheaper shape
    python bench/privacy_audit.py --tiny --rounds 1 --set local-steps=400   # no real model

`--tiny` swaps the base for a randomly initialised 2-layer encoder of hidden 128 (the tests'
audit model, built in a temporary folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    machine_line,
    results_header,
    write_results,
)
from client.privacy.audit import AuditResult, run_audit  # noqa: E402
from client.run_config import default_run_config, run_config_overrides  # noqa: E402
from client.settings import ClientSettings  # noqa: E402
from client.site import ensure_site_data  # noqa: E402
from sites.config import load_consortium, resolve_consortium  # noqa: E402
from sites.site_settings import PrivacySettings  # noqa: E402

RESULTS = RESULTS_DIR / "privacy_audit.md"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    consortium = load_consortium(resolve_consortium(args.consortium),
                                 data_root=args.data_dir.resolve())
    site = consortium.site(args.site)
    ensure_site_data(site, seed=consortium.seed)
    # The arms differ in DP only; the non-private arm keeps the block for its δ
    site = replace(site, privacy=PrivacySettings(lifetime_epsilon=args.epsilon, delta=args.delta,
                                                 max_grad_norm=args.max_grad_norm))
    overrides = run_config_overrides(args.set)
    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            from tests.tiny_models import make_tiny_encoder

            overrides["base-model"] = str(make_tiny_encoder(Path(scratch), hidden=128))
        settings = ClientSettings.from_run_config({**default_run_config(), **overrides})
        arms = {}
        for name, private in (("no DP", False), (f"DP ε = {args.epsilon:g}", True)):
            arms[name] = run_audit(site, settings, canaries=args.canaries, rounds=args.rounds,
                                   private=private, seed=args.seed)
            print(_row(name, arms[name]), flush=True)
    text = _markdown(args, settings, site, arms, argv)
    print()
    write_results("privacy_audit", text, path=args.out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consortium", default="default")
    parser.add_argument("--site", default="academic")
    parser.add_argument("--data-dir", type=Path, default=Path("lang1-fl-data"))
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=None,
                        help="default: the run config's num-server-rounds")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=2026, help="the audit seed of both arms")
    parser.add_argument("--tiny", action="store_true",
                        help="a random 2-layer encoder of hidden 128 instead of the base model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="run-config override, as for `lang1-fl run`")
    parser.add_argument("--note", default="", help="a sentence for the results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


HEADER = ("| arm | σ | accounted ε | ε_lower (β = 0.05) | r | v | canaries trained on | n | "
          "steps | minutes |")


def _row(name: str, result: AuditResult) -> str:
    accounted = f"{result.accounted_epsilon:.3f}" if result.private else "∞"
    return (f"| {name} | {result.noise_multiplier:.4g} | {accounted} | "
            f"{result.epsilon_lower:.3f} | {result.guesses} | {result.correct} | "
            f"{result.included} of {result.canaries} | {result.examples} | {result.steps} | "
            f"{result.seconds / 60:.1f} |")


def _markdown(args, settings: ClientSettings, site, arms: dict[str, AuditResult],
              argv: list[str] | None) -> str:

    model = settings.model
    command = command_line("privacy_audit.py", argv)
    lines = results_header(
        "Privacy audit: ε_lower without DP and at ε = 8, one site, side by side",
        command=command, machine=machine_line(threads=args.threads), details=[
        f"shape: site `{site.name}` of `{args.consortium}`, base "
        f"{'a random 2-layer encoder of hidden 128 (--tiny)' if args.tiny else model.base}, "
        f"max-length {model.max_length}, LoRA r = {model.lora.r}, five joint tasks, batch "
        f"{site.training.batch_size}; {args.canaries} canaries of audit seed {args.seed} (the "
        f"same canaries and coins in both arms); DP at δ = {args.delta:g}, C = "
        f"{args.max_grad_norm:g}; ε_lower is the best of the default grid of guess counts, "
        "each at β / 6",
    ])
    if args.note:
        lines.append(f"- note: {args.note}")
    lines += ["", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    lines += [_row(name, result) for name, result in arms.items()]
    lines += ["", "Per guess count (half guessed in for the highest scores, half out for the "
              "lowest), correct guesses and that count's ε_lower at β / 6:", ""]
    lines += ["| arm | " + " | ".join(f"r = {g.guesses}" for g in next(iter(arms.values())).grid)
              + " |", "|---|" + "---:|" * len(next(iter(arms.values())).grid)]
    lines += [f"| {name} | " + " | ".join(f"{g.correct} ({g.epsilon_lower:.2f})"
                                          for g in result.grid) + " |"
              for name, result in arms.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    started = time.perf_counter()
    status = main()
    print(f"{(time.perf_counter() - started) / 60:.1f} minutes")
    sys.exit(status)
