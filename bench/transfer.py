"""Does the federated model transfer as well as pooling, and better than going alone?

Runs `lang1-fl experiment transfer` on the default consortium (or reads an existing experiment
with `--run-dir`) and prints, measured side by side in that one experiment (same base, LoRA, local
steps, seeds and validation-based round selection for every regime):

- external-site macro AUROC, federated ÷ pooled (goal >= 0.99);
- external-site macro AUROC, federated − best local-only (goal >= +0.03);
- in-distribution gap closed, (federated − untrained) ÷ (note ceiling − untrained) (goal >= 0.80;
  the oracle when the sites report no note ceiling);

then every regime's in-distribution and external macro AUROC, and per task the worst training
site and the spread across sites.

    python bench/transfer.py --rounds 6          # every regime (3-4 hours on 2 cores, estimated)
    python bench/transfer.py --rounds 6 --regimes federated,local,pooled   # what the headline needs
    python bench/transfer.py --run-dir runs/transfer-20261125-210000

Why 6 rounds, not the default run's 3: every regime picks its round on validation, and one that
picks the last round was compared before it was done (the report names it). At 3 rounds the
federation picked round 3 (validation loss 0.680, 0.635, 0.631); at 6 it picked round 5 and every
single hospital a round from 1 to 3, its validation loss rising after that. The headline run takes
about 85 minutes on 2 cores (2026-12-05).

The paper's model the paper's way, in a shape for 2 CPU cores (a Llama-architecture decoder of
Lang1-100M's size, answer-letter scoring, one task, the small consortium; the untrained model is the
zero-shot baseline), with the MiniLM default beside it on the same consortium and settings:

    python bench/transfer.py --consortium small --rounds 2 --regimes federated,pooled \
        --set tasks=readmission --set max-length=256 --bases smollm2-135m all-MiniLM-L6-v2 \
        --results transfer_decoder_cpu

Why this shape: readmission, because at 300 encounters a site mortality (2-3 % prevalence) leaves
the external system's test split without a single death, so its AUROC is undefined; 256 tokens,
to keep a SmolLM2 step near 20 s on one core (the notes of the small consortium's tables, written
before issue 36's longer notes, are shorter than that). Measured alone on 2 cores (2026-12-03,
bench/results/transfer_decoder_cpu.md): 34 minutes for SmolLM2, 3 for MiniLM. It does not learn enough to
tell the regimes apart: 8 local steps a round over 2 rounds, and test splits of 3-9 positives a
site; federated stayed at zero-shot (external 0.523 -> 0.506) while pooled, 32 steps a round,
moved (0.551). A CPU shape that learns needs several times the steps: hours on 2 cores.

The full shape (all five tasks, 512 tokens, the default consortium) on a GPU: `--profile decoder`
without the `--set`s and `--consortium`; `--gpus-per-site` shares the GPU among Ray's simulated
sites, and `--in-process` runs the experiment without Ray (bench/in_process.py), on a lent GPU
machine that cannot install it:

    python bench/transfer.py --in-process --profile decoder --regimes federated,pooled \
        --results transfer_decoder_gpu

On an H200 (2026-12-04) a site's round there (40 steps of 16 encounters × 5 prompts × 512 tokens)
took 21-27 s with one decoder pass per task (before prompts were packed into one pass,
client/prompt_packing.py) and scoring a site under a second, so that command needed about 12
minutes; the one
run so far was stopped in the federated regime's third round by the lent machine's time limit, and
its validation AUROCs after rounds 1 and 2 stayed near 0.5 (tests/test_cuda_parity.py says why
that is suspect).

What it prints is also kept, with the date, machine and command, in bench/results/transfer.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.in_process import main as in_process  # noqa: E402
from bench.results_file import record_printed  # noqa: E402
from server.cli import main as lang1_fl  # noqa: E402
from server.report.transfer_summary import summarize_transfer  # noqa: E402


def _fmt(value: float | None) -> str:
    return "  –  " if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing experiment to read")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--regimes", default="all",
                        help="regime kinds to train (default all; the headline needs "
                        "federated,local,pooled)")
    parser.add_argument("--consortium", default="default")
    parser.add_argument("--rounds", type=int, help="federated rounds per regime")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="run-config override, for every base")
    parser.add_argument("--bases", nargs="+", help="one experiment per base, printed one after "
                        "the other (default: the run config's base)")
    parser.add_argument("--profile", help="a run profile, as for `lang1-fl run` (e.g. decoder)")
    parser.add_argument("--gpus-per-site", type=float, default=0.0)
    parser.add_argument("--in-process", action="store_true",
                        help="run the experiment in this process, without Ray or a SuperLink "
                        "(bench/in_process.py)")
    parser.add_argument("--results", default="transfer",
                        help="name of the results file under bench/results/ (e.g. transfer_decoder_cpu "
                        "for the 2-core decoder shape)")
    args = parser.parse_args()
    if args.run_dir is not None:
        report(args.run_dir)
        return 0
    for base in args.bases or [None]:
        name = time.strftime("bench-transfer-%Y%m%d-%H%M%S") + (f"-{base}" if base else "")
        command = ["experiment", "transfer", args.consortium, "--runs-dir", str(args.runs_dir),
                   "--run-name", name, "--regimes", args.regimes]
        command += ["--rounds", str(args.rounds)] if args.rounds else []
        command += ["--profile", args.profile] if args.profile else []
        command += [] if args.in_process else ["--gpus-per-site", str(args.gpus_per_site)]
        overrides = [*args.set, *([f"base-model={base}"] if base else [])]
        command += [arg for kv in overrides for arg in ("--set", kv)]
        started = time.perf_counter()
        if (in_process(command) if args.in_process else lang1_fl(command)) != 0:
            return 1
        print(f"\n=== base {base or 'of the run config'}: wall time of the experiment "
              f"{time.perf_counter() - started:.0f} s")
        report(args.runs_dir / name)
    return 0


def report(run_dir: Path) -> None:
    transfer = json.loads((run_dir / "transfer.json").read_text())
    summary = summarize_transfer(transfer)

    print(f"\nexperiment {run_dir}: consortium {transfer['consortium']}, "
          f"{transfer['num_rounds']} rounds per regime, {transfer['strategy']}")
    for number in summary.headline:
        verdict = "–" if number.met is None else ("met" if number.met else "NOT met")
        print(f"{number.label}: {_fmt(number.value)} (goal {number.goal:g}: {verdict})"
              f"{'; ' + number.detail if number.detail else ''}"
              f"{'; ' + number.reason if number.reason else ''}")
    untrained, federated = (summary.external_macro.get(r) for r in ("untrained", "federated"))
    if untrained is not None and federated is not None:
        print(f"external macro AUROC, federated − untrained (zero-shot): {federated - untrained:+.3f}"
              " (the decoder's goal: ≥ +0.10)")
    if summary.chose_last_round:
        print(f"chose the last round ({transfer['num_rounds']}), so compared before they were done: "
              f"{', '.join(summary.chose_last_round)} (more --rounds would tell)")
    print("\nregime               in-distribution  external macro")
    for regime in summary.regimes:
        print(f"{regime:20s} {_fmt(summary.in_distribution.get(regime)):>15s}  "
              f"{_fmt(summary.external_macro.get(regime)):>14s}")
    print("\nregime               task         worst site (AUROC)       spread  external")
    for row in summary.site_spread:
        if row.regime in ("federated", "pooled", "untrained"):
            print(f"{row.regime:20s} {row.task:12s} {str(row.worst_site):14s} "
                  f"{_fmt(row.worst_auroc):>8s}  {_fmt(row.spread):>7s}  {_fmt(row.external_auroc)}")


if __name__ == "__main__":
    _results = argparse.ArgumentParser(add_help=False)
    _results.add_argument("--results", default="transfer")
    sys.exit(record_printed(_results.parse_known_args()[0].results, __doc__.splitlines()[0], main,
                            script="transfer.py"))
