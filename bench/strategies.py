"""How do the aggregation rules compare on the default consortium, and with one faulty site?

Part one runs `lang1-fl run` once per strategy on the default consortium (same seeds, same sites,
same local steps; only `strategy` differs). Part two is the fault drill, on five training
hospitals (the default four plus `regional`, a fifth drawn from the `community` profile, so that
Multi-Krum's n >= 2f + 3 holds with f = 1): FedAvg and each robust rule run once clean and once
with one hospital sending a sign-flipped, scaled update every round (`fault` in its site YAML).
Prints, per run: external-site macro AUROC and the training sites' mean in-distribution macro
AUROC (both at the validation-selected round, with the test split), bytes uploaded per site per
round and wall time; then the ratios that answer the question:

- FFA-LoRA upload ÷ FedAvg upload (goal <= 0.55);
- each robust rule, attacked − clean, external and in-distribution macro AUROC (goal: within 0.02);
- FedAvg, attacked − clean (expected to degrade visibly).

    python bench/strategies.py                               # everything (about two hours on 2 cores)
    python bench/strategies.py --strategies ""               # the fault drill only
    python bench/strategies.py --rounds 2 --local-steps 20   # shorter runs, same comparison
    python bench/strategies.py --from runs/bench-strategies-*/strategies.json   # print again

What it prints is also kept, with the date, machine and command, in bench/results/strategies.md
(bench/results_file.py), which the docs link to.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_file import record_printed  # noqa: E402
from server.cli import main as lang1_fl  # noqa: E402
from server.report.markdown import headline  # noqa: E402
from sites.config import DEFAULT_CONSORTIUM  # noqa: E402

STRATEGIES = ("fedavg", "ffa-lora", "fedprox", "flora", "median", "trimmed-mean", "fedadam")
"""Part one; `multi-krum` is not among them: with f = 1 it needs five training hospitals."""
ROBUST = ("multi-krum", "trimmed-mean", "median")


def drill_consortium(out: Path, *, fifth: str, attacker: str | None, update: str,
                     factor: float) -> Path:
    """The default consortium plus a fifth training hospital `regional` (profile `fifth`), with
    `attacker` (if any) corrupting every update it sends. Data paths stay relative, so they
    resolve against the same `--data-dir`; `regional`'s table is generated on first use."""
    raw = yaml.safe_load(DEFAULT_CONSORTIUM.read_text())
    template = next(s for s in raw["sites"] if s["role"] == "train")
    regional = {**copy.deepcopy(template), "name": "regional",
                "data": {**template["data"], "path": "regional/encounters.parquet"},
                "synthetic": {**template["synthetic"], "profile": fifth}}
    last_train = max(i for i, s in enumerate(raw["sites"]) if s["role"] == "train")
    raw["sites"].insert(last_train + 1, regional)
    names = [s["name"] for s in raw["sites"] if s["role"] == "train"]
    raw["name"] = "default-plus-regional"
    if attacker is not None:
        if attacker not in names:
            raise SystemExit(f"--attacker {attacker!r}; expected a training site: "
                             f"{', '.join(names)}")
        for entry in raw["sites"]:
            if entry["name"] == attacker:
                entry["fault"] = {"update": update, "factor": factor}
        raw["name"] += f"-with-faulty-{attacker}"
    path = out / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def summarize(run_dir: Path, wall_s: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = headline(metrics).values()
    uploads = [site["upload-bytes"] for entry in metrics["rounds"]
               for site in entry["training"].values() if "upload-bytes" in site]
    return {
        "external": _mean([r["external_final"] for r in rows]),
        "in_distribution": _mean([r["in_distribution_final"] for r in rows]),
        "upload_bytes": sum(uploads) / len(uploads) if uploads else None,
        "selected_round": metrics["selection"]["round"] if metrics.get("selection") else None,
        "skipped_rounds": [e["round"] for e in metrics["rounds"] if e.get("skipped")],
        "left_out": {e["round"]: e["left_out"] for e in metrics["rounds"] if e.get("left_out")},
        "wall_s": round(wall_s, 1),
        "run_dir": str(run_dir),
    }


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def run_all(args: argparse.Namespace) -> dict:
    out = args.runs_dir / time.strftime("bench-strategies-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    common = ["--rounds", str(args.rounds), "--data-dir", str(args.data_dir),
              "--runs-dir", str(out), "--set", f"local-steps={args.local_steps}"]
    clean = drill_consortium(out, fifth=args.fifth_profile, attacker=None, update=args.update,
                             factor=args.factor)
    faulty = drill_consortium(out, fifth=args.fifth_profile, attacker=args.attacker,
                              update=args.update, factor=args.factor)
    plan = [(name, name, None) for name in args.strategies]
    for name in (*args.robust, "fedavg"):
        plan += [(f"drill-{name}", name, clean), (f"drill-{name}-faulty", name, faulty)]
    results = {}
    for label, strategy, consortium in plan:
        command = ["run", *common, "--run-name", label, "--set", f"strategy={strategy}"]
        if consortium is not None:
            command += ["--consortium", str(consortium)]
        print(f"--- {label}", flush=True)
        started = time.perf_counter()
        if lang1_fl(command) != 0:
            raise SystemExit(f"run {label} failed; see {out / label}")
        results[label] = summarize(out / label, time.perf_counter() - started)
        (out / "strategies.json").write_text(json.dumps(_record(args, results), indent=2))
    return _record(args, results)


def _record(args: argparse.Namespace, results: dict) -> dict:
    return {"rounds": args.rounds, "local_steps": args.local_steps, "robust": args.robust,
            "attack": {"site": args.attacker, "update": args.update, "factor": args.factor,
                       "fifth_profile": args.fifth_profile},
            "results": results}


def merge(records: list[dict]) -> dict:
    """Several records of this bench as one, refused unless they were run alike (the robust
    rules of their fault drills may differ: they are listed together)."""
    same = ("rounds", "local_steps", "attack")
    for record in records[1:]:
        differs = [k for k in same if record[k] != records[0][k]]
        if differs:
            raise SystemExit(f"--from: the records differ in {differs}; expected runs alike")
    robust = list(dict.fromkeys(name for r in records for name in r["robust"]))
    return {**records[0], "robust": robust,
            "results": {k: v for r in records for k, v in r["results"].items()}}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _left_out(per_round: dict) -> str:
    """e.g. "r1 community, r2 community" (JSON keys are strings)."""
    return ", ".join(f"r{r} {' '.join(sites)}" for r, sites in per_round.items())


def report(record: dict) -> None:
    results = record["results"]
    attack = record["attack"]
    steps = record["local_steps"] or "the site's own"
    print(f"\n{record['rounds']} rounds × {steps} local steps per site. Fault drill (drill-*): "
          f"five training hospitals (default + regional, profile {attack.get('fifth_profile')}); "
          f"faulty site: {attack['site']} sends {attack['update']} × {attack['factor']:g} of its "
          "update every round")
    print(f"{'run':26s} {'external':>9s} {'in-dist':>8s} {'upload/site/round':>18s} "
          f"{'wall s':>7s}  selected")
    for label, row in results.items():
        upload = "–" if row["upload_bytes"] is None else f"{row['upload_bytes']:,.0f} B"
        print(f"{label:26s} {_fmt(row['external']):>9s} {_fmt(row['in_distribution']):>8s} "
              f"{upload:>18s} {row['wall_s']:>7.0f}  round {row['selected_round']}"
              + (f" (skipped {row['skipped_rounds']})" if row["skipped_rounds"] else "")
              + (f"; left out {_left_out(row['left_out'])}" if row.get("left_out") else ""))
    fedavg, ffa = results.get("fedavg"), results.get("ffa-lora")
    if fedavg and ffa:
        ratio = ffa["upload_bytes"] / fedavg["upload_bytes"]
        print(f"\nFFA-LoRA upload ÷ FedAvg upload: {ratio:.3f} (goal <= 0.55: "
              f"{'met' if ratio <= 0.55 else 'NOT met'})")
    for name in (*record["robust"], "fedavg"):
        clean, attacked = results.get(f"drill-{name}"), results.get(f"drill-{name}-faulty")
        if not (clean and attacked):
            continue
        external = attacked["external"] - clean["external"]
        in_dist = attacked["in_distribution"] - clean["in_distribution"]
        if name == "fedavg":
            verdict = "expected to degrade"
        else:
            met = abs(external) <= 0.02 and abs(in_dist) <= 0.02
            verdict = f"within 0.02 of clean: {'met' if met else 'NOT met'}"
        print(f"{name}, attacked − clean: external {external:+.3f}, in-distribution "
              f"{in_dist:+.3f} ({verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="sources", type=Path, nargs="+",
                        help="strategies.json files written by earlier runs of this bench with the "
                        "same rounds, steps and attack: print them again, as one table")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma list (default: all but dp-fedavg)")
    parser.add_argument("--robust", default="multi-krum,trimmed-mean",
                        help=f"comma list of the robust rules in the fault drill, of {ROBUST}")
    parser.add_argument("--fifth-profile", default="community",
                        help="synthetic profile of the drill's fifth training hospital, regional")
    parser.add_argument("--attacker", default="community", help="the faulty training site")
    parser.add_argument("--update", default="sign-flip", choices=("sign-flip", "scale"))
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=0,
                        help="steps per site and round; 0 = each site's own (35 by default)")
    parser.add_argument("--data-dir", type=Path, default=Path("lang1-fl-data"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    args = parser.parse_args()
    if args.sources:
        report(merge([json.loads(path.read_text()) for path in args.sources]))
        return 0
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"--strategies names {unknown}; expected some of {', '.join(STRATEGIES)}")
    args.robust = [s.strip() for s in args.robust.split(",") if s.strip()]
    unknown = sorted(set(args.robust) - set(ROBUST))
    if unknown:
        parser.error(f"--robust names {unknown}; expected some of {', '.join(ROBUST)}")
    report(run_all(args))
    return 0


if __name__ == "__main__":
    sys.exit(record_printed("strategies", __doc__.splitlines()[0], main))
