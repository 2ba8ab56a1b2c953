"""Does the federated model transfer as well as pooling, and better than going alone?

Runs `lang1-fl experiment transfer` on the default consortium (or reads an existing experiment
with `--run-dir`) and prints, measured side by side in that one experiment (same base, LoRA, local
steps, seeds and validation-based round selection for every regime):

- external-site macro AUROC, federated ÷ pooled (goal >= 0.99);
- external-site macro AUROC, federated − best local-only (goal >= +0.03);
- in-distribution gap closed, (federated − untrained) ÷ (oracle − untrained) (goal >= 0.90);

then every regime's in-distribution and external macro AUROC, and per task the worst training
site and the spread across sites.

    python bench/transfer.py                     # a fresh experiment (about an hour on 2 cores)
    python bench/transfer.py --regimes federated,local,pooled   # just what the headline needs
    python bench/transfer.py --run-dir runs/transfer-20261125-210000

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
    args = parser.parse_args()
    run_dir = args.run_dir
    if run_dir is None:
        name = time.strftime("bench-transfer-%Y%m%d-%H%M%S")
        command = ["experiment", "transfer", "--runs-dir", str(args.runs_dir), "--run-name", name]
        started = time.perf_counter()
        if lang1_fl(command + ["--regimes", args.regimes]) != 0:
            return 1
        print(f"wall time of the experiment: {time.perf_counter() - started:.0f} s")
        run_dir = args.runs_dir / name
    transfer = json.loads((run_dir / "transfer.json").read_text())
    summary = summarize_transfer(transfer)

    print(f"\nexperiment {run_dir}: consortium {transfer['consortium']}, "
          f"{transfer['num_rounds']} rounds per regime, {transfer['strategy']}")
    for number in summary.headline:
        verdict = "–" if number.met is None else ("met" if number.met else "NOT met")
        print(f"{number.label}: {_fmt(number.value)} (goal {number.goal:g}: {verdict})"
              f"{'; ' + number.detail if number.detail else ''}"
              f"{'; ' + number.reason if number.reason else ''}")
    print("\nregime               in-distribution  external macro")
    for regime in summary.regimes:
        print(f"{regime:20s} {_fmt(summary.in_distribution.get(regime)):>15s}  "
              f"{_fmt(summary.external_macro.get(regime)):>14s}")
    print("\nregime               task         worst site (AUROC)       spread  external")
    for row in summary.site_spread:
        if row.regime in ("federated", "pooled", "untrained"):
            print(f"{row.regime:20s} {row.task:12s} {str(row.worst_site):14s} "
                  f"{_fmt(row.worst_auroc):>8s}  {_fmt(row.spread):>7s}  {_fmt(row.external_auroc)}")
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("transfer", __doc__.splitlines()[0], main))
