"""Does the default federated run learn, and how much leaves a site per round?

Runs `lang1-fl run` on the default consortium (or reads an existing run with `--run-dir`) and
prints, per task: the external site's AUROC at round 0 and after the last round, the training
sites' mean AUROC at round 0, after the last round and the oracle, and the share of the
round-0-to-note-ceiling gap closed; then the bytes one site uploads per round ÷ the base model's size.

    python bench/default_run.py                 # a fresh default run (10-15 min on 2 cores)
    python bench/default_run.py --run-dir runs/20261125-153000

What it prints is also kept, with the date, machine and command, in bench/results/default_run.md
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
from server.report.markdown import headline  # noqa: E402

GAP_GOAL = 0.80
"""Issue 36: the default federation closes >= 0.80 of the in-distribution gap to the note-level
ceiling (macro over tasks)."""


def _mean(values: list[float | None]) -> float | None:
    return None if None in values else sum(values) / len(values)


def _fmt(value: float | None) -> str:
    return "   –  " if value is None else f"{value:6.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing run to read instead of running")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    args = parser.parse_args()
    run_dir = args.run_dir
    if run_dir is None:
        name = time.strftime("bench-%Y%m%d-%H%M%S")
        started = time.perf_counter()
        if lang1_fl(["run", "--runs-dir", str(args.runs_dir), "--run-name", name]) != 0:
            return 1
        print(f"wall time of the default run: {time.perf_counter() - started:.0f} s")
        run_dir = args.runs_dir / name
    metrics = json.loads((run_dir / "metrics.json").read_text())

    print(f"\nrun {run_dir}: {metrics['run']['num_rounds']} rounds, {metrics['run']['strategy']}, "
          f"{metrics['run']['max_length']} tokens a note; the ServerApp's wall time "
          f"{metrics['run']['duration_s']:.0f} s (without Flower's start)")
    print("task          external r0  final  better | in-dist r0  final  note ceiling  oracle  "
          "gap closed (to the note ceiling)")
    all_better = True
    rows = headline(metrics)
    for task, row in rows.items():
        better = None not in (row["external_round0"], row["external_final"]) and (
            row["external_final"] > row["external_round0"]
        )
        gap = row["gap_closed"]
        all_better &= bool(better)
        print(
            f"{task:12s}  {_fmt(row['external_round0'])} {_fmt(row['external_final'])}  "
            f"{'yes' if better else 'NO ':>5s} | {_fmt(row['in_distribution_round0'])} "
            f"{_fmt(row['in_distribution_final'])}  {_fmt(row['in_distribution_note_ceiling'])}"
            f"       {_fmt(row['in_distribution_oracle'])}  "
            f"{'–' if gap is None else f'{gap:6.2f}'}"
            f"{'' if row['gap_closed_against'] == 'note ceiling' else ' (vs oracle)'}"
        )
    keys = ("in_distribution_round0", "in_distribution_final", "in_distribution_note_ceiling",
            "in_distribution_oracle")
    macro = {key: _mean([r[key] for r in rows.values()]) for key in keys}
    ceiling = macro["in_distribution_note_ceiling"]
    macro_gap = (None if None in (ceiling, macro["in_distribution_round0"])
                 else (macro["in_distribution_final"] - macro["in_distribution_round0"])
                 / (ceiling - macro["in_distribution_round0"]))
    print(f"{'macro':12s}  {'':22s} | {_fmt(macro['in_distribution_round0'])} "
          f"{_fmt(macro['in_distribution_final'])}  {_fmt(ceiling)}       "
          f"{_fmt(macro['in_distribution_oracle'])}  {_fmt(macro_gap)}")
    print(f"in-distribution macro gap closed to the note ceiling: {_fmt(macro_gap)} (goal >= "
          f"{GAP_GOAL}: {'met' if macro_gap is not None and macro_gap >= GAP_GOAL else 'NOT met'})")
    upload = metrics["upload"]
    print(
        f"\nupload per site per round: {upload['bytes_per_site_per_round']:,} bytes; base model "
        f"{upload['base_model_bytes']:,} bytes; ratio {upload['ratio_to_base_model']:.4f} "
        "(goal < 0.01)"
    )
    print(f"external better than round 0 on every task: {all_better}")
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("default_run", __doc__.splitlines()[0], main))
